"""The real audio path: sound played into a PulseAudio null sink is captured through PyAudio.

A private PulseAudio server (tests/fixtures/pulse.py) stands in for the room: ``paplay`` puts a
recording "in the air" and its monitor source is the microphone. PyAudio reaches it through ALSA's
``pulse`` device, exactly as it reaches a USB microphone on the Pi.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyaudio
import pytest
import soundfile as sf
from scipy.signal import butter, correlate, sosfilt

from tests.fixtures.pulse import PulseServer

SR = 16000


def pulse_device_index(pa) -> int:
    """PyAudio's index of ALSA's ``pulse`` device (from libasound2-plugins)."""
    names = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        names.append(info["name"])
        if info["name"] == "pulse" and info["maxInputChannels"] > 0:
            return i
    raise AssertionError(f"ALSA has no 'pulse' input device (install libasound2-plugins); devices: {names}")


def capture_while_playing(server: PulseServer, path: Path, *, rate: int = SR, tail_s: float = 0.5) -> np.ndarray:
    """Record from the default source through PyAudio while ``path`` is played into the sink."""
    pa = pyaudio.PyAudio()
    try:
        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=rate, input=True,
                         input_device_index=pulse_device_index(pa), frames_per_buffer=rate // 10)
        chunks = []
        try:
            # The record stream only carries sound once it is connected: let it settle first.
            for _ in range(3):
                chunks.append(stream.read(rate // 10, exception_on_overflow=False))
            player = server.play(path, wait=False)
            end = None
            while end is None or time.monotonic() < end:
                chunks.append(stream.read(rate // 10, exception_on_overflow=False))
                if end is None and player.poll() is not None:
                    end = time.monotonic() + tail_s
            assert player.returncode == 0, player.stderr.read().decode(errors="replace")
        finally:
            stream.close()
    finally:
        pa.terminate()
    return np.frombuffer(b"".join(chunks), dtype=np.int16).astype(np.float32) / 32768.0


def best_match(recorded: np.ndarray, played: np.ndarray) -> tuple[int, float]:
    """Offset of ``played`` in ``recorded`` and the normalised correlation there (1.0 = identical)."""
    c = correlate(recorded, played, mode="valid", method="fft")
    energy = np.sqrt(np.convolve(recorded**2, np.ones(len(played)), mode="valid"))
    score = c / (energy * np.sqrt(np.sum(played**2)) + 1e-12)
    lag = int(np.argmax(score))
    return lag, float(score[lag])


def test_played_sound_is_captured_through_pyaudio(pulse_server: PulseServer, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    seconds = 2.0
    t = np.arange(int(seconds * SR)) / SR
    # Noise plus a tone that starts half-way: a shape that only matches itself. The noise stays
    # below 6 kHz, where the server's 16 -> 48 -> 16 kHz resampling is flat (as for speech).
    noise = sosfilt(butter(8, 6000, fs=SR, output="sos"), rng.standard_normal(len(t)))
    played = (0.2 * noise / noise.std() + 0.3 * np.sin(2 * np.pi * 440 * t) * (t >= 1.0)).astype(np.float32)
    sf.write(tmp_path / "played.wav", played, SR, subtype="PCM_16")

    recorded = capture_while_playing(pulse_server, tmp_path / "played.wav")

    assert len(recorded) >= len(played), f"captured {len(recorded) / SR:.2f} s, played {seconds} s"
    lag, score = best_match(recorded, played)
    assert score > 0.9, f"captured audio does not match what was played (best correlation {score:.2f} at {lag})"
    # The sink resamples to 48 kHz stereo and back: level and timing must survive that.
    segment = recorded[lag:lag + len(played)]
    assert np.std(segment) == pytest.approx(np.std(played), rel=0.2)
    other = (0.2 * np.random.default_rng(8).standard_normal(len(played))).astype(np.float32)
    assert best_match(recorded, other)[1] < 0.2, "unrelated noise must not match: the check would prove nothing"


def test_silence_when_nothing_plays(pulse_server: PulseServer) -> None:
    pa = pyaudio.PyAudio()
    try:
        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=SR, input=True,
                         input_device_index=pulse_device_index(pa), frames_per_buffer=1600)
        with contextlib.closing(stream):
            data = b"".join(stream.read(1600, exception_on_overflow=False) for _ in range(5))
    finally:
        pa.terminate()
    assert np.abs(np.frombuffer(data, dtype=np.int16)).max() < 10


def test_server_is_private(pulse_server: PulseServer) -> None:
    info = pulse_server.pactl("info")
    assert f"Default Source: {pulse_server.source}" in info
    assert str(pulse_server.socket) in info
    sources = subprocess.run(["pactl", "list", "short", "sources"], env=pulse_server.env(), capture_output=True,
                             text=True, check=True).stdout
    assert [line.split("\t")[1] for line in sources.splitlines()] == [pulse_server.source]


# --- hark run on the microphone path, events on a real broker -------------------------------------

EVENTS = [(1.0, "beep"), (3.0, "chirp"), (5.0, "beep"), (7.0, "chirp")]


class EventListener:
    """A paho client subscribed to ``hark/<device>/event`` before the daemon starts."""

    def __init__(self, broker, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.events: list[dict] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-listener")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = lambda c, u, m: self.events.append(json.loads(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10), "could not subscribe to the test broker"

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.events)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for_line(proc: subprocess.Popen[str], needle: str, lines: list[str], timeout: float) -> None:
    """Read ``proc``'s stderr into ``lines`` (in a thread) until a line holds ``needle``."""
    found = threading.Event()

    def pump() -> None:
        for line in proc.stderr:
            lines.append(line)
            if needle in line:
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        raise AssertionError(f"hark run did not say {needle!r} within {timeout} s:\n{''.join(lines)}")


@pytest.mark.slow
def test_hark_run_hears_the_room_and_tells_the_broker(pulse_server: PulseServer, broker, tone_bundle: Path,
                                                      tmp_path: Path) -> None:
    from tests.fixtures.synth import write_stream

    stream = write_stream(tmp_path / "room.wav", EVENTS, seconds=9.0)
    # What the same model finds in the file itself: the daemon may not find less through the air.
    offline = subprocess.run(
        [sys.executable, "-m", "hark", "detect", "-m", str(tone_bundle), str(stream), "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    offline_labels = [json.loads(line)["label"] for line in offline.splitlines()]

    config = tmp_path / "hark.yaml"
    config.write_text(
        f"model: {tone_bundle}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "audio:\n  device: pulse\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n  device_id: e2e\n"
    )
    listener = EventListener(broker, "hark/e2e/event")
    hark = subprocess.Popen([sys.executable, "-m", "hark", "run", "-c", str(config)], env=pulse_server.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        wait_for_line(hark, "listening for", log, timeout=60)
        assert any("audio input 'pulse'" in line for line in log), "".join(log)
        time.sleep(0.5)  # the record stream connects before it carries sound
        played_at = datetime.now(timezone.utc)
        pulse_server.play(stream)
        listener.wait_for(len(EVENTS), timeout=20)
        time.sleep(1.5)  # let anything late arrive: it must be accounted for below
        events = list(listener.events)
    finally:
        listener.close()
        hark.send_signal(signal.SIGTERM)
        try:
            out, _ = hark.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            hark.kill()
            out, _ = hark.communicate()
    assert hark.returncode == 0, "".join(log)
    report = f"events {events}\nhark detect on the file: {offline_labels}\nlog:\n{''.join(log)}"

    # Each sound played into the room arrives, with its label, soon after it was played (the sound
    # lasts 0.5 s; the audio path adds a little latency).
    def delay(event: dict, start_s: float) -> float:
        when = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        return (when - played_at).total_seconds() - start_s

    unmatched = list(events)
    for start_s, label in EVENTS:
        at = [e for e in unmatched if e["event_type"] == label and -0.25 <= delay(e, start_s) <= 2.0]
        assert at, f"{label} played at {start_s} s did not arrive\n{report}"
        unmatched.remove(at[0])
    # Anything else must be something the model also finds in the file (its own false alarms), not
    # something the audio path made up.
    assert len(unmatched) <= len(offline_labels) - len(EVENTS), report
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert all(e["model"] for e in events)
    printed = [line.split()[1] for line in out.splitlines() if line.strip()]
    assert printed == [e["event_type"] for e in events], out
