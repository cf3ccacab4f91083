"""The streaming pipeline: 16 kHz chunks in, detections out, each sample transformed once.

Chunks of any size go through the model's frontend (:meth:`~hark.frontend.Frontend.push`),
which keeps its own overlap; every ``model.stride`` new features the head is run on the last
``model.window`` features, and the detector turns its scores into detections. The chunk size
changes nothing: the same audio gives the same detections whether it comes 1 or 7000 samples
at a time, and ``hark detect`` on a file gives what the daemon gives live.

Times are stream times: a head window ending with feature ``k`` is stamped
``frontend.feature_end(k) / 16000`` s, the end of the audio it has heard.

Energy gate: when the audio has been digitally silent (no sample at or above ``GATE_LEVEL``,
-70 dBFS, about 10 steps of 16-bit audio) for longer than a head window spans, every further
window would see nothing but that silence, so the frontend and head are not run at all; the
detector is given zero scores for the windows skipped. The level is far below any microphone's
noise floor in a room (typically -60 to -45 dBFS) and below the quietest word a mic picks up, so
it saves CPU on muted inputs, digital silence and gaps in files, and never costs a quiet word.
When sound returns, the frontend is restarted on the buffered audio of the last window's span
(aligned to the feature grid), so what follows is computed exactly as without the gate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from hark import SAMPLE_RATE
from hark.detector import Detection, Detector, DetectorSettings
from hark.model import Model
from hark.verifier import Verifier

GATE_LEVEL = 10 ** (-70 / 20)  # -70 dBFS peak


class Pipeline:
    """Frontend, head and detector over one stream; feed it with :meth:`process`, end it with :meth:`flush`.

    ``thresholds``, ``refractory_s`` and ``smoothing`` override the manifest's (a number for
    every class or a mapping per class), ``decision_s`` its decision period (see :mod:`hark.detector`).
    ``energy_gate`` is ``True`` (the -70 dBFS gate above),
    ``False``, or a peak level in dBFS. ``verify`` asks the bundle's verifier (:mod:`hark.verifier`)
    for a second opinion before each detection, when the bundle has one.
    """

    def __init__(self, model: Model, *, thresholds: Mapping[str, float] | float | None = None,
                 refractory_s: Mapping[str, float] | float | None = None,
                 smoothing: Mapping[str, int] | int | None = None,
                 decision_s: float | None = None,
                 energy_gate: bool | float = True, verify: bool = True) -> None:
        self.model = model
        self.settings = DetectorSettings.resolve(
            model.bundle.classes, model.manifest.detection,
            thresholds=thresholds, smoothing=smoothing, refractory_s=refractory_s, decision_s=decision_s,
        )
        self.frontend = model.new_frontend()
        spec = model.verifier_spec if verify else None
        self.verifier = Verifier(spec, hop_samples=self.frontend.hop_samples) if spec is not None else None
        self.detector = Detector(model.labels, self.settings,
                                 confirm=self.verifier.confirm if self.verifier is not None else None)
        self.window = model.window
        self.stride = model.stride
        self.hop = self.frontend.hop_samples
        self.span = self.frontend.receptive_samples + (self.window - 1) * self.hop
        if energy_gate is True:
            self.gate_level: float | None = GATE_LEVEL
        elif energy_gate is False or energy_gate is None:
            self.gate_level = None
        else:
            self.gate_level = 10 ** (float(energy_gate) / 20)
        self.padding = model.manifest.head.clip_padding_samples
        self._silence = np.zeros(len(model.labels))
        self._silence[0] = 1.0  # what a window of silence scores: all background
        self.head_runs = 0  # head invocations, for tests and the cost benchmark
        self.gated_windows = 0  # windows skipped by the energy gate
        self.reset()

    def reset(self) -> None:
        """Start a new stream at time 0."""
        self.frontend.reset()
        self.detector.reset()
        if self.verifier is not None:
            self.verifier.reset()
        self.samples = 0  # samples received
        self._offset = 0  # stream sample at which the frontend was last reset (a multiple of hop)
        self._feature_base = 0  # stream feature index of the frontend's feature 0
        self._next_feature = 0  # stream index of the next feature to take
        self._features: deque[np.ndarray] = deque(maxlen=self.window)
        self._last_index = -1  # stream index of the newest feature in self._features
        self._gated = False
        self._last_loud = -1  # stream sample index of the last sample at or above the gate
        # Audio kept for restarting the frontend after the gate: one window span plus alignment slack.
        self._recent = np.zeros(0, dtype=np.float32)
        self._keep = self.span + self.frontend.first_end + 2 * self.hop

    @property
    def time_s(self) -> float:
        """Stream time: samples received so far / 16000."""
        return self.samples / SAMPLE_RATE

    @property
    def last_scores(self) -> dict[str, float]:
        """The latest smoothed score per label (what the thresholds are compared with)."""
        return self.detector.last_scores

    def feature_end(self, index: int) -> int:
        """Stream sample just past the span of stream feature ``index``."""
        return self.frontend.first_end + index * self.hop

    # -- the work ----------------------------------------------------------------------------------
    def process(self, chunk: np.ndarray) -> list[Detection]:
        """Feed the next samples (16 kHz mono float32); the detections they complete, in time order."""
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if len(samples) == 0:
            return []
        start = self.samples
        self.samples += len(samples)
        if self.gate_level is None:
            return self._run(samples)
        loud = np.flatnonzero(np.abs(samples) >= self.gate_level)
        if len(loud):
            self._last_loud = start + int(loud[-1])
        # Whole chunk plus what came before, so a restart can reach back one window span (trimmed below).
        self._recent = np.concatenate([self._recent, samples])
        try:
            if self._gated:
                if len(loud):
                    return self._resume(start + int(loud[0]))
                return self._skip_silent_windows()
            out = self._run(samples)
        finally:
            self._recent = self._recent[-self._keep:]
        # Every window not yet computed ends after the next feature; if its span starts after the last loud
        # sample, it (and all that follow until sound returns) would hear silence only.
        if self.feature_end(self._next_feature) - self.span > self._last_loud:
            self._gated = True
            self._features.clear()
            if self.verifier is not None:
                self.verifier.reset()
            out += self._skip_silent_windows()
        return out

    def flush(self) -> list[Detection]:
        """End of input: feed quiet padding so the last sound is fully heard, and return what that completes.

        The padding is the head's ``clip_padding_samples`` (the silence the trainer put after every
        clip), so a word at the very end of a file is seen as it was in training; detections may
        therefore be stamped up to that long after the last real sample.
        """
        return self.process(np.zeros(self.padding, dtype=np.float32))

    def _run(self, samples: np.ndarray) -> list[Detection]:
        out: list[Detection] = []
        features = self.frontend.push(samples)
        for local, feature in enumerate(features):
            index = self._feature_base + self.frontend.features_emitted - len(features) + local
            if index < self._next_feature - self.window:
                continue  # warm-up features from before anything still to be computed
            self._features.append(feature)
            if self.verifier is not None:
                self.verifier.push(feature)
            self._last_index = index
            if index < self._next_feature:
                continue  # history only: its windows were already scored (or skipped)
            self._next_feature = index + 1
            if index >= self.window - 1 and (index + 1) % self.stride == 0 and len(self._features) == self.window:
                scores = self.model.head(np.stack(self._features)[None])[0]
                self.head_runs += 1
                out += self.detector.update(scores, self.feature_end(index) / SAMPLE_RATE)
        return out

    def _skip_silent_windows(self) -> list[Detection]:
        """While gated: give the detector zero scores for each window whose end has been reached."""
        out: list[Detection] = []
        while self.feature_end(self._next_feature) <= self.samples:
            out += self._skip_window()
        return out

    def _skip_window(self) -> list[Detection]:
        """Score the next window as pure background without running anything."""
        index = self._next_feature
        self._next_feature += 1
        if index < self.window - 1 or (index + 1) % self.stride:
            return []
        self.gated_windows += 1
        return self.detector.update(self._silence, self.feature_end(index) / SAMPLE_RATE)

    def _resume(self, first_loud: int) -> list[Detection]:
        """Sound is back at stream sample ``first_loud``: restart the frontend on the buffered audio before it."""
        # Windows ending before the loud sample are silent: give them their zero scores first.
        out: list[Detection] = []
        while self.feature_end(self._next_feature) <= first_loud:
            out += self._skip_window()
        # The first window still to compute starts at feature (next - window + 1); restart the frontend early
        # enough that this feature is its own, on the hop grid the stream has always had.
        first_feature = max(0, self._next_feature - self.window + 1)
        wanted = self.feature_end(first_feature) - self.frontend.first_end  # the frontend's sample 0
        recent_start = self.samples - len(self._recent)
        restart = max(wanted, recent_start)
        restart = -(-restart // self.hop) * self.hop  # up to the grid
        self.frontend.reset()
        self._offset = restart
        self._feature_base = restart // self.hop
        self._features.clear()
        self._gated = False
        return out + self._run(self._recent[restart - recent_start:])

    def run(self, chunks: Any) -> list[Detection]:
        """Every detection of an iterable of chunks, flushed at the end (``hark detect``)."""
        out: list[Detection] = []
        for chunk in chunks:
            out += self.process(chunk)
        return out + self.flush()
