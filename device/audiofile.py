"""Read any audio file as 16 kHz mono float32 in [-1, 1].

soundfile decodes WAV, FLAC and OGG; channels are averaged; other rates go through
scipy's polyphase resampler (``resample_poly``), which filters properly instead of
dropping samples. The trainer, ``hark classify`` and the file source all read through here.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from hark import SAMPLE_RATE
from hark.errors import AudioError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """``samples`` (mono float32) from ``rate`` to ``target`` Hz with a polyphase filter."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # lazily: scipy.signal costs ~60 MB, the daemon never needs it

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def to_mono(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def read_audio(path: str | Path) -> np.ndarray:
    """The file as 16 kHz mono float32; :class:`AudioError` naming the file if it cannot be decoded."""
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise AudioError(f"{path}: cannot decode audio ({str(err).splitlines()[0] if str(err) else err})") from None
    if samples.size == 0:
        raise AudioError(f"{path}: the file holds no audio")
    mono = to_mono(samples)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    return resample(mono, rate)


def is_audio_path(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")


def find_audio(paths: list[str] | list[Path]) -> list[Path]:
    """Files among ``paths``, folders searched recursively, in a stable sorted order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.is_file() and is_audio_path(q)))
        else:
            found.append(p)
    return found
