"""Calibration picks, per class, the most sensitive setting that keeps false alarms within budget."""

import numpy as np

from trainer.calibrate import Segment, calibrate, replay

LABELS = ["background", "up"]
HOP = 0.08


def segment(peak: float, *, target: str | None, seconds: float = 4.0, at: float = 2.0) -> Segment:
    """Scores that are background everywhere except a bump of height ``peak`` ending at ``at``."""
    times = np.arange(1, int(seconds / HOP) + 1) * HOP
    up = np.where(np.abs(times - at) < 0.25, peak, 0.02)
    scores = np.stack([1 - up, up], axis=1)
    return Segment(scores=scores, times=times, target=target, event=(at - 0.6, at - 0.1) if target else None)


def test_replay_counts_hits_and_false_alarms():
    segs = [segment(0.9, target="up"), segment(0.7, target=None), segment(0.2, target="up")]
    found, targets, false = replay(segs, LABELS, label="up", threshold=0.5, smoothing=1, refractory_s=1.0)
    assert (found, targets, false) == (1, 2, 1)


def test_threshold_rises_above_the_loudest_negative():
    positives = [segment(p, target="up") for p in (0.95, 0.9, 0.85, 0.8, 0.6)]
    negatives = [segment(0.7, target=None), segment(0.5, target=None)] + [segment(0.05, target=None)] * 20
    cal = calibrate(positives + negatives, LABELS, budget_per_hour=0.5, negative_hours=1.0, smoothing_choices=(1,))
    assert 0.7 < cal.thresholds["up"] <= 0.8
    assert cal.expected_recall["up"] == 0.8
    assert cal.false_alarms_per_hour["up"] == 0.0
    # One false alarm an hour allowed: it goes lower and catches the quiet one too.
    loose = calibrate(positives + negatives, LABELS, budget_per_hour=1.0, negative_hours=1.0, smoothing_choices=(1,))
    assert loose.thresholds["up"] < 0.6
    assert loose.expected_recall["up"] == 1.0
    block = loose.manifest_block()
    assert block["thresholds"] == loose.thresholds and block["false_alarms_per_hour_budget"] == 1.0
