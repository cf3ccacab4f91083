"""Thresholds calibrated to a false-alarm budget, on the real streaming detector.

What a user can live with is stated in false alarms per hour, not in a probability: "at most one
false trigger an hour" (openWakeWord's ``target_false_positives_per_hour``, Edge Impulse's
performance calibration). The trainer scores a validation stream — held-back positives mixed
into background, negatives (the bank, ``_unknown_``), background — with the head, then replays
those scores through :class:`hark.detector.Detector`, the same code the Pi runs, for each
candidate smoothing and threshold. Per class it keeps the setting with the highest recall whose
false alarms per hour stay within the budget.

The stream is a list of :class:`Segment`: each the head's scores over one recording (a clip
padded as on the device, or a piece of background), with the target it holds, if any. The
detector runs over the segments one after another as one stream, so refractory periods and
smoothing behave as they do live. A detection is right when its label is the segment's target
and it fires between 0.25 s before the target starts and 1.5 s after it ends (the scoring rule
hark's streaming benchmark uses); any other detection is a false alarm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from hark.detector import Detector, DetectorSettings
from hark.labels import BACKGROUND
from hark.manifest import DetectionSpec

EARLY_S = 0.25
LATE_S = 1.5
THRESHOLD_GRID = np.round(np.concatenate([np.arange(0.2, 0.9, 0.02), np.arange(0.9, 0.995, 0.005)]), 4)
MIN_THRESHOLD = 0.3
# With the verifier in the loop, calibration wins back the held-back clips the verifier rejects by
# lowering the head's threshold, and so trades one safeguard for the other: thresholds near the
# bottom of the grid let other speech through at head scores around 0.5. Below this floor the head
# is not sure enough for the verifier to have the last word.
VERIFIED_MIN_THRESHOLD = 0.7
QUIET_ROWS = 4  # kept around each score that could fire: the decision wait and re-arming need them

# The second opinion the device asks before firing (hark.verifier), for calibration: would
# ``label`` be confirmed at ``time_s`` (s from the segment's start) of ``segment``?
Confirm = Callable[["Segment", float, str], bool]


@dataclass(frozen=True)
class Segment:
    """Head scores ``[n, n_labels]`` over one recording, stamped ``times`` (s from its start)."""

    scores: np.ndarray
    times: np.ndarray
    target: str | None = None  # the class this recording holds, None for negatives and background
    event: tuple[float, float] | None = None  # where the target sound is, s from the segment's start
    features: np.ndarray | None = field(default=None, repr=False, compare=False)  # the base's, for a Confirm

    @property
    def duration_s(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0


@dataclass
class ClassCalibration:
    """The chosen setting of one class and its recall versus false-alarm curve."""

    threshold: float
    smoothing: int
    recall: float
    false_alarms_per_hour: float
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (threshold, recall, FA/h)


@dataclass
class Calibration:
    thresholds: dict[str, float]
    smoothing: dict[str, int]
    expected_recall: dict[str, float]
    false_alarms_per_hour: dict[str, float]
    budget_per_hour: float
    hours: float
    per_class: dict[str, ClassCalibration]

    def detection_spec(self, *, refractory_s: float, hold_others_s: float) -> DetectionSpec:
        """The manifest's ``detection`` section: these settings, with the detector's refractory
        period and hold of the other classes."""
        classes = list(self.thresholds)
        return DetectionSpec(
            thresholds=self.thresholds, smoothing=self.smoothing,
            refractory_s=dict.fromkeys(classes, refractory_s), hold_others_s=hold_others_s,
            false_alarms_per_hour_budget=self.budget_per_hour, expected_recall=self.expected_recall,
            expected_false_alarms_per_hour=self.false_alarms_per_hour, calibration_hours=round(self.hours, 3),
        )


def replay(segments: Sequence[Segment], labels: Sequence[str], *, label: str, threshold: float,
           smoothing: int, refractory_s: float, confirm: Confirm | None = None) -> tuple[int, int, int]:
    """Run the real detector for one class over the segments: (targets found, targets, false alarms).

    With ``confirm`` the detector asks it before firing, as the device asks its verifier.
    """
    settings = DetectorSettings.resolve(
        [c for c in labels if c != BACKGROUND], None,
        thresholds={c: (threshold if c == label else 1.0) for c in labels if c != BACKGROUND},
        smoothing=smoothing, refractory_s=refractory_s,
    )
    now: list[tuple[Segment, float]] = []  # where the replay is: what confirm is asked about
    asked = (lambda c: confirm(*now[-1], c)) if confirm is not None else None
    detector = Detector(labels, settings, confirm=asked)
    # Only this class may fire: a threshold of 1.0 does not hold the others back, since a
    # saturated softmax scores exactly 1.0, and their detections are not this class's false alarms.
    only = np.zeros(len(labels), np.float32)
    only[list(labels).index(label)] = 1.0
    found = targets = false = 0
    offset = 0.0
    for seg in segments:
        is_target = seg.target == label and seg.event is not None
        targets += is_target
        hit = False
        for scores, t in zip(seg.scores * only, seg.times):
            now[:] = [(seg, float(t))]
            for det in detector.update(scores, offset + float(t)):
                local = det.time_s - offset
                if is_target and not hit and seg.event[0] - EARLY_S <= local <= seg.event[1] + LATE_S:
                    hit = True
                else:
                    false += 1
        found += hit
        offset += seg.duration_s + 0.08
    return found, targets, false


def around_activity(segment: Segment, column: int, *, floor: float, rows: int) -> Segment:
    """The segment with only the rows near a score of ``column`` at or above ``floor`` (and its last row).

    Replaying a class at thresholds from ``floor`` up, the rows far from any such score only keep
    the detector armed, as the ``rows`` kept before each of them do too; dropping them gives the
    same detections and makes calibration many times faster.
    """
    hot = segment.scores[:, column] >= floor
    if hot.all():
        return segment
    # "full" and a centred slice: "same" returns the kernel's length when the segment is shorter.
    near = np.convolve(hot.astype(np.int32), np.ones(2 * rows + 1, np.int32))[rows:rows + len(hot)] > 0
    near[-1] = True  # the segment keeps its length
    return replace(segment, scores=segment.scores[near], times=segment.times[near])


def choose(curve: Sequence[tuple[float, float, float]], *, budget_per_hour: float,
           lowest: float) -> tuple[float, float, float]:
    """The (threshold, recall, false alarms per hour) point of ``curve`` to keep, never below ``lowest``.

    Highest recall within the budget, and among equals the middle of the admissible range, for a
    margin both ways. Where the budget is out of reach: the fewest false alarms, and among those the
    middle of the settings that keep nearly the best recall (not the lowest threshold that ties).
    False alarms need not fall as the threshold rises (the verifier is asked at the moment the
    threshold is crossed), so the fewest may lie below the floor: the floor still holds there.
    """
    admissible = [p for p in curve if p[0] >= lowest]
    if not admissible:
        raise ValueError(f"no threshold of the curve reaches the floor {lowest}")
    allowed = [p for p in admissible if p[2] <= budget_per_hour]
    if allowed:
        top = max(p[1] for p in allowed)
        tied = [p for p in allowed if p[1] >= top - 1e-9]
    else:
        fewest = min(p[2] for p in admissible)
        floor = [p for p in admissible if p[2] <= fewest + 1e-9]
        top = max(p[1] for p in floor)
        tied = [p for p in floor if p[1] >= top - 0.1]
    return tied[len(tied) // 2]


def calibrate(segments: Sequence[Segment], labels: Sequence[str], *, budget_per_hour: float,
              negative_hours: float | None = None, smoothing_choices: Sequence[int] = (1, 2, 3),
              refractory_s: float = 1.0, grid: np.ndarray = THRESHOLD_GRID,
              confirm: Confirm | None = None) -> Calibration:
    """Per class, the threshold and smoothing with the best recall within ``budget_per_hour``.

    ``negative_hours`` is the stream's length used for the rate (default: all segments). Thresholds
    start at ``MIN_THRESHOLD``, or with ``confirm`` at ``VERIFIED_MIN_THRESHOLD``. Where no
    setting meets the budget, the strictest one is kept and its expected rate says so.
    """
    hours = negative_hours if negative_hours is not None else sum(s.duration_s for s in segments) / 3600
    hours = max(hours, 1e-6)
    classes = [c for c in labels if c != BACKGROUND]
    per_class: dict[str, ClassCalibration] = {}
    for label in classes:
        best: ClassCalibration | None = None
        column = list(labels).index(label)
        active = [around_activity(seg, column, floor=float(grid.min()), rows=max(smoothing_choices) + QUIET_ROWS)
                  for seg in segments]
        lowest = MIN_THRESHOLD if confirm is None else VERIFIED_MIN_THRESHOLD
        for smoothing in smoothing_choices:
            curve: list[tuple[float, float, float]] = []
            for threshold in grid:
                found, targets, false = replay(active, labels, label=label, threshold=float(threshold),
                                               smoothing=smoothing, refractory_s=refractory_s, confirm=confirm)
                recall = found / targets if targets else 0.0
                curve.append((float(threshold), recall, false / hours))
                if false == 0 and recall == 0.0 and threshold >= lowest:
                    break  # higher thresholds only lose more
            pick = choose(curve, budget_per_hour=budget_per_hour, lowest=lowest)
            candidate = ClassCalibration(threshold=pick[0], smoothing=smoothing, recall=pick[1],
                                         false_alarms_per_hour=pick[2], curve=curve)
            within = candidate.false_alarms_per_hour <= budget_per_hour
            if best is None or (within, candidate.recall, -candidate.false_alarms_per_hour) > (
                best.false_alarms_per_hour <= budget_per_hour, best.recall, -best.false_alarms_per_hour
            ):
                best = candidate
        assert best is not None
        per_class[label] = best
    return Calibration(
        thresholds={c: per_class[c].threshold for c in classes},
        smoothing={c: per_class[c].smoothing for c in classes},
        expected_recall={c: round(per_class[c].recall, 4) for c in classes},
        false_alarms_per_hour={c: round(per_class[c].false_alarms_per_hour, 3) for c in classes},
        budget_per_hour=budget_per_hour,
        hours=hours,
        per_class=per_class,
    )
