"""``device.dataset`` and ``hark dataset check``: planted problems are found, named and survived."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark.cli import main as hark
from hark.dataset import check_dataset, load_dataset
from hark.errors import HarkError
from tests.fixtures.synth import SR, clip, write_dataset


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data", per_class=8, seed=3)


def test_clean_dataset_passes(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hark(["dataset", "check", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "ok: 2 classes, 16 clips, 30.0 s of background" in out
    beep_row = next(line for line in out.splitlines() if line.startswith("beep "))
    assert beep_row.split()[:4] == ["beep", "8", "8.0", "s"]


def test_planted_problems_are_reported(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    beep = dataset / "beep"
    sf.write(beep / "silent.wav", np.zeros(SR, np.float32), SR)
    loud = np.clip(np.sin(np.arange(SR) * 2 * np.pi * 440 / SR) * 3, -1, 1).astype(np.float32)
    sf.write(beep / "clipped.wav", loud, SR)
    shutil.copy(beep / "beep_00.wav", beep / "copy_of_00.wav")
    stereo = np.stack([clip("beep", np.random.default_rng(9))] * 2, axis=1)
    stereo44 = np.repeat(stereo, 44100 // 16000 + 1, axis=0)[: int(len(stereo) * 44100 / 16000)]
    sf.write(beep / "stereo.wav", stereo44, 44100)
    (beep / "notes.txt").write_text("recorded in the kitchen")
    (beep / "corrupt.wav").write_bytes(b"RIFF0000WAVEfmt garbage")
    (beep / "empty.flac").write_bytes(b"")

    assert hark(["dataset", "check", str(dataset)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("beep ")).split()
    # clips, duration, "s", rates, clipped, silent, duplicates
    assert row[1] == "12" and row[4] == "16000,44100" and row[5:] == ["1", "1", "1"]
    for name in ("silent.wav", "clipped.wav", "copy_of_00.wav", "notes.txt", "corrupt.wav", "empty.flac"):
        assert name in out, name
    assert "stereo.wav" not in out  # accepted without complaint

    data = load_dataset(dataset, warn=lambda m: None)
    usable = {c.path.name for c in data.usable("beep")}
    assert "stereo.wav" in usable and "silent.wav" not in usable and "copy_of_00.wav" not in usable
    stereo_clip = next(c for c in data.classes["beep"] if c.path.name == "stereo.wav")
    assert stereo_clip.rate == 44100 and stereo_clip.channels == 2 and stereo_clip.samples.ndim == 1
    assert abs(stereo_clip.duration_s - 1.0) < 0.01


def test_bad_label_folder_is_one_line_naming_it(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (dataset / "Bad Name").mkdir()
    assert hark(["dataset", "check", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Bad Name" in err and err.startswith("hark: error:")


def test_too_few_clips_names_the_class(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for p in sorted((dataset / "chirp").glob("*.wav"))[:2]:
        p.unlink()
    assert hark(["dataset", "check", str(dataset)]) == 2
    captured = capsys.readouterr()
    assert "chirp" in captured.err and "6 usable clips" in captured.err and "8" in captured.err
    assert "beep" in captured.out  # the table is still printed
    with pytest.raises(HarkError, match="'chirp'"):
        check_dataset(dataset, warn=lambda m: None)


def test_short_background_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", per_class=8, background_s=5.0)
    assert hark(["dataset", "check", str(data)]) == 0
    assert "5.0 s of background noise, at least 20 s" in capsys.readouterr().out


def test_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hark(["dataset", "check", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_no_tensorflow_import() -> None:
    import subprocess
    import sys

    code = "import sys, device.dataset; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_damaged_and_overlong_files_are_reported(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.device.test_audiofile import long_wav, one_hz_wav

    one_hz_wav(dataset / "beep" / "one_hz.wav")
    long_wav(dataset / "_background_noise_" / "all_day.wav", 11 * 60)
    assert hark(["dataset", "check", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {dataset / 'beep' / 'one_hz.wav'}: sample rate 1 Hz is outside 4000..384000 Hz" in out
    assert f"warning: {dataset / '_background_noise_' / 'all_day.wav'}: 11.0 min of audio" in out
    beep_row = next(line for line in out.splitlines() if line.startswith("beep "))
    assert beep_row.split()[:2] == ["beep", "8"]  # neither file counted as usable
    assert "30.0 s of background" in out


def test_a_reviewed_capture_is_used_around_its_detection(dataset: Path) -> None:
    """A record beside a clip (``hark review`` writes it) narrows the clip to the part around the detection,
    where the sound that fired is; the file stays whole and the record is not taken for a bad file."""
    from hark.dataset import CAPTURE_SOUND_AFTER_S, CAPTURE_SOUND_BEFORE_S

    folder = dataset / "beep"
    audio = np.zeros(3 * SR, np.float32)
    audio[: SR // 5] = 0.9  # a louder sound before the one that fired
    audio[SR: SR + SR // 2] = 0.3 * np.sin(np.arange(SR // 2) * 0.3)
    sf.write(folder / "capture.wav", audio, SR)
    (folder / "capture.json").write_text('{"detection_offset_s": 1.8, "verdict": "right"}')
    warnings: list[str] = []
    loaded = load_dataset(dataset, warn=warnings.append)
    [kept] = [c for c in loaded.classes["beep"] if c.path.name == "capture.wav"]
    start = int(round((1.8 - CAPTURE_SOUND_BEFORE_S) * SR))
    assert len(kept.samples) == int(round((CAPTURE_SOUND_BEFORE_S + CAPTURE_SOUND_AFTER_S) * SR))
    np.testing.assert_allclose(kept.samples, audio[start: start + len(kept.samples)], atol=1e-4)
    assert kept.detection_s == pytest.approx(CAPTURE_SOUND_BEFORE_S)
    assert float(np.abs(kept.samples).max()) < 0.5  # the louder sound before it is not in the clip
    assert not [w for w in warnings if "capture" in w]
    assert sf.info(folder / "capture.wav").frames == 3 * SR


@pytest.mark.parametrize("record", ['{"detection_offset_s": 9.5}', '{"detection_offset_s": "1.0"}',
                                    '{"detection_offset_s": NaN}', "not json", '["detection_offset_s"]',
                                    '{"detection_offset_s": 1.0, "pad": "' + "x" * 70000 + '"}'])
def test_a_record_that_cannot_be_used_is_named_and_the_whole_clip_used(dataset: Path, record: str) -> None:
    folder = dataset / "beep"
    sf.write(folder / "capture.wav", np.full(3 * SR, 0.1, np.float32), SR)
    (folder / "capture.json").write_text(record)
    warnings: list[str] = []
    loaded = load_dataset(dataset, warn=warnings.append)
    [kept] = [c for c in loaded.classes["beep"] if c.path.name == "capture.wav"]
    assert len(kept.samples) == 3 * SR and kept.detection_s is None
    [said] = [w for w in warnings if "capture.json" in w]
    assert said.endswith("; the whole clip is used")


def test_a_json_file_without_a_clip_of_its_name_is_reported_as_not_audio(dataset: Path) -> None:
    (dataset / "beep" / "notes.json").write_text("{}")
    warnings: list[str] = []
    load_dataset(dataset, warn=warnings.append)
    assert any("notes.json: skipped, not an audio file" in w for w in warnings)
