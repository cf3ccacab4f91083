"""``hark train`` end to end on generated data: bundle contents, report, classify and evaluate.

Training runs in a subprocess through the real command line (the ``trained_tone_bundle`` fixtures), so
TensorFlow stays out of the test process and the bundle is run on the small runtime (ai-edge-litert) as on the Pi.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark.basemodels import BASE_FILES
from hark.bundle import load_bundle
from hark.cli import main as hark
from hark.errors import BundleError
from hark.frontend import LogMelFrontend
from hark.trainer.train import PATIENCE, early_stopping
from tests.fixtures.synth import write_dataset


def test_manifest_describes_the_bundle(trained_tone_bundle: Path) -> None:
    bundle = load_bundle(trained_tone_bundle)
    m = bundle.manifest
    raw = json.loads((trained_tone_bundle / "manifest.json").read_text())
    assert (raw["format"], raw["format_version"], raw["sample_rate"]) == ("hark-model", 1, 16000)
    assert (m.format_version, m.sample_rate, m.base) == (1, 16000, "none")
    assert m.labels == ("background", "beep", "chirp")
    assert m.frontend == LogMelFrontend().spec()
    assert m.head.window == 100 and m.head.stride == 8 and m.head.file == "head.tflite"
    assert raw["head"]["input_shape"] == [100, 40]
    detection = m.detection
    assert set(detection.thresholds) == {"beep", "chirp"}
    assert all(0.0 < t < 1.0 for t in detection.thresholds.values())
    assert all(r > 0 for r in detection.refractory_s.values()) and all(s >= 1 for s in detection.smoothing.values())
    # Other classes wait while a detected sound is in the head's window: 1 s of mel frames here.
    assert detection.hold_others_s == pytest.approx(1.0, abs=0.05)
    assert m.base_hashes == {} and set(m.files) == {"head.tflite"}
    assert m.trainer_version and m.created
    assert m.metrics["validation_accuracy"] >= 0.9
    assert m.dataset["clips"] == {"beep": 10, "chirp": 10}
    from hark.trainer.train import WARMUP_EPOCHS

    assert m.metrics["epochs"] > WARMUP_EPOCHS  # early stopping never keeps a warm-up epoch


def test_report_is_written_beside_the_manifest_and_not_hashed(trained_tone_bundle: Path) -> None:
    report = trained_tone_bundle / "report.html"
    text = report.read_text()
    assert "report.html" not in json.loads((trained_tone_bundle / "manifest.json").read_text())["files"]
    assert "Validation" in text and "precision" in text and "confusion matrix" in text
    assert text.count("data:image/png;base64,") >= 4  # confusion, curves, spectrograms of 3 groups


def test_trained_model_labels_new_clips(trained_tone_bundle: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fresh = write_dataset(tmp_path / "new", per_class=8, seed=42)
    assert hark(["classify", "-m", str(trained_tone_bundle), str(fresh / "beep"), str(fresh / "chirp"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    correct = sum(Path(r["file"]).parent.name == r["label"] for r in rows)
    assert len(rows) == 16 and correct >= 15


def test_evaluate_reports_accuracy_table_and_confusion(trained_tone_bundle: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    fresh = write_dataset(tmp_path / "new", per_class=8, seed=7)
    assert hark(["evaluate", "-m", str(trained_tone_bundle), str(fresh), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] >= 0.9 and result["clips"] == 16 + 10  # 10 background pieces of 3 s
    assert len(result["confusion"]) == 3 and sum(map(sum, result["confusion"])) == 26
    assert hark(["evaluate", "-m", str(trained_tone_bundle), str(fresh)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("accuracy ") and "confusion" in out and "precision" in out


def test_speech_bundle_carries_its_base_files(trained_speech_tone_bundle: Path, tone_dataset: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bundle = load_bundle(trained_speech_tone_bundle)
    assert bundle.manifest.base == "speech"
    assert set(bundle.base_files) == {"melspectrogram.tflite", "embedding_model.tflite"}
    assert bundle.manifest.base_hashes == {n: BASE_FILES[n].sha256 for n in bundle.base_files}
    assert hark(["classify", "-m", str(trained_speech_tone_bundle), str(tone_dataset / "chirp"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(r["label"] == "chirp" for r in rows) >= 9


def test_speech_bundle_carries_verifier_templates_of_its_clips(trained_speech_tone_bundle: Path,
                                                               trained_tone_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(trained_speech_tone_bundle)
    section = bundle.manifest.verifier
    assert section is not None
    assert section.templates == {"beep": 10, "chirp": 10} and "verifier.npz" in bundle.manifest.files
    summary = bundle.manifest.metrics["verifier"]
    for label, limit in section.max_distance.items():
        # The limit is the worst leave-one-out match of the class's own (noised) clips, plus the margin.
        assert limit == pytest.approx(summary[label]["leave_one_out_max"] + 0.06, abs=1e-3)
        assert 0 < summary[label]["leave_one_out_median"] <= summary[label]["leave_one_out_max"] < limit
    assert load_bundle(trained_tone_bundle).manifest.verifier is None  # measured on speech only
    altered = tmp_path / "altered"
    shutil.copytree(trained_speech_tone_bundle, altered)
    (altered / "verifier.npz").write_bytes((altered / "verifier.npz").read_bytes()[:-10])
    with pytest.raises(BundleError, match="verifier.npz: sha256 does not match"):
        load_bundle(altered)


def test_bad_dataset_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", per_class=5)
    assert hark(["train", str(data), "-o", str(tmp_path / "model"), "--base", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hark: error:") and "'beep'" in err and "at least 8" in err
    assert not (tmp_path / "model").exists()


def _write_bank(folder: Path, count: int = 10) -> Path:
    """Other sounds for the negative bank: warbling tones in noise, 2 s each."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    t = np.arange(32000) / 16000
    for i in range(count):
        x = 0.1 * np.sin(2 * np.pi * (300 + 50 * i) * t) * (rng.random(32000) > 0.3) + 0.02 * rng.standard_normal(32000)
        sf.write(folder / f"other{i}.wav", x.astype(np.float32), 16000)
    return folder


def test_negative_bank_is_trained_on_and_thresholds_are_calibrated(tone_dataset: Path, tmp_path: Path) -> None:
    bank = _write_bank(tmp_path / "bank")
    env = {**os.environ, "HARK_NEGATIVES": str(bank), "HARK_FEATURE_CACHE": str(tmp_path / "features")}
    out = tmp_path / "model"
    result = subprocess.run([sys.executable, "-m", "hark", "train", str(tone_dataset), "-o", str(out), "--base",
                             "none", "--false-alarms-per-hour", "2"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    used = m["metrics"]["negative_bank"]
    assert used["clips"] == 10 and used["held_out_clips"] == 2 and used["train_windows"] > 0
    assert list((tmp_path / "features").glob("negatives-none-*.npz"))  # features cached for the next training
    detection = m["detection"]
    assert detection["false_alarms_per_hour_budget"] == 2.0 and detection["calibration_hours"] > 0
    assert set(detection["expected_recall"]) == set(detection["smoothing"]) == {"beep", "chirp"}
    assert all(0.3 <= t < 1.0 for t in detection["thresholds"].values())
    assert set(m["classify"]["thresholds"]) == {"beep", "chirp"}
    assert "expected recall" in result.stdout and ("(budget 2)" in result.stdout or "budget of 2" in result.stdout)
    assert "clip threshold" in result.stdout and "detection threshold" in result.stdout
    report = (out / "report.html").read_text()
    assert "recall versus false alarms per hour" in report and "held-out clips" in report


def test_no_negatives_skips_the_bank(trained_tone_bundle: Path) -> None:
    m = json.loads((trained_tone_bundle / "manifest.json").read_text())
    assert m["metrics"]["negative_bank"] is None
    assert m["detection"]["false_alarms_per_hour_budget"] == 1.0
    assert "recall versus false alarms per hour" in (trained_tone_bundle / "report.html").read_text()


def test_missing_negative_bank_is_one_line_saying_how_to_fix(tone_dataset: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HARK_NEGATIVES", str(tmp_path / "nowhere"))
    assert hark(["train", str(tone_dataset), "-o", str(tmp_path / "model"), "--base", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hark: error: negative bank:") and "nowhere" in err
    assert "HARK_NEGATIVES" in err and "--no-negatives" in err
    assert not (tmp_path / "model").exists()


def test_verifier_for_calibration_leaves_out_the_held_back_clips_templates():
    """Calibration judges held-back clips: their own templates would match them perfectly."""
    from hark.dataset import Clip
    from hark.trainer.templates import VerifierBuild
    from hark.verifier import VerifierSpec

    clips = [Clip(path=Path(f"{i}.wav"), label="up", samples=np.full(100, i, np.float32), rate=16000, channels=1,
                  digest=str(i), clipped=False, silent=False) for i in range(3)]
    templates = [np.full((4, 2), i, np.float32) for i in range(3)]
    spec = VerifierSpec(templates={"up": templates}, mean=np.zeros(2), scale=np.ones(2), max_distance={"up": 0.5},
                        region_s=2.0)
    built = VerifierBuild(spec=spec, summary={}, sources={"up": clips})
    kept = built.without([clips[1].samples])
    assert [int(t[0, 0]) for t in kept.templates["up"]] == [0, 2]
    assert kept.max_distance == spec.max_distance and len(built.spec.templates["up"]) == 3
    # Another array with the same values is another clip.
    assert len(built.without([np.full(100, 1, np.float32)]).templates["up"]) == 3


def _kept_epochs(losses: list[float], warmup: int) -> tuple[int, int]:
    """Epochs run and the epoch count whose weights are kept, early stopping fed ``losses``."""
    from hark.trainer import head as H

    stopper = early_stopping(warmup)
    model = H.keras.Sequential([H.keras.Input((2,)), H.layers.Dense(1)])
    model.stop_training = False  # as fit() sets it
    stopper.set_model(model)
    stopper.on_train_begin()
    run = 0
    for epoch, loss in enumerate(losses):
        run += 1
        stopper.on_epoch_end(epoch, {"val_loss": loss})
        if stopper.model.stop_training:
            break
    return run, stopper.best_epoch + 1


def test_early_stopping_ignores_the_validation_loss_of_the_warm_up_epochs():
    # Two held-back clips a class: the first epoch's loss can be the lowest by chance.
    losses = [0.26, 0.28, 0.27, 0.37, 0.30, 0.31, 0.45]
    assert _kept_epochs(losses, 0)[1] == 1
    assert _kept_epochs(losses, 3)[1] == 5
    assert _kept_epochs([0.5, 0.4, 0.3, 0.2, 0.1995], 3)[1] == 4  # not better by min_delta: the earlier


def test_early_stopping_waits_patience_epochs_for_a_lower_loss():
    losses = [0.5, 0.4] + [0.41] * (PATIENCE + 5)
    assert _kept_epochs(losses, 0) == (2 + PATIENCE, 2)


def test_int8_training_carries_the_embedding_it_trained_on(trained_speech_tone_int8_bundle: Path,
                                                           trained_speech_tone_bundle: Path, tone_dataset: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from hark.basemodels import sha256_of
    from hark.model import Model

    bundle = load_bundle(trained_speech_tone_int8_bundle)
    m = bundle.manifest
    assert m.base == "speech" and m.frontend.embedding == "int8"
    # The int8 file, made here, and not the float one: the device can only run what the head learnt on.
    assert set(bundle.base_files) == {"melspectrogram.tflite", "embedding_model_int8.tflite"}
    assert m.base_hashes == {n: BASE_FILES[n].sha256 for n in ("melspectrogram.tflite", "embedding_model.tflite")}
    made = m.metrics["embedding"]
    assert "<b>int8</b> speech embedding" in (trained_speech_tone_int8_bundle / "report.html").read_text()
    assert made["sha256"] == sha256_of(bundle.base_files["embedding_model_int8.tflite"])
    assert made["representative_windows"] > 100 and made["cosine_to_float_mean"] > 0.95
    # int8 weights: about a third of the float file's 1.3 MB.
    assert bundle.base_files["embedding_model_int8.tflite"].stat().st_size < 500_000
    model = Model.load(trained_speech_tone_int8_bundle)
    assert model.frontend.embedding == "int8"
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, 24000).astype(np.float32)
    float_features = Model.load(trained_speech_tone_bundle).frontend.transform(audio)
    assert not np.array_equal(model.frontend.transform(audio), float_features)
    assert hark(["classify", "-m", str(trained_speech_tone_int8_bundle), str(tone_dataset / "chirp"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(r["label"] == "chirp" for r in rows) >= 9


def test_int8_embedding_is_the_same_for_every_seed(trained_speech_tone_int8_bundle: Path, tone_dataset: Path,
                                                   tmp_path: Path) -> None:
    # Calibrated on the dataset with a fixed draw: retraining with another seed makes the very same file.
    out = tmp_path / "again"
    result = subprocess.run([sys.executable, "-m", "hark", "train", str(tone_dataset), "-o", str(out), "--base",
                             "speech", "--seed", "1", "--no-negatives", "--no-report", "--embedding", "int8"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    first = (trained_speech_tone_int8_bundle / "base" / "embedding_model_int8.tflite").read_bytes()
    assert (out / "base" / "embedding_model_int8.tflite").read_bytes() == first


def test_int8_embedding_with_a_base_without_one_is_one_line(tone_dataset: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    assert hark(["train", str(tone_dataset), "-o", str(out), "--base", "none", "--embedding", "int8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hark: error: --embedding int8: the none base has no speech")
    assert not out.exists()


def test_heads_are_averaged_into_one_head_file(tone_dataset: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bank = _write_bank(tmp_path / "bank")
    env = {**os.environ, "HARK_NEGATIVES": str(bank), "HARK_FEATURE_CACHE": str(tmp_path / "features")}
    out = tmp_path / "model"
    result = subprocess.run([sys.executable, "-m", "hark", "train", str(tone_dataset), "-o", str(out), "--base",
                             "none", "--heads", "2", "--no-report"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training head 2/2" in result.stderr and "final fit 2/2" in result.stderr
    bundle = load_bundle(out)
    assert bundle.manifest.metrics["heads"] == 2
    assert set(bundle.manifest.files) == {"head.tflite"}  # the members travel as one file
    fresh = write_dataset(tmp_path / "new", per_class=8, seed=42)
    assert hark(["classify", "-m", str(out), str(fresh / "beep"), str(fresh / "chirp"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 16 and sum(Path(r["file"]).parent.name == r["label"] for r in rows) >= 15


@pytest.mark.parametrize("heads", ["0", "9"])
def test_heads_out_of_range_is_one_line_before_any_work(heads: str, tone_dataset: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert hark(["train", str(tone_dataset), "-o", str(tmp_path / "model"), "--heads", heads]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hark: error: --heads: {heads} must be between 1 and 5"]
    assert not (tmp_path / "model").exists()
