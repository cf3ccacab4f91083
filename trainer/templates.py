"""The verifier's templates (:mod:`hark.verifier`): the user's own clips, and how far a match may be.

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

import dataclasses
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from hark.audiofile import SAMPLE_RATE
from hark.dataset import Clip
from hark.frontend import Frontend
from hark.trainer import features as F
from hark.trainer.negatives import spread
from hark.trainer.perturb import perturb
from hark.verifier import VerifierSpec, class_distance, features_in, kept_features, unit_rows

START_S = 0.3  # template frames end at least this long after the sound starts
END_S = 0.1  # ... and at most this long after it ends
REGION_EXTRA_S = 0.6  # the verifier looks back over the head window's span and this much more
MAX_TEMPLATES = 24  # per class: bounds the work at each decision (clips beyond are spread over)
LEAVE_OUT_COPIES = 32  # noisy copies per class for the limit, spread over its clips
MARGIN = 0.06
END_WINDOW_S = 1.0  # a match ends at most this long before the decision (the sound just heard)
NEAREST = 3
# A match must be this much nearer than any other class's (hark.verifier). Real keywords said a
# little unclearly reach ratios of 0.91-0.92 with the head sure of them; what the test is there for,
# read speech half-way between two classes, sits at 0.94-1.00. 0.93 keeps the first and stops the second.
RATIO = 0.93


def _padded_event(samples: np.ndarray, padding: int) -> tuple[np.ndarray, int, int]:
    """The clip with ``padding`` quiet samples before and after, and where its sound is in that."""
    padded, offset = F.pad_clip(samples, needed=0, pad=padding)
    start, end = F.locate_event(samples)
    return padded, offset + start, offset + end


def template_of(fe: Frontend, samples: np.ndarray, *, padding: int) -> np.ndarray:
    """The features that hold a clip's sound (possibly empty for a sound shorter than ``START_S``)."""
    return templates_of_clips(fe, [samples], padding=padding)[0]


def templates_of_clips(fe: Frontend, clips: Sequence[np.ndarray], *, padding: int) -> list[np.ndarray]:
    """:func:`template_of` of each clip, their features computed side by side."""
    located = [_padded_event(samples, padding) for samples in clips]
    templates = []
    for (_, start, end), features in zip(located, fe.transform_many([padded for padded, _, _ in located])):
        ends = F.feature_ends(fe, features)
        keep = (ends >= start + START_S * SAMPLE_RATE) & (ends <= end + END_S * SAMPLE_RATE)
        templates.append(features[keep])
    return templates


def clip_templates(fe: Frontend, clips: Mapping[str, Sequence[Clip]], *,
                   padding: int) -> dict[str, list[tuple[Clip, np.ndarray]]]:
    """Per class, each clip with its template (raw features); clips too short for one are left out.

    Computed once per training: the sound-alike search (:mod:`hark.trainer.soundalikes`) and
    :func:`build_verifier` both start from them.
    """
    paired: dict[str, list[tuple[Clip, np.ndarray]]] = {}
    for label, own in clips.items():
        found = zip(own, templates_of_clips(fe, [clip.samples for clip in own], padding=padding))
        paired[label] = [(clip, template) for clip, template in found if len(template)]
    return paired


@dataclass(frozen=True)
class VerifierBuild:
    """A verifier made from the user's clips, what the report shows of it, and each template's clip."""

    spec: VerifierSpec
    summary: dict[str, Any]
    sources: dict[str, list[Clip]]  # per class, the clip each template was cut from

    def without(self, held_back: Collection[np.ndarray]) -> VerifierSpec:
        """The spec without the templates of the clips whose audio is in ``held_back``.

        Calibration judges held-back clips: their own templates would match them perfectly.
        """
        held = {id(samples) for samples in held_back}
        templates = {label: [t for t, clip in zip(self.spec.templates[label], self.sources[label])
                             if id(clip.samples) not in held]
                     for label in self.spec.templates}
        return dataclasses.replace(self.spec, templates=templates)


def build_verifier(templates_of: Mapping[str, Sequence[tuple[Clip, np.ndarray]]], fe: Frontend, *,
                   mean: np.ndarray, scale: np.ndarray, region_s: float, decision_s: float, padding: int,
                   noises: list[np.ndarray], rng: np.random.Generator, progress: bool) -> VerifierBuild:
    """The verifier of every class's clips and their limits; also what the report shows of them.

    ``templates_of``: per class, each clip with its raw template (:func:`clip_templates`); at most
    ``MAX_TEMPLATES`` of them are kept, spread over the list. ``padding``: the quiet samples the
    recipe puts around a clip (``Recipe.clip_padding_samples``).
    """
    # Each clip with its template, so leaving a clip out leaves out its own template.
    paired = {label: [(clip, unit_rows(t, mean, scale)) for clip, t in spread(pairs, MAX_TEMPLATES)]
              for label, pairs in templates_of.items()}
    templates = {label: [t for _, t in pairs] for label, pairs in paired.items()}
    region_features = kept_features(region_s, fe.hop_samples)
    end_frames = features_in(END_WINDOW_S, fe.hop_samples)
    copies = {label: math.ceil(LEAVE_OUT_COPIES / len(pairs)) for label, pairs in paired.items() if len(pairs) >= 2}
    bar = tqdm(total=sum(n * len(paired[label]) for label, n in copies.items()),
               desc="verifier templates", unit="clip", disable=not progress, leave=False)
    trials: list[tuple[str, int, int]] = []  # class, the clip left out, where its copy's sound ends

    def copies_left_out() -> Iterator[np.ndarray]:
        for label, n in copies.items():
            for i, (clip, _) in enumerate(paired[label]):
                for _ in range(n):
                    samples = perturb(clip.samples, rng) if rng.random() < 0.5 else clip.samples
                    padded, start, end = _padded_event(samples, padding)
                    if noises:
                        padded = F.in_noise(rng, padded, (start, end), noises)
                    trials.append((label, i, end))
                    yield padded

    distances: dict[str, list[float]] = {label: [] for label in copies}
    for features, (label, i, end) in zip(fe.transform_many(copies_left_out(), done=bar.update), trials):
        others = templates[label][:i] + templates[label][i + 1:]
        region = features[F.feature_ends(fe, features) <= end + decision_s * SAMPLE_RATE][-region_features:]
        distances[label].append(class_distance(others, unit_rows(region, mean, scale), nearest=NEAREST,
                                               end_within=end_frames))
    bar.close()
    limits: dict[str, float] = {}
    summary: dict[str, Any] = {}
    for label, values in distances.items():
        limits[label] = min(2.0, max(values) + MARGIN)
        summary[label] = {"templates": len(templates[label]),
                          "leave_one_out_median": round(float(np.median(values)), 4),
                          "leave_one_out_max": round(max(values), 4), "max_distance": round(limits[label], 4)}
    spec = VerifierSpec(templates=templates, mean=mean, scale=scale, max_distance=limits, region_s=region_s,
                        nearest=NEAREST, end_s=END_WINDOW_S, ratio=RATIO)
    return VerifierBuild(spec=spec, summary=summary,
                         sources={label: [clip for clip, _ in pairs] for label, pairs in paired.items()})
