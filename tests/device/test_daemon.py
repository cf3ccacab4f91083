"""``hark run`` end to end: a file in, mock GPIO and a real mosquitto out, the same detections as ``hark detect``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from hark.mqtt import Outbox
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.proxy import PubackEater
from tests.fixtures.synth import write_stream
from tests.fixtures.tmpfs import fill

ROOT = Path(__file__).resolve().parents[2]
EVENTS = [(2.0, "beep"), (5.0, "chirp"), (8.0, "beep"), (11.0, "chirp")]
DETECTION_LINE = re.compile(r"^(\d+):([\d.]+)  (\S+)\s+([\d.]+)$")


def hark(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hark", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def write_config(tmp_path: Path, model: Path, broker: Broker | None, **mqtt: object) -> Path:
    lines = [f"model: {model}", "state_dir: state", "gpio:", "  mock: true", "  leds: {beep: 17, chirp: 27}",
             "  led_seconds: 0.2", "  status_led: 5", "  buzzer: {pin: 22}"]
    if broker is not None:
        lines += ["mqtt:", f"  host: {broker.host}", f"  port: {broker.port}", "  device_id: test", "  keepalive: 5",
                  "  reconnect_min_s: 1", "  reconnect_max_s: 1"]
        lines += [f"  {k}: {v}" for k, v in mqtt.items()]
    path = tmp_path / "hark.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stream(tmp_path_factory.mktemp("daemon") / "stream.wav", EVENTS, seconds=14.0)


def detections_of(stdout: str) -> list[tuple[str, float]]:
    out = []
    for line in stdout.splitlines():
        m = DETECTION_LINE.match(line)
        if m:
            out.append((m.group(3), round(60 * int(m.group(1)) + float(m.group(2)), 3)))
    return out


def test_run_on_a_file_matches_detect_and_publishes(tone_bundle: Path, stream: Path, broker: Broker,
                                                    tmp_path: Path) -> None:
    detect = hark("detect", "-m", str(tone_bundle), str(stream), "--json")
    assert detect.returncode == 0, detect.stderr
    expected = [(d["label"], d["time_s"]) for d in map(json.loads, detect.stdout.splitlines())]
    assert [label for label, _ in expected] == [label for _, label in EVENTS]

    sub = Subscriber(broker, ["hark/test/#", "homeassistant/#"])
    try:
        run = hark("run", "-c", str(write_config(tmp_path, tone_bundle, broker)), "--input", str(stream))
        assert run.returncode == 0, run.stderr
        assert detections_of(run.stdout) == expected
        sub.wait_for(lambda: len(sub.on("hark/test/event")) == len(expected), timeout=5)
        events = [m.json() for m in sub.on("hark/test/event")]
        assert [e["event_type"] for e in events] == [label for label, _ in expected]
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids))
        assert all(e["model"] and 0 < e["score"] <= 1 for e in events)
        assert [m.payload for m in sub.on("hark/test/availability")] == [b"online", b"offline"]
        doc = sub.on("homeassistant/event/hark_test/detection/config")[0].json()
        assert doc["event_types"] == ["beep", "chirp"]
        # the LEDs of the detected classes lit, through gpiozero's mock pins (the file runs faster than
        # real time, so a later detection restarts a blink still running)
        assert "mock pin GPIO17 -> on" in run.stderr and "mock pin GPIO27 -> on" in run.stderr
        assert "mock pin GPIO22 -> on" in run.stderr
        assert "Traceback" not in run.stderr
    finally:
        sub.close()


def test_sigterm_stops_cleanly_with_systemd_notifications(tone_bundle: Path, stream: Path, broker: Broker,
                                                         tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    sub = Subscriber(broker, ["hark/test/availability", "hark/test/state"])
    config = write_config(tmp_path, tone_bundle, broker)
    proc = subprocess.Popen([sys.executable, "-m", "hark", "run", "-c", str(config), "--input", str(stream),
                             "--realtime"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"})
    try:
        messages = []
        while not any(m.startswith(b"READY=1") for m in messages):
            messages.append(notify.recv(4096))
        assert notify.recv(4096) == b"WATCHDOG=1"  # every 0.2 s while audio flows
        sub.wait_for(lambda: sub.on("hark/test/availability"))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "SIGTERM: stopping" in err
        while True:
            message = notify.recv(4096)
            if message == b"STOPPING=1":
                break
        sub.wait_for(lambda: [m.payload for m in sub.on("hark/test/availability")][-1:] == [b"offline"])
        assert sub.on("hark/test/state")[-1].json()["state"] == "listening"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        notify.close()
        sub.close()


def test_events_queued_during_an_outage_survive_a_restart(tone_bundle: Path, stream: Path, broker: Broker,
                                                        tmp_path: Path) -> None:
    config = write_config(tmp_path, tone_bundle, broker, flush_s=1)
    broker.kill()
    first = hark("run", "-c", str(config), "--input", str(stream))
    assert first.returncode == 0, first.stderr
    detected = [label for label, _ in detections_of(first.stdout)]
    assert len(detected) == len(EVENTS)
    assert "not yet delivered stay in" in first.stderr

    broker.start()
    sub = Subscriber(broker, ["hark/test/event"])
    try:
        quiet = write_stream(tmp_path / "quiet.wav", [], seconds=2.0)
        second = hark("run", "-c", str(config), "--input", str(quiet))
        assert second.returncode == 0, second.stderr
        assert detections_of(second.stdout) == []
        sub.wait_for(lambda: len(sub.on("hark/test/event")) == len(detected), timeout=5)
        events = [m.json() for m in sub.on("hark/test/event")]
        assert [e["event_type"] for e in events] == detected
        assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    finally:
        sub.close()


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "hark.yaml"
    config.write_text("model: m\ngpio:\n  leds: {beep: 99}\n")
    run = hark("run", "-c", str(config))
    assert run.returncode == 2
    assert run.stderr.strip() == f"hark: error: {config}:3: gpio.leds.beep: GPIO number 99 is out of range 0..53"


def test_check_reports_what_it_checked(tone_bundle: Path, tmp_path: Path) -> None:
    good = write_config(tmp_path, tone_bundle, None)
    run = hark("check", "-c", str(good))
    assert run.returncode == 0, run.stderr
    for what in ("config", "model", "labels", "pins", "mqtt", "state"):
        assert re.search(rf"^ok\s+{what}\s", run.stdout, re.M), what
    assert "beep LED 17" in run.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("chirp: 27", "dog: 27"))
    run = hark("check", "-c", str(bad))
    assert run.returncode == 2
    assert "bad.yaml:5: gpio.leds.dog: the model has no class 'dog'" in run.stderr


def test_full_state_filesystem_at_start_still_detects_and_publishes(tone_bundle: Path, stream: Path,
                                                                     broker: Broker, small_tmpfs: Path,
                                                                     tmp_path: Path) -> None:
    config = write_config(tmp_path, tone_bundle, broker)
    config.write_text(config.read_text().replace("state_dir: state", f"state_dir: {small_tmpfs}"))
    fill(small_tmpfs)
    sub = Subscriber(broker, ["hark/test/event"])
    try:
        run = hark("run", "-c", str(config), "--input", str(stream))
        assert run.returncode == 0, run.stderr  # was: exit 2, and under systemd a restart loop
        detected = [label for label, _ in detections_of(run.stdout)]
        assert len(detected) == len(EVENTS)
        sub.wait_for(lambda: len(sub.on("hark/test/event")) == len(detected), timeout=5)
        assert [m.json()["event_type"] for m in sub.on("hark/test/event")] == detected
        assert run.stderr.count("events are held in memory") == 1
    finally:
        sub.close()


def test_record_command_flood_is_bounded_end_to_end(tone_bundle: Path, broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path, tone_bundle, broker)
    dataset = tmp_path / "dataset"
    config.write_text(config.read_text() + f"recording:\n  dataset: {dataset}\n  max_per_minute: 3\n"
                      "  min_seconds: 0.3\n")
    quiet = write_stream(tmp_path / "quiet.wav", [], seconds=8.0)
    sub = Subscriber(broker, ["hark/test/availability"])
    proc = subprocess.Popen([sys.executable, "-m", "hark", "run", "-c", str(config), "--input", str(quiet),
                             "--realtime"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sub.wait_for(lambda: [m.payload for m in sub.on("hark/test/availability")] == [b"online"], timeout=60)
        sent = 0
        for i in range(150):  # 50 a second for 3 s, as the neighbour did
            for payload in (f'{{"label": "new{i}"}}', '{"label": "beep", "seconds": 1e-7}',
                            '{"label": "beep", "seconds": 0.3}'):
                sub.client.publish("hark/test/record/set", payload, qos=0)
                sent += 1
            time.sleep(0.02)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        sub.close()
    assert proc.returncode == 0, stderr[-3000:]
    folders = sorted(p.name for p in dataset.iterdir()) if dataset.exists() else []
    assert folders == ["beep"], folders  # no folder per unknown label
    clips = sorted((dataset / "beep").glob("*.wav"))
    assert 1 <= len(clips) <= 3, len(clips)
    assert all(sf.info(c).duration >= 0.3 for c in clips)
    assert stderr.count("the most recording.max_per_minute allows") == 1
    # 300 refused requests, but the log is bounded too: 20 lines a minute and a count.
    assert 1 <= stderr.count("nothing recorded") <= 20, stderr.count("nothing recorded")


def test_watchdog_stops_while_events_are_stuck_and_resumes_when_they_flow(tone_bundle: Path, stream: Path,
                                                                          broker: Broker, tmp_path: Path) -> None:
    proxy = PubackEater(broker, drop_pubacks=0)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    sub = Subscriber(broker, ["hark/test/availability", "hark/test/event"])
    config = write_config(tmp_path, tone_bundle, broker, ack_timeout_s=1, stuck_s=2)
    config.write_text(config.read_text().replace(f"port: {broker.port}", f"port: {proxy.port}"))
    proc = subprocess.Popen([sys.executable, "-m", "hark", "run", "-c", str(config), "--input", str(stream),
                             "--realtime"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"})
    pings: list[float] = []
    try:
        while not notify.recv(4096).startswith(b"READY=1"):
            pass
        sub.wait_for(lambda: sub.on("hark/test/availability"), timeout=20)
        time.sleep(0.5)
        proxy.drop_pubacks = 10**9  # from now on the broker takes events and never acknowledges one
        t0 = time.monotonic()
        notify.settimeout(0.2)
        stuck_seen = False
        while time.monotonic() - t0 < 12:
            try:
                if notify.recv(4096) == b"WATCHDOG=1":
                    pings.append(time.monotonic() - t0)
            except TimeoutError:
                pass
            if not stuck_seen and pings and time.monotonic() - t0 - pings[-1] > 2.0:
                stuck_seen = True  # no ping for 2 s while audio flows: systemd would restart hark
                proxy.drop_pubacks = 0
        assert stuck_seen, pings
        assert proc.poll() is None, "still running (the file lasts 14 s)"
        assert pings[-1] > 10, "pings resumed once events were acknowledged again"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert "no PUBACK for event" in err
        # Nothing lost: every detection reached the broker (some more than once) or waits in the outbox.
        delivered = {m.json()["id"] for m in sub.on("hark/test/event")}
        box = Outbox(tmp_path / "state" / "mqtt-outbox.sqlite3", max_events=100)
        waiting = len(box)
        box.close()
        detected = detections_of(out)
        assert len(detected) >= 3
        assert len(delivered) + waiting == len(detected), (delivered, waiting, detected)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        notify.close()
        sub.close()
        proxy.close()
