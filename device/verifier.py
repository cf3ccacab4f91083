"""A second opinion before a detection fires: does the sound match the user's own recordings?

The head is a classifier fitted to a handful of clips, and some stretches of other speech land on
the keyword's side of it with a score of 0.99 — and which stretches depends on the training run,
so trainings of one recipe differ several-fold in false detections an hour.
The verifier asks a different question, the one query-by-example keyword spotting asks: is the
last ``region_s`` seconds of features close to the class's *templates*, the features of the very
clips the user recorded? It aligns each template in that stretch by subsequence dynamic time
warping (each template frame moves on by 0, 1 or 2 stream frames, so a word may be said up to
twice as fast or as slow, or stretched) with cosine distance between feature vectors, and takes
the mean distance along the best alignment. The match must end within ``end_s`` (1 s) of the
moment of decision: the sound judged is the one just heard, not a word said two seconds before.
A class's distance is the mean over its ``nearest`` closest templates.

A detection of class ``c`` is confirmed when its distance is at most ``max_distance[c]`` and
clearly nearer than any other class's: at most ``ratio`` (0.93) times the nearest other class's
distance, the ratio test of nearest-neighbour matching. A sound half-way between two classes is
neither: read speech that lands between two keywords sits near a ratio of 1, real keywords well
below 0.8. The trainer sets ``max_distance``
from the clips themselves: each clip, noised and perturbed as in training, is matched against the
other clips of its class (leave one out), and the largest such distance plus a margin is the limit —
so a class whose clips vary a lot gets a looser limit, and nothing is tuned on the test stream.

It runs only when the detector is about to fire (a few milliseconds, a few times an hour), on
features the pipeline has already computed, and delays nothing: it looks at the features up to the
moment of decision. The bundle stores the templates (``verifier.npz``) and the manifest's
``verifier`` section the settings; a bundle without them detects without a second opinion.
"""

from __future__ import annotations

import io
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hark import SAMPLE_RATE
from hark.errors import BundleError
from hark.manifest import VERIFIER_FILE, VERIFIER_METHOD, VerifierSection

METHOD = VERIFIER_METHOD
__all__ = ["METHOD", "VERIFIER_FILE", "Verifier", "VerifierSpec", "class_distance", "distance_by_end",
           "features_in", "kept_features", "sequence_distance", "unit_rows"]


def features_in(seconds: float, hop_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """How many features of ``hop_samples`` cover ``seconds`` (at least one)."""
    return max(1, math.ceil(seconds * sample_rate / hop_samples))


def kept_features(region_s: float, hop_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """How many of the latest features a verifier keeps to look back ``region_s``."""
    return features_in(region_s, hop_samples, sample_rate) + 1


def unit_rows(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Features ``[n, ...]`` standardised per dimension and scaled to unit length, as ``[n, d]`` float32."""
    flat = (features.reshape(len(features), -1) - mean) / scale
    return (flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-9)).astype(np.float32)


def sequence_distance(template: np.ndarray, region: np.ndarray, *, end_within: int | None = None) -> float:
    """Mean cosine distance along the best alignment of ``template`` inside ``region``.

    Both are unit rows (:func:`unit_rows`). Every template frame is matched to one region frame;
    from one template frame to the next the region moves on by 0, 1 or 2 frames. The match may
    start anywhere, and end anywhere or, with ``end_within``, in the region's last ``end_within``
    frames. 0 is a perfect match, 1 is unrelated, 2 is opposite.
    """
    if not len(template) or not len(region):
        return math.inf
    by_end = distance_by_end(template, region)
    return float(by_end[-end_within:].min()) if end_within else float(by_end.min())


def distance_by_end(template: np.ndarray, region: np.ndarray) -> np.ndarray:
    """:func:`sequence_distance` for a match ending at each frame of ``region`` (both non-empty).

    The trainer reads it whole to find where in a long recording a template fits best.
    """
    cost = 1.0 - template @ region.T
    acc = cost[0].astype(np.float64)
    blocked = np.full(2, np.inf)
    for row in cost[1:]:
        before = np.concatenate([blocked, acc])
        acc = row + np.minimum(np.minimum(before[2:], before[1:-1]), before[:-2])
    return acc / len(template)


def class_distance(templates: Sequence[np.ndarray], region: np.ndarray, *, nearest: int,
                   end_within: int | None = None) -> float:
    """Mean :func:`sequence_distance` of ``region`` to its ``nearest`` closest templates (inf without any)."""
    found = sorted(sequence_distance(t, region, end_within=end_within) for t in templates)
    return float(np.mean(found[:nearest])) if found else math.inf


@dataclass(frozen=True)
class VerifierSpec:
    """What a bundle holds for the verifier: templates per class and the limits they are judged by."""

    templates: Mapping[str, Sequence[np.ndarray]]  # unit rows per template, [n_i, d]
    mean: np.ndarray
    scale: np.ndarray
    max_distance: Mapping[str, float]
    region_s: float
    nearest: int = 3
    end_s: float = 1.0  # the match must end this close to the moment of decision
    ratio: float = 1.0  # at most this times the nearest other class's distance (1.0: merely nearest)

    def confirms(self, label: str, distances: Mapping[str, float]) -> bool:
        """The rule: ``label``'s distance within its limit, and at most ``ratio`` times any other class's."""
        if label not in self.max_distance:
            return True
        mine = distances[label]
        others = [d for other, d in distances.items() if other != label]
        return mine <= self.max_distance[label] and (not others or mine <= self.ratio * min(others))

    def manifest_block(self) -> VerifierSection:
        """The manifest's ``verifier`` section for these templates."""
        return VerifierSection(
            file=VERIFIER_FILE, method=METHOD, region_s=round(self.region_s, 3), end_s=round(self.end_s, 3),
            nearest=self.nearest, ratio=round(self.ratio, 4),
            max_distance={c: round(float(v), 4) for c, v in self.max_distance.items()},
            templates={c: len(t) for c, t in self.templates.items()},
        )

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32)}
        for ci, label in enumerate(self.templates):
            for ti, template in enumerate(self.templates[label]):
                arrays[f"t{ci}_{ti}"] = template.astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path, section: VerifierSection, *, feature_size: int) -> VerifierSpec:
        """The spec of a bundle's validated ``verifier`` section and its hash-checked file.

        The arrays are checked against the section and the frontend's ``feature_size``: every
        template ``[frames, feature_size]``, as many as the section counts.
        """
        try:
            with np.load(path, allow_pickle=False) as stored:
                mean, scale = stored["mean"].astype(np.float32), stored["scale"].astype(np.float32)
                templates = {label: [stored[f"t{ci}_{ti}"].astype(np.float32) for ti in range(section.templates[label])]
                             for ci, label in enumerate(section.templates)}
        except (OSError, KeyError, ValueError, EOFError) as err:
            raise BundleError(f"{path}: unreadable verifier templates ({err})") from None
        for name, array in [("mean", mean), ("scale", scale)]:
            if array.shape != (feature_size,) or not np.all(np.isfinite(array)):
                raise BundleError(f"{path}: {name} must be {feature_size} finite numbers, not shape {array.shape}")
        if not np.all(scale > 0):
            raise BundleError(f"{path}: scale must be above 0")
        for label, rows in templates.items():
            for ti, rows_i in enumerate(rows):
                if rows_i.ndim != 2 or rows_i.shape[1] != feature_size or not 1 <= len(rows_i) <= 10_000:
                    raise BundleError(f"{path}: template t{list(templates).index(label)}_{ti} ({label}) must be "
                                      f"[frames, {feature_size}], not {list(rows_i.shape)}")
        return cls(templates=templates, mean=mean, scale=scale, region_s=section.region_s, nearest=section.nearest,
                   end_s=section.end_s, ratio=section.ratio, max_distance=dict(section.max_distance))


class Verifier:
    """Keeps the last ``region_s`` of features of a stream and judges the detector's candidates."""

    def __init__(self, spec: VerifierSpec, *, hop_samples: int, sample_rate: int = SAMPLE_RATE) -> None:
        self.spec = spec
        self._end_frames = features_in(spec.end_s, hop_samples, sample_rate)
        self._recent: deque[np.ndarray] = deque(maxlen=kept_features(spec.region_s, hop_samples, sample_rate))
        self.last_distances: dict[str, float] = {}
        self.rejections = 0

    def reset(self) -> None:
        """Forget the features (a new stream, or the energy gate closed)."""
        self._recent.clear()

    def push(self, feature: np.ndarray) -> None:
        """The stream's next feature vector."""
        self._recent.append(feature)

    def distances(self) -> dict[str, float]:
        """Each class's distance from the features kept (:func:`sequence_distance`, nearest templates)."""
        if not self._recent:
            return {label: math.inf for label in self.spec.templates}
        region = unit_rows(np.stack(self._recent), self.spec.mean, self.spec.scale)
        return {label: class_distance(templates, region, nearest=self.spec.nearest, end_within=self._end_frames)
                for label, templates in self.spec.templates.items()}

    def confirm(self, label: str) -> bool:
        """True when the recent audio matches ``label``'s templates: close enough, and closest of all classes.

        A class without templates (or without a limit) is confirmed unchecked.
        """
        if label not in self.spec.max_distance:
            return True
        self.last_distances = self.distances()
        ok = self.spec.confirms(label, self.last_distances)
        self.rejections += not ok
        return ok
