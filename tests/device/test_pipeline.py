"""The streaming pipeline and ``hark detect`` on generated audio with sounds at known times."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark.detect import detect_file
from hark.detector import Detection
from hark.model import Model
from hark.pipeline import Pipeline
from tests.fixtures.synth import SR, write_stream

EVENTS = [(1.5, "beep"), (4.0, "chirp"), (6.7, "beep"), (9.2, "chirp"), (12.0, "chirp"), (14.3, "beep")]
LENGTH = {"beep": 0.4, "chirp": 0.5}  # seconds, as tests/fixtures/synth.py makes them


@pytest.fixture(scope="module")
def model(tone_bundle: Path) -> Model:
    return Model.load(tone_bundle)


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stream(tmp_path_factory.mktemp("stream") / "stream.wav", EVENTS, seconds=17.0, seed=3)


def run_chunks(pipeline: Pipeline, audio: np.ndarray, chunk: int) -> list[Detection]:
    found: list[Detection] = []
    for i in range(0, len(audio), chunk):
        found += pipeline.process(audio[i:i + chunk])
    return found + pipeline.flush()


def assert_matches_events(found: list[Detection], events: list[tuple[float, str]]) -> None:
    """Each event detected exactly once, with its label, after the sound began and soon after it ended."""
    assert len(found) == len(events), found
    for d, (start, label) in zip(found, events, strict=True):
        end = start + LENGTH[label]
        assert d.label == label, (d, start)
        assert start < d.time_s <= end + 1.0, (d, start)


def test_sounds_at_known_times_are_detected_once_each_at_the_right_time(model: Model, stream: Path) -> None:
    found = detect_file(model, str(stream))
    assert_matches_events(found, EVENTS)
    assert all(d.score >= model.thresholds[d.label] for d in found)


def test_silence_and_noise_trigger_nothing(model: Model, tmp_path: Path) -> None:
    pipeline = Pipeline(model)
    assert run_chunks(pipeline, np.zeros(20 * SR, np.float32), 1280) == []
    # Digital silence: the energy gate kept the head (and the frontend) from running at all.
    assert pipeline.head_runs == 0 and pipeline.gated_windows > 200
    noise = sf.read(write_stream(tmp_path / "noise.wav", [], seconds=20.0, seed=5), dtype="float32")[0]
    pipeline = Pipeline(model, gate="silence")
    assert run_chunks(pipeline, noise, 1280) == []
    assert pipeline.head_runs > 200 and pipeline.gated_windows == 0  # noise is not silence: every window scored
    # The room's own steady noise: after the gate's warm-up nothing more runs.
    pipeline = Pipeline(model)
    assert run_chunks(pipeline, noise, 1280) == []
    assert pipeline.head_runs < 40 and pipeline.gated_windows > 200


@pytest.mark.parametrize("chunk", [1280, 7000, 160, 33333])
def test_chunk_size_changes_nothing(model: Model, stream: Path, chunk: int) -> None:
    audio = sf.read(stream, dtype="float32")[0]
    reference = run_chunks(Pipeline(model), audio, 1280)
    got = run_chunks(Pipeline(model), audio, chunk)
    assert [(d.label, d.time_s) for d in got] == [(d.label, d.time_s) for d in reference]
    assert [d.score for d in got] == pytest.approx([d.score for d in reference], abs=1e-5)


def test_one_sample_at_a_time_changes_nothing(model: Model, tmp_path: Path) -> None:
    short = sf.read(write_stream(tmp_path / "short.wav", [(1.0, "chirp")], seconds=3.0, seed=4), dtype="float32")[0]
    reference = run_chunks(Pipeline(model), short, 1280)
    assert [d.label for d in reference] == ["chirp"]
    got = run_chunks(Pipeline(model), short, 1)
    assert [(d.label, d.time_s) for d in got] == [(d.label, d.time_s) for d in reference]


def test_energy_gate_skips_digital_silence_without_changing_detections(model: Model, stream: Path) -> None:
    audio = sf.read(stream, dtype="float32")[0]
    gap = np.zeros(6 * SR, np.float32)
    # Silence before, between (cut right after a sound) and after the sounds.
    cut = int(5.0 * SR)
    gapped = np.concatenate([gap, audio[:cut], gap, audio[cut:], gap])
    events = [(t + 6.0 + (6.0 if t >= 5.0 else 0.0), label) for t, label in EVENTS]
    gated, ungated = Pipeline(model), Pipeline(model, gate=False)
    with_gate = run_chunks(gated, gapped, 1280)
    without = run_chunks(ungated, gapped, 1280)
    assert_matches_events(with_gate, events)
    assert [(d.label, d.time_s) for d in with_gate] == [(d.label, d.time_s) for d in without]
    assert [d.score for d in with_gate] == pytest.approx([d.score for d in without], abs=1e-5)
    assert gated.head_runs < ungated.head_runs - 3 * 5 * SR // (160 * model.stride)


def test_energy_gate_never_drops_a_quiet_sound(model: Model) -> None:
    rng = np.random.default_rng(0)
    from tests.fixtures.synth import beep

    audio = np.zeros(4 * SR, np.float32)
    audio[SR:SR + int(0.4 * SR)] = beep(rng) * 0.02  # -34 dBFS peak in digital silence: far above the gate
    assert [(d.label, d.time_s) for d in run_chunks(Pipeline(model), audio, 1280)] == \
        [(d.label, d.time_s) for d in run_chunks(Pipeline(model, gate=False), audio, 1280)]


def test_a_44k_stereo_file_gives_the_same_detections(model: Model, stream: Path, tmp_path: Path) -> None:
    from scipy.signal import resample_poly

    audio = sf.read(stream, dtype="float32")[0]
    hi = resample_poly(audio, 441, 160).astype(np.float32)
    path = tmp_path / "stereo44k.flac"
    sf.write(path, np.stack([hi, hi], axis=1), 44100)
    found = detect_file(model, str(path))
    assert_matches_events(found, EVENTS)
    reference = detect_file(model, str(stream))
    assert [d.label for d in found] == [d.label for d in reference]
    # The 44.1 kHz round trip changes the samples slightly, so a score may cross its threshold a
    # head run or two earlier or later (the none base runs its head every 80 ms); not more.
    assert np.allclose([d.time_s for d in found], [d.time_s for d in reference], atol=0.17)


def test_time_and_scores_are_exposed(model: Model) -> None:
    pipeline = Pipeline(model)
    pipeline.process(np.full(SR // 2, 0.01, np.float32))
    assert pipeline.time_s == 0.5
    assert set(pipeline.last_scores) == set(model.labels)


def test_overrides_reach_the_detector(model: Model, stream: Path) -> None:
    # A long refractory period: each class fires once, on its first sound.
    once = detect_file(model, str(stream), refractory_s=100.0)
    assert [d.label for d in once] == ["beep", "chirp"]
    strict = Pipeline(model, thresholds={"beep": 0.99}, refractory_s=3.0, smoothing=2)
    assert strict.settings.thresholds["beep"] == 0.99
    assert strict.settings.thresholds["chirp"] == model.thresholds["chirp"]
    assert strict.settings.refractory_s == {"beep": 3.0, "chirp": 3.0}


# --- the command ------------------------------------------------------------------------------------

def hark(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hark", *args], capture_output=True, text=True, timeout=120)


def test_hark_detect_json(tone_bundle: Path, model: Model, stream: Path) -> None:
    result = hark("detect", "-m", str(tone_bundle), str(stream), "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(line) == {"label", "score", "time_s"} for line in lines)
    found = [Detection(**line) for line in lines]
    assert_matches_events(found, EVENTS)
    direct = detect_file(model, str(stream))
    assert [(d.label, d.time_s) for d in found] == [(d.label, round(d.time_s, 3)) for d in direct]


def test_hark_detect_readable(tone_bundle: Path, stream: Path) -> None:
    result = hark("detect", "-m", str(tone_bundle), str(stream))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(EVENTS) + 1
    minutes, seconds = lines[0].split()[0].split(":")
    assert int(minutes) == 0 and 1.5 < float(seconds) < 2.9 and lines[0].split()[1] == "beep"
    assert lines[-1] == f"{len(EVENTS)} detection(s) in 17.0 s of audio"


def test_hark_detect_bad_inputs_are_one_line(tone_bundle: Path, stream: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    broken = tmp_path / "broken"
    shutil.copytree(tone_bundle, broken)
    head = broken / "head.tflite"
    head.write_bytes(head.read_bytes()[:100])
    old = tmp_path / "old"
    shutil.copytree(tone_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    cases = [
        (["-m", str(tone_bundle), str(junk)], "junk.wav: cannot decode audio"),
        (["-m", str(tone_bundle), str(tmp_path / "none.wav")], "none.wav: no such audio file"),
        (["-m", str(tmp_path / "nothing"), str(stream)], "model bundle not found"),
        (["-m", str(broken), str(stream)], "head.tflite: sha256 does not match"),
        (["-m", str(old), str(stream)], "format version 99"),
    ]
    for args, message in cases:
        result = hark("detect", *args)
        assert result.returncode == 2, (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("hark: error:")]
        assert len(errors) == 1 and message in errors[0], result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def speech_model(speech_tone_bundle: Path) -> Model:
    return Model.load(speech_tone_bundle)


def test_the_verifier_confirms_the_sounds_it_was_trained_on(speech_model: Model, stream: Path) -> None:
    pipeline = Pipeline(speech_model)
    assert pipeline.verifier is not None
    found = pipeline.run(iter([sf.read(stream, dtype="float32")[0]]))
    assert_matches_events(found, EVENTS)
    assert pipeline.verifier.last_distances[found[-1].label] <= speech_model.verifier_spec.max_distance[found[-1].label]


def test_what_the_verifier_rejects_does_not_fire(speech_model: Model, stream: Path) -> None:
    audio = sf.read(stream, dtype="float32")[0]
    strict = Pipeline(speech_model)
    assert strict.verifier is not None
    strict.verifier.spec = replace(strict.verifier.spec, max_distance=dict.fromkeys(LENGTH, 1e-6))
    assert strict.run(iter([audio])) == []
    assert strict.verifier.rejections == len(EVENTS)  # each sound judged once
    unverified = Pipeline(speech_model, verify=False)
    assert unverified.verifier is None
    assert_matches_events(unverified.run(iter([audio])), EVENTS)


def _hop_by_hop(pipeline: Pipeline, audio: np.ndarray) -> list[tuple[int, Detection]]:
    """Each detection with the number of the 80 ms chunk whose ``process`` call returned it."""
    out = [(i, d) for i in range(0, len(audio), 1280) for d in pipeline.process(audio[i:i + 1280])]
    return out + [(len(audio), d) for d in pipeline.flush()]


def test_speech_windows_run_in_batches_with_the_same_detections_no_later(speech_model: Model, stream: Path) -> None:
    audio = sf.read(stream, dtype="float32")[0]
    batched = Pipeline(speech_model, gate="off")
    assert speech_model.manifest.detection.decision_s == pytest.approx(0.15)
    assert batched.batch == 3  # a decision period of 0.15 s spans two more windows of 80 ms
    one_by_one = Pipeline(speech_model, gate="off", batch=1)
    found = _hop_by_hop(batched, audio)
    assert found == _hop_by_hop(one_by_one, audio)  # same detections, returned for the same chunk
    assert_matches_events([d for _, d in found], EVENTS)
    assert batched.head_runs == one_by_one.head_runs
    assert batched.frontend_features == one_by_one.frontend_features
    assert batched.frontend_runs < 0.4 * one_by_one.frontend_runs
    assert batched.verifier is not None and batched.verifier.rejections == one_by_one.verifier.rejections


def test_gated_speech_windows_in_batches_give_the_same_detections(speech_model: Model, stream: Path) -> None:
    audio = sf.read(stream, dtype="float32")[0]
    batched, one_by_one = Pipeline(speech_model), Pipeline(speech_model, batch=1)
    found = _hop_by_hop(batched, audio)
    assert found == _hop_by_hop(one_by_one, audio)
    assert batched.gated_windows == one_by_one.gated_windows > 0
    assert batched.frontend_runs < one_by_one.frontend_runs


@pytest.mark.parametrize(("decision_s", "batch"), [(0.0, 1), (0.05, 2), (0.08, 2), (0.15, 3), (0.5, 3)])
def test_windows_wait_for_a_batch_no_longer_than_the_decision_period(speech_model: Model, decision_s: float,
                                                                      batch: int) -> None:
    assert Pipeline(speech_model, decision_s=decision_s).batch == batch


def test_a_frontend_without_cheap_runs_of_several_features_runs_each_window_as_it_comes(model: Model) -> None:
    assert not model.new_frontend().runs_together and Pipeline(model).batch == 1
