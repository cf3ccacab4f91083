"""Audio sources: a file or the microphone, as a stream of 16 kHz mono float32 chunks.

Both sources are iterables of chunks (1-D float32 arrays in [-1, 1], ``chunk_samples`` long
except perhaps the last), context managers, and have :meth:`close`. Whatever the file's or the
device's own rate and channel count, what comes out is 16 kHz mono: channels are averaged and
other rates go through :class:`StreamResampler`, a polyphase filter that carries its state
from block to block, so a stream resampled in pieces equals the whole thing resampled at once
(the same filter as ``scipy.signal.resample_poly``, which :func:`hark.audiofile.read_audio`
uses). It is plain numpy: the daemon never loads scipy, which alone costs about 60 MB.

The microphone is captured at the device's own default rate, because USB microphones often
refuse 16 kHz. Capture runs in PortAudio's callback thread and hands blocks over through a
bounded queue, so a slow consumer drops audio (counted as an overflow and logged) instead of
stalling the device. A device that stops delivering (unplugged) is closed and reopened with
exponential backoff while the source stays alive; meanwhile the iterator yields empty chunks
about once a second so the caller's loop (watchdog, network) keeps turning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from hark import SAMPLE_RATE
from hark.audiofile import check_header
from hark.errors import AudioError, HarkError

CHUNK_SAMPLES = 1280  # 80 ms: one speech-embedding hop, and openWakeWord's chunk
FILE_BLOCK_FRAMES = 65536  # frames read from a file at a time: a few hundred kB whatever the file's length

log = logging.getLogger(__name__)


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """Windowed-sinc low-pass filter, ``cutoff`` relative to Nyquist, unit gain at DC.

    The same taps as ``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``, which
    ``resample_poly`` uses by default.
    """
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()


class StreamResampler:
    """Polyphase resampling of a stream given in blocks of any size, equal to resampling it whole.

    Output sample ``n`` is ``sum_m x[m] * h[n * down + half_len - m * up]`` with ``h`` the
    ``resample_poly`` filter; samples before the start count as zeros. An output is produced
    as soon as every input it depends on has arrived, so the delay is about ``half_len / up``
    input samples (10 samples at 48 kHz, 0.6 ms); :meth:`flush` gives the tail at the end.
    """

    def __init__(self, rate_in: int, rate_out: int = SAMPLE_RATE) -> None:
        ratio = Fraction(rate_out, rate_in).limit_denominator(1000)
        self.rate_in, self.rate_out = rate_in, rate_out
        self.up, self.down = ratio.numerator, ratio.denominator
        self.passthrough = self.up == self.down == 1
        max_rate = max(self.up, self.down)
        self.half_len = 10 * max_rate
        h = kaiser_lowpass(2 * self.half_len + 1, 1.0 / max_rate) * self.up
        self.taps = -(-len(h) // self.up)  # input samples each output sees
        # phases[p, k] = h[p + k * up]: the taps applied to x[m_last - k] when n * down + half_len = m_last * up + p
        padded = np.zeros(self.taps * self.up)
        padded[: len(h)] = h
        self.phases = padded.reshape(self.taps, self.up).T.copy()
        self.reset()

    def reset(self) -> None:
        # History of the last (taps - 1) inputs; zeros stand for the samples before the stream.
        self._history = np.zeros(self.taps - 1)
        self._received = 0  # input samples seen
        self._produced = 0  # output samples given

    def _compute(self, available: int) -> np.ndarray:
        """Outputs whose last needed input index is below ``available`` (inputs past the end read as zero)."""
        # Output n needs inputs up to (n * down + half_len) // up.
        n_stop = (available * self.up - self.half_len - 1) // self.down + 1 if available > 0 else 0
        n = np.arange(self._produced, max(self._produced, n_stop))
        if len(n) == 0:
            return np.zeros(0, dtype=np.float32)
        t = n * self.down + self.half_len
        m_last, phase = np.divmod(t, self.up)
        base = self._received - len(self._history)  # input index of self._history[0]
        idx = (m_last - base)[:, None] - np.arange(self.taps)[None, :]
        values = self._history[np.clip(idx, 0, len(self._history) - 1)]
        values[idx >= len(self._history)] = 0.0  # past the end (only when flushing)
        out = np.einsum("ij,ij->i", values, self.phases[phase])
        self._produced = int(n[-1]) + 1
        return out.astype(np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz samples completed by these input samples (possibly none)."""
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        if self.passthrough:
            return x.astype(np.float32)
        self._history = np.concatenate([self._history, x])
        self._received += len(x)
        out = self._compute(self._received)
        # Keep what the next outputs still need: from the first input of the next output's span.
        first_needed = (self._produced * self.down + self.half_len) // self.up - (self.taps - 1)
        base = self._received - len(self._history)
        drop = max(0, min(first_needed - base, len(self._history) - (self.taps - 1)))
        self._history = self._history[drop:]
        return out

    def flush(self) -> np.ndarray:
        """The remaining outputs at the end of the stream (``ceil(n_in * up / down)`` in all); then resets."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._received * self.up // self.down)
        start = self._produced
        if total <= start:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        # The inputs past the end count as zeros, as in resample_poly.
        needed_in = ((total - 1) * self.down + self.half_len) // self.up + 1
        extra = max(0, needed_in - self._received)
        self._history = np.concatenate([self._history, np.zeros(extra)])
        self._received += extra
        out = self._compute(self._received)[: total - start]
        self.reset()
        return out


class _Chunker:
    """Regroups arrays of any length into chunks of exactly ``size`` samples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._parts: list[np.ndarray] = []
        self._count = 0

    def add(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        if len(samples):
            self._parts.append(samples)
            self._count += len(samples)
        while self._count >= self.size:
            joined = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            yield joined[: self.size]
            rest = joined[self.size:]
            self._parts = [rest] if len(rest) else []
            self._count = len(rest)

    def rest(self) -> np.ndarray | None:
        if not self._count:
            return None
        out = np.concatenate(self._parts)
        self._parts, self._count = [], 0
        return out


def _check_chunk(chunk_samples: int) -> int:
    if int(chunk_samples) < 1:
        raise HarkError(f"chunk_samples must be at least 1, not {chunk_samples!r}")
    return int(chunk_samples)


class FileSource:
    """An audio file as a stream of 16 kHz mono chunks, read in blocks (long files use little memory).

    With ``realtime=True`` chunks are paced like a microphone: chunk ``i`` is given no earlier
    than its own end time after the first, so a replayed file takes as long as it lasts.
    """

    def __init__(self, path: str | Path, *, realtime: bool = False, chunk_samples: int = CHUNK_SAMPLES) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.chunk_samples = _check_chunk(chunk_samples)
        if not self.path.is_file():
            raise AudioError(f"{self.path}: no such audio file")
        try:
            self._file: sf.SoundFile | None = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise AudioError(f"{self.path}: cannot decode audio ({reason})") from None
        self.rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        try:
            # Before the resampler is built: its filter grows with the rate ratio (1 Hz: gigabytes).
            check_header(self.path, rate=self.rate, channels=self.channels)
        except AudioError:
            self.close()
            raise
        self.frames = int(self._file.frames)
        self.samples_out = 0

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._file is None:
            raise AudioError(f"{self.path}: the source is closed")
        resampler = StreamResampler(self.rate)
        chunker = _Chunker(self.chunk_samples)
        start = time.monotonic()

        def paced(chunk: np.ndarray) -> np.ndarray:
            self.samples_out += len(chunk)
            if self.realtime:
                delay = start + self.samples_out / SAMPLE_RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            return chunk

        seen = 0
        while self._file is not None:
            try:
                block = self._file.read(FILE_BLOCK_FRAMES, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
                raise AudioError(f"{self.path}: cannot decode audio after {seen / self.rate:.2f} s ({err})") from None
            if len(block) == 0:
                break
            seen += len(block)
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{self.path}: the audio holds NaN or infinite samples near {seen / self.rate:.2f} s")
            for chunk in chunker.add(resampler.process(mono)):
                yield paced(chunk)
        if seen == 0:
            raise AudioError(f"{self.path}: the file holds no audio")
        for chunk in chunker.add(resampler.flush()):
            yield paced(chunk)
        rest = chunker.rest()
        if rest is not None:
            yield paced(rest)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the microphone, through PyAudio -------------------------------------------------------------

def _pyaudio_module() -> Any:
    try:
        import pyaudio
    except ImportError:
        raise HarkError("microphone input needs PyAudio: pip install 'hark[device]' "
                        "(and the Debian package portaudio19-dev to build it)") from None
    return pyaudio


_stderr_lock = threading.RLock()


def _writes_to_fd2(stream: Any) -> bool:
    try:
        return int(stream.fileno()) == 2
    except (AttributeError, OSError, ValueError, TypeError):
        return False


def _stderr_handlers() -> list[logging.StreamHandler[Any]]:
    """Every logging handler that writes to fd 2 (the root's, and any logger's own)."""
    loggers = [logging.getLogger()] + [lg for lg in list(logging.Logger.manager.loggerDict.values())
                                        if isinstance(lg, logging.Logger)]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and _writes_to_fd2(h.stream)]


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hide the ALSA/JACK chatter PortAudio prints to fd 2 while it probes devices.

    Only fd 2 itself goes to /dev/null: for that moment, log handlers and ``sys.stderr`` write
    to a duplicate of the real stderr, so another thread's log line (``MQTT: connected``) is
    not lost with PortAudio's noise.
    """
    with _stderr_lock:
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        real = os.fdopen(saved, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                         errors="backslashreplace", closefd=False)
        moved = [(h, h.setStream(real)) for h in _stderr_handlers()]
        previous_stderr = sys.stderr
        if _writes_to_fd2(previous_stderr):
            with contextlib.suppress(OSError, ValueError):
                previous_stderr.flush()
            sys.stderr = real
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
                yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                real.flush()
            os.dup2(saved, 2)
            sys.stderr = previous_stderr
            for handler, stream in moved:
                handler.setStream(stream)
            real.close()
            os.close(saved)


def _new_pyaudio() -> Any:
    pyaudio = _pyaudio_module()
    with _quiet_stderr():
        return pyaudio.PyAudio()


def list_input_devices(pa: Any | None = None) -> list[dict[str, Any]]:
    """Input devices as ``{"index", "name", "channels", "rate"}``, in PortAudio's order."""
    own = pa is None
    pa = pa or _new_pyaudio()
    try:
        out = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info.get("maxInputChannels", 0)) > 0:
                out.append({"index": i, "name": str(info["name"]), "channels": int(info["maxInputChannels"]),
                            "rate": int(info["defaultSampleRate"])})
        return out
    finally:
        if own:
            pa.terminate()


def _describe(devices: list[dict[str, Any]]) -> str:
    if not devices:
        return "no input devices found"
    return "input devices: " + "; ".join(f"{d['index']}: {d['name']}" for d in devices)


def find_input_device(spec: str | int | None, pa: Any | None = None) -> int | None:
    """The index of the input device ``spec`` names (an index, or a case-insensitive name substring).

    ``None`` (or an empty string) means the system default input and returns ``None``. A spec that
    matches no input device raises :class:`AudioError` listing the devices there are.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    devices = list_input_devices(pa)
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        index = int(text)
        if any(d["index"] == index for d in devices):
            return index
        raise AudioError(f"audio device {index} is not an input device; {_describe(devices)}")
    matches = [d for d in devices if text.lower() in d["name"].lower()]
    if not matches:
        raise AudioError(f"no audio input device matches {text!r}; {_describe(devices)}")
    exact = [d for d in matches if d["name"].lower() == text.lower()]
    return (exact or matches)[0]["index"]


class MicSource:
    """The microphone as a stream of 16 kHz mono chunks (see the module notes on overflow and reopening).

    ``device`` is an index, a name substring, or ``None`` for the system default input; ``rate``
    is the capture rate in Hz, ``None`` for the device's own default (USB microphones often refuse
    anything else, so that is the safe choice). The device is opened here, so a wrong name fails
    at once (listing the devices); only a device that goes away later is retried.
    """

    QUEUE_BLOCKS = 64  # about 5 s of 80 ms blocks before the consumer's lag becomes an overflow
    STALL_S = 2.0  # no audio for this long: the device is considered gone
    BACKOFF_FIRST_S = 0.5
    BACKOFF_MAX_S = 30.0

    def __init__(self, *, device: str | int | None = None, rate: int | None = None,
                 chunk_samples: int = CHUNK_SAMPLES) -> None:
        self.device_spec = device
        self.requested_rate = rate
        self.chunk_samples = _check_chunk(chunk_samples)
        self.overflows = 0  # blocks PortAudio or our queue had to drop
        self.reopens = 0
        self.lost = False  # the device has gone away and is being retried
        self.name = "default"
        self.rate = SAMPLE_RATE
        self.channels = 1
        self._pa: Any = None
        self._stream: Any = None
        self._queue: queue.Queue[np.ndarray] = queue.Queue(self.QUEUE_BLOCKS)
        self._closed = threading.Event()
        self._overflow_logged_at = 0.0
        self._open()

    # -- opening -----------------------------------------------------------------------------------
    def _open(self) -> None:
        pyaudio = _pyaudio_module()
        self._pa = _new_pyaudio()
        try:
            index = find_input_device(self.device_spec, self._pa)
            with _quiet_stderr():
                info = (self._pa.get_device_info_by_index(index) if index is not None
                        else self._pa.get_default_input_device_info())
        except OSError:
            self._pa.terminate()
            self._pa = None
            raise AudioError(f"no default audio input device; {_describe(list_input_devices())}") from None
        except HarkError:
            self._pa.terminate()
            self._pa = None
            raise
        self.name = str(info["name"])
        self.rate = int(self.requested_rate or info["defaultSampleRate"])
        max_channels = max(1, int(info["maxInputChannels"]))
        frames = max(1, round(self.chunk_samples * self.rate / SAMPLE_RATE))
        last_error: Exception | None = None
        # Mono first; some devices (multi-mic arrays) only open with all their channels.
        for channels in dict.fromkeys([1, min(2, max_channels), max_channels]):
            try:
                with _quiet_stderr():
                    self._stream = self._pa.open(
                        format=pyaudio.paInt16, channels=channels, rate=self.rate, input=True,
                        input_device_index=int(info["index"]), frames_per_buffer=frames,
                        stream_callback=self._callback,
                    )
                self.channels = channels
                break
            except (OSError, ValueError) as err:
                last_error = err
        else:
            self._pa.terminate()
            self._pa = None
            raise AudioError(f"cannot open audio input {self.name!r} at {self.rate} Hz ({last_error})")
        self._resampler = StreamResampler(self.rate)
        self._last_audio = time.monotonic()
        log.info("audio input %r: %d Hz, %d channel(s), resampled to %d Hz",
                 self.name, self.rate, self.channels, SAMPLE_RATE)

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        pyaudio = _pyaudio_module()
        if status & pyaudio.paInputOverflow:
            self._count_overflow("the device")
        if in_data:
            block = np.frombuffer(in_data, dtype=np.int16).reshape(-1, self.channels)
            try:
                self._queue.put_nowait(block)
            except queue.Full:
                self._count_overflow("hark (processing fell behind)")
        return None, pyaudio.paContinue

    def _count_overflow(self, where: str) -> None:
        self.overflows += 1
        now = time.monotonic()
        if now - self._overflow_logged_at > 10.0:  # at most one line per 10 s, with the running count
            self._overflow_logged_at = now
            log.warning("audio input overflow in %s: %d block(s) dropped so far", where, self.overflows)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        pa, self._pa = self._pa, None
        with contextlib.suppress(Exception), _quiet_stderr():
            if stream is not None:
                stream.stop_stream()
                stream.close()
        with contextlib.suppress(Exception), _quiet_stderr():
            if pa is not None:
                pa.terminate()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()

    def _reopen_with_backoff(self) -> Iterator[np.ndarray]:
        """Retry opening until it works or the source is closed, yielding empty chunks meanwhile."""
        self.lost = True
        self._close_stream()
        delay = self.BACKOFF_FIRST_S
        while not self._closed.is_set():
            try:
                self._open()
            except HarkError as err:
                log.warning("audio input unavailable (%s); retrying in %.1f s", err, delay)
                deadline = time.monotonic() + delay
                while not self._closed.is_set() and time.monotonic() < deadline:
                    yield np.zeros(0, dtype=np.float32)
                    self._closed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, self.BACKOFF_MAX_S)
                continue
            self.reopens += 1
            self.lost = False
            log.info("audio input %r is back", self.name)
            return

    # -- reading -----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[np.ndarray]:
        chunker = _Chunker(self.chunk_samples)
        while not self._closed.is_set():
            if self._stream is None:
                yield from self._reopen_with_backoff()
                continue
            try:
                block = self._queue.get(timeout=1.0)
            except queue.Empty:
                active = False
                with contextlib.suppress(Exception):
                    active = bool(self._stream.is_active())
                if not active or time.monotonic() - self._last_audio > self.STALL_S:
                    if self._closed.is_set():
                        break
                    log.warning("audio input %r stopped delivering audio; reopening", self.name)
                    yield from self._reopen_with_backoff()
                else:
                    yield np.zeros(0, dtype=np.float32)
                continue
            self._last_audio = time.monotonic()
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            yield from chunker.add(self._resampler.process(mono.astype(np.float32) / 32768.0))

    def close(self) -> None:
        self._closed.set()
        self._close_stream()

    def __enter__(self) -> MicSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def devices_main(args: Any) -> int:
    """``hark devices``: the input devices with index, name, channels and default rate."""
    devices = list_input_devices()
    if not devices:
        print("no audio input devices found")
        return 0
    width = max(len(d["name"]) for d in devices)
    print(f"{'index':>5}  {'name':<{width}}  channels  default rate")
    for d in devices:
        print(f"{d['index']:>5}  {d['name']:<{width}}  {d['channels']:>8}  {d['rate']:>8} Hz")
    return 0
