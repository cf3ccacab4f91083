"""Training examples: head windows of frontend features, labelled by where the sound is in each clip.

No TensorFlow here (features are computed before Keras is imported, and the tests use this
module alone). Each base has a :class:`Recipe`: how many features the head sees, how often it
runs on a stream, and how the positive windows of a clip are chosen:

- ``event`` (speech, none): short sounds such as words. The sound is located by its energy and a
  window is positive when the sound ends within the last ``end_tolerance_s`` of the window: on a
  stream the head fires as the word ends, as openWakeWord's models do. Windows that do not touch
  the sound are background (the room around the word).
- ``texture`` (sounds): everyday sounds that last (rain, an engine) or repeat (barks). Every
  window within ``active_db`` of the clip's loudest window is positive; near-silent windows are
  background.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hark.audiofile import SAMPLE_RATE
from hark.frontend import Frontend
from hark.model import needed_samples, pad_clip  # noqa: F401  (the trainer pads clips as the device does)

FRAME = 160  # 10 ms energy frames for locating sounds


@dataclass(frozen=True)
class Recipe:
    """How a base's head is built and fed."""

    base: str
    window: int  # features per head input
    stride: int  # run the head every `stride` features on a stream
    mode: str  # "event" or "texture"
    frontend_params: dict
    end_tolerance_s: float = 0.45
    active_db: float = 15.0
    background_cap_s: float = 480.0
    clip_padding_samples: int = 8000
    verify: bool = False  # carry the verifier's templates (hark.verifier): measured on speech only


RECIPES: dict[str, Recipe] = {
    # 16 embeddings of 80 ms: a 2 s receptive field (keywords run up to ~1.5 s).
    "speech": Recipe(base="speech", window=16, stride=1, mode="event", frontend_params={"name": "speech"},
                     background_cap_s=300.0, verify=True),
    # 3 embeddings, 0.3 s apart: 1.575 s of sound.
    "sounds": Recipe(base="sounds", window=3, stride=1, mode="texture",
                     frontend_params={"name": "sounds", "hop_samples": 4800}, background_cap_s=240.0),
    # 1 s of 10 ms log-mel frames, the head run every 80 ms.
    "none": Recipe(base="none", window=100, stride=8, mode="event", frontend_params={"name": "none"},
                   end_tolerance_s=0.3),
}


def span_samples(frontend: Frontend, window: int) -> int:
    """Samples one head window sees (as :attr:`hark.model.Model.span_samples`)."""
    return frontend.receptive_samples + (window - 1) * frontend.hop_samples


def frame_db(samples: np.ndarray) -> np.ndarray:
    """Energy in dB of each 10 ms frame, smoothed over 50 ms."""
    n = max(1, len(samples) // FRAME)
    x = np.zeros(n * FRAME, np.float32)
    x[: min(len(samples), n * FRAME)] = samples[: n * FRAME]
    energy = np.mean(x.reshape(n, FRAME) ** 2, axis=1)
    energy = np.convolve(energy, np.ones(5) / 5, mode="same")
    return 10 * np.log10(energy + 1e-10)


def locate_event(samples: np.ndarray, *, max_s: float = 2.0) -> tuple[int, int]:
    """``(start, end)`` samples of the loudest sound in a clip (a word, a clap), found by energy.

    Frames well above the clip's noise floor are grouped (gaps under 250 ms joined, since a word
    has quiet consonants), and the group holding the most energy is the sound.
    """
    db = frame_db(samples)
    floor, peak = np.percentile(db, 10), db.max()
    if peak - floor < 6.0:  # no clear sound: the whole clip
        return 0, len(samples)
    active = db > floor + 0.35 * (peak - floor)
    idx = np.flatnonzero(active)
    groups: list[list[int]] = [[idx[0], idx[0]]]
    for i in idx[1:]:
        if i - groups[-1][1] <= 25:
            groups[-1][1] = i
        else:
            groups.append([i, i])
    power = 10 ** (db / 10)
    start, end = max(groups, key=lambda g: power[g[0]:g[1] + 1].sum())
    low = floor + 0.15 * (peak - floor)
    while start > 0 and db[start - 1] > low:
        start -= 1
    while end + 1 < len(db) and db[end + 1] > low:
        end += 1
    max_frames = int(max_s * 100)
    if end - start + 1 > max_frames:  # keep the loudest max_s of an over-long group
        csum = np.concatenate([[0], np.cumsum(power[start:end + 1])])
        best = int(np.argmax(csum[max_frames:] - csum[:-max_frames]))
        start, end = start + best, start + best + max_frames - 1
    return start * FRAME, min(len(samples), (end + 1) * FRAME)


def window_bounds(frontend: Frontend, n_features: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end sample of each window of ``window`` features (window i ends with feature i + window - 1)."""
    n = max(0, n_features - window + 1)
    ends = np.array([frontend.feature_end(i + window - 1) for i in range(n)], dtype=np.int64)
    return ends - span_samples(frontend, window), ends


def feature_ends(frontend: Frontend, features: np.ndarray) -> np.ndarray:
    """The stream sample at which each of ``features`` ends (what a verifier has heard by then)."""
    return window_bounds(frontend, len(features), 1)[1]


def stack_windows(features: np.ndarray, starts: Iterable[int], window: int) -> np.ndarray:
    starts = list(starts)
    if not starts:
        return np.zeros((0, window, *features.shape[1:]), np.float32)
    return np.stack([features[s:s + window] for s in starts]).astype(np.float32)


def label_windows(recipe: Recipe, frontend: Frontend, features: np.ndarray, event: tuple[int, int], *,
                  levels: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """Indices of the positive windows and of the background windows of one (padded) clip.

    A sound event's windows are placed by ``event``; a texture's by loudness: ``levels`` is
    :func:`frame_db` of the clip, and a texture recipe needs it.
    """
    w_start, w_end = window_bounds(frontend, len(features), recipe.window)
    if recipe.mode == "event":
        s, e = event
        tol = int(recipe.end_tolerance_s * SAMPLE_RATE)
        fits = (e - s) <= (w_end - w_start)
        pos = (w_end >= e) & (w_end - tol <= e) & np.where(fits, w_start <= s, w_start <= e - (w_end - w_start) // 2)
        margin = int(0.1 * SAMPLE_RATE)
        neg = (w_end <= s - margin) | (w_start >= e + margin)
        return list(np.flatnonzero(pos)), list(np.flatnonzero(neg))
    if levels is None:
        raise ValueError(f"a {recipe.mode} recipe places windows by loudness: levels= is needed")
    db = levels
    level = np.array([db[max(0, a // FRAME):max(a // FRAME + 1, b // FRAME)].max() for a, b in zip(w_start, w_end)])
    if len(level) == 0:
        return [], []
    loud = level.max()
    pos = level >= loud - recipe.active_db
    neg = level < max(loud - 40.0, -70.0)
    return list(np.flatnonzero(pos)), list(np.flatnonzero(neg))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, event: tuple[int, int]) -> np.ndarray:
    """``signal`` plus ``noise`` scaled so the sound in ``event`` sits ``snr_db`` above it."""
    s, e = event
    sig_power = float(np.mean(signal[s:e] ** 2)) if e > s else float(np.mean(signal**2))
    noise_power = float(np.mean(noise**2)) + 1e-12
    scale = np.sqrt(sig_power / (noise_power * 10 ** (snr_db / 10)))
    return (signal + noise * scale).astype(np.float32)


def noise_piece(rng: np.random.Generator, noises: list[np.ndarray], length: int) -> np.ndarray:
    """``length`` samples cut from a random background recording (looped if short), or pink noise."""
    if not noises:
        white = rng.standard_normal(length + 8).astype(np.float32)
        return np.convolve(white, np.ones(8) / 8, mode="valid")[:length].astype(np.float32)
    src = noises[int(rng.integers(len(noises)))]
    if len(src) < length:
        src = np.tile(src, length // len(src) + 1)
    start = int(rng.integers(0, len(src) - length + 1))
    return src[start:start + length].astype(np.float32)


STREAM_SNR_DB = (5.0, 25.0)  # how far sounds stand above the background in a stream (make_stream.py's range)


def in_noise(rng: np.random.Generator, samples: np.ndarray, event: tuple[int, int],
             noises: list[np.ndarray]) -> np.ndarray:
    """``samples`` as a stream holds them: over a random piece of background, the sound in ``event``
    ``STREAM_SNR_DB`` above it (the calibration stream and the verifier's limits judge sounds so)."""
    return mix_at_snr(samples, noise_piece(rng, noises, len(samples)), float(rng.uniform(*STREAM_SNR_DB)), event)


def augment(rng: np.random.Generator, samples: np.ndarray, event: tuple[int, int], noises: list[np.ndarray],
            *, snr_db: tuple[float, float] = (3.0, 25.0), gain_db: tuple[float, float] = (-12.0, 6.0),
            max_shift: int = 1280) -> tuple[np.ndarray, tuple[int, int]]:
    """A noisier, shifted, louder or quieter copy of a (padded) clip, and where its sound now is.

    The shift is below one feature hop: whole-hop shifts come free from the choice of windows.
    """
    shift = int(rng.integers(0, max_shift + 1))
    shifted = np.concatenate([np.zeros(shift, np.float32), samples])[: len(samples)]
    moved = (min(event[0] + shift, len(samples)), min(event[1] + shift, len(samples)))
    mixed = mix_at_snr(shifted, noise_piece(rng, noises, len(shifted)), float(rng.uniform(*snr_db)), moved)
    mixed *= 10 ** (float(rng.uniform(*gain_db)) / 20)
    return np.clip(mixed, -1.0, 1.0).astype(np.float32), moved
