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
# What a file's header may claim before anything is allocated for it. A rate of 1 Hz would make the
# 16 kHz resampler's filter (and its output) thousands of times longer than the file.
MIN_RATE = 4000
MAX_RATE = 384000
MAX_CHANNELS = 32
# Longest audio read whole into memory (a clip, a background recording): longer files are
# streamed in blocks (hark detect, hark run --input) or refused with one line.
MAX_READ_SECONDS = 600.0
# Samples of every channel read at once: 10 minutes of 48 kHz stereo, about 230 MB as float32.
MAX_READ_SAMPLES = int(MAX_READ_SECONDS * 48000 * 2)


def _reason(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """The header of ``path`` (rate, channels, frames), checked against sane limits before anything is read.

    :class:`AudioError` naming the file for a file soundfile cannot open, a sample rate outside
    ``MIN_RATE``..``MAX_RATE``, more than ``MAX_CHANNELS`` channels, or no frames.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise AudioError(f"{path}: cannot decode audio ({_reason(err)})") from None
    check_header(path, rate=int(info.samplerate), channels=int(info.channels))
    if int(info.frames) <= 0:
        raise AudioError(f"{path}: the file holds no audio")
    return info


def check_header(path: str | Path, *, rate: int, channels: int) -> None:
    """:class:`AudioError` when a header's sample rate or channel count is outside what hark reads."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{path}: sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz "
                         "(a damaged header, or not a recording hark can use)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: {channels} channels; hark reads 1 to {MAX_CHANNELS}")


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """``samples`` (mono float32) from ``rate`` to ``target`` Hz with a polyphase filter."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # lazily: scipy.signal costs ~60 MB, the daemon never needs it

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def to_mono(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def read_audio(path: str | Path, *, first_seconds: float | None = None) -> np.ndarray:
    """The file as 16 kHz mono float32; :class:`AudioError` naming the file if it cannot be decoded.

    The header is checked first (:func:`audio_info`); a file longer than ``MAX_READ_SECONDS`` is
    refused before it is read, unless ``first_seconds`` asks for only its beginning.
    """
    info = audio_info(path)
    rate, channels = int(info.samplerate), int(info.channels)
    frames = int(info.frames)
    if first_seconds is not None:
        frames = min(frames, max(1, int(first_seconds * rate)))
    limit = min(int(MAX_READ_SECONDS * rate), MAX_READ_SAMPLES // channels)
    if frames > limit:
        raise AudioError(f"{path}: {frames / rate / 60:.1f} min of audio ({channels} channel(s) at {rate} Hz); "
                         f"clips are read whole up to {limit / rate / 60:.1f} min: cut it into shorter files "
                         "(hark detect and hark run --input stream long recordings)")
    try:
        samples, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise AudioError(f"{path}: cannot decode audio ({_reason(err)})") from None
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
