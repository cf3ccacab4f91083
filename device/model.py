"""A loaded model: the bundle's frontend and head, scoring windows of features.

The head sees ``window`` consecutive feature vectors (``[window, *feature_shape]``) and
gives one probability per label (``background`` first). On a stream it is run every
``stride`` new features. :meth:`Model.clip_scores` does the same over a whole clip in one
batch, which is what ``hark classify`` and the trainer's evaluation use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hark.bundle import MANIFEST, Bundle, load_bundle
from hark.errors import BundleError
from hark.frontend import Frontend, build_frontend
from hark.labels import BACKGROUND
from hark.runtime import load_interpreter
from hark.verifier import VerifierSpec


def needed_samples(frontend: Frontend, window: int, stride: int) -> int:
    """Samples that give ``stride`` whole windows from a fresh frontend."""
    return frontend.first_end + (window + stride - 2) * frontend.hop_samples


def pad_clip(samples: np.ndarray, *, needed: int, pad: int) -> tuple[np.ndarray, int]:
    """The clip with ``max(pad, needed)`` samples of silence before it and ``pad`` after, and the
    offset of its sample 0; the trainer pads its clips with this very function."""
    before = max(pad, needed)
    padded = np.concatenate([np.zeros(before, np.float32), samples.astype(np.float32), np.zeros(pad, np.float32)])
    return padded, before


class Head:
    """The trained head as a TFLite interpreter; batches of windows in, probabilities out."""

    def __init__(self, path: Path) -> None:
        self._net = load_interpreter(path)
        self._net.allocate_tensors()
        self._input = self._net.get_input_details()[0]
        self._output = self._net.get_output_details()[0]
        self._batch = int(self._input["shape"][0])

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities ``[batch, n_labels]`` for windows ``[batch, window, *feature_shape]``."""
        if len(windows) != self._batch:
            self._net.resize_tensor_input(self._input["index"], [len(windows), *windows.shape[1:]])
            self._net.allocate_tensors()
            self._batch = len(windows)
        self._net.set_tensor(self._input["index"], windows.astype(np.float32, copy=False))
        self._net.invoke()
        return self._net.get_tensor(self._output["index"]).copy()


@dataclass
class ClipResult:
    """What ``hark classify`` says of one clip."""

    label: str
    score: float
    scores: dict[str, float]


class Model:
    """A bundle made runnable: builds frontends and runs the head."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.manifest: dict[str, Any] = bundle.manifest
        head = self.manifest["head"]
        self.window = int(head["window"])
        self.stride = int(head.get("stride", 1))
        self.labels = bundle.labels
        self.head = Head(bundle.head_path)
        self.verifier_spec = self._verifier_spec()

    @cached_property
    def frontend(self) -> Frontend:
        """The frontend of whole-clip scoring (:meth:`clip_scores`), built on first use: a streaming
        pipeline builds its own, and the base network's second copy costs the daemon memory."""
        return self.new_frontend()

    def _verifier_spec(self) -> VerifierSpec | None:
        """The templates of the second opinion (:mod:`hark.verifier`), if the bundle has them."""
        section = self.manifest.get("verifier")
        if section is None:
            return None
        where = f"{self.bundle.path / MANIFEST}: manifest verifier"
        if not isinstance(section, Mapping):
            raise BundleError(f"{where}: not a mapping")
        name = section.get("file")
        if not isinstance(name, str) or name not in self.bundle.files:
            raise BundleError(f"{where}: file {name!r} is not listed with a hash")
        return VerifierSpec.load(self.bundle.files[name], section, self.bundle.classes)

    @classmethod
    def load(cls, path: str | Path) -> Model:
        return cls(load_bundle(path))

    def new_frontend(self) -> Frontend:
        """A fresh frontend of this model (the daemon keeps one per stream)."""
        return build_frontend(self.manifest["frontend"], self.bundle.base_files)

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-class detection thresholds chosen by the trainer (0.5 where none was chosen)."""
        chosen = self.manifest.get("detection", {}).get("thresholds", {})
        return {label: float(chosen.get(label, 0.5)) for label in self.bundle.classes}

    @property
    def span_samples(self) -> int:
        """Samples one head window sees: the receptive field of ``window`` features."""
        fe = self.frontend
        return fe.receptive_samples + (self.window - 1) * fe.hop_samples

    def windows_of(self, features: np.ndarray) -> np.ndarray:
        """Every ``stride``-th window of ``window`` consecutive features (aligned to the stream's end)."""
        n = len(features) - self.window + 1
        if n <= 0:
            return np.zeros((0, self.window, *features.shape[1:]), dtype=np.float32)
        starts = np.arange(n)[(np.arange(n) + self.window) % self.stride == 0]
        return np.stack([features[s:s + self.window] for s in starts])

    def pad_clip(self, samples: np.ndarray) -> np.ndarray:
        """A clip with quiet room added before and after, so a word at its very edge still fills a window."""
        pad = int(self.manifest.get("head", {}).get("clip_padding_samples", 8000))
        # Before the clip, room for `stride` whole windows from a fresh frontend (whose first
        # feature may end after its receptive field: speech 13280 > 12640 samples), so that some
        # window ends at every point of the clip, its first sample included: a short clip's
        # sound is then seen at the end of a window, as the head was trained to see it.
        return pad_clip(samples, needed=needed_samples(self.frontend, self.window, self.stride), pad=pad)[0]

    def clip_scores(self, samples: np.ndarray) -> np.ndarray:
        """Head probabilities ``[n_windows, n_labels]`` over a whole (padded) clip."""
        features = self.frontend.transform(self.pad_clip(samples))
        windows = self.windows_of(features)
        if len(windows) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate([self.head(windows[i:i + 256]) for i in range(0, len(windows), 256)])

    def classify(self, samples: np.ndarray) -> ClipResult:
        """The class scoring highest over the clip's windows; ``background`` when its peak is under its threshold."""
        probs = self.clip_scores(samples)
        peak = probs.max(axis=0) if len(probs) else np.zeros(len(self.labels), np.float32)
        scores = {label: float(peak[i]) for i, label in enumerate(self.labels)}
        # Whole clips use the trainer's clip thresholds where it recorded them: the stream's are
        # calibrated to a false-alarm budget and would call quiet clips background.
        chosen = self.manifest.get("classify", {}).get("thresholds") or {}
        thresholds = {label: float(chosen.get(label, t)) for label, t in self.thresholds.items()}
        # The highest raw score wins, not the highest score/threshold ratio: with per-class
        # thresholds the ratio lets a class that peaked in some other window of the clip beat
        # the word that is there (on real keywords it cost several points of clip accuracy).
        best = max(self.bundle.classes, key=lambda label: scores[label], default=None)
        if best is not None and scores[best] >= thresholds[best]:
            return ClipResult(label=best, score=scores[best], scores=scores)
        return ClipResult(label=BACKGROUND, score=scores[BACKGROUND], scores=scores)
