"""A loaded model: the bundle's frontend and head, scoring windows of features.

The head sees ``window`` consecutive feature vectors (``[window, *feature_shape]``) and
gives one probability per label (``background`` first). On a stream it is run every
``stride`` new features. :meth:`Model.clip_scores` does the same over a whole clip in one
batch, which is what ``hark classify`` and the trainer's evaluation use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hark.basemodels import BASE_FILES
from hark.bundle import Bundle, load_bundle
from hark.errors import BundleError, HarkError
from hark.frontend import Frontend, build_frontend
from hark.labels import BACKGROUND
from hark.manifest import BASE_DIR, Manifest
from hark.runtime import load_interpreter, probe_model
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
    """The trained head as a TFLite interpreter; batches of windows in, probabilities out.

    ``input_shape`` (one window, ``[window, *feature_shape]``) and ``n_outputs`` are what the
    manifest promises; a head file whose tensors say otherwise is refused here, naming the key,
    instead of failing in the middle of a stream.
    """

    def __init__(self, path: Path, *, input_shape: tuple[int, ...], n_outputs: int, where: str = "") -> None:
        where = where or str(path)
        probe_model(path)
        try:
            self._net = load_interpreter(path)
            self._net.allocate_tensors()
            inputs, outputs = self._net.get_input_details(), self._net.get_output_details()
        except HarkError:
            raise
        except Exception as err:  # the runtime's own errors: ValueError, RuntimeError, UnicodeDecodeError
            raise BundleError(f"{path}: not a TFLite model this runtime can load "
                              f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})")\
                from None
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(f"{path}: {len(inputs)} inputs and {len(outputs)} outputs; a head has one of each")
        self._input, self._output = inputs[0], outputs[0]
        given_in = tuple(int(d) for d in self._input["shape"][1:])
        if given_in != tuple(input_shape):
            raise BundleError(f"{where}: head.input_shape: the manifest says {list(input_shape)} "
                              f"([window, *frontend.feature_shape]), {path.name} takes {list(given_in)}")
        given_out = tuple(int(d) for d in self._output["shape"][1:])
        if given_out != (n_outputs,):
            raise BundleError(f"{where}: labels: {n_outputs} labels, but {path.name} gives {list(given_out)} "
                              "scores a window")
        if self._input["dtype"] != np.float32 or self._output["dtype"] != np.float32:
            raise BundleError(f"{path}: a head takes and gives float32, not {self._input['dtype'].__name__} "
                              f"and {self._output['dtype'].__name__}")
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
    """A bundle made runnable: builds frontends and runs the head.

    Loading checks what the manifest alone cannot: the head's tensors against ``head.window``,
    ``frontend.feature_shape`` and ``labels``, and the rebuilt frontend against the manifest's
    ``frontend`` section.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.manifest: Manifest = bundle.manifest
        where = str(bundle.manifest_path)
        self.window = self.manifest.head.window
        self.stride = self.manifest.head.stride
        self.labels = bundle.labels
        self.head = Head(bundle.head_path, input_shape=self.manifest.input_shape, n_outputs=len(self.labels),
                         where=where)
        for name, path in sorted(bundle.base_files.items()):
            pinned = BASE_FILES.get(name)
            if pinned is None or bundle.manifest.files.get(f"{BASE_DIR}/{name}") != pinned.sha256:
                # Made by the trainer (an int8 embedding), not an official file: checked as the head is.
                probe_model(path)
        try:
            frontend = build_frontend(self.manifest.frontend, self.bundle.base_files)
        except HarkError:
            raise
        except Exception as err:  # the runtime's own errors on a file it cannot run
            raise BundleError(f"{where}: frontend: its base files do not load "
                              f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})")\
                from None
        spec = self.manifest.frontend
        for key, built, promised in (("hop_samples", frontend.hop_samples, spec.hop_samples),
                                     ("receptive_samples", frontend.receptive_samples, spec.receptive_samples),
                                     ("feature_shape", list(frontend.feature_shape), list(spec.feature_shape))):
            if built != promised:
                raise BundleError(f"{where}: frontend.{key}: {promised} disagrees with the {spec.name} "
                                  f"frontend, which has {built}")
        # The frontend built to check the bundle is the first one handed out, by `frontend` or
        # `new_frontend`, whichever comes first: the daemon only ever needs its pipeline's, and each
        # speech frontend holds its own interpreters (a few MB once they have run).
        self._layout = frontend  # its geometry only: hop, receptive field, first feature's end
        self._unclaimed: Frontend | None = frontend
        self._own: Frontend | None = None
        self._claim = threading.Lock()  # the page's thread asks for frontends too
        self.verifier_spec = self._verifier_spec()

    def _verifier_spec(self) -> VerifierSpec | None:
        """The templates of the second opinion (:mod:`hark.verifier`), if the bundle has them."""
        section = self.manifest.verifier
        if section is None:
            return None
        return VerifierSpec.load(self.bundle.files[section.file], section,
                                 feature_size=int(np.prod(self.manifest.frontend.feature_shape)))

    @classmethod
    def load(cls, path: str | Path) -> Model:
        return cls(load_bundle(path))

    def new_frontend(self) -> Frontend:
        """A frontend of this model that nobody else uses (the daemon keeps one per stream)."""
        with self._claim:
            frontend, self._unclaimed = self._unclaimed, None
        if frontend is not None:
            return frontend
        return build_frontend(self.manifest.frontend, self.bundle.base_files)

    @property
    def frontend(self) -> Frontend:
        """The model's own frontend, for whole clips (:meth:`clip_scores`); built when first asked for."""
        if self._own is None:
            own = self.new_frontend()
            with self._claim:
                if self._own is None:
                    self._own = own
        return self._own

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-class detection thresholds chosen by the trainer (the manifest's default where none was)."""
        return dict(self.manifest.detection.thresholds)

    @property
    def span_samples(self) -> int:
        """Samples one head window sees: the receptive field of ``window`` features."""
        fe = self._layout
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
        pad = self.manifest.head.clip_padding_samples
        # Before the clip, room for `stride` whole windows from a fresh frontend (whose first
        # feature may end after its receptive field: speech 13280 > 12640 samples), so that some
        # window ends at every point of the clip, its first sample included: a short clip's
        # sound is then seen at the end of a window, as the head was trained to see it.
        return pad_clip(samples, needed=needed_samples(self._layout, self.window, self.stride), pad=pad)[0]

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
        thresholds = self.manifest.clip_thresholds()
        # The highest raw score wins, not the highest score/threshold ratio: with per-class
        # thresholds the ratio lets a class that peaked in some other window of the clip beat
        # the word that is there (on real keywords it cost several points of clip accuracy).
        best = max(self.bundle.classes, key=lambda label: scores[label], default=None)
        if best is not None and scores[best] >= thresholds[best]:
            return ClipResult(label=best, score=scores[best], scores=scores)
        return ClipResult(label=BACKGROUND, score=scores[BACKGROUND], scores=scores)
