"""Model bundles: a trained bundle loads; anything amiss is one BundleError line naming the file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# ----------------------------------------------------------------- a bundle that carries an int8 embedding


@pytest.fixture()
def int8_bundle(speech_tone_int8_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the ``--embedding int8`` fixture bundle, free to damage."""
    return Path(shutil.copytree(speech_tone_int8_bundle, tmp_path / "int8"))


def _replace_base(bundle: Path, name: str, content: bytes) -> None:
    """Put ``content`` in base/NAME *with* a matching hash: only the file's content is wrong."""
    (bundle / "base" / name).write_bytes(content)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][f"base/{name}"] = hashlib.sha256(content).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_an_int8_bundle_runs_the_embedding_it_carries(int8_bundle: Path, speech_tone_bundle: Path,
                                                      tone_dataset: Path) -> None:
    from hark.audiofile import find_audio, read_audio
    from hark.frontend import SpeechFrontend

    model = Model.load(int8_bundle)
    assert model.frontend.embedding == "int8"
    assert model.frontend.embedding_model == (int8_bundle / "base" / "embedding_model_int8.tflite").resolve()
    assert not (int8_bundle / "base" / "embedding_model.tflite").exists()
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 32000).astype(np.float32)
    alone = SpeechFrontend(mel_model=int8_bundle / "base" / "melspectrogram.tflite",
                           embedding_model=int8_bundle / "base" / "embedding_model_int8.tflite", embedding="int8")
    np.testing.assert_array_equal(model.frontend.transform(audio), alone.transform(audio))
    # Not the float embedding's features: the bundle's own file is what runs.
    assert not np.allclose(model.frontend.transform(audio), Model.load(speech_tone_bundle).frontend.transform(audio))
    # The head was trained on this embedding's features: the dataset's clips come out as they were labelled.
    clips = [p for p in find_audio([tone_dataset]) if p.parent.name in ("beep", "chirp")]
    assert [model.classify(read_audio(p)).label for p in clips] == [p.parent.name for p in clips]


def _silence(folder: Path) -> Path:
    import soundfile as sf

    clip = folder / "silence.wav"
    sf.write(clip, np.zeros(16000, np.float32), 16000)
    return clip


def test_an_int8_bundle_without_its_embedding_is_one_line(int8_bundle: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (int8_bundle / "base" / "embedding_model_int8.tflite").unlink()
    assert hark(["classify", "-m", str(int8_bundle), str(_silence(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hark: error: ") and "embedding_model_int8.tflite" in err
    assert "missing from the bundle" in err


def test_an_altered_int8_embedding_is_refused(int8_bundle: Path) -> None:
    path = int8_bundle / "base" / "embedding_model_int8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        load_bundle(int8_bundle)
    assert "embedding_model_int8.tflite: sha256 does not match" in _one_line(err)


@pytest.mark.parametrize(("content", "message"), [
    (lambda data, head: data[: len(data) // 2], "a damaged TFLite model"),
    (lambda data, head: b"TFL3" + data[8:200], "TFLite model"),
    (lambda data, head: head, "not a speech embedding"),
])
def test_a_damaged_or_foreign_int8_embedding_is_one_line(int8_bundle: Path, content: Any, message: str,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Hashes that match: only the file is wrong, as a trainer or a hand edit could leave it.
    data = (int8_bundle / "base" / "embedding_model_int8.tflite").read_bytes()
    _replace_base(int8_bundle, "embedding_model_int8.tflite", content(data, (int8_bundle / "head.tflite").read_bytes()))
    with pytest.raises(BundleError) as err:
        Model.load(int8_bundle)
    assert "embedding_model_int8.tflite" in _one_line(err) and message in str(err.value)
    assert hark(["classify", "-m", str(int8_bundle), str(_silence(tmp_path))]) == 2
    printed = capsys.readouterr().err
    assert printed.count("\n") == 1 and printed.startswith("hark: error: ")


def test_each_user_of_a_model_gets_a_frontend_of_its_own(speech_tone_bundle: Path) -> None:
    """The frontend built to check the bundle is handed out once, never shared: a speech frontend keeps
    state between pushes, and the daemon's pipeline and the page's spectrogram run on different threads."""
    model = Model.load(speech_tone_bundle)
    pipelines = model.new_frontend(), model.new_frontend()
    assert pipelines[0] is not pipelines[1]
    assert model.frontend is model.frontend
    assert all(model.frontend is not f for f in pipelines)
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, 24000).astype(np.float32)
    np.testing.assert_array_equal(pipelines[0].transform(audio), model.frontend.transform(audio))
    np.testing.assert_array_equal(pipelines[1].transform(audio), model.frontend.transform(audio))
