"""Model bundles: a trained bundle loads; anything amiss is one BundleError line naming the file."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hark.bundle import check_output, load_bundle, write_bundle
from hark.cli import main as hark
from hark.errors import BundleError
from hark.model import Model
from tests.fixtures.synth import write_dataset

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ROOT / "tests" / "fixtures" / "bundles"


@pytest.fixture()
def bundle(tone_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the trained tone bundle, free to damage."""
    return Path(shutil.copytree(tone_bundle, tmp_path / "model"))


def _one_line(err: pytest.ExceptionInfo[BundleError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_trained_bundle_loads_and_runs(bundle: Path) -> None:
    model = Model.load(bundle)
    assert model.labels == ["background", "beep", "chirp"]
    probs = model.clip_scores(np.zeros(16000, np.float32))
    assert probs.shape[1] == 3 and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as err:
        load_bundle(tmp_path / "nothing")
    assert str(tmp_path / "nothing") in _one_line(err)


def test_missing_head(bundle: Path) -> None:
    (bundle / "head.tflite").unlink()
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert "head.tflite" in _one_line(err) and "missing" in str(err.value)


def test_truncated_head(bundle: Path) -> None:
    data = (bundle / "head.tflite").read_bytes()
    (bundle / "head.tflite").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert "head.tflite" in _one_line(err) and "sha256" in str(err.value)


def test_altered_head_same_size(bundle: Path) -> None:
    data = bytearray((bundle / "head.tflite").read_bytes())
    data[-10] ^= 0xFF
    (bundle / "head.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert "head.tflite" in _one_line(err)


def test_truncated_manifest(bundle: Path) -> None:
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert "manifest.json" in _one_line(err)


def test_wrong_format_version(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert "manifest.json" in _one_line(err) and "99" in str(err.value)


def test_cli_prints_one_error_line(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bundle / "head.tflite").write_bytes(b"junk")
    clip = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(clip, np.zeros(16000, np.float32), 16000)
    assert hark(["classify", "-m", str(bundle), str(clip)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hark: error: ") and "head.tflite" in err


def test_write_bundle_replaces_atomically(bundle: Path, tmp_path: Path) -> None:
    manifest = dataclasses.replace(load_bundle(bundle).manifest, files={})
    head = (bundle / "head.tflite").read_bytes()
    target = tmp_path / "again"
    for _ in range(2):  # the second write replaces the first
        write_bundle(target, manifest=manifest, head_tflite=head, base_files={})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".again")) == []
    assert load_bundle(target).labels == ["background", "beep", "chirp"]


# ---------------------------------------------------------------- where hark train may write


def train_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hark", "train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("output", "problem"), [
    ("clips", "is not empty and not a hark bundle (it holds a.wav, b.wav)"),
    ("ds", "may not go over the dataset"),
    ("ds/beep", "may not go into the dataset"),
    (".", "the current folder is it"),
    ("..", "the current folder is inside it"),
    ("notes.txt", "is not a folder"),
    ("oldbundle", "also holds my-notes.txt, which replacing it would delete"),
])
def test_train_refuses_an_output_it_would_destroy_before_any_work(tmp_path: Path, output: str,
                                                                   problem: str) -> None:
    work = tmp_path / "work"
    write_dataset(work / "ds", per_class=3, labels=("beep", "chirp"), seed=1)
    (work / "clips").mkdir()
    for name in ("a.wav", "b.wav"):
        (work / "clips" / name).write_bytes(b"RIFF user's clip")
    (work / "notes.txt").write_text("mine")
    shutil.copytree(BUNDLES / "tone", work / "oldbundle")
    (work / "oldbundle" / "my-notes.txt").write_text("mine too")
    before = snapshot(work)
    result = train_cli("ds", "-o", output, "--no-negatives", cwd=work)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"hark: error: -o {output}: "), result.stderr
    assert problem in result.stderr
    assert snapshot(work) == before, "nothing written, nothing deleted"


def test_outputs_a_bundle_may_go_to(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    assert check_output(tmp_path / "new", dataset=tmp_path / "ds") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", dataset=tmp_path / "ds") == tmp_path / "empty"
    shutil.copytree(BUNDLES / "tone", tmp_path / "old")
    (tmp_path / "old" / "report.html").write_text("<html>")
    assert check_output(tmp_path / "old", dataset=tmp_path / "ds") == tmp_path / "old"
    with pytest.raises(BundleError, match="holds the dataset"):
        check_output(tmp_path, dataset=tmp_path / "ds")
