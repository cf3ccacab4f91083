"""Tell the house: detections as MQTT events, Home Assistant discovery, and commands back.

Topics live under ``<base>/<device_id>/`` (``hark/kitchen/`` by default):

``availability``  retained ``online`` / ``offline``; ``offline`` is also the last will, and is
                  published by hand on a clean stop (the broker only sends the will on a crash).
``event``         one JSON document per detection, QoS 1 (or 2), never retained::
                  {"event_type": "beep", "score": 0.93, "time": "2024-...Z", "model": "tones", "id": 17}
``state``         retained JSON: ``{"state": "listening"|"muted"|"recording", "muted": ..., "version": ...}``
``mute/set``      command: ``ON`` / ``OFF``
``record/set``    command: ``{"label": "beep", "seconds": 1.5}`` (no label or ``"background"``: background)
``wrong/set``     command (any payload, e.g. ``PRESS``): the latest detection was wrong; its capture
                  moves into the dataset's ``_unknown_`` folder (:func:`hark.review.mark_latest_wrong`)

Delivery. Every event is first written to an outbox (sqlite3 under the state directory,
``synchronous=FULL``) whose autoincrement row id is the event's ``id``: unique and increasing
across restarts. One sender thread hands the oldest event to paho and the next only after the
broker's PUBACK, when the row is deleted. One event in flight at a time keeps the order across
reconnects (paho resends its in-flight message itself after a reconnect) and keeps paho's
memory bounded; the outbox is bounded too (``outbox_max``, oldest dropped with a warning).
So an outage or a daemon restart loses nothing and the normal path delivers each event once,
in order. MQTT QoS 1 is "at least once": if the broker or the daemon dies after the broker
took an event but before its PUBACK arrived, that event is sent again with the same ``id``;
subscribers that must not see a repeat drop ids they have seen.

Nothing here blocks the caller on the network: :meth:`MqttPublisher.publish_event` writes
one row and returns; paho's own thread (``loop_start``) connects and reconnects with backoff.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hark import __version__
from hark.config import MqttConfig
from hark.errors import HarkError
from hark.labels import BACKGROUND
from hark.recorder import ClipRequest, parse_record_payload

log = logging.getLogger(__name__)


class _ReconnectNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected" as an ERROR on every loop pass while it waits to
    reconnect; the outage is already reported once by our own callbacks, so those lines become DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_paho_log = logging.getLogger("hark.mqtt.paho")
_paho_log.addFilter(_ReconnectNoise())

ORIGIN = {"name": "hark", "sw_version": __version__}


class Outbox:
    """A bounded, persisted FIFO of events: survives outages and restarts; rows leave only when acknowledged."""

    def __init__(self, path: Path, *, max_events: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_events = max_events
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a row is on disk (fsynced) before publish_event returns, so a power cut keeps it.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                "body TEXT NOT NULL)"
            )
        except sqlite3.Error as err:
            raise HarkError(f"{path}: cannot open the MQTT outbox ({err})") from None

    def add(self, topic: str, body: dict[str, Any]) -> int:
        """Store an event; returns its id (unique, increasing). Drops the oldest beyond ``max_events``."""
        with self._lock:
            cur = self._db.execute("INSERT INTO outbox (topic, body) VALUES (?, ?)", (topic, json.dumps(body)))
            event_id = int(cur.lastrowid or 0)
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            if count > self.max_events:
                dropped = [r[0] for r in self._db.execute(
                    "SELECT id FROM outbox ORDER BY id LIMIT ?", (count - self.max_events,)).fetchall()]
                self._db.execute(f"DELETE FROM outbox WHERE id <= {int(dropped[-1])}")
                log.warning("MQTT outbox full (%d events): dropped the oldest, id %s", self.max_events,
                            ", ".join(map(str, dropped)))
            return event_id

    def first(self) -> tuple[int, str, str] | None:
        """The oldest event as ``(id, topic, payload)``, the payload carrying its id."""
        with self._lock:
            row = self._db.execute("SELECT id, topic, body FROM outbox ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        event_id, topic, body = row
        return event_id, topic, json.dumps({**json.loads(body), "id": event_id})

    def remove(self, event_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def parse_mute(payload: bytes) -> bool:
    """``ON`` / ``OFF`` (any case, surrounding blanks ignored) to True / False; HarkError otherwise."""
    text = payload.decode("utf-8", errors="replace").strip().upper()
    if text not in ("ON", "OFF"):
        raise HarkError(f"mute/set: expected ON or OFF, got {payload[:40]!r}")
    return text == "ON"


def parse_record(payload: bytes, *, max_seconds: float) -> ClipRequest:
    """A ``record/set`` payload checked as every clip request from outside is
    (:func:`hark.recorder.parse_record_payload`), and no longer than ``max_seconds``.

    ``seconds`` left out stays ``None``: the recorder then uses the configured clip length, or
    the background length for ``"background"``.
    """
    request = parse_record_payload(payload)
    if request.seconds is not None and request.seconds > max_seconds:
        raise HarkError(f"record command: seconds {request.seconds:g} is more than recording.max_seconds "
                        f"({max_seconds:g})")
    return request


class MqttPublisher:
    """One broker connection: events through the outbox, state, discovery, and the two commands."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        state_dir: Path,
        model_name: str,
        labels: list[str],
        on_mute: Callable[[bool], None] | None = None,
        on_record: Callable[[ClipRequest], None] | None = None,
        record_max_s: float = 60.0,
        on_wrong: Callable[[], None] | None = None,
        model_created: str | None = None,
    ) -> None:
        self.config = config
        self.device_id = config.effective_device_id
        self.root = config.topic_root
        self.model_name = model_name
        self.labels = [label for label in labels if label != BACKGROUND]
        self.on_mute = on_mute
        self.on_record = on_record
        self.on_wrong = on_wrong
        self.model_created = model_created
        self.record_max_s = record_max_s
        self.outbox = Outbox(state_dir / "mqtt-outbox.sqlite3", max_events=config.outbox_max)
        self._state = {"state": "listening", "muted": False}
        self._wake: queue.Queue[tuple[str, int]] = queue.Queue()
        self._inflight: tuple[int, int] | None = None  # (event id, paho mid)
        self._idle = threading.Condition()
        self._connected = threading.Event()
        self._stopping = False
        self._sender: threading.Thread | None = None
        self.client = self._make_client()

    # ------------------------------------------------------------ topics and documents

    def topic(self, name: str) -> str:
        return f"{self.root}/{name}"

    @property
    def device_block(self) -> dict[str, Any]:
        return {
            "identifiers": [f"hark_{self.device_id}"],
            "name": self.config.name or f"hark {self.device_id}",
            "manufacturer": "hark",
            "model": f"hark sound detector ({self.model_name})",
            "sw_version": __version__,
        }

    def discovery_documents(self) -> dict[str, dict[str, Any]]:
        """Home Assistant discovery: topic -> config document (one event entity, a mute switch, binary sensors)."""
        prefix, uid = self.config.discovery_prefix, f"hark_{self.device_id}"
        common = {
            "availability_topic": self.topic("availability"),
            "device": self.device_block,
            "origin": ORIGIN,
        }
        docs: dict[str, dict[str, Any]] = {
            f"{prefix}/event/{uid}/detection/config": {
                "name": "Sound",
                "unique_id": f"{uid}_detection",
                "object_id": f"{uid}_detection",
                "state_topic": self.topic("event"),
                "event_types": list(self.labels),
                "qos": self.config.qos,
                "icon": "mdi:ear-hearing",
                **common,
            },
            f"{prefix}/switch/{uid}/mute/config": {
                "name": "Mute",
                "unique_id": f"{uid}_mute",
                "command_topic": self.topic("mute/set"),
                "state_topic": self.topic("state"),
                "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
                "icon": "mdi:microphone-off",
                **common,
            },
        }
        # The running model's name as a sensor (with its labels and training date), so Home Assistant
        # shows which model the device runs and when a deploy from the page changed it.
        docs[f"{prefix}/sensor/{uid}/model/config"] = {
            "name": "Model",
            "unique_id": f"{uid}_model",
            "state_topic": self.topic("state"),
            "value_template": "{{ value_json.model }}",
            "json_attributes_topic": self.topic("state"),
            "json_attributes_template":
                "{{ {'labels': value_json.labels, 'created': value_json.model_created} | tojson }}",
            "entity_category": "diagnostic",
            "icon": "mdi:brain",
            **common,
        }
        if self.on_wrong is not None:
            docs[f"{prefix}/button/{uid}/wrong/config"] = {
                "name": "That was wrong",
                "unique_id": f"{uid}_wrong",
                "command_topic": self.topic("wrong/set"),
                "payload_press": "PRESS",
                "icon": "mdi:thumb-down",
                **common,
            }
        if self.config.binary_sensor:
            for label in self.labels:
                docs[f"{prefix}/binary_sensor/{uid}/{label}/config"] = {
                    "name": label,
                    "unique_id": f"{uid}_{label}",
                    "state_topic": self.topic(f"detected/{label}"),
                    "payload_on": "ON",
                    "off_delay": self.config.off_delay,
                    "device_class": "sound",
                    **common,
                }
        return docs

    # ------------------------------------------------------------ paho wiring

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hark-{self.device_id}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.enable_logger(_paho_log)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.read_password())
        if cfg.tls is not None:
            tls = cfg.tls
            try:
                client.tls_set(ca_certs=str(tls.ca_file) if tls.ca_file else None,
                               certfile=str(tls.cert_file) if tls.cert_file else None,
                               keyfile=str(tls.key_file) if tls.key_file else None,
                               cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as err:
                raise HarkError(f"mqtt.tls: cannot load the TLS files ({err})") from None
            client.tls_insecure_set(tls.insecure)
        client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=max(1, round(cfg.reconnect_min_s)),
                                   max_delay=max(1, round(cfg.reconnect_max_s)))
        # The outbox keeps at most one event in flight; the rest are small retained documents.
        client.max_inflight_messages_set(50)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background (a broker that is down now is retried with backoff) and start sending."""
        cfg = self.config
        log.info("MQTT: connecting to %s:%d as %s (topics under %s/), %d queued event(s)",
                 cfg.host, cfg.effective_port, self.device_id, self.root, len(self.outbox))
        try:
            self.client.connect_async(cfg.host, cfg.effective_port, keepalive=cfg.keepalive)
        except (OSError, ValueError) as err:
            raise HarkError(f"mqtt.host: cannot connect to {cfg.host}:{cfg.effective_port} ({err})") from None
        self.client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-outbox", daemon=True)
        self._sender.start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT: broker refused the connection: %s", reason)
            return
        log.info("MQTT: connected to %s:%d", self.config.host, self.config.effective_port)
        client.subscribe([(self.topic("mute/set"), 1), (self.topic("record/set"), 1), (self.topic("wrong/set"), 1)])
        if self.config.discovery:
            client.subscribe(f"{self.config.discovery_prefix}/status", 1)
        self._announce()
        self._connected.set()
        self._wake.put(("connected", 0))

    def _announce(self) -> None:
        """Discovery documents, ``online`` and the state: on every connect and when Home Assistant comes back."""
        if self.config.discovery:
            for topic, doc in self.discovery_documents().items():
                self.client.publish(topic, json.dumps(doc), qos=1, retain=True)
        self.client.publish(self.topic("availability"), "online", qos=1, retain=True)
        self._publish_state()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
        if not self._stopping:
            log.warning("MQTT: lost the broker (%s); reconnecting with backoff, events wait in the outbox", reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # Called with paho's locks held: hand the ack to the sender thread, never publish from here.
        self._wake.put(("ack", mid))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == f"{self.config.discovery_prefix}/status":
                if message.payload.strip() == b"online":
                    log.info("MQTT: Home Assistant is back; publishing discovery again")
                    self._announce()
            elif message.topic == self.topic("mute/set"):
                muted = parse_mute(message.payload)
                log.info("MQTT: mute %s", "on" if muted else "off")
                if self.on_mute:
                    self.on_mute(muted)
            elif message.topic == self.topic("record/set"):
                command = parse_record(message.payload, max_seconds=self.record_max_s)
                log.info("MQTT: record %s%s", command.label or BACKGROUND,
                         f" for {command.seconds:g} s" if command.seconds else "")
                if self.on_record:
                    self.on_record(command)
            elif message.topic == self.topic("wrong/set"):
                if message.retain:
                    log.warning("MQTT: ignored a retained wrong/set (only a live press counts)")
                elif self.on_wrong:
                    log.info("MQTT: that was wrong")
                    self.on_wrong()
        except HarkError as err:
            log.warning("MQTT: ignored a bad command on %s: %s", message.topic, err)
        except Exception:  # a command must never take the network thread down
            log.exception("MQTT: command on %s failed", message.topic)

    # ------------------------------------------------------------ events

    def publish_event(self, label: str, score: float, *, when: datetime | None = None) -> int:
        """Queue a detection (persisted before returning); returns its event id. Never waits for the network."""
        when = when or datetime.now(timezone.utc)
        body = {
            "event_type": label,
            "score": round(float(score), 4),
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "model": self.model_name,
        }
        event_id = self.outbox.add(self.topic("event"), body)
        if self.config.binary_sensor and self._connected.is_set():
            self.client.publish(self.topic(f"detected/{label}"), "ON", qos=0)
        self._wake.put(("event", event_id))
        return event_id

    def _send_loop(self) -> None:
        """The only place events are handed to paho: oldest first, the next after the previous one's PUBACK."""
        while True:
            try:
                kind, value = self._wake.get(timeout=0.5)
            except queue.Empty:
                kind, value = "tick", 0
            if kind == "stop":
                return
            if kind == "ack" and self._inflight is not None and self._inflight[1] == value:
                self.outbox.remove(self._inflight[0])
                self._inflight = None
            if self._inflight is None:
                self._send_next()
            with self._idle:
                self._idle.notify_all()

    def _send_next(self) -> None:
        item = self.outbox.first()
        if item is None:
            return
        event_id, topic, payload = item
        if not self._connected.is_set():
            # Paho would queue it in memory; keeping it only in the outbox keeps memory bounded and the order simple.
            return
        info = self.client.publish(topic, payload, qos=self.config.qos, retain=False)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # NO_CONN: paho keeps a QoS>0 message and sends it after reconnecting, so it still counts as in flight.
            self._inflight = (event_id, info.mid)
            log.debug("MQTT: sent event %d (mid %d)", event_id, info.mid)
        else:
            log.warning("MQTT: could not send event %d: %s", event_id, mqtt.error_string(info.rc))

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker."""
        return len(self.outbox)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every queued event to be acknowledged; True when none is left."""
        deadline = time.monotonic() + timeout
        while self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._wake.put(("tick", 0))
            with self._idle:
                self._idle.wait(min(left, 0.2))
        return True

    # ------------------------------------------------------------ state

    def set_state(self, state: str, *, muted: bool) -> None:
        """``listening``, ``muted`` or ``recording``; retained so a new subscriber sees it at once."""
        self._state = {"state": state, "muted": muted}
        if self._connected.is_set():
            self._publish_state()

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    def set_model(self, name: str, labels: list[str], *, created: str | None = None) -> None:
        """A new model runs (deployed from the page): new event types in discovery, new name in the state."""
        self.model_name = name
        self.labels = [label for label in labels if label != BACKGROUND]
        self.model_created = created
        if self._connected.is_set():
            self._announce()

    def _publish_state(self) -> None:
        doc = {**self._state, "version": __version__, "model": self.model_name, "labels": self.labels,
               "model_created": self.model_created}
        self.client.publish(self.topic("state"), json.dumps(doc), qos=1, retain=True)

    def stop(self, *, timeout: float = 5.0) -> None:
        """Clean stop: ``offline`` (the will is not sent on a clean disconnect), then disconnect."""
        self._stopping = True
        if self._connected.is_set():
            info = self.client.publish(self.topic("availability"), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=timeout)
            except (RuntimeError, ValueError) as err:
                log.warning("MQTT: could not say offline: %s", err)
        self._wake.put(("stop", 0))
        if self._sender is not None:
            self._sender.join(timeout=timeout)
        self.client.disconnect()
        self.client.loop_stop()
        left = len(self.outbox)
        if left:
            log.warning("MQTT: %d event(s) not yet delivered stay in %s for the next start", left, self.outbox.path)
        self.outbox.close()
