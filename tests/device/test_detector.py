"""The detector on hand-made score sequences: smoothing, thresholds, refractory periods, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from hark.detector import Detection, Detector, DetectorSettings
from hark.errors import BundleError, HarkError
from hark.manifest import DetectionSpec

LABELS = ["background", "beep", "chirp"]
STEP = 0.08  # seconds between head outputs, as with the speech base


def settings(**kwargs: object) -> DetectorSettings:
    """The manifest's settings with these overrides; decisions at once unless ``decision_s`` is given."""
    kwargs.setdefault("decision_s", 0.0)
    manifest = {"thresholds": {"beep": 0.6, "chirp": 0.7}, "smoothing": 1, "refractory_s": 1.0}
    return DetectorSettings.resolve(LABELS[1:], DetectionSpec.from_json(manifest, LABELS[1:]), **kwargs)  # type: ignore[arg-type]


def run(detector: Detector, beep: list[float], chirp: list[float] | None = None) -> list[Detection]:
    chirp = chirp if chirp is not None else [0.0] * len(beep)
    out: list[Detection] = []
    for i, (b, c) in enumerate(zip(beep, chirp, strict=True)):
        out += detector.update(np.array([1.0 - b - c, b, c]), round((i + 1) * STEP, 3))
    return out


def test_fires_once_at_the_crossing_with_its_score_and_time() -> None:
    detector = Detector(LABELS, settings())
    found = run(detector, [0.1, 0.3, 0.65, 0.9, 0.95, 0.9, 0.4, 0.1])
    assert found == [Detection("beep", pytest.approx(0.65), 0.24)]


def test_below_threshold_never_fires() -> None:
    detector = Detector(LABELS, settings())
    assert run(detector, [0.59] * 50, [0.69] * 50) == []


def test_per_class_thresholds() -> None:
    # 0.65 passes beep's 0.6 but not chirp's 0.7.
    assert [d.label for d in run(Detector(LABELS, settings()), [0.65] * 3)] == ["beep"]
    assert run(Detector(LABELS, settings()), [0.0] * 3, [0.65] * 3) == []


def test_smoothing_ignores_a_single_spike_but_not_a_sustained_score() -> None:
    spike = [0.0, 0.0, 0.95, 0.0, 0.0]
    assert [d.label for d in run(Detector(LABELS, settings(smoothing=1)), spike)] == ["beep"]
    assert run(Detector(LABELS, settings(smoothing=3)), spike) == []
    sustained = [0.0, 0.9, 0.9, 0.9, 0.9, 0.0]
    found = run(Detector(LABELS, settings(smoothing=3)), sustained)
    # The mean of the last three first reaches 0.6 over (0.0, 0.9, 0.9), at the third output.
    assert [(d.label, d.time_s) for d in found] == [("beep", 0.24)]
    assert found[0].score == pytest.approx(0.6)


def test_one_long_sound_fires_once_even_past_the_refractory_period() -> None:
    detector = Detector(LABELS, settings(refractory_s=0.5))
    assert len(run(detector, [0.9] * 100)) == 1  # 8 s above threshold


def test_refractory_period_merges_close_bursts_and_keeps_separate_ones() -> None:
    burst, gap = [0.9] * 3, [0.0] * 5  # bursts 0.64 s apart (start to start)
    detector = Detector(LABELS, settings(refractory_s=1.0))
    assert len(run(detector, burst + gap + burst)) == 1
    detector = Detector(LABELS, settings(refractory_s=0.5))
    times = [d.time_s for d in run(detector, burst + gap + burst)]
    assert times == [0.08, 0.72]


def test_refractory_period_per_class() -> None:
    burst, gap = [0.9] * 3, [0.0] * 5
    detector = Detector(LABELS, settings(refractory_s={"beep": 0.3}))  # chirp keeps the manifest's 1.0
    assert len(run(detector, burst + gap + burst, [0.0] * 11)) == 2
    detector = Detector(LABELS, settings(refractory_s={"beep": 0.3}))
    assert len(run(detector, [0.0] * 11, burst + gap + burst)) == 1


def test_two_classes_crossing_together_give_one_detection_the_clearer_one() -> None:
    detector = Detector(LABELS, settings())
    found = run(detector, [0.0, 0.61, 0.61, 0.0], [0.0, 0.39, 0.39, 0.0])
    assert [d.label for d in found] == ["beep"]


def test_decision_period_picks_the_class_the_whole_sound_supports() -> None:
    # The onset of a chirp looks like a beep for two outputs, then the chirp takes over.
    beep = [0.0, 0.95, 0.9, 0.27, 0.0, 0.0, 0.0]
    chirp = [0.0, 0.02, 0.06, 0.73, 1.0, 1.0, 0.0]
    at_once = run(Detector(LABELS, settings()), beep, chirp)
    assert [d.label for d in at_once] == ["beep", "chirp"]
    decided = run(Detector(LABELS, settings(decision_s=0.15)), beep, chirp)
    assert [(d.label, d.time_s) for d in decided] == [("chirp", 0.32)]  # opened at 0.16, decided 2 outputs later
    assert decided[0].score == pytest.approx(0.73)


def test_decision_period_keeps_a_clear_sound_and_its_latency_is_bounded() -> None:
    found = run(Detector(LABELS, settings(decision_s=0.15)), [0.0, 0.9, 0.95, 0.9, 0.9, 0.0])
    assert [(d.label, d.time_s, d.score) for d in found] == [("beep", 0.32, pytest.approx(0.95))]


def test_last_scores_are_the_smoothed_ones() -> None:
    detector = Detector(LABELS, settings(smoothing=2))
    run(detector, [0.2, 0.6])
    assert detector.last_scores["beep"] == pytest.approx(0.4)
    assert set(detector.last_scores) == set(LABELS)


def test_reset_forgets_history_and_refractory() -> None:
    detector = Detector(LABELS, settings(refractory_s=100.0))
    assert len(run(detector, [0.9] * 3)) == 1
    detector.reset()
    assert len(run(detector, [0.9] * 3)) == 1


def test_manifest_defaults_and_caller_overrides() -> None:
    s = settings()
    assert s.thresholds == {"beep": 0.6, "chirp": 0.7}
    s = settings(thresholds={"chirp": 0.3}, smoothing=4, refractory_s=2.5)
    assert s.thresholds == {"beep": 0.6, "chirp": 0.3}
    assert s.smoothing == {"beep": 4, "chirp": 4}
    assert s.refractory_s == {"beep": 2.5, "chirp": 2.5}
    bare = DetectorSettings.resolve(["beep"], None)
    assert bare.thresholds == {"beep": 0.5} and bare.smoothing == {"beep": 1} and bare.decision_s == 0.15
    assert DetectorSettings.resolve(["beep"], DetectionSpec.from_json({"decision_s": 0.3}, ["beep"])).decision_s == 0.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": {"meow": 0.5}}, "unknown class 'meow'"),
        ({"thresholds": {"beep": 1.5}}, "beep = 1.5 is out of range"),
        ({"refractory_s": -1}, "out of range"),
        ({"smoothing": 0}, "out of range"),
        ({"thresholds": "high"}, "expected a number"),
        ({"decision_s": -0.1}, "decision_s"),
    ],
)
def test_bad_overrides_are_one_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(HarkError, match=message):
        settings(**kwargs)


def test_bad_manifest_values_name_the_manifest() -> None:
    with pytest.raises(BundleError, match=r"manifest.json: detection.thresholds.beep: expected a number"):
        DetectionSpec.from_json({"thresholds": {"beep": "x"}}, ["beep"])


def hold_settings(hold: float) -> DetectorSettings:
    manifest = {"thresholds": {"beep": 0.6, "chirp": 0.7}, "refractory_s": 0.5, "hold_others_s": hold}
    return DetectorSettings.resolve(LABELS[1:], DetectionSpec.from_json(manifest, LABELS[1:]), decision_s=0.0)


def test_other_classes_wait_while_the_detected_sound_is_in_the_window() -> None:
    # beep fires at 0.08 s; chirp crosses 1.2 s later, while the beep is still in a 2 s window.
    beep = [0.9] + [0.0] * 30
    chirp = [0.0] * 16 + [0.9] * 3 + [0.0] * 12
    assert [d.label for d in run(Detector(LABELS, hold_settings(0.0)), beep, chirp)] == ["beep", "chirp"]
    assert [d.label for d in run(Detector(LABELS, hold_settings(2.0)), beep, chirp)] == ["beep"]
    # Once the hold has passed, the other class fires again; the detected class itself only
    # waits for its own refractory period.
    late = [0.0] * 27 + [0.9] * 3 + [0.0]
    assert [(d.label, d.time_s) for d in run(Detector(LABELS, hold_settings(2.0)), beep, late)] == [
        ("beep", 0.08), ("chirp", 2.24)]
    again = [0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9]
    assert len(run(Detector(LABELS, hold_settings(2.0)), again)) == 2


def test_hold_others_out_of_range_is_named() -> None:
    with pytest.raises(HarkError, match="hold_others_s"):
        hold_settings(-1.0)


def test_a_rejected_candidate_fires_nothing_and_holds_the_other_classes_off() -> None:
    asked: list[str] = []

    def only_chirp(label: str) -> bool:
        asked.append(label)
        return label == "chirp"

    detector = Detector(LABELS, hold_settings(2.0), confirm=only_chirp)
    beep = [0.9, 0.9] + [0.0] * 4 + [0.9] + [0.0] * 30
    chirp = [0.0] * 3 + [0.9] + [0.0] * 26 + [0.9] + [0.0] * 3 + [0.9] + [0.0] * 2
    # Each beep is judged once (not at every output above threshold) and rejected. The chirp right
    # after the first is held off, as after a detection, and so is the one 2.4 s in (2 s after the
    # second beep); the chirp 2.8 s in is past both holds and fires.
    assert [(d.label, d.time_s) for d in run(detector, beep, chirp)] == [("chirp", 2.8)]
    assert asked == ["beep", "beep", "chirp"]
    # Without the verifier the first beep fires (the second is within its refractory period) and
    # holds the chirp off until 2.08 s.
    assert [(d.label, d.time_s) for d in run(Detector(LABELS, hold_settings(2.0)), beep, chirp)] == [
        ("beep", 0.08), ("chirp", 2.48)]


def test_the_best_confirmed_candidate_fires() -> None:
    both = settings(decision_s=0.08)
    # beep stands further above its threshold, but only chirp is confirmed.
    found = run(Detector(LABELS, both, confirm=lambda label: label == "chirp"), [0.0, 0.95, 0.95, 0.0],
                [0.0, 0.75, 0.75, 0.0])
    assert [d.label for d in found] == ["chirp"]
    found = run(Detector(LABELS, both), [0.0, 0.95, 0.95, 0.0], [0.0, 0.75, 0.75, 0.0])
    assert [d.label for d in found] == ["beep"]
