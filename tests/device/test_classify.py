"""``hark classify``: labels, the JSON line format, paths as given, unreadable files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hark.cli import main as hark


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_json_lines_label_each_clip(tone_bundle: Path, tone_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hark(["classify", "-m", str(tone_bundle), str(tone_dataset / "beep"), str(tone_dataset / "chirp"),
                 "--json"]) == 0
    rows = _lines(capsys)
    assert len(rows) == 20
    for row in rows:
        assert set(row) == {"file", "label", "score", "scores"}
        assert set(row["scores"]) == {"background", "beep", "chirp"}
        assert row["score"] == row["scores"][row["label"]]
    correct = sum(Path(r["file"]).parent.name == r["label"] for r in rows)
    assert correct >= 18


def test_background_recording_is_background(tone_bundle: Path, tone_dataset: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert hark(["classify", "-m", str(tone_bundle), str(tone_dataset / "_background_noise_"), "--json"]) == 0
    (row,) = _lines(capsys)
    assert row["label"] == "background"


def test_path_is_reported_as_given_not_resolved(tone_bundle: Path, tone_dataset: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "clips").mkdir()
    shutil.copy(tone_dataset / "beep" / "beep_00.wav", tmp_path / "clips" / "a.wav")
    os.symlink(tmp_path / "clips" / "a.wav", tmp_path / "link.wav")
    monkeypatch.chdir(tmp_path)
    assert hark(["classify", "-m", str(tone_bundle), "clips", "link.wav", "--json"]) == 0
    files = [r["file"] for r in _lines(capsys)]
    assert files == [os.path.join("clips", "a.wav"), "link.wav"]


def test_unreadable_file_is_skipped_with_a_warning(tone_bundle: Path, tone_dataset: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(tone_dataset / "chirp" / "chirp_00.wav", tmp_path / "good.wav")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not really audio")
    assert hark(["classify", "-m", str(tone_bundle), str(tmp_path), "--json"]) == 1
    out = capsys.readouterr()
    assert [json.loads(x)["file"] for x in out.out.splitlines()] == [str(tmp_path / "good.wav")]
    assert "broken.wav" in out.err and "Traceback" not in out.err


def test_plain_output_and_missing_path(tone_bundle: Path, tone_dataset: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    clip = tone_dataset / "chirp" / "chirp_01.wav"
    assert hark(["classify", "-m", str(tone_bundle), str(clip)]) == 0
    assert capsys.readouterr().out.split("\t")[:2] == [str(clip), "chirp"]
    assert hark(["classify", "-m", str(tone_bundle), "no/such/file.wav"]) == 2
    assert "no/such/file.wav" in capsys.readouterr().err
