"""A dataset folder: scanned, read and checked the same way by ``hark dataset check`` and the trainer.

Layout::

    DATASET/<label>/*.wav|flac|ogg      clips of one class (any rate, any channel count)
    DATASET/_background_noise_/*        long recordings of the room: the never-reported background class
    DATASET/_unknown_/*                 optional: sounds that must not be detected

Labels follow :mod:`hark.labels`; a bad folder name is an error naming the folder. A file
that cannot be read (corrupt, empty, not audio) is skipped with a warning naming it, so one bad
file never costs the rest. No TensorFlow here: the check runs on the Pi too.

A capture that ``hark review`` filed comes with a record beside it (``<name>.json``, its
``detection_offset_s``). Such a clip is 2 s of a room with the detection in it, and other sounds
may be louder than the one that fired; so it is used from ``CAPTURE_SOUND_BEFORE_S`` before the
detection to ``CAPTURE_SOUND_AFTER_S`` after it, the part the sound that fired lies in, and the
trainer finds the sound there. The file itself is kept whole.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hark.audiofile import AUDIO_SUFFIXES, SAMPLE_RATE, audio_info, is_audio_path, read_audio
from hark.clipfile import read_sidecar
from hark.errors import AudioError, HarkError
from hark.labels import BACKGROUND_DIR, UNKNOWN_DIR, check_label

MIN_CLIPS = 8
MIN_BACKGROUND_S = 20.0
# A sample this close to full scale counts as clipped; a clip is "clipped" when more than
# CLIPPED_FRACTION of its samples are (a few stray peaks are not audible damage).
CLIP_LEVEL = 0.99
CLIPPED_FRACTION = 0.001
# Peak below -60 dBFS: nothing a microphone would call a sound.
SILENT_PEAK = 1e-3
# A reviewed capture is used from this long before its detection to this long after: a word ends
# 0.3-0.4 s before the detection and lasts under a second; the head heard no more than this.
CAPTURE_SOUND_BEFORE_S = 1.3
CAPTURE_SOUND_AFTER_S = 0.2
RECORD_SUFFIX = ".json"


@dataclass(frozen=True, eq=False)
class Clip:
    """One readable file: its 16 kHz mono samples and what the file said about itself."""

    path: Path
    label: str
    samples: np.ndarray
    rate: int
    channels: int
    digest: str
    clipped: bool
    silent: bool
    detection_s: float | None = None  # a reviewed capture's detection, in ``samples`` (s)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass
class ClassStats:
    """The ``hark dataset check`` row of one class (or of a reserved folder)."""

    name: str
    clips: int = 0
    duration_s: float = 0.0
    rates: set[int] = field(default_factory=set)
    clipped: int = 0
    silent: int = 0
    duplicates: int = 0


@dataclass
class Dataset:
    """Everything read from a dataset folder, plus the warnings and errors found on the way."""

    root: Path
    classes: dict[str, list[Clip]]
    background: list[Clip]
    unknown: list[Clip]
    duplicates: list[tuple[Path, Path]]
    warnings: list[str]
    errors: list[str]

    @property
    def labels(self) -> list[str]:
        return sorted(self.classes)

    @property
    def background_s(self) -> float:
        return sum(c.duration_s for c in self.background)

    def usable(self, label: str) -> list[Clip]:
        """Clips of ``label`` worth training on: not silent, not a duplicate of an earlier clip."""
        dup = {a for a, _ in self.duplicates}
        return [c for c in self.classes[label] if not c.silent and c.path not in dup]

    def stats(self) -> list[ClassStats]:
        dup = {a for a, _ in self.duplicates}
        rows = []
        groups = [(label, self.classes[label]) for label in self.labels]
        groups += [(BACKGROUND_DIR, self.background)] + ([(UNKNOWN_DIR, self.unknown)] if self.unknown else [])
        for name, clips in groups:
            row = ClassStats(name=name)
            for c in clips:
                row.clips += 1
                row.duration_s += c.duration_s
                row.rates.add(c.rate)
                row.clipped += c.clipped
                row.silent += c.silent
                row.duplicates += c.path in dup
            rows.append(row)
        return rows


def _warn_stderr(message: str) -> None:
    print(f"hark: warning: {message}", file=sys.stderr)


def capture_detection_s(record: Path, duration_s: float) -> float | None:
    """The ``detection_offset_s`` of a capture's record (see the module's text), None when there is no
    record; :class:`HarkError` naming the record when it is there but says no usable offset."""
    try:
        document = read_sidecar(record)
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise HarkError(f"{record}: not a capture's record: {err}") from None
    value = document.get("detection_offset_s")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= duration_s:
        raise HarkError(f"{record}: detection_offset_s must be a number of seconds within the clip's "
                        f"{duration_s:.2f} s")
    return float(value)


def read_clip(path: Path, label: str, *, warn: Callable[[str], None] | None = None) -> Clip:
    """A :class:`Clip` of ``path``; :class:`AudioError` naming the file when it cannot be read.

    A capture's record beside it narrows the clip to the part around its detection; a record that
    cannot be used is reported through ``warn`` and the whole clip is used.
    """
    info = audio_info(path)  # rate, channels and length checked before anything is read
    samples = read_audio(path)
    detection_s = None
    try:
        offset = capture_detection_s(path.with_suffix(RECORD_SUFFIX), len(samples) / SAMPLE_RATE)
    except HarkError as err:
        if warn is not None:
            warn(f"{err}; the whole clip is used")
        offset = None
    if offset is not None:
        start = max(0, int(round((offset - CAPTURE_SOUND_BEFORE_S) * SAMPLE_RATE)))
        end = min(len(samples), int(round((offset + CAPTURE_SOUND_AFTER_S) * SAMPLE_RATE)))
        samples = samples[start:end]
        detection_s = offset - start / SAMPLE_RATE
    digest = hashlib.sha256(np.round(samples * 32767).astype(np.int16).tobytes()).hexdigest()
    peak = float(np.max(np.abs(samples)))
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL)) > CLIPPED_FRACTION
    return Clip(path=path, label=label, samples=samples, rate=int(info.samplerate), channels=int(info.channels),
                digest=digest, clipped=clipped, silent=peak < SILENT_PEAK, detection_s=detection_s)


def _files(folder: Path, warn: Callable[[str], None]) -> list[Path]:
    found = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == RECORD_SUFFIX and any(p.with_suffix(ext).is_file() for ext in AUDIO_SUFFIXES):
            continue  # a capture's record, read with its clip
        if is_audio_path(p):
            found.append(p)
        else:
            warn(f"{p}: skipped, not an audio file (use .wav, .flac or .ogg)")
    return found


def load_dataset(root: str | Path, *, warn: Callable[[str], None] = _warn_stderr,
                 progress: bool = False) -> Dataset:
    """Scan and read ``root``; bad label folders raise, bad files are skipped with a warning.

    Problems that make training pointless (a class under :data:`MIN_CLIPS` usable clips, no
    class at all) are collected in ``errors``; :func:`check_dataset` raises them.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise HarkError(f"{folder}: dataset folder not found")
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        warn(message)

    sources: list[tuple[str, Path]] = []
    for sub in sorted(folder.iterdir()):
        if sub.name.startswith("."):
            continue
        if not sub.is_dir():
            note(f"{sub}: ignored, files belong in DATASET/<label>/")
            continue
        if sub.name not in (BACKGROUND_DIR, UNKNOWN_DIR):
            check_label(sub.name, where=f"{sub}: folder name")
        sources.extend((sub.name, p) for p in _files(sub, note))
    iterator = sources
    if progress:
        from tqdm import tqdm

        iterator = tqdm(sources, desc="reading clips", unit="clip", leave=False)
    classes: dict[str, list[Clip]] = {}
    background: list[Clip] = []
    unknown: list[Clip] = []
    for name, path in iterator:
        try:
            clip = read_clip(path, name, warn=note)
        except AudioError as err:
            note(f"{err}; skipped")
            continue
        if name == BACKGROUND_DIR:
            background.append(clip)
        elif name == UNKNOWN_DIR:
            unknown.append(clip)
        else:
            classes.setdefault(name, []).append(clip)
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and not sub.name.startswith(".") and sub.name not in (BACKGROUND_DIR, UNKNOWN_DIR):
            classes.setdefault(sub.name, [])
    seen: dict[str, Path] = {}
    duplicates: list[tuple[Path, Path]] = []
    for clip in [c for label in sorted(classes) for c in classes[label]] + unknown:
        if clip.digest in seen:
            duplicates.append((clip.path, seen[clip.digest]))
            note(f"{clip.path}: same audio as {seen[clip.digest]}; used once")
        else:
            seen[clip.digest] = clip.path
    for label in sorted(classes):
        for clip in classes[label]:
            if clip.silent:
                note(f"{clip.path}: silent (peak below -60 dBFS); not trained on")
            elif clip.clipped:
                note(f"{clip.path}: clipped (samples at full scale); lower the recording gain")
    dataset = Dataset(root=folder, classes=classes, background=background, unknown=unknown,
                      duplicates=duplicates, warnings=warnings, errors=[])
    if not classes:
        dataset.errors.append(f"{folder}: no class folders (expected DATASET/<label>/*.wav)")
    for label in sorted(classes):
        n = len(dataset.usable(label))
        if n < MIN_CLIPS:
            dataset.errors.append(f"class {label!r} has {n} usable clips, at least {MIN_CLIPS} are needed")
    if dataset.background_s < MIN_BACKGROUND_S:
        note(f"{folder / BACKGROUND_DIR}: {dataset.background_s:.1f} s of background noise, "
             f"at least {MIN_BACKGROUND_S:.0f} s recommended (hark record --background)")
    return dataset


def check_dataset(root: str | Path, **kwargs: object) -> Dataset:
    """:func:`load_dataset`, raising the first error as one :class:`HarkError` line."""
    dataset = load_dataset(root, **kwargs)  # type: ignore[arg-type]
    if dataset.errors:
        raise HarkError("; ".join(dataset.errors))
    return dataset


def format_table(dataset: Dataset) -> str:
    """The per-class table ``hark dataset check`` prints."""
    rows = dataset.stats()
    width = max([len("class")] + [len(r.name) for r in rows])
    lines = [f"{'class':<{width}}  {'clips':>5}  {'duration':>9}  {'rates (Hz)':<14}  "
             f"{'clipped':>7}  {'silent':>6}  {'duplicates':>10}"]
    for r in rows:
        rates = ",".join(str(x) for x in sorted(r.rates)) or "-"
        lines.append(f"{r.name:<{width}}  {r.clips:>5}  {r.duration_s:>7.1f} s  {rates:<14}  "
                     f"{r.clipped:>7}  {r.silent:>6}  {r.duplicates:>10}")
    return "\n".join(lines)


def check_main(args: argparse.Namespace) -> int:
    """``hark dataset check DATASET``: the table, then warnings; errors exit 2."""
    warned: list[str] = []
    dataset = load_dataset(args.dataset, warn=warned.append)
    print(format_table(dataset))
    for message in warned:
        print(f"warning: {message}")
    if dataset.errors:
        raise HarkError("; ".join(dataset.errors))
    total = sum(len(v) for v in dataset.classes.values())
    print(f"ok: {len(dataset.classes)} classes, {total} clips, {dataset.background_s:.1f} s of background")
    return 0
