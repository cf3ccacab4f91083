"""From a stream of head scores to detections: smoothing, thresholds and a refractory period.

The head gives one probability per label every ``stride`` features. A single window can spike
on a fragment of another word, so each class's score is first averaged over its last
``smoothing`` head outputs (a moving average, as openWakeWord and Porcupine-style detectors do).
A class fires when its smoothed score reaches its threshold, at that moment (the rising edge,
not the peak: waiting for the peak would add latency). It fires again only once its score has
fallen below the threshold *and* its refractory period has passed: a sound stays in the head's
window for as long as the window spans (1-2 s), and its score stays high all that time, so a
period alone would fire a long sound twice; the re-arming rule makes one utterance (or one
continuous sound) one detection, and the period keeps a flickering score from firing bursts.

Which class: the first crossing opens a short decision period (``decision_s``, 0.15 s by
default: two outputs of the speech base). A head sees sounds grow into its window, and the
start of one sound can look like another (the first half of an up-chirp is a beep; "com-" may
be half of another word), so the class is chosen at the end of that period: the candidate that
crossed during it and now stands furthest above its threshold. The others that crossed are held
off as part of the same sound. This costs ``decision_s`` of latency; 0 decides at once.

One sound, one detection: after a detection every *other* class is held off for
``hold_others_s`` (the trainer writes the head's window span, ~2 s for speech). The detected
sound stays in the head's window that long, and a window holding the tail of "computer" and
silence is not evidence of "alexa"; without the hold such windows fired a second class about a
second after the first. Two different sounds closer together than that give one detection.

A second opinion: a detector given ``confirm`` (the pipeline passes
:meth:`hark.verifier.Verifier.confirm` when the bundle has templates) asks it before firing,
candidates in order of margin, and fires the first it confirms. When it confirms none, nothing
fires; the candidates re-arm once their scores fall below threshold, as after a detection, so one
rejected sound is judged once, and the other classes are held off as after a detection: the tail
of a sound the verifier turned away as "computer" is no more evidence of "alexa" than the tail of
one it confirmed, and left free such a tail fires the next class a second or so later.

The manifest's ``detection`` section (:class:`hark.manifest.DetectionSpec`, validated there) gives
the defaults the trainer calibrated: ``thresholds``, ``smoothing`` (head outputs averaged) and
``refractory_s`` per class, ``decision_s`` and ``hold_others_s`` (seconds). Callers (the config)
may override thresholds, smoothing, refractory and decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hark.errors import HarkError
from hark.labels import BACKGROUND
from hark.manifest import (
    DEFAULT_DECISION_S,
    DEFAULT_HOLD_OTHERS_S,
    MAX_DECISION_S,
    MAX_REFRACTORY_S,
    MAX_SMOOTHING,
    DetectionSpec,
)


@dataclass(frozen=True)
class Detection:
    """One detection: the class, its smoothed score when it fired, and the stream time in seconds."""

    label: str
    score: float
    time_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 4), "time_s": round(self.time_s, 3)}

    def line(self) -> str:
        """The one way a detection is printed (``hark detect``, ``listen`` and ``run``):
        stream time as minutes:seconds, label, score; ``--json`` prints :meth:`as_dict`."""
        minutes, seconds = divmod(self.time_s, 60)
        return f"{int(minutes):02d}:{seconds:06.3f}  {self.label:<20} {self.score:.3f}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _per_class(value: Any, classes: Sequence[str], default: float, what: str, *, low: float,
               high: float | None = None) -> dict[str, float]:
    """``value`` (a number, or a mapping of class to number) as a full per-class dict, checked."""
    if value is None:
        out = dict.fromkeys(classes, float(default))
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - set(classes))
        if unknown:
            raise HarkError(f"{what}: unknown class {unknown[0]!r}; the model's classes are {', '.join(classes)}")
        bad = [c for c, v in value.items() if not _is_number(v)]
        if bad:
            raise HarkError(f"{what}: {bad[0]} = {value[bad[0]]!r} is not a number")
        out = {c: float(value.get(c, default)) for c in classes}
    elif _is_number(value):
        out = dict.fromkeys(classes, float(value))
    else:
        raise HarkError(f"{what}: expected a number or a mapping of class to number, not {value!r}")
    for c, v in out.items():
        if not np.isfinite(v) or v < low or (high is not None and v > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise HarkError(f"{what}: {c} = {v} is out of range (must be {bound})")
    return out


def _seconds(value: Any, what: str, *, high: float) -> float:
    """``value`` as seconds between 0 and ``high``, or one line naming ``what``."""
    if not _is_number(value) or not 0.0 <= value <= high:
        raise HarkError(f"{what}: {value!r} must be a number of seconds between 0 and {high:g}")
    return float(value)


@dataclass(frozen=True)
class DetectorSettings:
    """Per-class thresholds, smoothing (head outputs averaged) and refractory periods (s)."""

    thresholds: Mapping[str, float]
    smoothing: Mapping[str, int]
    refractory_s: Mapping[str, float]
    decision_s: float = DEFAULT_DECISION_S
    hold_others_s: float = DEFAULT_HOLD_OTHERS_S

    @classmethod
    def resolve(cls, classes: Sequence[str], manifest_detection: DetectionSpec | None = None, *,
                thresholds: Mapping[str, float] | float | None = None,
                smoothing: Mapping[str, int] | int | None = None,
                refractory_s: Mapping[str, float] | float | None = None,
                decision_s: float | None = None) -> DetectorSettings:
        """The manifest's values (its defaults without one), each overridden (per class or for all)
        by the caller's where given."""
        det = manifest_detection if manifest_detection is not None else DetectionSpec.defaults(classes)

        def over(base: Mapping[str, float], value: Any, what: str, **bounds: float) -> dict[str, float]:
            if value is None:
                return {c: float(base[c]) for c in classes}
            if isinstance(value, Mapping):
                given = _per_class(value, classes, 0.0, what, **bounds)
                return {c: given[c] if c in value else float(base[c]) for c in classes}
            return _per_class(value, classes, 0.0, what, **bounds)

        return cls(
            decision_s=det.decision_s if decision_s is None else _seconds(decision_s, "detection decision_s",
                                                                           high=MAX_DECISION_S),
            hold_others_s=det.hold_others_s,
            thresholds=over(det.thresholds, thresholds, "detection thresholds", low=0.0, high=1.0),
            smoothing={c: max(1, round(v)) for c, v in over(det.smoothing, smoothing, "detection smoothing",
                                                             low=1, high=MAX_SMOOTHING).items()},
            refractory_s=over(det.refractory_s, refractory_s, "detection refractory_s", low=0.0,
                              high=MAX_REFRACTORY_S),
        )


class Detector:
    """Turns successive score vectors (one per head output, in ``labels`` order) into detections."""

    def __init__(self, labels: Sequence[str], settings: DetectorSettings, *,
                 confirm: Callable[[str], bool] | None = None) -> None:
        self.labels = list(labels)
        self.settings = settings
        self.confirm = confirm
        self.classes = [label for label in self.labels if label != BACKGROUND]
        self._class_index = np.array([self.labels.index(c) for c in self.classes], dtype=np.int64)
        self._thresholds = np.array([settings.thresholds[c] for c in self.classes])
        self._refractory = np.array([settings.refractory_s[c] for c in self.classes])
        self._smoothing = np.array([settings.smoothing[c] for c in self.classes], dtype=np.int64)
        self._history = max(1, int(self._smoothing.max(initial=1)))
        self.reset()

    def reset(self) -> None:
        """Forget past scores and refractory periods (a new stream)."""
        self._recent = np.zeros((self._history, len(self.labels)))
        self._filled = 0
        self._pos = 0
        self._quiet_until = np.full(len(self.classes), -np.inf)
        self._armed = np.ones(len(self.classes), dtype=bool)
        self._decide_at: float | None = None  # end of the open decision period
        self._candidates = np.zeros(len(self.classes), dtype=bool)
        self._peaks = np.zeros(len(self.classes))
        self._smooth = np.zeros(len(self.labels))

    @property
    def last_scores(self) -> dict[str, float]:
        """The smoothed score of every label at the latest update (what the live views show)."""
        return {label: float(v) for label, v in zip(self.labels, self._smooth)}

    @property
    def deciding(self) -> bool:
        """Whether a decision period is open: a class has crossed and the choice is not made yet."""
        return self._decide_at is not None

    def update(self, scores: np.ndarray, time_s: float) -> list[Detection]:
        """Take one head output (probabilities per label) stamped ``time_s``; the detections it completes."""
        self._recent[self._pos] = scores
        self._pos = (self._pos + 1) % self._history
        self._filled = min(self._filled + 1, self._history)
        if self._history == 1:  # no smoothing: the scores as they came (the trainer replays this a lot)
            smooth = self._recent[0].copy()
        else:
            # Average each class over its own last ``smoothing`` outputs (fewer at the very start).
            order = (self._pos - 1 - np.arange(self._history)) % self._history  # newest first
            cumulative = np.cumsum(self._recent[order[: self._filled]], axis=0)
            smooth = cumulative[self._filled - 1] / self._filled
            counts = np.minimum(self._smoothing, self._filled)
            smooth[self._class_index] = cumulative[counts - 1, self._class_index] / counts
        self._smooth = smooth
        class_scores = smooth[self._class_index]
        above = class_scores >= self._thresholds
        self._armed |= ~above
        eligible = above & self._armed & (time_s >= self._quiet_until)
        if self._decide_at is None:
            if not eligible.any():
                return []
            self._decide_at = time_s + self.settings.decision_s
            self._candidates[:] = False
            self._peaks[:] = 0.0
        self._candidates |= eligible
        self._peaks = np.maximum(self._peaks, np.where(self._candidates, class_scores, 0.0))
        if time_s < self._decide_at - 1e-9:
            return []
        # The candidate now furthest above its threshold: the latest window has heard the most of the sound.
        margin = np.where(self._candidates, class_scores / np.maximum(self._thresholds, 1e-9), -np.inf)
        self._decide_at = None
        self._armed[self._candidates] = False
        ranked = [int(i) for i in np.argsort(-margin, kind="stable") if self._candidates[i]]
        best = next((i for i in ranked if self.confirm is None or self.confirm(self.classes[i])), None)
        if best is not None:
            # Every candidate is held off, so a runner-up does not fire a moment later on the same sound.
            self._quiet_until[self._candidates] = time_s + self._refractory[self._candidates]
        # The sound, fired or turned away, holds off the classes it was not decided for.
        others = ~self._candidates if best is None else np.arange(len(self.classes)) != best
        self._quiet_until[others] = np.maximum(self._quiet_until[others], time_s + self.settings.hold_others_s)
        if best is None:
            return []
        return [Detection(label=self.classes[best], score=float(self._peaks[best]), time_s=float(time_s))]
