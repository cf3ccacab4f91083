"""MQTT against a real mosquitto: topics, payloads, retain flags, discovery, commands, outages, restarts."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from hark import __version__
from hark.config import MqttConfig, TlsConfig
from hark.errors import HarkError
from hark.mqtt import ANNOUNCE_MIN_S, MqttPublisher, Outbox, parse_mute, parse_record
from hark.recorder import ClipRequest
from tests.fixtures.broker import Broker, Subscriber, free_port
from tests.fixtures.proxy import PubackEater
from tests.fixtures.tls import Pki, TlsBroker, make_pki
from tests.fixtures.tmpfs import fill

LABELS = ["background", "beep", "chirp"]
ROOT = Path(__file__).resolve().parents[2]


def settings(broker: Broker, **over: object) -> MqttConfig:
    base: dict[str, object] = dict(host=broker.host, port=broker.port, device_id="kitchen", keepalive=5,
                                   reconnect_min_s=1, reconnect_max_s=1, flush_s=5)
    base.update(over)
    return MqttConfig(**base)  # type: ignore[arg-type]


def publisher(broker: Broker, state_dir: Path, **kwargs: object) -> MqttPublisher:
    on_mute = kwargs.pop("on_mute", None)
    on_record = kwargs.pop("on_record", None)
    pub = MqttPublisher(settings(broker, **kwargs), state_dir=state_dir, model_name="tones", labels=LABELS,
                        on_mute=on_mute, on_record=on_record, record_max_s=30)  # type: ignore[arg-type]
    pub.start()
    return pub


def events(sub: Subscriber) -> list[dict]:
    return [m.json() for m in sub.on("hark/kitchen/event")]


def test_event_state_availability_and_discovery_on_the_wire(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker, ["hark/#", "homeassistant/#"])
    pub = publisher(broker, tmp_path, binary_sensor=True, off_delay=3)
    try:
        sub.wait_for(lambda: sub.on("hark/kitchen/availability"))
        first = pub.publish_event("beep", 0.91234)
        second = pub.publish_event("chirp", 0.7)
        assert second > first
        assert pub.flush(5)
        got = sub.wait_for(lambda: len(sub.on("hark/kitchen/event")) == 2 and sub.on("hark/kitchen/event"))
        assert [m.retain for m in got] == [False, False]
        assert [m.qos for m in got] == [1, 1]
        one, two = (m.json() for m in got)
        assert one["event_type"] == "beep" and two["event_type"] == "chirp"
        assert one["score"] == pytest.approx(0.9123) and one["model"] == "tones"
        assert (one["id"], two["id"]) == (first, second)
        assert set(one) == {"event_type", "score", "time", "model", "id"}
        assert datetime.fromisoformat(one["time"].replace("Z", "+00:00")).tzinfo is not None
        # binary sensors get a momentary ON on their own topic
        assert [m.payload for m in sub.on("hark/kitchen/detected/beep")] == [b"ON"]
    finally:
        pub.stop()
        sub.close()

    # A late subscriber sees the retained documents, with the retain flag set.
    late = Subscriber(broker, ["hark/#", "homeassistant/#"])
    try:
        # The broker hands a new subscriber its retained messages in no promised order: wait for all of them.
        retained = ["hark/kitchen/availability", "hark/kitchen/state",
                    "homeassistant/event/hark_kitchen/detection/config",
                    "homeassistant/sensor/hark_kitchen/model/config",
                    "homeassistant/switch/hark_kitchen/mute/config",
                    "homeassistant/binary_sensor/hark_kitchen/beep/config",
                    "homeassistant/binary_sensor/hark_kitchen/chirp/config"]
        late.wait_for(lambda: all(late.on(topic) for topic in retained))
        (avail,) = late.on("hark/kitchen/availability")
        assert avail.retain and avail.payload == b"offline"  # clean stop said offline itself
        (state,) = late.on("hark/kitchen/state")
        assert state.retain
        assert state.json() == {"state": "listening", "muted": False, "version": __version__, "model": "tones",
                                "labels": ["beep", "chirp"], "model_created": None}
        (model,) = late.on("homeassistant/sensor/hark_kitchen/model/config")
        assert model.json()["state_topic"] == "hark/kitchen/state"
        assert model.json()["value_template"] == "{{ value_json.model }}"
        (doc_msg,) = late.on("homeassistant/event/hark_kitchen/detection/config")
        assert doc_msg.retain
        doc = doc_msg.json()
        assert doc["event_types"] == ["beep", "chirp"]
        assert doc["state_topic"] == "hark/kitchen/event"
        assert doc["availability_topic"] == "hark/kitchen/availability"
        assert doc["unique_id"] == "hark_kitchen_detection"
        assert doc["default_entity_id"] == "event.hark_kitchen_detection" == "event." + doc["object_id"]
        (switch,) = late.on("homeassistant/switch/hark_kitchen/mute/config")
        assert switch.json()["default_entity_id"] == "switch.hark_kitchen_mute"
        assert doc["device"]["identifiers"] == ["hark_kitchen"]
        assert doc["device"]["sw_version"] == __version__
        assert {"name", "model"} <= set(doc["device"])
        assert doc["origin"]["name"] == "hark"
        (sensor,) = late.on("homeassistant/binary_sensor/hark_kitchen/beep/config")
        assert sensor.json()["off_delay"] == 3 and sensor.json()["state_topic"] == "hark/kitchen/detected/beep"
        assert sensor.json()["default_entity_id"] == "binary_sensor.hark_kitchen_beep"
        assert late.on("homeassistant/binary_sensor/hark_kitchen/chirp/config")
        assert not late.on("hark/kitchen/event"), "events must not be retained"
        assert not late.on("homeassistant/binary_sensor/hark_kitchen/background/config")
    finally:
        late.close()


def test_no_binary_sensors_unless_asked_and_custom_topics(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker, ["#"])
    pub = publisher(broker, tmp_path, base_topic="home/sounds", discovery_prefix="ha")
    try:
        sub.wait_for(lambda: sub.on("home/sounds/kitchen/availability"))
        pub.publish_event("beep", 0.8)
        sub.wait_for(lambda: sub.on("home/sounds/kitchen/event"))
        topics = {m.topic for m in sub.messages}
        assert "ha/event/hark_kitchen/detection/config" in topics
        assert not any("binary_sensor" in t for t in topics)
    finally:
        pub.stop()
        sub.close()


def test_discovery_republished_when_home_assistant_comes_online(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker, ["homeassistant/event/#"])
    pub = publisher(broker, tmp_path)
    try:
        sub.wait_for(lambda: len(sub.messages) == 1)
        sub.client.publish("homeassistant/status", "offline")
        time.sleep(0.3)
        assert len(sub.messages) == 1
        sub.client.publish("homeassistant/status", "online")
        sub.wait_for(lambda: len(sub.messages) == 2)
    finally:
        pub.stop()
        sub.close()


def test_commands_and_bad_payloads(broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mutes: list[bool] = []
    records: list[ClipRequest] = []
    sub = Subscriber(broker, ["hark/kitchen/state"])
    pub = publisher(broker, tmp_path, on_mute=mutes.append, on_record=records.append)
    caplog.set_level(logging.WARNING, logger="hark.mqtt")
    try:
        sub.wait_for(lambda: sub.on("hark/kitchen/state"))
        send = sub.client.publish
        for bad in [b"maybe", b"", b"\xff\xfe"]:
            send("hark/kitchen/mute/set", bad, qos=1)
        for bad in [b"not json", b"[1,2]", b'{"label": "../etc"}', b'{"label": "/abs"}', b'{"label": "Beep"}',
                    b'{"label": "beep", "seconds": 1e9}', b'{"label": "beep", "seconds": "2"}',
                    b'{"label": "beep", "extra": 1}', b'{"label": 5}', b"x" * 5000, b"{}",
                    b'{"label": "beep", "seconds": 31}']:
            send("hark/kitchen/record/set", bad, qos=1)
        send("hark/kitchen/mute/set", b"ON", qos=1)
        send("hark/kitchen/record/set", b'{"label": "beep", "seconds": 2.5}', qos=1)
        send("hark/kitchen/record/set", b'{"label": "background"}', qos=1)
        send("hark/kitchen/record/set", b'{"label": null, "seconds": 20}', qos=1)
        send("hark/kitchen/mute/set", b"off", qos=1)
        sub.wait_for(lambda: len(mutes) == 2 and len(records) == 3)
        assert mutes == [True, False]
        # Background without seconds: the recorder picks its configured background length.
        assert records == [ClipRequest("beep", 2.5), ClipRequest(None, None), ClipRequest(None, 20.0)]
        ignored = [r.getMessage() for r in caplog.records if "ignored a bad command" in r.getMessage()]
        assert len(ignored) == 15
        assert any("../etc" in m for m in ignored)

        pub.set_state("muted", muted=True)
        sub.wait_for(lambda: sub.on("hark/kitchen/state")[-1].json()["state"] == "muted")
        assert sub.on("hark/kitchen/state")[-1].json()["muted"] is True
    finally:
        pub.stop()
        sub.close()


def test_parsers_directly() -> None:
    assert parse_mute(b" ON\n") is True
    with pytest.raises(HarkError):
        parse_mute(b"1")
    assert parse_record(b'{"label": "background", "seconds": 3}', max_seconds=10) == ClipRequest(None, 3.0)
    with pytest.raises(HarkError, match="seconds"):
        parse_record(b'{"label": "beep", "seconds": 0}', max_seconds=10)
    with pytest.raises(HarkError, match="seconds"):
        parse_record(b'{"label": "beep", "seconds": true}', max_seconds=10)
    with pytest.raises(HarkError, match="max_seconds"):
        parse_record(b'{"label": "beep", "seconds": 11}', max_seconds=10)


def test_broker_killed_mid_run_every_event_arrives_in_order_once(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker, ["hark/kitchen/event"])
    # The publisher's first reconnect comes 3 s after it lost the broker; the test's new subscriber is
    # in place long before, so it sees everything the publisher delivers after the restart.
    pub = publisher(broker, tmp_path, reconnect_min_s=3, reconnect_max_s=3)
    after: Subscriber | None = None
    try:
        ids = [pub.publish_event("beep", 0.9) for _ in range(5)]
        assert pub.flush(5)
        sub.wait_for(lambda: len(events(sub)) == 5)
        broker.kill()
        t0 = time.monotonic()
        ids += [pub.publish_event("chirp", 0.8) for _ in range(10)]  # during the outage
        assert time.monotonic() - t0 < 1.0, "publishing must not wait for the network"
        assert not pub.flush(0.3)
        assert pub.pending >= 10
        broker.start()
        after = Subscriber(broker, ["hark/kitchen/event"])
        assert not pub._connected.is_set(), "precondition: the subscriber was back before the publisher"
        ids += [pub.publish_event("beep", 0.7) for _ in range(3)]
        assert pub.flush(15)
        after.wait_for(lambda: len(events(after)) >= 13, timeout=5)
        time.sleep(0.3)
        got = [e["id"] for e in events(sub)[:5] + events(after)]
        assert got == ids, "every event, in order, once"
        assert ids == sorted(ids) and len(set(ids)) == 18
        assert [e["event_type"] for e in events(after)] == ["chirp"] * 10 + ["beep"] * 3
    finally:
        pub.stop()
        sub.close()
        if after is not None:
            after.close()


PUBLISHER_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hark.config import MqttConfig
    from hark.mqtt import MqttPublisher
    port, state, n = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    cfg = MqttConfig(host="127.0.0.1", port=port, device_id="kitchen", keepalive=5, reconnect_min_s=1,
                     reconnect_max_s=1)
    pub = MqttPublisher(cfg, state_dir=state, model_name="tones", labels=["background", "beep", "chirp"])
    pub.start()
    ids = [pub.publish_event("beep", 0.9) for _ in range(n)]
    print(" ".join(map(str, ids)), flush=True)
    time.sleep(60)
""")


def run_publisher_process(broker: Broker, state: Path, n: int) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, str(broker.port), str(state), str(n)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, [int(x) for x in line.split()]


def test_publisher_killed_during_outage_queued_events_arrive_after_restart(broker: Broker, tmp_path: Path) -> None:
    broker.kill()
    proc, queued = run_publisher_process(broker, tmp_path, 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(queued) == 4
    assert len(Outbox(tmp_path / "mqtt-outbox.sqlite3", max_events=100)) == 4  # on disk, not lost

    broker.start()
    sub = Subscriber(broker, ["hark/kitchen/event"])
    pub = publisher(broker, tmp_path)
    try:
        later = pub.publish_event("chirp", 0.5)
        assert later > max(queued), "ids keep increasing across restarts"
        assert pub.flush(10)
        sub.wait_for(lambda: len(events(sub)) >= 5)
        time.sleep(0.2)
        assert [e["id"] for e in events(sub)] == [*queued, later]
        assert pub.pending == 0
    finally:
        pub.stop()
        sub.close()


def test_last_will_says_offline_when_the_process_dies(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker, ["hark/kitchen/availability", "hark/kitchen/event"])
    proc, ids = run_publisher_process(broker, tmp_path, 1)
    try:
        sub.wait_for(lambda: [m.payload for m in sub.on("hark/kitchen/availability")] == [b"online"])
        sub.wait_for(lambda: events(sub))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # keepalive 5 s: the broker notices the dead socket at once (the kernel closes it) and sends the will
        sub.wait_for(lambda: [m.payload for m in sub.on("hark/kitchen/availability")] == [b"online", b"offline"])
        assert [e["id"] for e in events(sub)] == ids
    finally:
        proc.kill()
        proc.wait()
        sub.close()


def test_outbox_is_bounded_and_drops_the_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_events=3)
    ids = [box.add("t", {"event_type": "beep", "n": i}) for i in range(5)]
    assert len(box) == 3
    first = box.first()
    assert first is not None and first[0] == ids[2]
    assert json.loads(first[2]) == {"event_type": "beep", "n": 2, "id": ids[2]}
    assert "dropped the oldest" in caplog.text
    box.close()
    again = Outbox(tmp_path / "o.sqlite3", max_events=3)
    assert again.add("t", {}) == ids[-1] + 1
    again.close()


# ---------------------------------------------------------------- the outbox's own storage


def damage(path: Path, offset: int, size: int, seed: int = 0) -> None:
    """Overwrite ``size`` bytes of ``path`` at ``offset`` with random ones, as a power cut mid-write can."""
    junk = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(junk)


def queued_outbox(path: Path, n: int) -> list[int]:
    box = Outbox(path, max_events=10000)
    ids = [box.add("hark/kitchen/event", {"event_type": "beep", "score": 0.9, "pad": "x" * 200}) for _ in range(n)]
    box.close()  # checkpoints the WAL into the file
    return ids


def test_damaged_outbox_is_moved_aside_and_events_flow(broker: Broker, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mqtt-outbox.sqlite3"
    old_ids = queued_outbox(path, 300)
    damage(path, 4096 * 6 + 200, 3000)  # one b-tree page in the middle of the queued rows
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.DatabaseError, match="malformed"):
        db.execute("SELECT body FROM outbox ORDER BY id").fetchall()  # precondition: really damaged

    sub = Subscriber(broker, ["hark/kitchen/event"])
    pub = publisher(broker, tmp_path)
    try:
        new_ids = [pub.publish_event("chirp", 0.8) for _ in range(20)]
        assert pub.flush(20)
        got = sub.wait_for(lambda: [e["id"] for e in events(sub) if e["event_type"] == "chirp"] == new_ids and
                           events(sub))
        ids = [e["id"] for e in got]
        assert ids == sorted(set(ids)), "in order, once"
        carried = [i for i in ids if i in old_ids]
        assert 0 < len(carried) < len(old_ids), "what the damaged file still held is carried over, not more"
        assert min(new_ids) > max(old_ids), "ids keep increasing past the damaged file's"
        assert pub._sender is not None and pub._sender.is_alive()
    finally:
        pub.stop()
        sub.close()
    aside = list(tmp_path.glob("mqtt-outbox.sqlite3.damaged-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))], "the damaged file is kept"
    errors = [r for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR


@pytest.mark.parametrize("spoil", ["random bytes", "another schema", "empty tables"])
def test_outbox_that_will_not_open_is_replaced(broker: Broker, tmp_path: Path, spoil: str) -> None:
    path = tmp_path / "mqtt-outbox.sqlite3"
    if spoil == "random bytes":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    elif spoil == "another schema":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload BLOB)")
            db.execute("INSERT INTO outbox (payload) VALUES (x'00ff')")
    else:
        path.write_bytes(b"")
    sub = Subscriber(broker, ["hark/kitchen/event"])
    pub = publisher(broker, tmp_path)
    try:
        ids = [pub.publish_event("beep", 0.9) for _ in range(5)]
        assert pub.flush(10)
        sub.wait_for(lambda: [e["id"] for e in events(sub)] == ids)
    finally:
        pub.stop()
        sub.close()
    moved = bool(list(tmp_path.glob("mqtt-outbox.sqlite3.damaged-*")))
    assert moved == (spoil != "empty tables")  # an empty file is simply a new database


def test_bad_rows_are_dropped_with_a_warning(broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mqtt-outbox.sqlite3"
    good = queued_outbox(path, 2)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO outbox (topic, body) VALUES ('hark/kitchen/event', 'not json')")
        db.execute("INSERT INTO outbox (topic, body) VALUES ('hark/kitchen/event', '[1, 2]')")
        db.execute("INSERT INTO outbox (topic, body) VALUES ('hark/kitchen/event', x'00ff')")
    good += queued_outbox(path, 2)
    sub = Subscriber(broker, ["hark/kitchen/event"])
    pub = publisher(broker, tmp_path)
    try:
        later = pub.publish_event("chirp", 0.5)
        assert pub.flush(10)
        sub.wait_for(lambda: [e["id"] for e in events(sub)] == [*good, later])
        assert pub.pending == 0 and pub._sender is not None and pub._sender.is_alive()
    finally:
        pub.stop()
        sub.close()
    dropped = [r.getMessage() for r in caplog.records if "its row is damaged" in r.getMessage()]
    assert len(dropped) == 3 and all(r.levelno == logging.WARNING for r in caplog.records
                                     if "its row is damaged" in r.getMessage())


def test_full_disk_at_start_holds_events_in_memory_until_it_can_write(
        broker: Broker, small_tmpfs: Path, caplog: pytest.LogCaptureFixture) -> None:
    filler = fill(small_tmpfs)
    sub = Subscriber(broker, ["hark/kitchen/event"])
    # old code: HarkError, "hark run" exits 2. Reconnects after 3 s: the new subscriber is in place first.
    pub = publisher(broker, small_tmpfs, reconnect_min_s=3, reconnect_max_s=3)
    after: Subscriber | None = None
    try:
        ids = [pub.publish_event("beep", 0.9) for _ in range(10)]
        assert pub.outbox.in_memory >= 1
        assert pub.flush(10)
        sub.wait_for(lambda: [e["id"] for e in events(sub)] == ids)
        broker.kill()  # events now wait: in memory while the disk is full
        ids += [pub.publish_event("chirp", 0.8) for _ in range(5)]
        assert pub.outbox.in_memory == 5
        filler.unlink()
        deadline = time.monotonic() + 15
        while pub.outbox.in_memory and time.monotonic() < deadline:
            ids.append(pub.publish_event("beep", 0.7))  # each add tries the file again once it is due
            time.sleep(0.5)
        assert pub.outbox.in_memory == 0, "moved to the file once it could be written"
        assert (small_tmpfs / "mqtt-outbox.sqlite3").stat().st_size > 0
        broker.start()
        after = Subscriber(broker, ["hark/kitchen/event"])
        assert pub.flush(20)
        # ``sub`` comes back too, at its own pace: the ten before the outage from it, the rest from ``after``.
        after.wait_for(lambda: [e["id"] for e in events(sub)[:10] + events(after)] == ids, timeout=10)
    finally:
        pub.stop()
        sub.close()
        if after is not None:
            after.close()
    warned = [r.getMessage() for r in caplog.records if "held in memory (at most" in r.getMessage()]
    assert len(warned) == 1, warned  # once, not per event


def test_disk_filling_mid_run_loses_no_event(broker: Broker, small_tmpfs: Path) -> None:
    pub = publisher(broker, small_tmpfs, reconnect_min_s=3, reconnect_max_s=3)
    sub: Subscriber | None = None
    try:
        broker.kill()
        ids = [pub.publish_event("beep", 0.9) for _ in range(5)]  # on disk
        assert pub.outbox.in_memory == 0
        fill(small_tmpfs)
        ids += [pub.publish_event("chirp", 0.8) for _ in range(200)]  # the file cannot grow: memory
        assert pub.outbox.in_memory > 0
        broker.start()
        sub = Subscriber(broker, ["hark/kitchen/event"])
        assert pub.flush(30)
        sub.wait_for(lambda: [e["id"] for e in events(sub)] == ids, timeout=10)
    finally:
        pub.stop()
        if sub is not None:
            sub.close()


# ---------------------------------------------------------------- why the broker is not reached


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def broker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hark.mqtt" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("case", ["dns", "refused", "wrong ca", "no client certificate", "password"])
def test_every_reason_the_broker_is_not_reached_is_a_warning_once(
        case: str, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hark.mqtt")
    server: TlsBroker | None = None
    over: dict[str, object] = {}
    if case == "dns":
        host, port, expected = "no-such-broker.invalid", 1883, "cannot resolve 'no-such-broker.invalid'"
    elif case == "refused":
        host, port = "127.0.0.1", free_port()
        expected = f"127.0.0.1:{port} refused the connection (is the broker running, on this port?)"
    elif case == "wrong ca":
        server = TlsBroker(tmp_path / "broker", pki)
        host, port = server.host, server.port
        over["tls"] = TlsConfig(ca_file=pki.wrong_ca)
        expected = f"TLS: the broker's certificate at 127.0.0.1:{port} was refused: self-signed certificate in"
    elif case == "no client certificate":
        server = TlsBroker(tmp_path / "broker", pki)
        server.conf.write_text(server.conf.read_text() + "require_certificate true\n")
        host, port = server.host, server.port
        over["tls"] = TlsConfig(ca_file=pki.ca)
        expected = (f"the broker at 127.0.0.1:{port} closed the connection: tlsv13 alert certificate required "
                    "(the broker wants a client certificate: set mqtt.tls.cert_file and key_file)")
    else:
        server = TlsBroker(tmp_path / "broker", users={"hark": "right"})
        host, port = server.host, server.port
        over.update(username="hark", password="wrong")
        expected = "refused the connection: Not authorized (check mqtt.username and the password)"
    if server is not None:
        server.start()
    cfg = MqttConfig(host=host, port=port, device_id="kitchen", keepalive=5, reconnect_min_s=0.5,
                     reconnect_max_s=0.5, **over)  # type: ignore[arg-type]
    pub = MqttPublisher(cfg, state_dir=tmp_path, model_name="tones", labels=LABELS)
    pub.start()
    try:
        pub.publish_event("beep", 0.9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(expected in m for m in broker_warnings(caplog)) < 1:
            time.sleep(0.1)
        time.sleep(3.0)  # more attempts, each failing the same way
        attempts = sum("(still)" in r.getMessage() for r in caplog.records)
        assert attempts >= 1, "the failure repeated"
        warned = broker_warnings(caplog)
        assert sum(expected in m for m in warned) == 1, warned
        assert len(warned) == len(set(warned)), "no reason is warned twice in one outage"
        # Under TLS 1.3 the broker's refusal may reach the client as a bare EOF before its alert is read.
        others = [m for m in warned if expected not in m
                  and not (case == "no client certificate" and "closed the connection: EOF occurred" in m)]
        assert others == [], warned
        assert pub.pending == 1
    finally:
        pub.stop(timeout=1)
        if server is not None:
            server.kill()
    assert "right" not in caplog.text and "wrong\n" not in caplog.text


def test_tls_broker_reached_and_reason_logged_again_after_a_change(pki: Pki, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    server = TlsBroker(tmp_path / "broker", pki)
    cfg = MqttConfig(host=server.host, port=server.port, device_id="kitchen", keepalive=5, reconnect_min_s=0.5,
                     reconnect_max_s=0.5, tls=TlsConfig(ca_file=pki.ca, cert_file=pki.client_cert,
                                                         key_file=pki.client_key))
    pub = MqttPublisher(cfg, state_dir=tmp_path, model_name="tones", labels=LABELS)
    pub.start()
    try:
        ids = [pub.publish_event("beep", 0.9)]
        time.sleep(1.5)  # refused: nothing listens yet
        server.start()
        ids.append(pub.publish_event("chirp", 0.8))
        assert pub.flush(10), "delivered over TLS once the broker is up"
        server.kill()
        time.sleep(1.5)
    finally:
        pub.stop(timeout=1)
    warned = broker_warnings(caplog)
    refused = [m for m in warned if "refused the connection" in m]
    assert len(refused) == 2, warned  # before the first connect, and again after the connection was lost
    assert any("lost the broker" in m for m in warned)


# ---------------------------------------------------------------- delivery that stalls


def test_puback_that_never_comes_is_timed_out_and_the_event_sent_again(broker: Broker, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    proxy = PubackEater(broker, drop_pubacks=0)
    sub = Subscriber(broker, ["hark/kitchen/event", "hark/kitchen/state"])
    cfg = MqttConfig(host=proxy.host, port=proxy.port, device_id="kitchen", keepalive=30, reconnect_min_s=1,
                     reconnect_max_s=1)
    pub = MqttPublisher(cfg, state_dir=tmp_path, model_name="tones", labels=LABELS, ack_timeout_s=2)
    pub.start()
    try:
        sub.wait_for(lambda: sub.on("hark/kitchen/state"))
        time.sleep(0.5)  # the acknowledgements of the connect's retained documents have passed
        proxy.drop_pubacks = 1
        ids = [pub.publish_event("beep", 0.9) for _ in range(3)]
        sub.wait_for(lambda: events(sub))  # the broker took the first event; its PUBACK is swallowed
        assert not pub.flush(1.0), "without the PUBACK the event stays queued"
        assert pub.flush(15), "timed out, sent again on a new connection, acknowledged"
        assert proxy.dropped == 1 and proxy.connections == 2
        sub.wait_for(lambda: {e["id"] for e in events(sub)} == set(ids))
        got = [e["id"] for e in events(sub)]
        assert got == [ids[0], *ids], "the unacknowledged event once more, the rest once, in order"
    finally:
        pub.stop()
        sub.close()
        proxy.close()
    warned = [r.getMessage() for r in caplog.records if "no PUBACK" in r.getMessage()]
    assert warned == [f"MQTT: no PUBACK for event {ids[0]} within 2 s; reconnecting to send it again"]


def test_sender_survives_unexpected_errors_and_the_watchdog_sees_stuck_events(
        broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = Subscriber(broker, ["hark/kitchen/event"])
    cfg = settings(broker)
    pub = MqttPublisher(cfg, state_dir=tmp_path, model_name="tones", labels=LABELS, stuck_s=1.5)
    real_first = pub.outbox.first
    failing = {"on": True}

    def first() -> tuple[int, str, str] | None:
        # An error no code path expects (the outbox itself turns sqlite errors into warnings).
        if failing["on"]:
            raise RuntimeError("something nobody foresaw")
        return real_first()

    monkeypatch.setattr(pub.outbox, "first", first)
    pub.start()
    try:
        ids = [pub.publish_event("beep", 0.9) for _ in range(3)]
        time.sleep(2.5)
        assert pub._sender is not None and pub._sender.is_alive(), "the sender thread never dies"
        assert not pub.healthy(), "events stuck for longer than stuck_s: stop pinging the watchdog"
        failing["on"] = False
        assert pub.flush(15)
        sub.wait_for(lambda: [e["id"] for e in events(sub)] == ids)
        assert pub.healthy()
    finally:
        pub.stop()
        sub.close()
    failures = [r for r in caplog.records if "sending events failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None, "the first failure with its traceback"
    assert all(r.exc_info is None for r in failures[1:]), "then one line each"
    assert len(failures) <= 4, "retried with backoff, not in a tight loop"
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_an_unreachable_broker_is_not_stuck(tmp_path: Path) -> None:
    cfg = MqttConfig(host="127.0.0.1", port=free_port(), device_id="kitchen", reconnect_min_s=1, reconnect_max_s=1)
    pub = MqttPublisher(cfg, state_dir=tmp_path, model_name="tones", labels=LABELS, stuck_s=1.0)
    pub.start()
    try:
        pub.publish_event("beep", 0.9)
        time.sleep(2.0)
        assert pub.healthy(), "a restart would not bring the broker back: keep the watchdog happy"
    finally:
        pub.stop(timeout=1)


# ---------------------------------------------------------------- what anyone on the broker can send


def test_retained_commands_are_ignored(broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    admin = Subscriber(broker, ["hark/kitchen/state"])
    # Left on the broker by someone: acted on at every connect by the old code.
    admin.client.publish("hark/kitchen/record/set", b'{"label": "beep"}', qos=1, retain=True).wait_for_publish(5)
    admin.client.publish("hark/kitchen/mute/set", b"ON", qos=1, retain=True).wait_for_publish(5)
    mutes: list[bool] = []
    records: list[ClipRequest] = []
    pub = publisher(broker, tmp_path, on_mute=mutes.append, on_record=records.append)
    try:
        admin.wait_for(lambda: admin.on("hark/kitchen/state"))
        admin.wait_for(lambda: sum("ignored a retained message" in r.getMessage() for r in caplog.records) == 2)
        admin.client.publish("hark/kitchen/mute/set", b"OFF", qos=1)  # a live command still works
        admin.wait_for(lambda: mutes == [False])
        assert records == []
    finally:
        pub.stop()
        admin.client.publish("hark/kitchen/record/set", b"", qos=1, retain=True).wait_for_publish(5)
        admin.close()


def test_discovery_flood_is_answered_at_most_every_few_seconds(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker, ["homeassistant/event/#"])
    pub = publisher(broker, tmp_path)
    try:
        sub.wait_for(lambda: len(sub.messages) == 1)
        t0 = time.monotonic()
        for _ in range(1000):
            sub.client.publish("homeassistant/status", "online")
        time.sleep(ANNOUNCE_MIN_S + 1.5 - (time.monotonic() - t0))
        # The connect's announcement, then at most one answer now and one when the interval is over,
        # so the last request is answered too.
        assert 2 <= len(sub.messages) <= 3, len(sub.messages)
    finally:
        pub.stop()
        sub.close()
