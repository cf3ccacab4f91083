"""Samples on the device: clips recorded on request, and captures of what the detector heard.

The daemon feeds every audio chunk to a :class:`Recorder` as well as to the pipeline. The
recorder keeps the last few seconds in a numpy ring buffer, and

* on :meth:`Recorder.request_clip` (a button, the MQTT ``record/set`` command) records the
  *next* ``seconds`` of audio into ``DATASET/<label>/`` (``_background_noise_/`` for background),
  so the user makes the sound after pressing;
* with ``recording.capture: true``, on :meth:`Recorder.capture` saves each detection's audio,
  ``capture_seconds`` in all (default 2 s): all but ``CAPTURE_AFTER_S`` (0.5 s) before the
  detection's stream time, which is when the head window holding the sound ended, and
  ``CAPTURE_AFTER_S`` after it, in case the sound went on; to
  ``captures/<label>/<timestamp>_<score>.wav`` with a JSON sidecar, so users can listen, move
  false detections into ``_unknown_`` and retrain.

Files are written by one background thread (an SD card can stall for a second on fsync and the
audio loop must not), atomically (:mod:`hark.clipfile`). Nothing here raises into the daemon:
a bad label, a full disk or a read-only folder is one logged line, and detection goes on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hark import SAMPLE_RATE, __version__
from hark.clipfile import free_path, save_clip, timestamp, write_json, write_wav
from hark.errors import HarkError
from hark.labels import BACKGROUND, BACKGROUND_DIR, check_label, is_valid_label
from hark.loglimit import LogLimit

log = logging.getLogger(__name__)

CAPTURE_SECONDS = 2.0
CAPTURE_AFTER_S = 0.5
MAX_CLIP_SECONDS = 60.0
BACKGROUND_SECONDS = 20.0
MAX_PENDING_WRITES = 32
ERROR_REPEAT_S = 60.0
MAX_PAYLOAD_BYTES = 1024
MIN_CLIP_SECONDS = 0.1  # a clip shorter than this holds no sound worth training on
USAGE_RESCAN_S = 60.0  # how often the folders' size is measured again (between, written files are added)


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist); links are not followed."""
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


class DetectionLike(Protocol):
    """What :meth:`Recorder.capture` reads from a detection (``hark.detector.Detection``)."""

    label: str
    score: float
    time_s: float


@dataclass(frozen=True)
class ClipRequest:
    """A validated request to record a clip: ``label`` None means background."""

    label: str | None
    seconds: float | None = None


def check_seconds(seconds: object, *, where: str = "seconds", maximum: float = MAX_CLIP_SECONDS) -> float:
    """``seconds`` as a float when it is a finite number in (0, maximum], else a one-line :class:`HarkError`."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise HarkError(f"{where}: {seconds!r:.40} is not a number of seconds")
    if not 0 < seconds <= maximum:
        raise HarkError(f"{where}: {seconds!r} is out of range (more than 0, at most {maximum:g} seconds)")
    return float(seconds)


def clip_label(label: object, *, where: str = "label") -> str | None:
    """A label from outside for a clip: ``None`` or ``"background"`` mean background, else it must be valid."""
    if label is None or label == BACKGROUND:
        return None
    return check_label(label, where=where)


def parse_record_payload(payload: bytes | str) -> ClipRequest:
    """Validate an MQTT ``record/set`` payload: ``{"label": "dog", "seconds": 1.5}``.

    ``label`` is required: a class label, or ``"background"``/``null`` for background noise;
    ``seconds`` is optional (the configured clip length). Anything else is a :class:`HarkError`
    whose message says what was wrong, for the caller to log before ignoring the command.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise HarkError(f"record command: payload of {len(payload)} bytes is too long")
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HarkError(
            'record command: payload is not JSON (expected {"label": "<label>", "seconds": <number>})'
        ) from None
    if not isinstance(document, dict):
        raise HarkError('record command: payload must be a JSON object like {"label": "<label>"}')
    unknown = sorted(set(document) - {"label", "seconds"})
    if unknown:
        raise HarkError(f"record command: unknown key {unknown[0]!r:.40} (allowed: label, seconds)")
    if "label" not in document:
        raise HarkError('record command: "label" is missing (a label, or "background")')
    label = clip_label(document["label"], where="record command: label")
    seconds = document.get("seconds")
    if seconds is not None:
        seconds = check_seconds(seconds, where="record command: seconds")
    return ClipRequest(label=label, seconds=seconds)


@dataclass
class _Clip:
    label: str | None
    folder: Path
    buffer: np.ndarray
    filled: int = 0


@dataclass
class _Capture:
    label: str
    score: float
    model: str | None
    wall_time: dt.datetime
    detection_sample: int
    start: int
    end: int
    clip_start: int = 0  # where the saved audio starts: ``start`` unless the ring no longer held it


class Recorder:
    """Keeps recent audio; records clips on request and captures detections, never raising into the daemon.

    ``dataset_dir``: where requested clips go (``<label>/`` or ``_background_noise_/``).
    ``captures_dir``: where captures go (default ``captures`` beside the dataset folder, not in it,
    so captures are not trained on until the user moves them). ``clip_seconds``: default clip length;
    ``background_seconds`` the default for background. ``history_seconds``: how much recent audio
    is kept (at least the capture window). ``capture``: save detections' audio, ``capture_seconds``
    of it. ``max_seconds``: the longest clip a request may ask for. ``model``: the model name written
    into capture sidecars. ``on_recording(bool)`` is called when a clip starts (True)
    and when its audio is complete (False) — for the status LED and the MQTT ``recording`` state;
    ``on_saved(path)`` after a clip or capture is on disk. Callbacks run on the audio or writer
    thread and must not block.
    """

    def __init__(
        self,
        *,
        dataset_dir: str | Path,
        captures_dir: str | Path | None = None,
        clip_seconds: float = 1.0,
        history_seconds: float = 5.0,
        capture: bool = False,
        background_seconds: float = BACKGROUND_SECONDS,
        max_seconds: float = MAX_CLIP_SECONDS,
        capture_seconds: float = CAPTURE_SECONDS,
        model: str | None = None,
        on_recording: Callable[[bool], None] | None = None,
        on_saved: Callable[[Path], None] | None = None,
        sample_rate: int = SAMPLE_RATE,
        labels: Collection[str] | None = None,
        min_seconds: float = MIN_CLIP_SECONDS,
        max_per_minute: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.captures_dir = Path(captures_dir) if captures_dir is not None else self.dataset_dir.parent / "captures"
        self.max_seconds = check_seconds(max_seconds, where="max_seconds", maximum=600.0)
        self.clip_seconds = check_seconds(clip_seconds, where="clip_seconds", maximum=self.max_seconds)
        self.background_seconds = check_seconds(background_seconds, where="background_seconds",
                                                maximum=self.max_seconds)
        capture_seconds = check_seconds(capture_seconds, where="capture_seconds", maximum=60.0)
        self.capture_after = int(round(min(CAPTURE_AFTER_S, capture_seconds / 2) * sample_rate))
        self.capture_before = int(round(capture_seconds * sample_rate)) - self.capture_after
        history_seconds = check_seconds(history_seconds, where="history_seconds", maximum=600.0)
        self.capture_enabled = bool(capture)
        self.model = model
        self.on_recording = on_recording
        self.on_saved = on_saved
        self.sample_rate = sample_rate
        self.labels = frozenset(labels) if labels is not None else None
        self.min_seconds = float(min_seconds)
        self.max_per_minute = max_per_minute
        self.max_bytes = max_bytes
        self._started: deque[float] = deque()  # when recent clips started, for max_per_minute
        self._rate_warned_at = -math.inf
        self._used_bytes = 0
        self._used_at = -math.inf
        self._over_cap = False
        self._refusals = LogLimit(log)  # requests come from outside (MQTT, the page): their warnings are bounded
        # The ring must hold a whole capture window plus the detector's latency.
        ring_seconds = max(history_seconds, capture_seconds + 1.0)
        self._ring = np.zeros(int(round(ring_seconds * sample_rate)), dtype=np.float32)
        self._t = 0  # samples fed since the start of the stream
        self._lock = threading.Lock()
        self._clip: _Clip | None = None
        self._captures: list[_Capture] = []
        self._pending: set[Future[Any]] = set()
        self._closed = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hark-recorder")
        self._last_error: dict[tuple[int, str], tuple[float, int]] = {}

    # -- audio -----------------------------------------------------------------------------

    @property
    def samples_fed(self) -> int:
        """Samples fed so far: the stream clock detections' ``time_s`` are measured on."""
        return self._t

    @property
    def recording(self) -> bool:
        """True while a requested clip is being recorded."""
        return self._clip is not None

    def history(self, seconds: float | None = None) -> np.ndarray:
        """A copy of the last ``seconds`` of audio (all that is kept when None)."""
        with self._lock:
            n = len(self._ring) if seconds is None else int(round(seconds * self.sample_rate))
            return self._span(self._t - n, self._t)

    def feed(self, chunk: np.ndarray) -> None:
        """Add a chunk of 16 kHz mono float32 audio; completes clips and captures that were waiting for it."""
        x = np.asarray(chunk, dtype=np.float32).ravel()
        if x.size == 0:
            return
        finished: _Clip | None = None
        ready: list[tuple[_Capture, np.ndarray]] = []
        with self._lock:
            self._push(x)
            clip = self._clip
            if clip is not None:
                take = min(len(clip.buffer) - clip.filled, len(x))
                clip.buffer[clip.filled:clip.filled + take] = x[:take]
                clip.filled += take
                if clip.filled == len(clip.buffer):
                    finished, self._clip = clip, None
            if self._captures:
                ready = [(c, self._take(c)) for c in self._captures if c.end <= self._t]
                self._captures = [c for c in self._captures if c.end > self._t]
        if finished is not None:
            self._submit(self._write_clip, finished)
            self._notify_recording(False)
        for capture, audio in ready:
            self._submit(self._write_capture, capture, audio)

    def _push(self, x: np.ndarray) -> None:
        n = len(self._ring)
        if len(x) >= n:
            self._ring[:] = x[-n:]
            # Keep the ring's phase tied to the stream clock so _span can index it.
            self._ring = np.roll(self._ring, (self._t + len(x)) % n)
        else:
            pos = self._t % n
            first = min(n - pos, len(x))
            self._ring[pos:pos + first] = x[:first]
            self._ring[:len(x) - first] = x[first:]
        self._t += len(x)

    def _span(self, start: int, end: int) -> np.ndarray:
        """Stream samples [start, end), clamped to what the ring still holds."""
        n = len(self._ring)
        start = max(start, self._t - n, 0)
        end = min(end, self._t)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        idx = np.arange(start, end) % n
        return self._ring[idx]

    def _take(self, capture: _Capture) -> np.ndarray:
        capture.clip_start = max(capture.start, self._t - len(self._ring), 0)
        return self._span(capture.start, capture.end)

    # -- requests --------------------------------------------------------------------------

    def request_clip(self, label: str | None, seconds: float | None = None, *, trusted: bool = False) -> bool:
        """Record the next ``seconds`` of audio as a clip of ``label`` (None or "background": background).

        Returns False, after logging why, when the label or length is refused, a clip is already
        being recorded or the recorder is closed; nothing is written then. ``trusted``: asked by a
        logged-in user of the page (:mod:`hark.web`), who may start a new class and record a series
        of clips; the label's form, the length and the disk cap still apply.
        """
        try:
            label = clip_label(label, where="record: label")
            if seconds is None:
                seconds = self.background_seconds if label is None else self.clip_seconds
            seconds = check_seconds(seconds, where="record: seconds", maximum=self.max_seconds)
            if seconds < self.min_seconds:
                raise HarkError(f"record: seconds {seconds:g} is below recording.min_seconds ({self.min_seconds:g})")
            if not trusted and self.labels is not None and label is not None and label not in self.labels:
                raise HarkError(f"record: {label!r} is not a class of the model nor listed in recording.labels "
                                f"(allowed: {', '.join(sorted(self.labels)) or 'none'}, background)")
        except HarkError as err:
            self._refusals.warning("request", "%s; nothing recorded", err)
            return False
        if self._full():
            return False
        folder = self.dataset_dir / (label if label is not None else BACKGROUND_DIR)
        n = int(round(seconds * self.sample_rate))
        with self._lock:
            if self._closed:
                log.warning("record: the recorder is stopped; nothing recorded")
                return False
            if self._clip is not None:
                self._refusals.warning("busy", "record: already recording %s; request for %s ignored",
                                       _shown(self._clip.label), _shown(label))
                return False
            if not trusted and not self._rate_allows():
                return False
            self._clip = _Clip(label=label, folder=folder, buffer=np.zeros(n, dtype=np.float32))
        log.info("recording %.1f s of %s into %s", seconds, _shown(label), folder)
        self._notify_recording(True)
        return True

    def on_detection(self, detection: DetectionLike) -> None:
        """The :class:`hark.sinks.Sink` call: :meth:`capture`."""
        self.capture(detection)

    def _rate_allows(self) -> bool:
        """At most ``max_per_minute`` clips started in any minute; a refusal is logged once a minute."""
        if self.max_per_minute is None:
            return True
        now = time.monotonic()
        while self._started and now - self._started[0] >= 60.0:
            self._started.popleft()
        if len(self._started) >= self.max_per_minute:
            if now - self._rate_warned_at >= 60.0:
                self._rate_warned_at = now
                log.warning("record: %d clips in the last minute is the most recording.max_per_minute allows; "
                            "requests ignored for %.0f s", self.max_per_minute, 60.0 - (now - self._started[0]))
            return False
        self._started.append(now)
        return True

    def _full(self) -> bool:
        """True (after one warning) while the dataset and captures folders hold ``max_bytes`` or more."""
        if self.max_bytes is None:
            return False
        now = time.monotonic()
        if now - self._used_at >= USAGE_RESCAN_S:
            self._used_bytes = sum(_folder_bytes(f) for f in self._folders())
            self._used_at = now
        over = self._used_bytes >= self.max_bytes
        if over and not self._over_cap:
            log.warning("recording stopped: %s hold %.1f MB, recording.max_dataset_mb is %.1f MB; no clip or "
                        "capture is saved until some are moved away", " and ".join(map(str, self._folders())),
                        self._used_bytes / 1e6, self.max_bytes / 1e6)
        elif not over and self._over_cap:
            log.info("recording resumed: %.1f MB used of %.1f MB", self._used_bytes / 1e6, self.max_bytes / 1e6)
        self._over_cap = over
        return over

    def _folders(self) -> list[Path]:
        inside = self.captures_dir == self.dataset_dir or self.dataset_dir in self.captures_dir.parents
        return [self.dataset_dir] if inside else [self.dataset_dir, self.captures_dir]

    def _count_written(self, *paths: Path) -> None:
        for path in paths:
            with contextlib.suppress(OSError):
                self._used_bytes += path.stat().st_size

    def capture(self, detection: DetectionLike) -> bool:
        """Save ``detection``'s audio (and a JSON sidecar) under ``captures/<label>/`` when capture is on.

        The window ends ``CAPTURE_AFTER_S`` after the detection's stream time and is
        ``capture_seconds`` long; the file is written once that audio has been fed.
        """
        if not self.capture_enabled or self._full():
            return False
        label = getattr(detection, "label", None)
        if not is_valid_label(label):
            log.warning("capture: label %.80r is not a valid folder name; detection not captured", label)
            return False
        try:
            score = float(detection.score)
            time_s = float(detection.time_s)
        except (AttributeError, TypeError, ValueError):
            log.warning("capture: detection %r has no usable score/time_s; not captured", detection)
            return False
        if not (math.isfinite(score) and math.isfinite(time_s)):
            log.warning("capture: detection %r has a non-finite score or time; not captured", detection)
            return False
        with self._lock:
            if self._closed:
                return False
            at = min(max(int(round(time_s * self.sample_rate)), 0), self._t)
            # The detection fired some time ago (detector latency); date it back on the wall clock.
            wall = dt.datetime.now().astimezone() - dt.timedelta(seconds=(self._t - at) / self.sample_rate)
            item = _Capture(
                label=label, score=score, model=getattr(detection, "model", None) or self.model, wall_time=wall,
                detection_sample=at,
                start=at - self.capture_before,
                end=at + self.capture_after,
            )
            if item.end <= self._t:
                audio = self._take(item)
            else:
                self._captures.append(item)
                return True
        self._submit(self._write_capture, item, audio)
        return True

    # -- lifecycle -------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every clip and capture handed to the writer is on disk (or has failed and been logged)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [f for f in self._pending if not f.done()]
            if not pending:
                return
            for future in pending:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                future.exception(timeout=left)

    def close(self) -> None:
        """End of the stream: save waiting captures with the audio there is, drop an unfinished clip, flush.

        An unfinished clip is not saved: a clip shorter than asked for would look whole in the dataset.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clip, self._clip = self._clip, None
            ready = [(c, self._take(c)) for c in self._captures]
            self._captures = []
        if clip is not None:
            log.warning("record: the audio ended after %.2f of %.2f s of %s; clip not saved",
                        clip.filled / self.sample_rate, len(clip.buffer) / self.sample_rate, _shown(clip.label))
            self._notify_recording(False)
        for capture, audio in ready:
            self._submit(self._write_capture, capture, audio, force=True)
        self.flush()
        self._writer.shutdown(wait=True)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing (writer thread) -----------------------------------------------------------

    def _submit(self, fn: Callable[..., Path | None], *args: Any, force: bool = False) -> None:
        with self._lock:
            if len(self._pending) >= MAX_PENDING_WRITES and not force:
                log.warning("recorder: %d files waiting to be written (slow disk?); %s dropped",
                            len(self._pending), fn.__name__.removeprefix("_write_"))
                return
            future = self._writer.submit(self._guarded, fn, *args)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _guarded(self, fn: Callable[..., Path | None], *args: Any) -> Path | None:
        try:
            path = fn(*args)
        except Exception:  # never into the daemon; this is a bug, so keep the traceback in the log
            log.exception("recorder: unexpected error while saving")
            return None
        if path is not None and self.on_saved is not None:
            try:
                self.on_saved(path)
            except Exception:
                log.exception("recorder: on_saved callback failed")
        return path

    def _write_clip(self, clip: _Clip) -> Path | None:
        what = f"clip of {_shown(clip.label)}"
        try:
            path = save_clip(clip.folder, clip.buffer, sample_rate=self.sample_rate)
        except OSError as err:
            self._disk_error(err, what, clip.folder)
            return None
        self._count_written(path)
        log.info("saved %s: %s (%.2f s)", what, path, len(clip.buffer) / self.sample_rate)
        return path

    def _write_capture(self, capture: _Capture, audio: np.ndarray) -> Path | None:
        folder = self.captures_dir / capture.label
        what = f"capture of {capture.label!r}"
        if audio.size == 0:
            log.warning("%s: its audio is no longer in the %.1f s history; not saved", what,
                        len(self._ring) / self.sample_rate)
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{timestamp(capture.wall_time)}_{capture.score:.3f}"
            path = free_path(folder, stem, ".wav")
            write_wav(path, audio, sample_rate=self.sample_rate)
            write_json(path.with_suffix(".json"), {
                "label": capture.label,
                "score": round(capture.score, 4),
                "time": capture.wall_time.isoformat(timespec="milliseconds"),
                "model": capture.model,
                "audio": path.name,
                "sample_rate": self.sample_rate,
                "duration_s": round(len(audio) / self.sample_rate, 4),
                "stream_time_s": round(capture.detection_sample / self.sample_rate, 4),
                "detection_offset_s": round((capture.detection_sample - capture.clip_start) / self.sample_rate, 4),
                "hark_version": __version__,
            })
        except OSError as err:
            self._disk_error(err, what, folder)
            return None
        self._count_written(path, path.with_suffix(".json"))
        log.debug("saved %s: %s", what, path)
        return path

    def _disk_error(self, err: OSError, what: str, folder: Path) -> None:
        """One clear line per problem and folder; repeats (a full disk and a detection a minute) once a minute."""
        code = err.errno or 0
        reason = err.strerror or str(err)
        if code == errno.ENOSPC or code == errno.EDQUOT:
            message = f"disk full: {what} not saved in {folder} ({reason}); still detecting"
        elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
            message = f"cannot write to {folder} ({reason}): {what} not saved; still detecting"
        elif code in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT):
            message = f"{folder} is not a usable folder ({reason}): {what} not saved; still detecting"
        else:
            message = f"{what} not saved in {folder}: {reason}; still detecting"
        key = (code, str(folder))
        now = time.monotonic()
        last, suppressed = self._last_error.get(key, (-math.inf, 0))
        if now - last < ERROR_REPEAT_S:
            self._last_error[key] = (last, suppressed + 1)
            return
        if suppressed:
            message += f" ({suppressed} more like this since the last message)"
        self._last_error[key] = (now, 0)
        log.error("%s", message)

    def _notify_recording(self, active: bool) -> None:
        if self.on_recording is None:
            return
        try:
            self.on_recording(active)
        except Exception:
            log.exception("recorder: on_recording callback failed")


def _shown(label: str | None) -> str:
    return "background" if label is None else repr(label)
