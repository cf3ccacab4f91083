"""``--base auto``: pick the pretrained base that tells the user's clips apart best.

Cheap on purpose (a few seconds): each training clip is turned into one vector per base (the
mean of the frontend features over the located sound), and a nearest-class-mean classifier is
scored with leave-one-out cross-validation. The base with the higher accuracy wins; on a tie
(common when both separate the clips perfectly) word-length clips go to ``speech`` and longer
ones to ``sounds``. Bases whose files cannot be fetched are skipped. No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hark import SAMPLE_RATE
from hark.basemodels import fetch_base
from hark.dataset import Dataset
from hark.errors import BaseModelError
from hark.frontend import Frontend, build_frontend
from hark.trainer import features as F

CANDIDATES = ("speech", "sounds")
WORD_LENGTH_S = 3.5
MAX_CLIPS_PER_CLASS = 8  # enough to compare bases; keeps auto within seconds on 30-clip classes


def around_sound(samples: np.ndarray, needed: int) -> tuple[np.ndarray, int, int]:
    """The located sound of a clip with half a second around it, padded to at least ``needed``
    samples; and where the sound is in that."""
    s, e = F.locate_event(samples)
    start = max(0, s - 8000)  # only the sound and half a second around it: long clips cost seconds
    samples, s, e = samples[start:e + 8000], s - start, e - start
    offset = max(0, (needed - len(samples)) // 2 + 1)
    padded = np.concatenate([np.zeros(offset, np.float32), samples, np.zeros(offset, np.float32)])
    return padded, s + offset, e + offset


def clip_vectors(fe: Frontend, clips: Sequence[np.ndarray]) -> np.ndarray:
    """Per clip, the mean feature over its located sound (plus the frontend's receptive field)."""
    located = [around_sound(samples, F.needed_samples(fe, 1, 1)) for samples in clips]
    vectors = []
    for (_, s, e), feats in zip(located, fe.transform_many(padded for padded, _, _ in located)):
        ends = F.feature_ends(fe, feats)
        inside = (ends >= s) & (ends - fe.receptive_samples <= e)
        chosen = feats[inside] if inside.any() else feats
        vectors.append(chosen.reshape(len(chosen), -1).mean(axis=0))
    return np.stack(vectors)


def loo_accuracy(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-class-mean classifier on standardised vectors."""
    x = (vectors - vectors.mean(axis=0)) / (vectors.std(axis=0) + 1e-6)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-9
    classes = np.unique(labels)
    sums = {c: x[labels == c].sum(axis=0) for c in classes}
    counts = {c: int((labels == c).sum()) for c in classes}
    hits = 0
    for i in range(len(x)):
        best, best_sim = None, -np.inf
        for c in classes:
            n = counts[c] - (labels[i] == c)
            if n == 0:
                continue
            centre = (sums[c] - (x[i] if labels[i] == c else 0)) / n
            sim = float(x[i] @ centre / (np.linalg.norm(centre) + 1e-9))
            if sim > best_sim:
                best, best_sim = c, sim
        hits += best == labels[i]
    return hits / len(x)


def choose_auto(dataset: Dataset, *, rng: np.random.Generator, say: Callable[[str], None]) -> tuple[str, str]:
    """The base for ``--base auto`` and a one-line reason that names the scores."""
    clips, labels = [], []
    for i, label in enumerate(dataset.labels):
        usable = dataset.usable(label)
        for j in sorted(rng.permutation(len(usable))[:MAX_CLIPS_PER_CLASS]):
            clips.append(usable[j].samples)
            labels.append(i)
    y = np.array(labels)
    median = float(np.median([len(c) / SAMPLE_RATE for c in clips])) if clips else 0.0
    default = "speech" if median <= WORD_LENGTH_S else "sounds"
    scores: dict[str, float] = {}
    for base in CANDIDATES:
        try:
            fe = build_frontend(F.RECIPES[base].frontend_params, fetch_base(base))
        except BaseModelError as err:
            say(f"hark: --base auto skips {base}: {err}")
            continue
        scores[base] = loo_accuracy(clip_vectors(fe, clips), y)
    if not scores:
        return "none", "auto: no pretrained base available, so none"
    top = max(scores.values())
    best = default if scores.get(default, -1) >= top - 1e-9 else max(scores, key=lambda b: scores[b])
    shown = ", ".join(f"{b} {a:.0%}" for b, a in scores.items())
    return best, f"auto: leave-one-out accuracy {shown} (median clip {median:.1f} s), so {best}"
