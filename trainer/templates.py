"""The verifier's templates (:mod:`device.verifier`): the user's own clips, and how far a match may be.

Every usable clip of a class becomes a template: its features from shortly after the sound starts
(``START_S``: the speech embedding hears 775 ms at a time, so its first frames hold mostly the
silence before the word) to just after it ends. The limit per class comes from the clips
themselves, leave one out: each clip, mixed into the training background and half of the time
perturbed (speed, pitch, room) as in training, is matched against the other clips of its class
over the stretch of features the device would hold at the moment of decision. The largest of those
distances, plus ``MARGIN`` for voices and rooms the clips do not have, is the class's
``max_distance``. A class with a single clip has nothing to compare with and is not verified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from device.audiofile import SAMPLE_RATE
from device.dataset import Clip
from device.frontend import Frontend
from device.verifier import VerifierSpec, features_in, sequence_distance, unit_rows
from trainer import features as F
from trainer.perturb import perturb

START_S = 0.3  # template frames end at least this long after the sound starts
END_S = 0.1  # ... and at most this long after it ends
REGION_EXTRA_S = 0.6  # the verifier looks back over the head window's span and this much more
MAX_TEMPLATES = 24  # per class: bounds the work at each decision (clips beyond are spread over)
LEAVE_OUT_COPIES = 32  # noisy copies per class for the limit, spread over its clips
MARGIN = 0.06
END_WINDOW_S = 1.0  # a match ends at most this long before the decision (the sound just heard)
NEAREST = 3


def _feature_ends(fe: Frontend, features: np.ndarray) -> np.ndarray:
    return np.array([fe.feature_end(i) for i in range(len(features))], dtype=np.int64)


def template_of(fe: Frontend, samples: np.ndarray) -> np.ndarray:
    """The features that hold a clip's sound (possibly empty for a sound shorter than ``START_S``)."""
    padded, offset = F.pad_clip(samples, needed=0, pad=8000)
    start, end = (offset + x for x in F.locate_event(samples))
    features = fe.transform(padded)
    ends = _feature_ends(fe, features)
    keep = (ends >= start + START_S * SAMPLE_RATE) & (ends <= end + END_S * SAMPLE_RATE)
    return features[keep]


def _spread(clips: Sequence[Clip], count: int) -> list[Clip]:
    if len(clips) <= count:
        return list(clips)
    return [clips[int(i)] for i in np.linspace(0, len(clips) - 1, count).round()]


def build_verifier(clips: dict[str, Sequence[Clip]], fe: Frontend, *, mean: np.ndarray, scale: np.ndarray,
                   region_s: float, decision_s: float, noises: list[np.ndarray], rng: np.random.Generator,
                   progress: bool) -> tuple[VerifierSpec, dict[str, Any]]:
    """Templates of every class's clips and their limits; also what the report shows of them."""
    templates: dict[str, list[np.ndarray]] = {}
    for label, own in clips.items():
        found = [template_of(fe, c.samples) for c in _spread(own, MAX_TEMPLATES)]
        templates[label] = [unit_rows(t, mean, scale) for t in found if len(t)]
    region_features = features_in(region_s, fe.hop_samples) + 1  # as Verifier keeps
    end_frames = features_in(END_WINDOW_S, fe.hop_samples)
    limits: dict[str, float] = {}
    summary: dict[str, Any] = {}
    jobs = [(label, i) for label, own in templates.items() if len(own) >= 2 for i in range(len(own))]
    bar = tqdm(total=sum(math.ceil(LEAVE_OUT_COPIES / len(templates[label])) for label, _ in jobs),
               desc="verifier templates", unit="clip", disable=not progress, leave=False)
    distances: dict[str, list[float]] = {}
    for label, i in jobs:
        own = _spread(clips[label], MAX_TEMPLATES)
        others = templates[label][:i] + templates[label][i + 1:]
        for _ in range(math.ceil(LEAVE_OUT_COPIES / len(templates[label]))):
            samples = perturb(own[i].samples, rng) if rng.random() < 0.5 else own[i].samples
            padded, offset = F.pad_clip(samples, needed=0, pad=8000)
            start, end = (offset + x for x in F.locate_event(samples))
            if noises:
                padded = F.mix_at_snr(padded, F.noise_piece(rng, noises, len(padded)), float(rng.uniform(5.0, 25.0)),
                                      (start, end))
            features = fe.transform(padded)
            ends = _feature_ends(fe, features)
            decided = end + decision_s * SAMPLE_RATE
            region = features[ends <= decided][-region_features:]
            found = sorted(sequence_distance(t, unit_rows(region, mean, scale), end_within=end_frames) for t in others)
            distances.setdefault(label, []).append(float(np.mean(found[:NEAREST])))
            bar.update()
    bar.close()
    for label, values in distances.items():
        limits[label] = min(2.0, max(values) + MARGIN)
        summary[label] = {"templates": len(templates[label]),
                          "leave_one_out_median": round(float(np.median(values)), 4),
                          "leave_one_out_max": round(max(values), 4), "max_distance": round(limits[label], 4)}
    spec = VerifierSpec(templates=templates, mean=mean, scale=scale, max_distance=limits, region_s=region_s,
                        nearest=NEAREST, end_s=END_WINDOW_S)
    return spec, summary

