"""Ways a sound can vary that 8 recordings do not show: speed, pitch and the room.

Each function takes 16 kHz float32 audio and returns a perturbed copy; the trainer applies them
to positives before mixing in background (:func:`hark.trainer.features.augment`), so 8 clips cover
more of how a word can be said and where it can be heard.

- :func:`change_speed`: resampling, tempo and pitch together (Kaldi's speed perturbation).
- :func:`shift_pitch`: pitch alone, by a phase vocoder that restores the duration.
- :func:`add_reverb`: a simulated room: an impulse response of exponentially decaying noise
  with a few early reflections, for an RT60 drawn from living-room values.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import fftconvolve, resample_poly

from hark.audiofile import SAMPLE_RATE


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (shorter and higher for ``factor`` > 1)."""
    ratio = Fraction(1 / factor).limit_denominator(50)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def _stretch(samples: np.ndarray, rate: float, *, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Phase-vocoder time stretch: ``rate`` > 1 makes the audio shorter, pitch unchanged."""
    if len(samples) < n_fft:
        return samples.astype(np.float32)
    window = np.hanning(n_fft).astype(np.float32)
    n_frames = 1 + (len(samples) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    # float64 as numpy 1 computed it; numpy 2 would keep float32 input in float32.
    spectrum = np.fft.rfft(samples[idx].astype(np.float64) * window, axis=1)
    steps = np.arange(0, n_frames - 1, rate)
    expected = 2 * np.pi * hop * np.arange(n_fft // 2 + 1) / n_fft
    phase = np.angle(spectrum[0])
    out = np.zeros(len(steps) * hop + n_fft, np.float32)
    norm = np.zeros_like(out)
    for i, step in enumerate(steps):
        k = int(step)
        frac = step - k
        magnitude = (1 - frac) * np.abs(spectrum[k]) + frac * np.abs(spectrum[k + 1])
        frame = np.fft.irfft(magnitude * np.exp(1j * phase), n=n_fft).astype(np.float32) * window
        out[i * hop:i * hop + n_fft] += frame
        norm[i * hop:i * hop + n_fft] += window**2
        delta = np.angle(spectrum[k + 1]) - np.angle(spectrum[k]) - expected
        delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
        phase = phase + expected + delta
    return (out / np.maximum(norm, 1e-3)).astype(np.float32)


def shift_pitch(samples: np.ndarray, semitones: float) -> np.ndarray:
    """Raise (or lower) the pitch by ``semitones`` and keep the duration."""
    factor = 2 ** (semitones / 12)
    stretched = _stretch(samples.astype(np.float32), 1 / factor)
    shifted = change_speed(stretched, factor)
    out = np.zeros(len(samples), np.float32)
    out[: min(len(out), len(shifted))] = shifted[: len(out)]
    return out


def room_impulse(rng: np.random.Generator, *, rt60_s: float) -> np.ndarray:
    """A synthetic room impulse response with reverberation time ``rt60_s``."""
    length = int(min(1.0, rt60_s * 1.2) * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length).astype(np.float32) * np.exp(-6.9 * t / rt60_s).astype(np.float32)
    impulse = 0.3 * tail / (np.abs(tail).max() + 1e-9)
    impulse[0] = 1.0
    for _ in range(4):  # early reflections off walls 1-5 m away
        delay = int(rng.uniform(0.003, 0.03) * SAMPLE_RATE)
        impulse[delay] += rng.uniform(0.2, 0.6) * rng.choice([-1.0, 1.0])
    return impulse.astype(np.float32)


def add_reverb(samples: np.ndarray, rng: np.random.Generator, *,
               rt60_s: tuple[float, float] = (0.15, 0.7)) -> np.ndarray:
    """``samples`` as heard in a simulated room, same length and peak level."""
    impulse = room_impulse(rng, rt60_s=float(rng.uniform(*rt60_s)))
    wet = fftconvolve(samples, impulse)[: len(samples)].astype(np.float32)
    peak_in, peak_out = np.abs(samples).max(), np.abs(wet).max()
    return (wet * (peak_in / peak_out) if peak_out > 0 else wet).astype(np.float32)


def perturb(samples: np.ndarray, rng: np.random.Generator, *, speed: tuple[float, float] = (0.88, 1.12),
            semitones: tuple[float, float] = (-2.0, 2.0), reverb_probability: float = 0.4) -> np.ndarray:
    """A random mix of the perturbations above: each applied with some probability.

    The result may be longer or shorter than the input (speed); callers locate the sound again.
    """
    out = samples.astype(np.float32)
    if rng.random() < 0.5:
        out = change_speed(out, float(rng.uniform(*speed)))
    if rng.random() < 0.3:
        out = shift_pitch(out, float(rng.uniform(*semitones)))
    if rng.random() < reverb_probability:
        out = add_reverb(out, rng)
    return out
