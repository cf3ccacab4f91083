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
from typing import Any

import numpy as np

from hark.errors import BundleError

VERIFIER_FILE = "verifier.npz"
METHOD = "subsequence-dtw-cosine"


def features_in(seconds: float, hop_samples: int, sample_rate: int = 16000) -> int:
    """How many features of ``hop_samples`` cover ``seconds`` (at least one)."""
    return max(1, math.ceil(seconds * sample_rate / hop_samples))


def kept_features(region_s: float, hop_samples: int, sample_rate: int = 16000) -> int:
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

    def manifest_block(self) -> dict[str, Any]:
        return {
            "file": VERIFIER_FILE,
            "method": METHOD,
            "region_s": round(self.region_s, 3),
            "end_s": round(self.end_s, 3),
            "nearest": self.nearest,
            "ratio": round(self.ratio, 4),
            "max_distance": {c: round(float(v), 4) for c, v in self.max_distance.items()},
            "templates": {c: len(t) for c, t in self.templates.items()},
        }

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32)}
        for ci, label in enumerate(self.templates):
            for ti, template in enumerate(self.templates[label]):
                arrays[f"t{ci}_{ti}"] = template.astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path, section: Mapping[str, Any], classes: Sequence[str]) -> VerifierSpec:
        """The spec of a bundle's ``verifier`` manifest section (a mapping: :class:`hark.model.Model`
        checks that) and its hash-checked file."""
        where = f"{path}: manifest verifier"
        if section.get("method") != METHOD:
            raise BundleError(f"{where}: unknown method {section.get('method')!r}, this hark knows {METHOD!r}")
        counts, limits = section.get("templates"), section.get("max_distance")
        region_s, nearest, end_s = section.get("region_s"), section.get("nearest"), section.get("end_s", 1.0)
        ratio = section.get("ratio", 1.0)  # bundles before the ratio test: merely the nearest class
        if not isinstance(counts, Mapping) or not isinstance(limits, Mapping) or set(counts) - set(classes) \
                or set(limits) - set(counts):
            raise BundleError(f"{where}: templates and max_distance must name classes of this model")
        if not isinstance(region_s, (int, float)) or not 0.1 <= region_s <= 10 \
                or not isinstance(end_s, (int, float)) or not 0.01 <= end_s <= region_s \
                or not isinstance(nearest, int) or nearest < 1 \
                or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise BundleError(f"{where}: region_s must be 0.1-10 s, end_s 0.01 s to region_s, "
                              "nearest a positive integer and ratio in (0, 1]")
        try:
            with np.load(path, allow_pickle=False) as stored:
                mean, scale = stored["mean"], stored["scale"]
                templates = {label: [stored[f"t{ci}_{ti}"] for ti in range(int(counts[label]))]
                             for ci, label in enumerate(counts)}
        except (OSError, KeyError, ValueError) as err:
            raise BundleError(f"{path}: unreadable verifier templates ({err})") from None
        for label, limit in limits.items():
            if not isinstance(limit, (int, float)) or not 0 < limit <= 2:
                raise BundleError(f"{where}: max_distance.{label} must be a number in (0, 2], not {limit!r}")
        return cls(templates=templates, mean=mean, scale=scale, region_s=float(region_s), nearest=nearest,
                   end_s=float(end_s), ratio=float(ratio), max_distance={c: float(v) for c, v in limits.items()})


class Verifier:
    """Keeps the last ``region_s`` of features of a stream and judges the detector's candidates."""

    def __init__(self, spec: VerifierSpec, *, hop_samples: int, sample_rate: int = 16000) -> None:
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
