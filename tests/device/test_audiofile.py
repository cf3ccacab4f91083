"""``hark.audiofile``: a file's header is checked against sane limits before anything is allocated for it."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark.audiofile import MAX_READ_SECONDS, audio_info, read_audio
from hark.errors import AudioError

ROOT = Path(__file__).resolve().parents[2]
MEMORY_CAP = 3 << 30  # what a damaged header may make a command try to allocate before it is refused


def one_hz_wav(path: Path) -> Path:
    """32 KB of samples whose header says 1 Hz: 4.4 hours of audio, 256 million samples at 16 kHz."""
    sf.write(path, np.zeros(16000, np.int16), 1, subtype="PCM_16")
    return path


def long_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        block = np.zeros(rate * 60, np.int16)
        for _ in range(int(seconds // 60)):
            f.write(block)
        f.write(block[: int(seconds % 60 * rate)])
    return path


def run_capped(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m hark ARGS`` with its address space capped, so a runaway allocation fails instead of the machine."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    return subprocess.run([sys.executable, "-m", "hark", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, preexec_fn=cap)


def test_header_rate_and_channels_refused_before_reading(tmp_path: Path) -> None:
    path = one_hz_wav(tmp_path / "one_hz.wav")
    with pytest.raises(AudioError, match=r"one_hz.wav: sample rate 1 Hz is outside 4000\.\.384000 Hz"):
        audio_info(path)
    many = tmp_path / "many.wav"
    sf.write(many, np.zeros((100, 40), np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"many.wav: 40 channels; hark reads 1 to 32"):
        read_audio(many)


def test_classify_refuses_a_one_hz_header_in_one_line(tone_bundle: Path, tmp_path: Path) -> None:
    path = one_hz_wav(tmp_path / "one_hz.wav")
    result = run_capped("classify", "-m", str(tone_bundle), str(path))
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("hark:")]
    assert lines == [f"hark: warning: {path}: sample rate 1 Hz is outside 4000..384000 Hz "
                     "(a damaged header, or not a recording hark can use); skipped"]


def test_long_file_refused_whole_or_read_in_part(tmp_path: Path) -> None:
    path = long_wav(tmp_path / "long.wav", MAX_READ_SECONDS + 60)
    with pytest.raises(AudioError, match=r"long.wav: 11.0 min of audio .* read whole up to 10.0 min"):
        read_audio(path)
    head = read_audio(path, first_seconds=2.5)
    assert len(head) == 40000
    short = long_wav(tmp_path / "short.wav", 61)
    assert len(read_audio(short)) == 61 * 16000
