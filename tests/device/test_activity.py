"""The activity gate: judged against the room's own floor, and the pipeline runs exactly the windows it opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hark.activity import HOP, ActivityGate, GateSettings, active_hops, hold_samples, open_windows
from hark.detector import Detection
from hark.errors import HarkError
from hark.model import Model
from hark.pipeline import Pipeline
from tests.fixtures.synth import SR, beep, noise


@pytest.fixture(scope="module")
def model(tone_bundle: Path) -> Model:
    return Model.load(tone_bundle)


def room(seconds: float, *, level: float = 0.01, seed: int = 0) -> np.ndarray:
    """A steady room: white noise with a hum, at a constant level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (noise(rng, seconds, level) + level * np.sin(2 * np.pi * 120 * t)).astype(np.float32)


def with_beep(audio: np.ndarray, at_s: float, *, gain: float) -> np.ndarray:
    out = audio.copy()
    b = beep(np.random.default_rng(1)) * gain
    start = int(at_s * SR)
    out[start:start + len(b)] += b
    return out


def test_steady_room_is_inactive_after_warmup_and_a_sound_is_active_at_its_onset() -> None:
    settings = GateSettings()
    audio = with_beep(room(10.0), 6.0, gain=0.05)
    active = active_hops(audio, settings)
    warmup = settings.warmup_s * SR
    assert all(h < warmup + HOP or 6.0 * SR - HOP <= h < 6.5 * SR for h in active), active
    onset = int(6.0 * SR)
    # The beep fades in (a Hann envelope): its second hop at the latest.
    assert [h for h in active if h >= warmup][0] <= onset + HOP


def test_the_floor_follows_a_louder_room_within_seconds() -> None:
    audio = np.concatenate([room(5.0, level=0.005), room(15.0, level=0.05, seed=1)])  # the tap is turned on
    active = active_hops(audio, GateSettings()) / SR
    step = [t for t in active if t >= 5.0 - HOP / SR]
    assert step and step[0] < 5.1  # the change itself is heard
    assert max(step) < 5.0 + 10.0  # and the louder room is the floor again within seconds


def test_digital_silence_is_never_active_and_modes_do_what_they_say() -> None:
    silence = np.zeros(3 * SR, np.float32)
    for mode in ("activity", "silence"):
        assert len(active_hops(silence, GateSettings(mode=mode))) == 0
    steady = room(5.0)
    assert len(active_hops(steady, GateSettings(mode="silence"))) == -(-len(steady) // HOP)  # any sound at all
    assert len(active_hops(silence, GateSettings(mode="off"))) == -(-len(silence) // HOP)


def test_gate_settings_are_checked() -> None:
    with pytest.raises(HarkError, match="mode"):
        GateSettings(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(HarkError, match="margin_db"):
        GateSettings(margin_db=-3)
    with pytest.raises(HarkError, match="hold_s"):
        GateSettings(hold_s=0.0)
    with pytest.raises(HarkError, match="unknown setting"):
        GateSettings.of({"margin": 3})
    assert GateSettings.of(False).mode == "off" and GateSettings.of(None) == GateSettings()
    assert GateSettings.of({"margin_db": 12}).margin_db == 12


def test_hops_judged_in_any_chunking_agree() -> None:
    audio = with_beep(room(6.0), 3.0, gain=0.05)
    whole = active_hops(audio, GateSettings())
    gate = ActivityGate(GateSettings())
    for i in range(0, len(audio), 777):
        gate.push(audio[i:i + 777])
    assert list(gate.active) == list(whole[whole < gate.judged])


def record(pipeline: Pipeline) -> list[tuple[float, np.ndarray]]:
    seen: list[tuple[float, np.ndarray]] = []
    update = pipeline.detector.update

    def recording(scores: np.ndarray, time_s: float) -> list[Detection]:
        seen.append((time_s, np.array(scores)))
        return update(scores, time_s)

    pipeline.detector.update = recording  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("hold_s", [None, 0.5])
def test_pipeline_runs_exactly_the_windows_the_gate_opens_and_they_score_as_ungated(model: Model,
                                                                                    hold_s: float | None) -> None:
    audio = with_beep(with_beep(room(14.0), 5.0, gain=0.05), 10.0, gain=0.02)
    gated = Pipeline(model, gate={"hold_s": hold_s})
    ungated = Pipeline(model, gate=False)
    seen_gated, seen_ungated = record(gated), record(ungated)
    for i in range(0, len(audio), 1280):
        gated.process(audio[i:i + 1280])
        ungated.process(audio[i:i + 1280])
    gated.flush()
    ungated.flush()
    times = np.array([t for t, _ in seen_ungated])
    assert np.allclose(times, [t for t, _ in seen_gated])
    ends = np.round(times * SR).astype(int)
    expected = open_windows(active_hops(np.concatenate([audio, np.zeros(gated.padding, np.float32)]),
                                       gated.gate_settings), ends,
                            hold_samples=hold_samples(gated.gate_settings, gated.span))
    assert gated.head_runs == expected.sum() and gated.gated_windows == (~expected).sum()
    assert 0 < gated.head_runs < ungated.head_runs
    for (t, got), (_, want), run in zip(seen_gated, seen_ungated, expected):
        if run:
            assert got == pytest.approx(want, abs=1e-5), t
        else:
            assert got[0] == 1.0 and not got[1:].any()
    assert gated.frontend_features < ungated.frontend_features


def test_the_onset_is_scored_in_the_call_that_completes_it(model: Model) -> None:
    audio = with_beep(room(8.0), 6.0, gain=0.05)
    pipeline = Pipeline(model)
    first = [h for h in active_hops(audio, pipeline.gate_settings) if h >= 2 * SR][0]
    for i in range(0, first, 1280):
        pipeline.process(audio[i:i + 1280])
    before = pipeline.head_runs
    pipeline.process(audio[first:first + HOP])
    # The windows that hear the onset ran at once, and none whose audio is there is left for later.
    assert pipeline.head_runs > before
    assert pipeline.feature_end(pipeline._next_window) > pipeline.samples
