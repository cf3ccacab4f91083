"""``hark record``: label checks before anything is created, exact clips, atomic files, the meter, a real microphone."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark import clipfile
from hark.cli import main as hark
from hark.clipfile import to_pcm16
from hark.errors import HarkError
from hark.record import Meter, clip_folder, record_clips

SR = 16000


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, int(round(seconds * SR))).astype(np.float32)


def chunked(x: np.ndarray, seed: int = 1):
    """``x`` in irregular chunks, with the empty chunks a microphone source yields while it waits."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(x):
        n = int(rng.integers(1, 4000))
        yield x[i:i + n]
        yield x[:0]
        i += n


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def read_pcm(path: Path) -> np.ndarray:
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.format) == (SR, 1, "PCM_16", "WAV")
    return sf.read(path, dtype="int16")[0]


# -- command line: refused before anything is created ---------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["../x"], "LABEL: '../x' is not a valid label"),
    (["../../etc/cron.d/x"], "is not a valid label"),
    (["/tmp/evil"], "LABEL: '/tmp/evil' is not a valid label"),
    (["a/b"], "is not a valid label"),
    (["Dog"], "is not a valid label"),
    (["_background_noise_"], "is not a valid label"),
    (["background"], "'background' is reserved; use --background"),
    ([], "give a LABEL to record, or --background"),
    (["dog", "--background"], "give either a LABEL or --background, not both"),
    (["dog", "--seconds", "0"], "--seconds: 0.0 is out of range"),
    (["dog", "--seconds", "nan"], "--seconds: nan is not a number of seconds"),
    (["dog", "--seconds", "10000"], "--seconds: 10000.0 is out of range"),
    (["dog", "--count", "0"], "--count: 0 is out of range"),
])
def test_cli_refuses_bad_input_and_writes_nothing(tmp_path, capsys, argv, message):
    dataset = tmp_path / "ds"
    assert hark(["record", *argv, "-d", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hark: error: ") and message in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_cli_refuses_a_dataset_that_is_a_file(tmp_path, capsys):
    (tmp_path / "ds").write_text("x")
    assert hark(["record", "dog", "-d", str(tmp_path / "ds")]) == 2
    assert "cannot create the folder" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["ds"]


def test_clip_folder():
    assert clip_folder("ds", "dog", background=False) == Path("ds/dog")
    assert clip_folder("ds", None, background=True) == Path("ds/_background_noise_")
    with pytest.raises(HarkError, match="not a valid label"):
        clip_folder("ds", "..", background=False)


# -- the recording core, fed from a file-backed chunk source ---------------------------------------


def test_clips_are_exact_consecutive_slices_after_the_countdown(tmp_path):
    x = signal(10.0)
    out = io.StringIO()
    meter = Meter(what="'dog'", count=3, stream=io.StringIO(), out=out)
    paths = record_clips(chunked(x), folder=tmp_path / "ds" / "dog", seconds=1.0, count=3,
                         countdown_s=3.0, pause_s=1.0, meter=meter)
    assert len(paths) == 3 and len(set(paths)) == 3
    assert paths == sorted(paths)  # timestamps sort in recording order
    assert out.getvalue().splitlines() == [str(p) for p in paths]
    # 3 s countdown, clip, 1 s pause, clip, 1 s pause, clip: nothing trimmed, nothing skipped.
    for path, start in zip(paths, [3.0, 5.0, 7.0]):
        np.testing.assert_array_equal(read_pcm(path), to_pcm16(x[int(start * SR):int((start + 1) * SR)]))
    assert all_files(tmp_path) == sorted(f"ds/dog/{p.name}" for p in paths)  # no temporary files


def test_background_clip_goes_to_background_noise(tmp_path):
    folder = clip_folder(tmp_path / "ds", None, background=True)
    [path] = record_clips(chunked(signal(4.0)), folder=folder, seconds=2.5, countdown_s=0.5)
    assert path.parent == tmp_path / "ds" / "_background_noise_"
    assert len(read_pcm(path)) == int(2.5 * SR)


def test_source_ending_early_keeps_the_whole_clips_only(tmp_path):
    with pytest.raises(HarkError, match=r"the audio source ended after 0\.50 of 1\.00 s"):
        record_clips(chunked(signal(3.5)), folder=tmp_path, seconds=1.0, count=3, countdown_s=0.0, pause_s=1.0)
    files = all_files(tmp_path)
    assert len(files) == 2
    assert all(len(read_pcm(tmp_path / f)) == SR for f in files)


def test_write_failure_is_one_error_naming_the_folder_and_leaves_no_temporary(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(clipfile.os, "replace", full)
    folder = tmp_path / "ds" / "dog"
    with pytest.raises(HarkError, match=f"{folder}: cannot save the clip \\(No space left on device\\)"):
        record_clips(chunked(signal(2.0)), folder=folder, seconds=1.0, countdown_s=0.0)
    assert all_files(tmp_path) == []


def test_meter_on_a_pipe_writes_one_line_per_phase_and_warns_about_clipping_and_silence(tmp_path):
    stream, out = io.StringIO(), io.StringIO()
    loud = np.concatenate([np.zeros(SR, np.float32), np.full(SR, 1.0, np.float32), np.zeros(SR, np.float32)])
    paths = record_clips(chunked(loud), folder=tmp_path, seconds=1.0, count=2, countdown_s=1.0, pause_s=0.0,
                         meter=Meter(what="'dog'", count=2, stream=stream, out=out))
    assert stream.getvalue().splitlines() == [
        "'dog' 1/2: get ready",
        "'dog' 1/2: recording 1 s",
        f"warning: {paths[0].name} is clipped (too loud): move away or lower the input gain",
        "'dog' 2/2: recording 1 s",
        f"warning: {paths[1].name} is almost silent (-inf dBFS): check the microphone",
    ]


def test_meter_on_a_terminal_redraws_one_line_with_a_level_bar():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    meter = Meter(what="'dog'", count=1, stream=stream, out=io.StringIO())
    meter.countdown(0, 2.2, -30.0, 0.1)
    meter.recording(0, 0.5, 1.0, -6.0, 1.0)
    text = stream.getvalue()
    assert text.count("\r\033[K") == 2 and "\n" not in text
    assert "get ready… 3" in text
    assert "● REC  0.5/1.0 s  [" + "#" * 27 + "---]   -6.0 dBFS  CLIPPING" in text


# -- the real microphone path: a private PulseAudio server, sound played into its null sink ---------


def test_hark_record_from_a_microphone(pulse_server, tmp_path):
    """`hark record` through MicSource and PyAudio (ALSA's pulse device) while a tone plays in the room."""
    pytest.importorskip("pyaudio")
    t = np.arange(12 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "tone.wav", tone, SR, subtype="PCM_16")
    player = pulse_server.play(tmp_path / "tone.wav", wait=False)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hark", "record", "dog", "-d", str(tmp_path / "ds"), "--count", "2",
             "--seconds", "0.5", "--device", "pulse"],
            env=pulse_server.env(), capture_output=True, text=True, timeout=60,
        )
    finally:
        threading.Thread(target=player.wait, daemon=True).start()
        player.terminate()
    assert done.returncode == 0, done.stderr
    paths = [Path(line) for line in done.stdout.splitlines()]
    assert len(paths) == 2 and all(p.parent == tmp_path / "ds" / "dog" for p in paths)
    for path in paths:
        x = read_pcm(path).astype(np.float32) / 32768
        assert len(x) == SR // 2
        spectrum = np.abs(np.fft.rfft(x))
        assert abs(np.argmax(spectrum) * SR / len(x) - 440) <= 4, "the clip does not hold the tone played"
        assert 0.1 < np.std(x) < 0.4
    assert all_files(tmp_path / "ds") == sorted(f"dog/{p.name}" for p in paths)
