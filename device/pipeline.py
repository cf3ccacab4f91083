"""The streaming pipeline: 16 kHz chunks in, detections out, each sample transformed once.

Chunks of any size go through the model's frontend (:meth:`~hark.frontend.Frontend.push`),
which keeps its own overlap; every ``model.stride`` new features the head is run on the last
``model.window`` features, and the detector turns its scores into detections. The chunk size
changes nothing: the same audio gives the same detections whether it comes 1 or 7000 samples
at a time, and ``hark detect`` on a file gives what the daemon gives live.

Times are stream times: a head window ending with feature ``k`` is stamped
``frontend.feature_end(k) / SAMPLE_RATE`` s, the end of the audio it has heard.

The activity gate (:mod:`hark.activity`): while the audio is only the room's steady noise, or
digital silence, head windows that hold nothing active are not computed at all: neither the base
network nor the head runs, and the detector is given background scores for them. Features are
computed when a window that needs them is run, from the audio kept for that (one window's span),
so when a sound begins the windows that hear its onset are computed at once, exactly as without
the gate: the gate costs no latency, and a window it lets through scores as it would without it.

Windows run together: a frontend whose base network gives several consecutive features for little
more than the cost of one (:attr:`hark.frontend.Frontend.runs_together`, the speech embedding) is
asked for them together. While the detector has no decision open, a window that is due waits for
the next ones, up to ``batch`` windows, and they run in one go when the last of them is due. No
detection comes later for it: a sound first crossing its threshold in a waiting window is decided
at the end of the decision period, which is never earlier than the last window of the batch
(``batch`` is one more than the windows a decision period spans), and once a decision is open the
windows run as they come. The detector sees the same scores in the same order, so the detections
are the same; only the page's live scores come a batch at a time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from hark import SAMPLE_RATE
from hark.activity import HOP, ActivityGate, GateSettings, hold_samples
from hark.detector import Detection, Detector, DetectorSettings
from hark.model import Model
from hark.speechcheck import SpeechCheck
from hark.verifier import Verifier


class Pipeline:
    """Frontend, head and detector over one stream; feed it with :meth:`process`, end it with :meth:`flush`.

    ``thresholds``, ``refractory_s`` and ``smoothing`` override the manifest's (a number for
    every class or a mapping per class), ``decision_s`` its decision period (see :mod:`hark.detector`).
    ``gate`` is the activity gate's settings (:class:`hark.activity.GateSettings`, a mapping of
    them, a mode name, or ``False`` for none); by default the room-relative gate. ``verify`` asks
    the bundle's verifier (:mod:`hark.verifier`) for a second opinion before each detection, when
    the bundle has one. ``batch`` caps how many windows may run together (1: each as it comes); by
    default as many as delay no detection.
    """

    MAX_BATCH = 3

    def __init__(self, model: Model, *, thresholds: Mapping[str, float] | float | None = None,
                 refractory_s: Mapping[str, float] | float | None = None,
                 smoothing: Mapping[str, int] | int | None = None,
                 decision_s: float | None = None,
                 gate: GateSettings | Mapping[str, Any] | str | bool | None = None, verify: bool = True,
                 batch: int | None = None) -> None:
        self.model = model
        self.settings = DetectorSettings.resolve(
            model.bundle.classes, model.manifest.detection,
            thresholds=thresholds, smoothing=smoothing, refractory_s=refractory_s, decision_s=decision_s,
        )
        self.frontend = model.new_frontend()
        spec = model.verifier_spec if verify else None
        self.verifier = Verifier(spec, hop_samples=self.frontend.hop_samples) if spec is not None else None
        check = model.manifest.speech_check if verify else None
        self.speech_check = SpeechCheck(model.bundle.files[check.file], threshold=check.threshold,
                                        lookback_s=check.lookback_s, familiar=check.familiar,
                                        margin=check.margin) if check is not None else None
        self.speech_classes = frozenset(check.classes) if check is not None else frozenset()
        confirm = self._confirm if self.verifier is not None or self.speech_check is not None else None
        self.detector = Detector(model.labels, self.settings, confirm=confirm)
        self.window = model.window
        self.stride = model.stride
        self.hop = self.frontend.hop_samples
        self.span = self.frontend.receptive_samples + (self.window - 1) * self.hop
        self.gate_settings = GateSettings.of(gate)
        self.hold = hold_samples(self.gate_settings, self.span)
        self.gate = ActivityGate(self.gate_settings) if self.gate_settings.mode != "off" else None
        self.padding = model.manifest.head.clip_padding_samples
        self.batch = self._batch_size() if batch is None else max(1, min(int(batch), self._batch_size()))
        self._silence = np.zeros(len(model.labels))
        self._silence[0] = 1.0  # what a window of silence scores: all background
        # Audio kept for computing a window's features when it is run: one window span plus alignment,
        # and the windows that may wait for a batch.
        self._keep = (self.span + self.frontend.first_end + 2 * self.hop + 2 * HOP
                      + (self.batch - 1) * self.stride * self.hop)
        self.reset()

    def reset(self) -> None:
        """Start a new stream at time 0."""
        self.frontend.reset()
        self.detector.reset()
        if self.verifier is not None:
            self.verifier.reset()
        if self.gate is not None:
            self.gate.reset()
        self.samples = 0  # samples received
        self.head_runs = 0  # head invocations, for tests and the cost benchmark
        self.gated_windows = 0  # windows the gate scored as background without running anything
        self.frontend_features = 0  # features the frontend computed
        self.frontend_runs = 0  # times features were computed (one run of the base network each, or a few)
        self._next_window = self.window - 1  # stream feature index ending the next window to decide
        # The features of the windows due, the first window's whole span included.
        self._features: deque[np.ndarray] = deque(maxlen=self.window + (self.batch - 1) * self.stride)
        self._last_index = -1  # stream index of the newest feature in self._features
        self._verified = -1  # stream index of the newest feature the verifier has been given
        self._due: list[int] = []  # windows to run (stream index of their last feature), waiting for a batch
        self._running = False  # whether the frontend's state continues from self._last_index
        self._pushed = 0  # stream sample up to which audio went into the frontend (when running)
        self._recent = np.zeros(0, dtype=np.float32)
        self._recent_start = 0  # stream sample of self._recent[0]
        self._deciding_end = 0  # stream sample where the window being decided ends
        self._speech: tuple[int, bool] | None = None  # the speech check's answer for that moment

    @property
    def time_s(self) -> float:
        """Stream time: samples received so far / ``SAMPLE_RATE``."""
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
        self.samples += len(samples)
        self._recent = np.concatenate([self._recent, samples])
        if self.gate is not None:
            self.gate.push(samples)
        return self._decide()

    def flush(self) -> list[Detection]:
        """End of input: feed quiet padding so the last sound is fully heard, and return what that completes.

        The padding is the head's ``clip_padding_samples`` (the silence the trainer put after every
        clip), so a word at the very end of a file is seen as it was in training; detections may
        therefore be stamped up to that long after the last real sample.
        """
        out = self.process(np.zeros(self.padding, dtype=np.float32))
        if self.gate is not None and self.gate.judged < self.samples:
            self.gate.push(np.zeros(self.gate.judged + HOP - self.samples, dtype=np.float32))  # judge the last hop
            out += self._decide()
        return out + self._run_due()

    def _decide(self) -> list[Detection]:
        """Run or skip every window whose audio is there (and, with the gate, judged), in order."""
        out: list[Detection] = []
        judged = self.gate.judged if self.gate is not None else self.samples
        while self.feature_end(self._next_window) <= self.samples:
            index = self._next_window
            end = self.feature_end(index)
            if self.gate is not None and -(-end // HOP) * HOP > judged:
                break  # its last hop is not judged yet: decided with the next samples
            if (index + 1) % self.stride == 0:
                if self.gate is None or self.gate.any_active(end - self.hold, end):
                    self._due.append(index)
                    if len(self._due) >= self.batch or self.detector.deciding:
                        out += self._run_due()
                else:
                    out += self._run_due()  # the windows before it, in order
                    out += self._skip_window(index)
            self._next_window += 1
        self._trim()
        return out

    def _trim(self) -> None:
        """Keep the audio the next windows may need, and forget active hops no window can reach."""
        drop = len(self._recent) - self._keep
        if drop > 0:
            self._recent = self._recent[drop:]
            self._recent_start += drop
        if self.gate is not None:
            self.gate.forget(self.feature_end(self._next_window) - self.hold)

    def _batch_size(self) -> int:
        """How many windows may run together without delaying a detection (see the module's notes)."""
        if not self.frontend.runs_together or self.settings.decision_s <= 0:
            return 1
        period_s = self.stride * self.hop / SAMPLE_RATE
        return 1 + min(self.MAX_BATCH - 1, math.ceil(self.settings.decision_s / period_s - 1e-6))

    def _compute_features(self, first: int, last: int) -> None:
        """Bring the features up to stream feature ``last``, every one from ``first`` on included."""
        if not self._running or self._last_index < first - 1:
            # Restart the frontend so that its first feature is stream feature ``first``: features are
            # computed from their own audio only, so they come out as they would have continuously.
            self.frontend.reset()
            self._features.clear()
            if self.verifier is not None:
                self.verifier.reset()
            self._pushed = self.feature_end(first) - self.frontend.first_end
            self._last_index = self._verified = first - 1
            self._running = True
        end = self.feature_end(last)
        if self._pushed < self._recent_start:
            raise RuntimeError("pipeline: the audio a window needs was no longer kept")
        features = self.frontend.push(self._recent[self._pushed - self._recent_start:end - self._recent_start])
        self._pushed = end
        self.frontend_runs += 1
        self._last_index += len(features)
        self.frontend_features += len(features)
        self._features.extend(features)

    def _feature(self, index: int) -> np.ndarray:
        """Stream feature ``index``, one of those kept."""
        return self._features[len(self._features) - 1 - (self._last_index - index)]

    def _window_features(self, index: int) -> np.ndarray:
        """The head's input for the window ending with stream feature ``index``: ``[1, window, ...]``."""
        return np.stack([self._feature(k) for k in range(index - self.window + 1, index + 1)])[None]

    def _run_due(self) -> list[Detection]:
        """Run the windows waiting, in order, their features computed together."""
        if not self._due:
            return []
        due, self._due = self._due, []
        self._compute_features(due[0] - self.window + 1, due[-1])
        out: list[Detection] = []
        for index in due:
            if self.verifier is not None:
                # The verifier looks back from the moment of decision: it is given features up to this window only.
                for k in range(self._verified + 1, index + 1):
                    self.verifier.push(self._feature(k))
                self._verified = index
            scores = self.model.head(self._window_features(index))[0]
            self.head_runs += 1
            out += self._decide_window(scores, index)
        return out

    def _skip_window(self, index: int) -> list[Detection]:
        """Score a window as pure background without running anything."""
        self.gated_windows += 1
        if self._running and self._last_index < index - self.window:
            self._running = False  # the features kept are too old to continue from
        return self._decide_window(self._silence, index)

    def _decide_window(self, scores: np.ndarray, index: int) -> list[Detection]:
        """The detector's verdict on the window ending with stream feature ``index``; a second opinion it
        asks for (:meth:`_confirm`) looks back from that window's end."""
        self._deciding_end = self.feature_end(index)
        return self.detector.update(scores, self._deciding_end / SAMPLE_RATE)

    def _confirm(self, label: str) -> bool:
        """The detector's second opinion on ``label`` at the window being decided: the verifier's
        templates, then (for a keyword model) whether the audio before it is speech at all."""
        if self.verifier is not None and not self.verifier.confirm(label):
            return False
        if self.speech_check is None or label not in self.speech_classes:
            return True
        end = self._deciding_end
        if self._speech is None or self._speech[0] != end:  # one answer per moment, whichever class asks
            start = max(0, end - self.speech_check.lookback - self._recent_start)
            self._speech = (end, self.speech_check.passes(self._recent[start:end - self._recent_start]))
        return self._speech[1]

    def run(self, chunks: Any) -> list[Detection]:
        """Every detection of an iterable of chunks, flushed at the end (``hark detect``)."""
        out: list[Detection] = []
        for chunk in chunks:
            out += self.process(chunk)
        return out + self.flush()
