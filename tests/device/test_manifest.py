"""hark.manifest: the bundle's manifest typed and validated; every bad value one line naming the key.

Each case below is a manifest a careless edit, a damaged card or a hostile download could hand
the device. Through ``hark detect`` (the command line, as a user meets it) each must be one
``hark: error: ...`` line naming manifest.json and the key, exit 2, before any audio is read.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from hark.basemodels import sha256_of
from hark.bundle import load_bundle
from hark.cli import main as hark
from hark.errors import BundleError
from hark.manifest import (
    DEFAULT_CLIP_PADDING_SAMPLES,
    DEFAULT_HOLD_OTHERS_S,
    MAX_MANIFEST_BYTES,
    DetectionSpec,
    parse_manifest,
    read_manifest,
)
from hark.model import Model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "model"


@pytest.fixture()
def bundle(tone_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tone_bundle, tmp_path / "model"))


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    return path


def edit(bundle: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    """Apply ``change`` to the bundle's manifest in place."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


def replace_head(bundle: Path, content: bytes) -> None:
    """Put ``content`` in head.tflite *with* a matching hash: only the file's content is wrong."""
    (bundle / "head.tflite").write_bytes(content)
    edit(bundle, lambda m: m["files"].__setitem__("head.tflite", sha256_of(bundle / "head.tflite")))


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert hark(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hark: error: "), captured.err
    assert argv[0] == "check" or captured.out == "", "nothing may be detected before the bundle is refused"
    return lines[0]


def refused(capsys: pytest.CaptureFixture[str], bundle: Path, clip: Path, *expected: str) -> str:
    line = one_error_line(capsys, ["detect", "-m", str(bundle), str(clip)])
    for part in expected:
        assert part in line, line
    return line


# ---------------------------------------------- one test per way a manifest's values have been found to break hark


def test_detection_of_the_wrong_type(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = edit(bundle, lambda m: m.__setitem__("detection", []))
    refused(capsys, bundle, clip, f"{path}: detection: expected an object, not []")


def test_a_missing_head_window(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = edit(bundle, lambda m: m["head"].pop("window"))
    refused(capsys, bundle, clip, f"{path}: head.window: missing")


def test_a_threshold_that_is_not_a_number(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = edit(bundle, lambda m: m["detection"]["thresholds"].__setitem__("beep", "high"))
    refused(capsys, bundle, clip, f"{path}: detection.thresholds.beep: expected a number, not \"high\"")


@pytest.mark.parametrize(("section", "key"), [("head", "stride"), ("frontend", "hop_samples")])
def test_a_stride_or_hop_of_zero(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str], section: str,
                                 key: str) -> None:
    path = edit(bundle, lambda m: m[section].__setitem__(key, 0))
    refused(capsys, bundle, clip, f"{path}: {section}.{key}: 0 is out of range")


def test_a_label_the_head_has_no_output_for(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = edit(bundle, lambda m: m["labels"].append("whistle"))
    refused(capsys, bundle, clip, f"{path}: labels: 4 labels, but head.tflite gives [3] scores")


def test_a_huge_clip_padding(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = edit(bundle, lambda m: m["head"].__setitem__("clip_padding_samples", 1e10))
    refused(capsys, bundle, clip, f"{path}: head.clip_padding_samples: 10000000000 is out of range")


def test_a_huge_feature_shape(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = edit(bundle, lambda m: m["frontend"].__setitem__("feature_shape", [1e7]))
    refused(capsys, bundle, clip, f"{path}: frontend.feature_shape[0]: 10000000 is out of range")


def test_thresholds_must_be_finite_and_within_0_to_1(bundle: Path, clip: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle / "manifest.json"
    path.write_text(path.read_text().replace('"beep": 0.99', '"beep": NaN', 1))
    refused(capsys, bundle, clip, f"{path}: detection.thresholds.beep: nan is out of range (must be from 0 to 1)")


def test_json_nested_200k_deep_is_one_line(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle / "manifest.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    refused(capsys, bundle, clip, f"{path}: JSON nested too deep")
    # Deep but valid-looking: a manifest whose metrics hide a deep structure.
    manifest = json.loads((DEMO / "manifest.json").read_text())
    deep: Any = 1
    for _ in range(50):
        deep = [deep]
    manifest["metrics"] = {"x": deep}
    with pytest.raises(BundleError, match="nested too deep"):
        parse_manifest(manifest, where=path)


def test_a_huge_manifest_is_refused_before_it_is_read(bundle: Path, clip: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle / "manifest.json"
    with path.open("r+b") as handle:  # 191 MB, sparse: reading it whole would take seconds and the memory
        handle.truncate(191 * 1024 * 1024)
    started = time.monotonic()
    refused(capsys, bundle, clip, f"{path}: 200278016 bytes, more than a manifest's limit of {MAX_MANIFEST_BYTES}")
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("content", [b"", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))],
                         ids=["empty", "random"])
def test_an_empty_or_random_head_with_a_matching_hash(bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str],
                                                      content: bytes) -> None:
    replace_head(bundle, content)
    refused(capsys, bundle, clip, f"{bundle / 'head.tflite'}: ")


def test_a_truncated_head_with_a_matching_hash_does_not_crash_the_process(bundle: Path, clip: Path) -> None:
    # The TFLite runtime segfaults on this file when it loads it; the probe takes the crash instead.
    replace_head(bundle, (bundle / "head.tflite").read_bytes()[:40_000])
    result = subprocess.run([sys.executable, "-m", "hark", "detect", "-m", str(bundle), str(clip)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("hark")]
    assert len(lines) == 1 and lines[0].startswith(f"hark: error: {bundle / 'head.tflite'}: "), result.stderr


def test_check_fails_where_run_would_fail_mid_stream(bundle: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # A manifest whose head window disagrees with the head file passed `hark check` and then
    # failed inside `hark run`; now both load the model through the same function.
    path = edit(bundle, lambda m: m["head"].update(window=50, input_shape=[50, 40]))
    config = tmp_path / "hark.yaml"
    config.write_text(f"model: {bundle}\nstate_dir: {tmp_path / 'state'}\ngpio:\n  mock: true\n")
    expected = f"{path}: head.input_shape: the manifest says [50, 40]"
    assert expected in one_error_line(capsys, ["check", "-c", str(config)])
    assert expected in one_error_line(capsys, ["run", "-c", str(config), "--input", str(tmp_path / "none.wav")])


# ----------------------------------------------------------------- further bounds and agreements


SPEECH_CHECK = {"method": "yamnet-speech", "file": "base/yamnet.tflite", "threshold": 0.1, "lookback_s": 2.0,
                "classes": ["beep"]}


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.__setitem__("labels", ["beep", "chirp", "background"]), "labels: the first label must be"),
    (lambda m: m.__setitem__("labels", ["background", "beep", "beep"]), "labels: a label is listed twice"),
    (lambda m: m.__setitem__("labels", ["background", "../x", "chirp"]), "labels[1]: \"../x\" is not a valid"),
    (lambda m: m["detection"]["thresholds"].__setitem__("meow", 0.5), "detection.thresholds.meow: not a class"),
    (lambda m: m["detection"]["thresholds"].__setitem__("beep", 1.5), "detection.thresholds.beep: 1.5 is out of"),
    (lambda m: m["detection"].__setitem__("smoothing", 0), "detection.smoothing: 0 is out of range"),
    (lambda m: m["detection"].__setitem__("hold_others_s", -1), "detection.hold_others_s: -1 is out of range"),
    (lambda m: m["detection"].__setitem__("decision_s", True), "detection.decision_s: expected a number"),
    (lambda m: m["head"].__setitem__("window", 8.5), "head.window: expected a whole number, not 8.5"),
    (lambda m: m["head"].__setitem__("input_shape", [100, 41]), "head.input_shape: [100, 41] disagrees"),
    (lambda m: m["head"].__setitem__("file", "other.tflite"), "head.file: 'other.tflite' is not listed"),
    (lambda m: m["frontend"].__setitem__("name", "magic"), "frontend.name: 'magic' is not one of"),
    (lambda m: m["frontend"].__setitem__("n_fft", 256), "frontend.receptive_samples: 400 is longer than n_fft"),
    (lambda m: m["frontend"].__setitem__("fmax", 10), "frontend.fmax: 10 must be above fmin"),
    (lambda m: m.__setitem__("sample_rate", 44100), "sample_rate: 44100 is out of range (must be 16000 to 16000)"),
    (lambda m: m["files"].__setitem__("../../etc/passwd", "0" * 64), "files.../../etc/passwd: points outside"),
    (lambda m: m["files"].__setitem__("head.tflite", "abc"), "files.head.tflite: expected a sha256"),
    (lambda m: m.__setitem__("format_version", 2), "format version 2, this hark reads version 1"),
    (lambda m: m.__setitem__("speech_check", {**SPEECH_CHECK, "method": "vad"}),
     "speech_check.method: unknown method 'vad'"),
    (lambda m: m.__setitem__("speech_check", {**SPEECH_CHECK, "file": "head.tflite"}),
     "speech_check.file: 'head.tflite': expected base/"),
    (lambda m: m.__setitem__("speech_check", {"method": "yamnet-speech", "file": "base/yamnet.tflite",
                                              "threshold": 0.1, "lookback_s": 2.0, "classes": ["beep"]}),
     "speech_check.file: 'base/yamnet.tflite': expected base/yamnet.tflite, listed in files"),
    (lambda m: (m["files"].__setitem__("base/yamnet.tflite", "0" * 64),
                m.__setitem__("speech_check", {"method": "yamnet-speech", "file": "base/yamnet.tflite",
                                               "threshold": 0.1, "lookback_s": 2.0, "classes": ["meow"]})),
     "speech_check.classes[0]: 'meow' is not a class of this model"),
    (lambda m: (m["files"].__setitem__("base/yamnet.tflite", "0" * 64),
                m.__setitem__("speech_check", {"method": "yamnet-speech", "file": "base/yamnet.tflite",
                                               "threshold": 2, "lookback_s": 2.0, "classes": ["beep"]})),
     "speech_check.threshold: 2 is out of range"),
    (lambda m: (m["files"].__setitem__("base/yamnet.tflite", "0" * 64),
                m.__setitem__("speech_check", {**SPEECH_CHECK, "familiar": [0.5] * 520})),
     "speech_check.familiar: expected a list of 521 scores"),
    (lambda m: (m["files"].__setitem__("base/yamnet.tflite", "0" * 64),
                m.__setitem__("speech_check", {**SPEECH_CHECK, "familiar": [0.5] * 3 + ["loud"] + [0.5] * 517})),
     "speech_check.familiar[3]: expected a number"),
    (lambda m: (m["files"].__setitem__("base/yamnet.tflite", "0" * 64),
                m.__setitem__("speech_check", {**SPEECH_CHECK, "familiar": [0.5] * 521, "margin": -0.1})),
     "speech_check.margin: -0.1 is out of range"),
])
def test_every_key_is_checked_and_named(bundle: Path, change: Callable[[dict[str, Any]], object],
                                        message: str) -> None:
    path = edit(bundle, change)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_the_frontend_must_be_the_one_the_manifest_describes(speech_tone_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(speech_tone_bundle, tmp_path / "speech"))
    path = edit(bundle, lambda m: m["frontend"].__setitem__("hop_samples", 160))
    with pytest.raises(BundleError, match=r"frontend.hop_samples: 160 disagrees with the speech frontend"):
        Model.load(bundle)
    assert str(path) in str(pytest.raises(BundleError, Model.load, bundle).value)


def test_verifier_section_is_checked(speech_tone_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(speech_tone_bundle, tmp_path / "speech"))
    original = json.loads((bundle / "manifest.json").read_text())
    cases = [
        ("verifier.npz", "verifier: expected an object"),
        ({**original["verifier"], "file": "elsewhere.npz"}, "verifier.file: 'elsewhere.npz' is not listed"),
        ({**original["verifier"], "method": "nearest"}, "verifier.method: unknown method 'nearest'"),
        ({**original["verifier"], "max_distance": {"beep": 3.0}}, "verifier.max_distance.beep: 3 is out of range"),
        ({**original["verifier"], "templates": {"whistle": 2}}, "verifier.templates.whistle: not a class"),
        ({**original["verifier"], "region_s": 0}, "verifier.region_s: 0 is out of range"),
        ({**original["verifier"], "ratio": 1.5}, "verifier.ratio: 1.5 is out of range"),
    ]
    for section, message in cases:
        path = edit(bundle, lambda m, s=section: m.__setitem__("verifier", s))
        with pytest.raises(BundleError) as err:
            Model.load(bundle)
        assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)


def test_a_verifier_without_a_ratio_keeps_the_nearest_class_rule(speech_tone_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(speech_tone_bundle, tmp_path / "speech"))
    edit(bundle, lambda m: m["verifier"].pop("ratio"))
    spec = Model.load(bundle).verifier_spec
    assert spec is not None and spec.ratio == 1.0


# ----------------------------------------------------------------- compatibility and round trip


def test_the_demo_bundle_of_format_1_loads_with_the_defaults_of_its_time() -> None:
    manifest = read_manifest(DEMO / "manifest.json")
    assert manifest.format_version == 1 and manifest.labels == ("background", "lights", "music")
    # Written before hold_others_s, decision_s and the classify section existed.
    assert manifest.detection.hold_others_s == DEFAULT_HOLD_OTHERS_S and manifest.classify is None
    assert manifest.detection.refractory_s == {"lights": 1.0, "music": 1.0}
    assert manifest.head.clip_padding_samples == DEFAULT_CLIP_PADDING_SAMPLES
    assert manifest.clip_thresholds() == {"lights": 0.63, "music": 0.58}


def test_to_json_round_trips(tone_bundle: Path) -> None:
    manifest = load_bundle(tone_bundle).manifest
    again = parse_manifest(json.loads(json.dumps(manifest.to_json())))
    assert again == manifest


def test_the_speech_checks_familiar_scores_round_trip(bundle: Path) -> None:
    familiar = [round(i / 1000, 3) for i in range(521)]
    edit(bundle, lambda m: (m["files"].__setitem__("base/yamnet.tflite", "0" * 64),
                            m.__setitem__("speech_check", {**SPEECH_CHECK, "familiar": familiar, "margin": 0.3})))
    manifest = read_manifest(bundle / "manifest.json")
    check = manifest.speech_check
    assert check is not None and check.familiar == tuple(familiar) and check.margin == 0.3
    assert parse_manifest(json.loads(json.dumps(manifest.to_json()))) == manifest
    # A check written without familiar scores turns away every detection without speech, as it always did.
    edit(bundle, lambda m: m.__setitem__("speech_check", SPEECH_CHECK))
    assert read_manifest(bundle / "manifest.json").speech_check.familiar is None  # type: ignore[union-attr]


def test_detection_section_defaults_when_absent(bundle: Path) -> None:
    edit(bundle, lambda m: m.pop("detection"))
    detection = load_bundle(bundle).manifest.detection
    assert detection == DetectionSpec.defaults(["beep", "chirp"])
    assert dataclasses.asdict(detection)["thresholds"] == {"beep": 0.5, "chirp": 0.5}


# ----------------------------------------------------------------- the speech embedding


def test_a_speech_bundle_without_the_embedding_key_is_float(speech_tone_bundle: Path) -> None:
    # Written before frontend.embedding existed: the pretrained float file, as then.
    assert "embedding" not in json.loads((speech_tone_bundle / "manifest.json").read_text())["frontend"]
    manifest = read_manifest(speech_tone_bundle / "manifest.json")
    assert manifest.frontend.embedding == "float" and manifest.frontend.embedding_file == "embedding_model.tflite"


def test_the_embedding_key_round_trips(speech_tone_int8_bundle: Path) -> None:
    manifest = read_manifest(speech_tone_int8_bundle / "manifest.json")
    assert manifest.frontend.embedding == "int8" and manifest.format_version == 1
    assert manifest.frontend.embedding_file == "embedding_model_int8.tflite"
    assert parse_manifest(manifest.to_json()) == manifest
    # The pinned hashes say what it was made from; the int8 file itself is listed in files.
    assert "embedding_model.tflite" in manifest.base_hashes and "base/embedding_model_int8.tflite" in manifest.files


@pytest.mark.parametrize(("which", "change", "message"), [
    ("int8", lambda m: m["frontend"].__setitem__("embedding", "int4"), "frontend.embedding: 'int4' is not one of"),
    ("int8", lambda m: m["frontend"].__setitem__("embedding", 8), "frontend.embedding: expected text"),
    ("int8", lambda m: m["files"].pop("base/embedding_model_int8.tflite"),
     "frontend.embedding: 'int8', but base/embedding_model_int8.tflite is not listed"),
    # A float manifest over a bundle that carries only the int8 file: the head would run on another embedding.
    ("int8", lambda m: m["frontend"].__setitem__("embedding", "float"),
     "frontend.embedding: 'float', but base/embedding_model.tflite is not listed"),
    ("float", lambda m: m["frontend"].__setitem__("embedding", "int8"),
     "frontend.embedding: 'int8', but base/embedding_model_int8.tflite is not listed"),
    ("tone", lambda m: m["frontend"].__setitem__("embedding", "int8"),
     "frontend.embedding: 'int8', but only the speech frontend has an embedding"),
])
def test_the_embedding_must_be_one_the_bundle_carries(which: str, change: Callable[[dict[str, Any]], object],
                                                      message: str, speech_tone_int8_bundle: Path,
                                                      speech_tone_bundle: Path, tone_bundle: Path,
                                                      tmp_path: Path) -> None:
    source = {"int8": speech_tone_int8_bundle, "float": speech_tone_bundle, "tone": tone_bundle}[which]
    bundle = Path(shutil.copytree(source, tmp_path / which))
    path = edit(bundle, change)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)
