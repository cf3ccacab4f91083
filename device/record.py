"""``hark record``: record clips of a label (or background noise) from the microphone into a dataset.

Each clip is preceded by a countdown (3 s before the first, 1 s between clips) during which
the level meter already runs, so the user sees the microphone works before it counts. Clips
are saved exactly as recorded (nothing trimmed, 16 kHz mono 16-bit WAV) as
``DATASET/<label>/<timestamp>.wav`` or ``DATASET/_background_noise_/<timestamp>.wav``, written
atomically (:mod:`hark.clipfile`). The countdown runs on the audio clock: the microphone is
read all the time, so it never overflows while the user gets ready.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from hark import SAMPLE_RATE
from hark.clipfile import save_clip
from hark.errors import HarkError
from hark.labels import BACKGROUND, BACKGROUND_DIR, check_label
from hark.recorder import check_seconds

CLIP_SECONDS = 1.0
BACKGROUND_SECONDS = 20.0
MAX_SECONDS = 600.0
MAX_COUNT = 1000
COUNTDOWN_S = 3.0
PAUSE_S = 1.0
SILENT_DBFS = -60.0
CLIPPED_PEAK = 0.999
METER_WIDTH = 30
METER_FLOOR_DBFS = -60.0


def dbfs(x: np.ndarray) -> float:
    """RMS level of ``x`` in dB relative to full scale (-inf for digital silence)."""
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


class Meter:
    """What the user sees: countdown, a level bar while recording, where each clip went.

    On a terminal the line is redrawn in place; otherwise (a pipe, a log) only one line per
    phase is written, so output stays readable. Saved paths go to ``out`` (stdout), one per line.
    """

    def __init__(self, *, what: str, count: int, stream: TextIO | None = None, out: TextIO | None = None) -> None:
        self.what = what
        self.count = count
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self.live = self.stream.isatty()
        self._phase: tuple[str, int] | None = None

    def _bar(self, level: float) -> str:
        frac = 0.0 if not math.isfinite(level) else min(1.0, max(0.0, 1 - level / METER_FLOOR_DBFS))
        filled = int(round(frac * METER_WIDTH))
        shown = f"{level:6.1f} dBFS" if math.isfinite(level) else "  -inf dBFS"
        return "[" + "#" * filled + "-" * (METER_WIDTH - filled) + "] " + shown

    def _show(self, phase: str, index: int, line: str, first_line: str) -> None:
        if self.live:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif self._phase != (phase, index):
            self.stream.write(first_line + "\n")
            self.stream.flush()
        self._phase = (phase, index)

    def countdown(self, index: int, left_s: float, level: float, peak: float) -> None:
        self._show("countdown", index,
                   f"{self.what} {index + 1}/{self.count}: get ready… {math.ceil(left_s):d}  {self._bar(level)}",
                   f"{self.what} {index + 1}/{self.count}: get ready")

    def recording(self, index: int, done_s: float, total_s: float, level: float, peak: float) -> None:
        warn = "  CLIPPING" if peak >= CLIPPED_PEAK else ""
        progress = f"● REC {done_s:4.1f}/{total_s:.1f} s"
        self._show("recording", index,
                   f"{self.what} {index + 1}/{self.count}: {progress}  {self._bar(level)}{warn}",
                   f"{self.what} {index + 1}/{self.count}: recording {total_s:g} s")

    def saved(self, index: int, path: Path, clip: np.ndarray) -> None:
        if self.live:
            self.stream.write("\r\033[K")
        peak = float(np.max(np.abs(clip))) if clip.size else 0.0
        level = dbfs(clip)
        if peak >= CLIPPED_PEAK:
            self.stream.write(f"warning: {path.name} is clipped (too loud): move away or lower the input gain\n")
        elif level < SILENT_DBFS:
            self.stream.write(f"warning: {path.name} is almost silent ({level:.0f} dBFS): check the microphone\n")
        self.stream.flush()
        self.out.write(f"{path}\n")
        self.out.flush()


class _Samples:
    """Reads exact sample counts from an iterable of chunks, keeping what is left of the last chunk."""

    def __init__(self, chunks: Iterable[np.ndarray]) -> None:
        self._chunks: Iterator[np.ndarray] = iter(chunks)
        self._left = np.zeros(0, dtype=np.float32)

    def pieces(self, n: int) -> Iterator[np.ndarray]:
        """Yield chunks that add up to exactly ``n`` samples; :class:`HarkError` if the source ends first."""
        got = 0
        while got < n:
            if self._left.size:
                chunk, self._left = self._left, np.zeros(0, dtype=np.float32)
            else:
                try:
                    chunk = np.asarray(next(self._chunks), dtype=np.float32).ravel()
                except StopIteration:
                    raise HarkError(
                        f"the audio source ended after {got / SAMPLE_RATE:.2f} of {n / SAMPLE_RATE:.2f} s"
                    ) from None
            if got + chunk.size > n:
                chunk, self._left = chunk[:n - got], chunk[n - got:]
            got += chunk.size
            if chunk.size:
                yield chunk


def record_clips(
    chunks: Iterable[np.ndarray],
    *,
    folder: Path,
    seconds: float,
    count: int = 1,
    countdown_s: float = COUNTDOWN_S,
    pause_s: float = PAUSE_S,
    meter: Meter | None = None,
) -> list[Path]:
    """Record ``count`` clips of ``seconds`` each from ``chunks`` (16 kHz float32) and save them in ``folder``.

    This is ``hark record`` without the microphone: any iterable of chunks works (a file, a test
    signal). Returns the saved paths; if the source ends early, the clips saved so far stay and a
    :class:`HarkError` says how far it got. A clip that cannot be written is a :class:`HarkError`
    naming the folder.
    """
    reader = _Samples(chunks)
    n = int(round(seconds * SAMPLE_RATE))
    saved: list[Path] = []
    for index in range(count):
        wait = int(round((countdown_s if index == 0 else pause_s) * SAMPLE_RATE))
        waited = 0
        for piece in reader.pieces(wait):
            waited += piece.size
            if meter:
                meter.countdown(index, (wait - waited) / SAMPLE_RATE, dbfs(piece), float(np.max(np.abs(piece))))
        clip = np.empty(n, dtype=np.float32)
        filled = 0
        for piece in reader.pieces(n):
            clip[filled:filled + piece.size] = piece
            filled += piece.size
            if meter:
                meter.recording(index, filled / SAMPLE_RATE, seconds, dbfs(piece), float(np.max(np.abs(piece))))
        try:
            path = save_clip(folder, clip)
        except OSError as err:
            raise HarkError(f"{folder}: cannot save the clip ({err.strerror or err})") from None
        saved.append(path)
        if meter:
            meter.saved(index, path, clip)
    return saved


def clip_folder(dataset: str | Path, label: str | None, *, background: bool) -> Path:
    """``DATASET/<label>`` or ``DATASET/_background_noise_``, after checking the label; nothing is created."""
    if background and label is not None:
        raise HarkError("give either a LABEL or --background, not both")
    if not background:
        if label is None:
            raise HarkError("give a LABEL to record, or --background for background noise")
        if label == BACKGROUND:
            raise HarkError("LABEL: 'background' is reserved; use --background to record background noise")
        check_label(label, where="LABEL")
    return Path(dataset) / (BACKGROUND_DIR if background else label)


def prepare_folder(folder: Path) -> None:
    """Create ``folder`` (and the dataset) now, so a bad path fails before the user performs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HarkError(f"{folder}: cannot create the folder ({err.strerror or err})") from None


def main(args: argparse.Namespace) -> int:
    background = bool(getattr(args, "background", False))
    folder = clip_folder(args.dataset, args.label, background=background)
    seconds = args.seconds if args.seconds is not None else (BACKGROUND_SECONDS if background else CLIP_SECONDS)
    seconds = check_seconds(seconds, where="--seconds", maximum=MAX_SECONDS)
    if not 1 <= args.count <= MAX_COUNT:
        raise HarkError(f"--count: {args.count} is out of range (1 to {MAX_COUNT})")
    prepare_folder(folder)

    from hark.audio import MicSource  # PyAudio only when the microphone is really used

    what = "background" if background else repr(args.label)
    meter = Meter(what=what, count=args.count)
    with MicSource(device=args.device) as mic:
        record_clips(mic, folder=folder, seconds=seconds, count=args.count, meter=meter)
    return 0
