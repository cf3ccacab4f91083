"""The device recorder: ring buffer, clips on request, captures of detections, and disk trouble that is never fatal."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark import clipfile
from hark.clipfile import to_pcm16
from hark.errors import HarkError
from hark.recorder import ClipRequest, Recorder, parse_record_payload

SR = 16000


@dataclass(frozen=True)
class Det:
    """Shaped like hark.detector.Detection (label, score, time_s)."""

    label: str
    score: float
    time_s: float


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Distinct, deterministic samples, so any misplaced sample shows up in a comparison."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.5, 0.5, int(seconds * SR))).astype(np.float32)


def feed(rec: Recorder, x: np.ndarray, *, seed: int = 1) -> None:
    """Feed ``x`` in irregular chunks, as a microphone with a resampler delivers them."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        rec.feed(x[i:i + n])
        i += n


def wav_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.wav")) if folder.exists() else []


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def read_pcm(path: Path) -> np.ndarray:
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    return sf.read(path, dtype="int16")[0]


@pytest.fixture
def rec(tmp_path):
    r = Recorder(dataset_dir=tmp_path / "dataset", captures_dir=tmp_path / "captures", capture=True, model="tones")
    yield r
    r.close()


# -- ring buffer -------------------------------------------------------------------------------


def test_history_holds_the_last_seconds_across_wraps_and_big_chunks(tmp_path):
    rec = Recorder(dataset_dir=tmp_path, history_seconds=4.0)
    x = signal(11.3)
    feed(rec, x[:50000])
    rec.feed(x[50000:50000 + 5 * SR])  # one chunk longer than the whole ring
    feed(rec, x[50000 + 5 * SR:], seed=2)
    assert rec.samples_fed == len(x)
    np.testing.assert_array_equal(rec.history(3.0), x[-3 * SR:])
    np.testing.assert_array_equal(rec.history(), x[-4 * SR:])
    np.testing.assert_array_equal(rec.history(100.0), x[-4 * SR:])  # no more than is kept
    rec.close()


def test_history_before_the_ring_is_full(tmp_path):
    rec = Recorder(dataset_dir=tmp_path)
    x = signal(0.7)
    feed(rec, x)
    np.testing.assert_array_equal(rec.history(), x)
    rec.close()


# -- clips on request ----------------------------------------------------------------------------


def test_requested_clip_is_the_next_audio_exactly(rec, tmp_path):
    states = []
    saved = []
    rec.on_recording = states.append
    rec.on_saved = saved.append
    x = signal(3.0)
    feed(rec, x[:12345])
    assert not rec.recording
    assert rec.request_clip("dog")
    assert rec.recording and states == [True]
    feed(rec, x[12345:])
    rec.flush()
    assert not rec.recording and states == [True, False]
    [path] = wav_files(tmp_path / "dataset")
    assert path.parent == tmp_path / "dataset" / "dog"
    assert saved == [path]
    np.testing.assert_array_equal(read_pcm(path), to_pcm16(x[12345:12345 + SR]))
    assert all_files(tmp_path / "dataset") == [f"dog/{path.name}"]  # no temporary file left


def test_clip_length_and_background(tmp_path):
    rec = Recorder(dataset_dir=tmp_path / "ds", clip_seconds=0.5, background_seconds=2.0)
    x = signal(6.0)
    assert rec.request_clip("cat")
    feed(rec, x[:SR])
    assert rec.request_clip(None)
    feed(rec, x[SR:4 * SR])
    assert rec.request_clip("background", seconds=0.25)  # "background" is the background class too
    feed(rec, x[4 * SR:])
    assert rec.request_clip("cat", seconds=1.25)
    rec.close()  # the stream ended before this one was whole
    assert [len(read_pcm(p)) for p in wav_files(tmp_path / "ds" / "cat")] == [SR // 2]
    noise = wav_files(tmp_path / "ds" / "_background_noise_")
    assert sorted(len(read_pcm(p)) for p in noise) == [SR // 4, 2 * SR]
    assert len(set(p.name for p in wav_files(tmp_path / "ds"))) == 3


def test_unfinished_clip_is_not_saved_and_the_led_goes_off(tmp_path, caplog):
    states = []
    rec = Recorder(dataset_dir=tmp_path / "ds", on_recording=states.append)
    rec.request_clip("dog")
    rec.feed(signal(0.4))
    with caplog.at_level(logging.WARNING):
        rec.close()
    assert states == [True, False]
    assert not (tmp_path / "ds").exists()
    assert "after 0.40 of 1.00 s of 'dog'; clip not saved" in caplog.text


def test_second_request_while_recording_is_refused(rec, tmp_path, caplog):
    assert rec.request_clip("dog")
    with caplog.at_level(logging.WARNING):
        assert not rec.request_clip("cat")
    assert "already recording 'dog'; request for 'cat' ignored" in caplog.text
    feed(rec, signal(1.5))
    rec.flush()
    assert [p.parent.name for p in wav_files(tmp_path / "dataset")] == ["dog"]


@pytest.mark.parametrize("label", ["../x", "/etc/passwd", "/tmp/x", "a/b", "Dog", "", "_unknown_",
                                   "_background_noise_", ".hidden", "x" * 65, 5, ["dog"], "dog\n"])
def test_bad_labels_are_refused_and_nothing_written(tmp_path, caplog, label):
    rec = Recorder(dataset_dir=tmp_path / "ds")
    with caplog.at_level(logging.WARNING):
        assert not rec.request_clip(label)
    assert "is not a valid label" in caplog.text and "nothing recorded" in caplog.text
    feed(rec, signal(2.0))
    rec.close()
    assert all_files(tmp_path) == []
    assert not rec.recording


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), 61, "1", True])
def test_bad_lengths_are_refused(tmp_path, caplog, seconds):
    rec = Recorder(dataset_dir=tmp_path / "ds")
    with caplog.at_level(logging.WARNING):
        assert not rec.request_clip("dog", seconds)
    assert "record: seconds" in caplog.text
    rec.close()


# -- captures ------------------------------------------------------------------------------------


def test_capture_saves_the_window_around_the_detection_with_a_sidecar(rec, tmp_path):
    x = signal(4.0)
    feed(rec, x[:int(2.2 * SR)])
    assert rec.capture(Det("beep", 0.9312, 2.0))  # fired 0.2 s ago (detector latency)
    rec.flush()
    assert wav_files(tmp_path / "captures") == []  # waits for the 0.5 s after
    feed(rec, x[int(2.2 * SR):])
    rec.flush()
    [path] = wav_files(tmp_path / "captures")
    assert path.parent == tmp_path / "captures" / "beep"
    assert path.name.endswith("_0.931.wav")
    np.testing.assert_array_equal(read_pcm(path), to_pcm16(x[int(0.5 * SR):int(2.5 * SR)]))
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["label"] == "beep" and sidecar["score"] == 0.9312 and sidecar["model"] == "tones"
    assert sidecar["audio"] == path.name
    assert sidecar["duration_s"] == 2.0 and sidecar["detection_offset_s"] == 1.5 and sidecar["stream_time_s"] == 2.0
    assert sidecar["time"][:4].isdigit() and sidecar["time"][-6] in "+-"  # ISO 8601 with the UTC offset
    assert all_files(tmp_path / "captures") == sorted([f"beep/{path.name}", f"beep/{path.stem}.json"])
    assert wav_files(tmp_path / "dataset") == []


def test_capture_window_follows_capture_seconds_and_is_clamped_at_the_stream_start(tmp_path):
    rec = Recorder(dataset_dir=tmp_path / "ds", captures_dir=tmp_path / "cap", capture=True, capture_seconds=3.0)
    x = signal(5.0)
    feed(rec, x)
    rec.capture(Det("beep", 0.8, 0.4))  # only 0.4 s before it exist
    rec.capture(Det("chirp", 0.7, 4.0))
    rec.close()
    [early] = wav_files(tmp_path / "cap" / "beep")
    np.testing.assert_array_equal(read_pcm(early), to_pcm16(x[:int(0.9 * SR)]))
    assert json.loads(early.with_suffix(".json").read_text())["detection_offset_s"] == 0.4
    [late] = wav_files(tmp_path / "cap" / "chirp")
    np.testing.assert_array_equal(read_pcm(late), to_pcm16(x[int(1.5 * SR):int(4.5 * SR)]))


def test_pending_capture_is_saved_with_what_there_is_when_the_stream_ends(rec, tmp_path):
    x = signal(3.0)
    feed(rec, x)
    rec.capture(Det("beep", 0.5, 2.9))
    rec.close()
    [path] = wav_files(tmp_path / "captures")
    np.testing.assert_array_equal(read_pcm(path), to_pcm16(x[int(1.4 * SR):]))


def test_captures_default_beside_the_dataset_and_off_unless_asked(tmp_path):
    rec = Recorder(dataset_dir=tmp_path / "ds")
    assert rec.captures_dir == tmp_path / "captures"
    feed(rec, signal(3.0))
    assert not rec.capture(Det("beep", 0.9, 2.0))
    rec.close()
    assert all_files(tmp_path) == []


def test_capture_refuses_a_label_that_is_not_a_folder_name(rec, tmp_path, caplog):
    feed(rec, signal(3.0))
    with caplog.at_level(logging.WARNING):
        assert not rec.capture(Det("../../etc", 0.9, 2.0))
        assert not rec.capture(Det("beep", float("nan"), 2.0))
    rec.close()
    assert "not a valid folder name" in caplog.text
    assert all_files(tmp_path) == []


# -- disk trouble --------------------------------------------------------------------------------


def test_dataset_under_a_file_is_logged_and_detection_goes_on(tmp_path, caplog):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    rec = Recorder(dataset_dir=blocker / "ds", captures_dir=blocker / "cap", capture=True)
    with caplog.at_level(logging.ERROR):
        assert rec.request_clip("dog")
        feed(rec, signal(3.0))
        rec.capture(Det("beep", 0.9, 1.0))
        rec.flush()
        assert rec.request_clip("dog")  # the next request still works
        feed(rec, signal(1.5))
        rec.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"{blocker / 'ds' / 'dog'} is not a usable folder" in m and "clip of 'dog' not saved" in m
               for m in errors), errors
    assert any("capture of 'beep' not saved" in m for m in errors), errors
    assert all("still detecting" in m for m in errors)
    assert len(errors) == 2  # the second failed clip in a row is not logged again
    assert sorted(os.listdir(tmp_path)) == ["blocker"]


def test_disk_full_is_logged_once_a_minute_and_leaves_no_temporary(tmp_path, monkeypatch, caplog):
    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(clipfile.os, "replace", full)
    rec = Recorder(dataset_dir=tmp_path / "ds")
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert rec.request_clip("dog", 0.25)
            feed(rec, signal(0.3))
        rec.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"disk full: clip of 'dog' not saved in {tmp_path / 'ds' / 'dog'} "
                      "(No space left on device); still detecting"]
    assert all_files(tmp_path) == []


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_really_read_only_dataset(tmp_path, caplog):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        rec = Recorder(dataset_dir=ro / "ds")
        with caplog.at_level(logging.ERROR):
            rec.request_clip(None, 0.5)
            feed(rec, signal(1.0))
            rec.close()
    assert f"cannot write to {ro / 'ds' / '_background_noise_'} (Read-only file system)" in caplog.text


def test_really_full_disk_keeps_earlier_clips_whole(tmp_path, caplog):
    with tmpfs(tmp_path / "small", "size=80k") as small:
        rec = Recorder(dataset_dir=small / "ds", clip_seconds=1.0)
        with caplog.at_level(logging.ERROR):
            for _ in range(4):  # 32 kB each: the third does not fit
                rec.request_clip("dog")
                feed(rec, signal(1.1))
                rec.flush()
            rec.close()
        clips = wav_files(small / "ds")
        assert len(clips) == 2 and all(len(read_pcm(p)) == SR for p in clips)
        assert all_files(small / "ds") == sorted(f"dog/{p.name}" for p in clips)
    assert "disk full: clip of 'dog' not saved" in caplog.text


def test_a_slow_disk_does_not_block_feed(tmp_path, monkeypatch):
    gate = threading.Event()
    real = clipfile.os.replace

    def slow(src, dst):
        gate.wait(10)
        real(src, dst)

    monkeypatch.setattr(clipfile.os, "replace", slow)
    rec = Recorder(dataset_dir=tmp_path / "ds")
    rec.request_clip("dog")
    feed(rec, signal(1.0))  # the clip is complete and handed to the writer, which hangs
    feed(rec, signal(5.0))  # ...while the audio loop goes on
    assert rec.samples_fed == 6 * SR and wav_files(tmp_path / "ds") == []
    gate.set()
    rec.close()
    assert len(wav_files(tmp_path / "ds")) == 1


def test_a_failing_callback_does_not_stop_recording(tmp_path, caplog):
    def broken(active):
        raise RuntimeError("LED gone")

    rec = Recorder(dataset_dir=tmp_path / "ds", on_recording=broken)
    with caplog.at_level(logging.ERROR):
        assert rec.request_clip("dog")
        feed(rec, signal(1.2))
        rec.close()
    assert len(wav_files(tmp_path / "ds")) == 1
    assert "on_recording callback failed" in caplog.text


# -- MQTT record/set payloads --------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "expected"), [
    (b'{"label": "dog"}', ClipRequest("dog", None)),
    (b'{"label": "dog", "seconds": 1.5}', ClipRequest("dog", 1.5)),
    (b'{"label": "background", "seconds": 20}', ClipRequest(None, 20.0)),
    ('{"label": null}', ClipRequest(None, None)),
])
def test_record_payloads(payload, expected):
    assert parse_record_payload(payload) == expected


@pytest.mark.parametrize(("payload", "message"), [
    (b"dog", "payload is not JSON"),
    (b"\xff\xfe", "payload is not JSON"),
    (b'["dog"]', "must be a JSON object"),
    (b"{}", '"label" is missing'),
    (b'{"label": "../x"}', "record command: label: '../x' is not a valid label"),
    (b'{"label": "/etc/cron.d/x"}', "is not a valid label"),
    (b'{"label": "Dog"}', "is not a valid label"),
    (b'{"label": 3}', "is not a valid label"),
    (b'{"label": "dog", "seconds": -1}', "record command: seconds: -1 is out of range"),
    (b'{"label": "dog", "seconds": 1e9}', "is out of range"),
    (b'{"label": "dog", "seconds": "2"}', "is not a number of seconds"),
    (b'{"label": "dog", "seconds": true}', "is not a number of seconds"),
    (b'{"label": "dog", "path": "/tmp"}', "unknown key 'path'"),
    (b'{"label": "' + b"a" * 2000 + b'"}', "is too long"),
])
def test_bad_record_payloads_say_what_is_wrong(payload, message):
    with pytest.raises(HarkError, match=None) as err:
        parse_record_payload(payload)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# -- a real gpiozero button (MockFactory) wired to the recorder -----------------------------------


def test_mock_button_press_records_a_clip_and_a_long_press_background(tmp_path):
    from gpiozero import Button
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    rec = Recorder(dataset_dir=tmp_path / "ds", background_seconds=2.0)
    # Short press: a clip of the button's label when released; held: background (as the daemon wires it).
    button = Button(17, pin_factory=factory, hold_time=0.1, bounce_time=None)
    held = threading.Event()
    button.when_held = lambda: (held.set(), rec.request_clip(None))
    button.when_released = lambda: None if held.is_set() else rec.request_clip("dog")
    try:
        button.pin.drive_low()
        button.pin.drive_high()
        assert rec.recording
        feed(rec, signal(1.0))
        rec.flush()
        [clip] = wav_files(tmp_path / "ds")
        assert clip.parent.name == "dog" and len(read_pcm(clip)) == SR

        button.pin.drive_low()
        assert held.wait(2.0)
        button.pin.drive_high()
        feed(rec, signal(2.0, seed=3))
        rec.close()
        [noise] = wav_files(tmp_path / "ds" / "_background_noise_")
        np.testing.assert_array_equal(read_pcm(noise), to_pcm16(signal(2.0, seed=3)))
        assert len(wav_files(tmp_path / "ds")) == 2
    finally:
        button.close()
        factory.close()


# -- the daemon: `hark run -c CONFIG --input FILE` with mock GPIO, a button pressed on its pin ----------


@pytest.fixture
def small_bundle(request) -> Path:
    """A trained bundle with the classes beep and chirp, from the trainer's session fixtures."""
    try:
        return Path(request.getfixturevalue("tone_bundle"))
    except pytest.FixtureLookupError:
        pytest.skip("tests/fixtures/models.py provides no tone_bundle fixture yet")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def seen_states(pin, seconds: float) -> set[bool]:
    """The states ``pin`` shows when looked at every 10 ms for ``seconds``."""
    states = set()
    for _ in range(int(seconds / 0.01)):
        states.add(bool(pin.state))
        time.sleep(0.01)
    return states


def find_in(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where ``needle`` starts in ``haystack`` (both int16), matching every sample; -1 if nowhere."""
    windows = np.lib.stride_tricks.sliding_window_view(haystack, 64)
    for start in np.flatnonzero((windows == needle[:64]).all(axis=1)):
        if np.array_equal(haystack[start:start + len(needle)], needle):
            return int(start)
    return -1


@pytest.mark.slow
def test_button_on_the_running_daemon_records_a_clip_and_a_long_press_background(small_bundle, tmp_path):
    from gpiozero import Device

    from hark.cli import main as hark
    from tests.fixtures.synth import noise

    audio = noise(np.random.default_rng(5), 7.0, level=0.05)
    sf.write(tmp_path / "room.wav", audio, SR, subtype="PCM_16")
    room = sf.read(tmp_path / "room.wav", dtype="int16")[0]
    config = tmp_path / "hark.yaml"
    config.write_text(f"""\
model: {small_bundle}
state_dir: {tmp_path / "state"}
gpio:
  mock: true
  status_led: 5
  buttons:
    - pin: 26
      label: beep
  long_press_s: 0.3
  bounce_s: 0
recording:
  dataset: {tmp_path / "ds"}
  clip_seconds: 1.0
  background_seconds: 1.0
""")
    dataset = tmp_path / "ds"
    failures: list[BaseException] = []
    led_states: list[set[bool]] = []

    def press() -> None:
        try:
            def button_pin():
                factory = Device.pin_factory
                if factory is None or not any(26 in info.names for info in list(factory.pins)):
                    return None
                return factory.pin(26)

            wait_for(lambda: button_pin() is not None, 30, "the daemon's button")
            pin = button_pin()
            status = Device.pin_factory.pin(5)
            time.sleep(0.3)
            listening = seen_states(status, 0.1)
            pin.drive_low()  # short press: a clip of the button's label
            time.sleep(0.05)
            pin.drive_high()
            recording = seen_states(status, 0.4)
            wait_for(lambda: wav_files(dataset / "beep"), 4, "the clip")
            time.sleep(0.1)
            after = seen_states(status, 0.1)
            led_states.extend([listening, recording, after])
            pin.drive_low()  # held past long_press_s: background
            time.sleep(0.6)
            pin.drive_high()
            wait_for(lambda: wav_files(dataset / "_background_noise_"), 4, "the background clip")
        except BaseException as err:  # reported by the test thread
            failures.append(err)

    presser = threading.Thread(target=press, daemon=True)
    presser.start()
    assert hark(["run", "-c", str(config), "--input", str(tmp_path / "room.wav"), "--realtime"]) == 0
    presser.join(5)
    if failures:
        raise failures[0]
    # The status LED: steady on while listening, blinking while the clip records, steady again after.
    assert led_states == [{True}, {True, False}, {True}]
    [clip] = wav_files(dataset / "beep")
    [background] = wav_files(dataset / "_background_noise_")
    for path in (clip, background):
        pcm = read_pcm(path)
        assert len(pcm) == SR
        start = find_in(room, pcm)
        assert start >= 0, f"{path.name} is not a contiguous stretch of the input"
    assert find_in(room, read_pcm(clip)) < find_in(room, read_pcm(background))
    assert all_files(dataset) == sorted([f"beep/{clip.name}", f"_background_noise_/{background.name}"])


# ---------------------------------------------------------------- what a remote request may ask for


def test_requests_limited_to_known_labels_and_the_shortest_clip(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with Recorder(dataset_dir=tmp_path / "ds", labels=["beep", "newsound"], min_seconds=0.3) as rec:
        assert not rec.request_clip("dog", 0.5)  # any valid label used to become a new folder
        assert not rec.request_clip("beep", 1e-7)  # used to save a 0-sample WAV
        assert not rec.request_clip("beep", 0.29)
        assert rec.request_clip("newsound", 0.3)  # a new label the config lists
        feed(rec, signal(0.5))
        assert rec.request_clip(None, 0.3)  # background is always allowed
        feed(rec, signal(0.5))
        rec.flush()
    assert sorted(p.parent.name for p in wav_files(tmp_path / "ds")) == ["_background_noise_", "newsound"]
    assert "'dog' is not a class of the model nor listed in recording.labels" in caplog.text
    assert "below recording.min_seconds (0.3)" in caplog.text


def test_clips_limited_to_a_rate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Recorder(dataset_dir=tmp_path / "ds", labels=["beep"], max_per_minute=3) as rec:
        started = 0
        for _ in range(50):  # a flood: each request right after the previous clip ended
            started += rec.request_clip("beep", 0.2)
            feed(rec, signal(0.25))
        rec.flush()
    assert started == 3 and len(wav_files(tmp_path / "ds")) == 3
    assert caplog.text.count("the most recording.max_per_minute allows") == 1


def test_recording_stops_with_one_warning_past_the_size_cap(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    clip_bytes = 16000 + 44  # 0.5 s of 16-bit mono and the WAV header
    with Recorder(dataset_dir=tmp_path / "ds", captures_dir=tmp_path / "captures", labels=["beep"],
                  capture=True, capture_seconds=0.5, max_bytes=3 * clip_bytes - 100) as rec:
        saved = 0
        for i in range(6):
            saved += rec.request_clip("beep", 0.5)
            feed(rec, signal(0.6, seed=i))
            rec.flush()
        captured = rec.capture(Det("beep", 0.9, rec.samples_fed / SR))
        feed(rec, signal(1.0))
    assert saved == 3 and len(wav_files(tmp_path / "ds")) == 3
    assert not captured and not wav_files(tmp_path / "captures")
    warned = [r for r in caplog.records if r.getMessage().startswith("recording stopped")]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
