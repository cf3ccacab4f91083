"""Audio sources: files at any rate and channel count become 16 kHz mono chunks; the microphone through PyAudio."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from hark.audio import FileSource, MicSource, StreamResampler, devices_main, find_input_device, kaiser_lowpass
from hark.audiofile import read_audio
from hark.errors import AudioError, HarkError

ROOT = Path(__file__).resolve().parents[2]


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(x: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def test_filter_is_scipys_resample_poly_filter() -> None:
    from scipy.signal import firwin

    for numtaps, cutoff in [(61, 1 / 3), (8821, 1 / 441)]:
        assert np.allclose(kaiser_lowpass(numtaps, cutoff), firwin(numtaps, cutoff, window=("kaiser", 5.0)))


@pytest.mark.parametrize("rate", [8000, 22050, 32000, 44100, 48000])
@pytest.mark.parametrize("block", [1, 333, 4096, 10**6])
def test_stream_resampler_in_blocks_equals_resampling_whole(rate: int, block: int) -> None:
    x = np.random.default_rng(rate).standard_normal(rate // 2 + 17 if block > 1 else rate // 20)
    ratio = Fraction(16000, rate)
    expected = resample_poly(x, ratio.numerator, ratio.denominator)
    resampler = StreamResampler(rate)
    got = np.concatenate([resampler.process(x[i:i + block]) for i in range(0, len(x), block)] + [resampler.flush()])
    assert len(got) == len(expected)
    assert np.max(np.abs(got - expected)) < 1e-5


def test_stream_resampler_passes_16k_through() -> None:
    x = np.arange(10, dtype=np.float32)
    resampler = StreamResampler(16000)
    assert np.array_equal(resampler.process(x), x) and len(resampler.flush()) == 0


@pytest.fixture
def stereo_44k(tmp_path: Path) -> Path:
    left, right = tone(440, 2.5, 44100), tone(3000, 2.5, 44100, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    return path


def test_file_source_gives_16k_mono_of_the_right_length(stereo_44k: Path) -> None:
    with FileSource(stereo_44k) as source:
        assert (source.rate, source.channels) == (44100, 2)
        chunks = list(source)
    audio = np.concatenate(chunks)
    frames = sf.info(str(stereo_44k)).frames
    assert len(audio) == -(-frames * 160 // 441)  # ceil(frames * 16000 / 44100)
    assert audio.dtype == np.float32
    # The same samples as the batch reader the trainer uses, and both channels are in the mix.
    assert np.max(np.abs(audio - read_audio(stereo_44k))) < 1e-5
    spectrum = np.abs(np.fft.rfft(audio))
    assert spectrum[int(440 * len(audio) / 16000)] > 10 * np.median(spectrum)
    assert spectrum[int(3000 * len(audio) / 16000)] > 10 * np.median(spectrum)


@pytest.mark.parametrize("chunk", [1280, 1000, 7])
def test_file_source_chunking(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(500, 0.7, 16000), 16000)
    chunks = list(FileSource(path, chunk_samples=chunk))
    assert all(len(c) == chunk for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= chunk
    assert np.allclose(np.concatenate(chunks), sf.read(path, dtype="float32")[0])


def test_file_source_reads_long_files_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, tone(500, 20.0, 48000), 48000)
    source = FileSource(path)
    biggest = max(len(c) for c in source)
    assert biggest == 1280 and source.samples_out == 20 * 16000


def test_file_source_realtime_pacing(tmp_path: Path) -> None:
    path = tmp_path / "one_second.wav"
    sf.write(path, tone(500, 1.0, 16000), 16000)
    start = time.monotonic()
    fast = list(FileSource(path))
    fast_s = time.monotonic() - start
    start = time.monotonic()
    paced = list(FileSource(path, realtime=True))
    paced_s = time.monotonic() - start
    assert len(np.concatenate(paced)) == len(np.concatenate(fast))
    assert fast_s < 0.5
    assert 0.9 < paced_s < 1.4


def test_file_source_bad_files(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such audio file"):
        FileSource(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(AudioError, match=r"junk\.wav: cannot decode audio"):
        FileSource(tmp_path / "junk.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="holds no audio"):
        list(FileSource(tmp_path / "empty.wav"))
    with pytest.raises(HarkError, match="chunk_samples"):
        FileSource(tmp_path / "empty.wav", chunk_samples=0)


# --- the microphone, through a private PulseAudio server and ALSA's pulse device --------------------

def test_missing_device_error_lists_the_devices(pulse_server: object) -> None:
    with pytest.raises(AudioError) as err:
        find_input_device("no such microphone")
    assert "no audio input device matches 'no such microphone'" in str(err.value)
    assert "pulse" in str(err.value)
    with pytest.raises(AudioError, match="999 is not an input device"):
        find_input_device(999)
    assert find_input_device("PULSE") == find_input_device("pulse")
    assert find_input_device(None) is None


def test_devices_command_lists_index_name_channels_rate(pulse_server: object,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert devices_main(argparse.Namespace()) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["index", "name", "channels", "default", "rate"]
    pulse = [line for line in out if " pulse " in f" {line} "]
    assert pulse and pulse[0].rstrip().endswith("Hz")


def test_mic_source_captures_at_the_device_rate_and_resamples(pulse_server, tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, tone(1000, 2.0, 48000), 48000)
    got: list[np.ndarray] = []
    with MicSource(device="pulse") as mic:
        assert mic.rate != 16000  # captured at the device's own rate, resampled here
        player = None
        start = time.monotonic()
        for chunk in mic:
            got.append(chunk)
            if player is None and time.monotonic() - start > 0.3:
                player = pulse_server.play(path, wait=False)
            if player is not None and player.poll() is not None or time.monotonic() - start > 20:
                break
    assert player is not None and player.wait() == 0
    audio = np.concatenate(got)
    assert all(len(c) in (0, 1280) for c in got)
    loud = audio[np.abs(audio) > 0.1]
    assert len(loud) > 0.5 * 16000, "the played tone was not captured"
    assert abs(dominant_hz(audio) - 1000) < 10
    assert 0.4 < np.abs(audio).max() < 0.6


def test_mic_source_captures_at_a_requested_rate(pulse_server) -> None:
    with MicSource(device="pulse", rate=22050) as mic:
        assert mic.rate == 22050
        chunks = []
        for chunk in mic:
            chunks.append(chunk)
            if sum(len(c) for c in chunks) >= 16000:
                break
    assert all(len(c) in (0, 1280) for c in chunks)


def test_mic_source_counts_overflows_and_keeps_going(pulse_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MicSource, "QUEUE_BLOCKS", 3)
    with MicSource(device="pulse") as mic:
        chunks = iter(mic)
        next(chunks)
        time.sleep(1.5)  # the consumer stalls: ~18 blocks arrive into a queue of 3
        for _ in range(5):
            next(chunks)
        assert mic.overflows > 0
        assert not mic.lost


def test_file_source_refuses_a_one_hz_header_before_allocating(tmp_path: Path) -> None:
    from tests.device.test_audiofile import one_hz_wav

    path = one_hz_wav(tmp_path / "one_hz.wav")
    with pytest.raises(AudioError, match=r"one_hz.wav: sample rate 1 Hz is outside"):
        FileSource(path)


def test_detect_on_a_one_hz_header_is_one_line(tone_bundle: Path, tmp_path: Path) -> None:
    from tests.device.test_audiofile import one_hz_wav, run_capped

    path = one_hz_wav(tmp_path / "one_hz.wav")
    result = run_capped("detect", "-m", str(tone_bundle), str(path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"hark: error: {path}: sample rate 1 Hz is outside 4000..384000 Hz "
        "(a damaged header, or not a recording hark can use)")
    assert "Traceback" not in result.stderr


PROBE_SCRIPT = """
import logging, sys, threading, time
logging.basicConfig(level=logging.INFO, format="%(message)s")  # on sys.stderr, fd 2, as under systemd
from hark.audio import _new_pyaudio, list_input_devices
stop = threading.Event()
count = [0]
def chatter():
    log = logging.getLogger("hark.mqtt")
    while not stop.is_set():
        count[0] += 1
        log.info("tick %d", count[0])
        time.sleep(0.0005)
thread = threading.Thread(target=chatter)
thread.start()
for _ in range(5):
    pa = _new_pyaudio()  # PortAudio probes every host API and device with fd 2 silenced
    list_input_devices(pa)
    pa.terminate()
stop.set()
thread.join()
print(count[0])
"""


def test_probing_portaudio_loses_no_other_threads_log_line(tmp_path: Path) -> None:
    pytest.importorskip("pyaudio")
    result = subprocess.run([sys.executable, "-c", PROBE_SCRIPT], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    sent = int(result.stdout.strip())
    ticks = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("tick ")]
    assert sent > 50, "the probe took long enough for other threads to log meanwhile"
    assert ticks == list(range(1, sent + 1)), f"{sent - len(ticks)} of {sent} log lines lost"
