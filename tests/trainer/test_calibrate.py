"""Calibration picks, per class, the most sensitive setting that keeps false alarms within budget."""

from dataclasses import replace

import numpy as np

from hark.trainer.calibrate import (
    MIN_THRESHOLD,
    VERIFIED_MIN_THRESHOLD,
    Segment,
    around_activity,
    calibrate,
    choose,
    replay,
)

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
    spec = loose.detection_spec(refractory_s=1.0, hold_others_s=0.5)
    assert spec.thresholds == loose.thresholds and spec.false_alarms_per_hour_budget == 1.0
    assert spec.refractory_s == {"up": 1.0} and spec.hold_others_s == 0.5


def test_replay_of_one_class_ignores_another_class_saturated_at_one():
    """A softmax saturates at exactly 1.0: another class's sure detection is not this class's false alarm."""
    labels = ["background", "up", "down"]
    times = np.arange(1, 51) * HOP
    down = np.where(np.abs(times - 2.0) < 0.25, 1.0, 0.0)
    scores = np.stack([1 - down, np.zeros_like(down), down], axis=1).astype(np.float32)
    segs = [Segment(scores=scores, times=times, target="down", event=(1.4, 1.9))]
    assert replay(segs, labels, label="up", threshold=0.5, smoothing=1, refractory_s=1.0) == (0, 0, 0)
    assert replay(segs, labels, label="down", threshold=0.99, smoothing=1, refractory_s=1.0) == (1, 1, 0)


def test_a_second_opinion_in_the_loop_lets_the_threshold_drop_for_recall_but_not_below_its_floor():
    """What the device's verifier turns away is no false alarm: calibration may then go lower, down to
    VERIFIED_MIN_THRESHOLD, below which the head is not sure enough for the verifier to decide."""
    positives = [segment(p, target="up") for p in (0.95, 0.9, 0.85, 0.8, 0.75)]
    marker = np.zeros((1, 1))  # the features the verifier would judge, carried by the segment
    loud = replace(segment(0.88, target=None), features=marker)
    negatives = [loud] + [segment(0.05, target=None)] * 20
    asked: list[tuple[int, float, str]] = []

    def confirm(seg: Segment, time_s: float, label: str) -> bool:
        asked.append((id(seg), time_s, label))
        return seg.features is not marker

    found, targets, false = replay([loud, *positives], LABELS, label="up", threshold=0.5, smoothing=1,
                                   refractory_s=1.0, confirm=confirm)
    assert (found, targets, false) == (5, 5, 0)
    assert asked[0][0] == id(loud) and asked[0][2] == "up" and 1.75 <= asked[0][1] <= 2.4
    without = calibrate(positives + negatives, LABELS, budget_per_hour=0.5, negative_hours=1.0,
                        smoothing_choices=(1,))
    with_it = calibrate(positives + negatives, LABELS, budget_per_hour=0.5, negative_hours=1.0,
                        smoothing_choices=(1,), confirm=confirm)
    assert without.expected_recall["up"] == 0.4 and without.thresholds["up"] > 0.88
    assert with_it.expected_recall["up"] == 1.0 and VERIFIED_MIN_THRESHOLD <= with_it.thresholds["up"] <= 0.75
    # A positive the head scores 0.6 is not won back: that would take a threshold below the floor.
    quiet = [*positives[:4], segment(0.6, target="up")]
    floored = calibrate(quiet + negatives, LABELS, budget_per_hour=0.5, negative_hours=1.0, smoothing_choices=(1,),
                        confirm=confirm)
    assert floored.expected_recall["up"] == 0.8 and floored.thresholds["up"] >= VERIFIED_MIN_THRESHOLD


def test_calibration_replays_only_the_rows_near_scores_that_could_fire():
    quiet_then_bump = segment(0.9, target="up", seconds=20.0, at=15.0)
    trimmed = around_activity(quiet_then_bump, 1, floor=0.2, rows=4)
    assert len(trimmed.times) < len(quiet_then_bump.times) / 3
    assert trimmed.duration_s == quiet_then_bump.duration_s
    for threshold in (0.3, 0.6, 0.95):
        for smoothing in (1, 3):
            full = replay([quiet_then_bump, segment(0.5, target=None)] * 3, LABELS, label="up", threshold=threshold,
                          smoothing=smoothing, refractory_s=1.0)
            fast = replay([trimmed, around_activity(segment(0.5, target=None), 1, floor=0.2, rows=4)] * 3, LABELS,
                          label="up", threshold=threshold, smoothing=smoothing, refractory_s=1.0)
            assert fast == full


def test_a_segment_shorter_than_the_rows_kept_around_activity_is_kept_whole():
    short = segment(0.9, target="up", seconds=0.8, at=0.4)  # 10 rows, fewer than 2 * rows + 1
    trimmed = around_activity(short, 1, floor=0.85, rows=8)
    assert len(trimmed.times) == len(short.times)
    far = around_activity(segment(0.9, target="up", seconds=4.0, at=0.4), 1, floor=0.85, rows=8)
    assert far.times[-1] == 4.0 and len(far.times) < 50


def test_calibration_scores_what_the_device_gate_skips_as_background():
    import keras

    from hark.activity import HOP as GATE_HOP
    from hark.activity import active_hops
    from hark.frontend import LogMelFrontend
    from hark.trainer import features as F
    from hark.trainer.train import CALIBRATION_GATE, stream_scores

    rng = np.random.default_rng(0)
    sr = 16000
    audio = (rng.standard_normal(8 * sr) * 0.01).astype(np.float32)  # a steady room
    audio[5 * sr:5 * sr + 4000] += np.sin(np.arange(4000) * 0.4).astype(np.float32) * 0.3  # a sound at 5 s
    fe = LogMelFrontend()
    recipe = F.RECIPES["none"]
    features = fe.transform(audio)
    model = keras.Sequential([keras.Input((recipe.window, *fe.feature_shape)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    plain, times = stream_scores(model, recipe, fe, features)
    gated, gated_times = stream_scores(model, recipe, fe, features, active_hops(audio, CALIBRATION_GATE))
    assert np.array_equal(times, gated_times)
    skipped = (gated[:, 0] == 1.0) & (gated[:, 1] == 0.0)
    ends = np.round(times * sr)
    # After the gate's first second, the steady room is skipped; the windows hearing the sound are not.
    assert skipped[(ends > 2.2 * sr) & (ends < 4.9 * sr)].all()
    hearing = (ends > 5 * sr + GATE_HOP) & (ends < 5.5 * sr)
    assert hearing.any() and not skipped[hearing].any()
    assert np.allclose(gated[~skipped], plain[~skipped])


def test_the_pick_never_goes_below_the_floor():
    """False alarms need not fall as the threshold rises (the verifier is asked at the moment the
    threshold is crossed): where the fewest lie below the floor, the floor still holds."""
    curve = [(0.2, 1.0, 0.0), (0.5, 1.0, 3.0), (0.7, 1.0, 3.0), (0.8, 0.9, 2.0), (0.9, 0.8, 2.0)]
    assert choose(curve, budget_per_hour=1.0, lowest=0.7)[0] in (0.8, 0.9)
    assert choose(curve, budget_per_hour=1.0, lowest=0.1) == (0.2, 1.0, 0.0)
    assert choose(curve, budget_per_hour=5.0, lowest=0.7) == (0.7, 1.0, 3.0)


def test_a_class_the_head_never_scores_keeps_a_threshold_at_the_floor():
    """Positives that never reach the bottom of the grid: no recall anywhere, and the threshold stays
    at the floor rather than at the grid's bottom."""
    positives = [segment(0.1, target="up") for _ in range(5)]
    negatives = [segment(0.05, target=None)] * 5
    cal = calibrate(positives + negatives, LABELS, budget_per_hour=1.0, negative_hours=1.0, smoothing_choices=(1,))
    assert cal.expected_recall["up"] == 0.0
    assert cal.thresholds["up"] >= MIN_THRESHOLD
