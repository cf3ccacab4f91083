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

import contextlib
import json
import logging
import os
import queue
import re
import socket
import sqlite3
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hark import __version__
from hark.config import Config, MqttConfig
from hark.detector import Detection
from hark.errors import HarkError
from hark.labels import BACKGROUND
from hark.loglimit import LogLimit
from hark.recorder import ClipRequest, parse_record_payload

log = logging.getLogger(__name__)


# paho's ERROR lines that repeat on every attempt while the broker is away; hark says why once itself.
_SAID_BY_US = ("Client is not connected", "failed to receive on socket", "failed to send on socket")
_SSL_NOISE = re.compile(r"^\[[A-Z]+: [A-Z0-9_]+\] | \(_ssl\.c:\d+\)$")


class _ReconnectNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected" as an ERROR on every loop pass while it waits to
    reconnect; the outage is already reported once by our own callbacks, so those lines become DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(_SAID_BY_US):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_paho_log = logging.getLogger("hark.mqtt.paho")
_paho_log.addFilter(_ReconnectNoise())

ORIGIN = {"name": "hark", "sw_version": __version__}
ACK_TIMEOUT_S = 30.0  # no PUBACK for the event in flight this long: reconnect, and paho sends it again
STUCK_S = 300.0  # events stuck this long on a live broker: stop pinging the watchdog (systemd restarts hark)
SENDER_BACKOFF_MAX_S = 60.0
ANNOUNCE_MIN_S = 5.0  # Home Assistant's discovery requests answered at most this often


def _is_auth(reason: Any) -> bool:
    text = str(reason).lower()
    return "password" in text or "authori" in text


OUTBOX_RETRY_S = 5.0  # how often an outbox that cannot be opened or written is tried again
MEMORY_EVENTS = 1000  # events held in memory while the outbox file cannot be written
_DAMAGE_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
_COLUMNS = ["id", "topic", "body"]


class _Damaged(Exception):
    """The outbox file opens but is not hark's outbox any more (bad pages, another schema)."""


def _damaged(err: BaseException) -> bool:
    if isinstance(err, _Damaged):
        return True
    name = getattr(err, "sqlite_errorname", "")
    if name:
        return name in _DAMAGE_CODES
    text = str(err).lower()
    return "malformed" in text or "not a database" in text


class Outbox:
    """A bounded, persisted FIFO of events: survives outages and restarts; rows leave only when acknowledged.

    It also survives its own storage. A file that is damaged (a power cut mid-write on an SD card:
    bad pages, not a database, another table layout) is moved aside as ``<name>.damaged-<time>``
    (kept for inspection, logged once); the events still readable in it are carried into a fresh
    file with their ids. A row that is not a JSON event is dropped with a warning. When the file
    cannot be opened or written (a full or read-only state filesystem), events are held in memory,
    at most ``memory_events`` of them (oldest dropped with a warning), while the file is tried
    again every ``OUTBOX_RETRY_S`` s; once it can be written they move to it in order. No method
    raises :class:`sqlite3.Error`: detection goes on whatever the SD card does.
    """

    def __init__(self, path: Path, *, max_events: int, memory_events: int = MEMORY_EVENTS) -> None:
        self.path = path
        self.max_events = max_events
        self.memory_events = max(1, min(memory_events, max_events))
        self.moved_aside: list[Path] = []
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._writable = False
        self._memory: deque[tuple[int, str, str]] = deque()  # (id, topic, body) not yet on disk
        self._last_id: int | None = None  # None: unknown (the file never opened)
        self._acked_upto = 0  # rows up to this id are acknowledged but could not be deleted yet (disk full)
        self._retry_at = 0.0
        self._problem: str | None = None
        with self._lock:
            self._open()

    # ------------------------------------------------------------ opening and damage

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=5.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a row is on disk (fsynced) before publish_event returns, so a power cut keeps it.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "topic TEXT NOT NULL, body TEXT NOT NULL)")
            columns = [row[1] for row in db.execute("PRAGMA table_info(outbox)")]
            if columns != _COLUMNS:
                raise _Damaged(f"its outbox table has the columns {', '.join(columns)}")
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise _Damaged(str(verdict).splitlines()[0])
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            (top,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()
        except BaseException:
            db.close()
            raise
        self._last_id = max(int(seq[0]) if seq else 0, int(top), self._last_id or 0)
        return db

    def _open(self) -> None:
        """Open the file, moving a damaged one aside; on any other failure stay in memory and retry later."""
        self._retry_at = time.monotonic() + OUTBOX_RETRY_S
        salvaged: list[tuple[int, str, str]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                db = self._connect()
            except (sqlite3.DatabaseError, _Damaged) as err:
                if not _damaged(err):
                    raise
                salvaged = self._move_aside(err)
                db = self._connect()
            for row in salvaged:
                db.execute("INSERT OR IGNORE INTO outbox (id, topic, body) VALUES (?, ?, ?)", row)
            if self._last_id:
                # Ids keep increasing past the damaged file's, so subscribers that drop repeats keep the new ones.
                db.execute("DELETE FROM sqlite_sequence WHERE name = 'outbox'")
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (self._last_id,))
        except (sqlite3.Error, OSError, _Damaged) as err:
            self._trouble(f"cannot open {self.path} ({_reason(err)})")
            return
        self._db, self._writable = db, True
        self._flush_memory()

    def _move_aside(self, err: BaseException) -> list[tuple[int, str, str]]:
        """Rename the damaged file (and its WAL) out of the way; returns the rows still readable in it."""
        rows: list[tuple[int, str, str]] = []
        last = 0
        with contextlib.suppress(sqlite3.Error, OSError, ValueError):
            old = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                with contextlib.suppress(sqlite3.Error, TypeError, ValueError):
                    seq = old.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
                    last = int(seq[0]) if seq else 0
                with contextlib.suppress(sqlite3.Error):
                    for row in old.execute("SELECT id, topic, body FROM outbox ORDER BY id"):
                        if isinstance(row[0], int) and isinstance(row[1], str) and isinstance(row[2], str):
                            rows.append(row)
            finally:
                old.close()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db, self._writable = None, False
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{aside}{suffix}"))
        self.moved_aside.append(aside)
        self._last_id = max([last, self._last_id or 0, *(r[0] for r in rows)])
        if not self._last_id:
            # Nothing says which ids were handed out: start past any of them (milliseconds since 1970).
            self._last_id = int(time.time() * 1000)
        log.error("MQTT outbox %s is damaged (%s): moved it to %s and started a fresh one; %d queued event(s) "
                  "carried over", self.path, _reason(err), aside.name, len(rows))
        return rows

    def _failed(self, err: sqlite3.Error, *, writing: bool) -> None:
        """After an error from the file: damage moves it aside; a write that fails holds events in memory."""
        if _damaged(err):
            try:
                self._move_aside(err)
            except OSError as move_err:
                self._trouble(f"{self.path} is damaged ({_reason(err)}) and cannot be moved aside "
                              f"({_reason(move_err)})")
                return
            self._open()
        elif writing:
            self._writable = False
            self._retry_at = time.monotonic() + OUTBOX_RETRY_S
            self._trouble(f"cannot write {self.path} ({_reason(err)})")
        else:
            with contextlib.suppress(sqlite3.Error):
                if self._db is not None:
                    self._db.close()
            self._db, self._writable = None, False
            self._retry_at = time.monotonic() + OUTBOX_RETRY_S
            self._trouble(f"cannot read {self.path} ({_reason(err)})")

    def _trouble(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning("MQTT outbox: %s; events are held in memory (at most %d) until it can be written",
                        problem, self.memory_events)

    def _maintain(self) -> None:
        """Try the file again when it was unusable, and move events held in memory to it."""
        if (self._db is not None and self._writable and not self._memory and not self._acked_upto) \
                or time.monotonic() < self._retry_at:
            return
        if self._db is None:
            self._open()
        else:
            self._writable = True
            self._flush_memory()

    def _flush_memory(self) -> None:
        if self._db is None or not self._writable:
            return
        moved = len(self._memory)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            if self._acked_upto:
                self._db.execute("DELETE FROM outbox WHERE id <= ?", (self._acked_upto,))
            for row in self._memory:
                self._db.execute("INSERT OR IGNORE INTO outbox (id, topic, body) VALUES (?, ?, ?)", row)
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self._failed(err, writing=True)
            return
        self._memory.clear()
        self._acked_upto = 0
        if self._problem is not None:
            log.warning("MQTT outbox: %s can be written again; %d event(s) moved there from memory", self.path, moved)
            self._problem = None

    # ------------------------------------------------------------ the queue

    def _next_memory_id(self) -> int:
        if self._last_id is None:
            # The file never opened, so its last id is unknown: start past any id it can hold.
            self._last_id = int(time.time() * 1000)
        self._last_id += 1
        return self._last_id

    def add(self, topic: str, body: dict[str, Any]) -> int:
        """Store an event; returns its id (unique, increasing). Drops the oldest beyond ``max_events``."""
        text = json.dumps(body)
        with self._lock:
            self._maintain()
            for _ in range(2):  # a second time after a damaged file was replaced by a fresh one
                if self._db is None or not self._writable or self._memory:
                    break
                try:
                    return self._insert(topic, text)
                except sqlite3.Error as err:
                    self._failed(err, writing=True)
            event_id = self._next_memory_id()
            self._memory.append((event_id, topic, text))
            if len(self._memory) > self.memory_events:
                dropped = self._memory.popleft()
                log.warning("MQTT outbox: %d events held in memory: dropped the oldest, id %d",
                            self.memory_events, dropped[0])
            return event_id

    def _insert(self, topic: str, text: str) -> int:
        assert self._db is not None
        cur = self._db.execute("INSERT INTO outbox (topic, body) VALUES (?, ?)", (topic, text))
        event_id = int(cur.lastrowid or 0)
        self._last_id = max(self._last_id or 0, event_id)
        (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        if count > self.max_events:
            dropped = [r[0] for r in self._db.execute(
                "SELECT id FROM outbox ORDER BY id LIMIT ?", (count - self.max_events,)).fetchall()]
            self._db.execute("DELETE FROM outbox WHERE id <= ?", (int(dropped[-1]),))
            log.warning("MQTT outbox full (%d events): dropped the oldest, id %s", self.max_events,
                        ", ".join(map(str, dropped)))
        return event_id

    @staticmethod
    def _payload(row: tuple[Any, Any, Any]) -> str | None:
        """The row's payload with its id, or None (after a warning) when the row is not an event."""
        event_id, topic, body = row
        try:
            if not isinstance(topic, str) or not topic or not isinstance(body, str):
                raise ValueError("topic or body is not text")
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("body is not a JSON object")
        except (ValueError, RecursionError) as err:
            log.warning("MQTT outbox: dropped event %r, its row is damaged (%s)", event_id, err)
            return None
        return json.dumps({**document, "id": event_id})

    def first(self) -> tuple[int, str, str] | None:
        """The oldest event as ``(id, topic, payload)``, the payload carrying its id."""
        with self._lock:
            self._maintain()
            for _ in range(self.max_events + 3):  # bad rows are dropped one by one; bounded all the same
                if self._db is None:
                    break
                try:
                    row = self._db.execute("SELECT id, topic, body FROM outbox WHERE id > ? ORDER BY id LIMIT 1",
                                           (self._acked_upto,)).fetchone()
                except sqlite3.Error as err:
                    self._failed(err, writing=False)
                    continue
                if row is None:
                    break
                payload = self._payload(row)
                if payload is not None:
                    return int(row[0]), row[1], payload
                try:
                    self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
                except sqlite3.Error as err:
                    self._failed(err, writing=True)
                    break
            while self._memory:
                event_id, topic, body = self._memory[0]
                payload = self._payload((event_id, topic, body))
                if payload is not None:
                    return event_id, topic, payload
                self._memory.popleft()
            return None

    def remove(self, event_id: int) -> None:
        with self._lock:
            if self._memory and self._memory[0][0] == event_id:
                self._memory.popleft()
                return
            if self._db is None:
                return
            try:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))
            except sqlite3.Error as err:
                # A full disk can refuse even a delete: remember the ack (events leave in order) and delete later.
                self._acked_upto = max(self._acked_upto, event_id)
                self._failed(err, writing=True)

    def __len__(self) -> int:
        with self._lock:
            on_disk = 0
            if self._db is not None:
                try:
                    on_disk = int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE id > ?",
                                                   (self._acked_upto,)).fetchone()[0])
                except sqlite3.Error as err:
                    self._failed(err, writing=False)
            return on_disk + len(self._memory)

    @property
    def in_memory(self) -> int:
        """Events waiting in memory because the file could not be written."""
        return len(self._memory)

    def close(self) -> None:
        with self._lock:
            if self._memory:
                log.warning("MQTT outbox: %d event(s) held in memory are lost (%s could not be written)",
                            len(self._memory), self.path)
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None


def _reason(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context ``hark run`` connects with (None without ``mqtt.tls``), each file checked on its own.

    :class:`HarkError` naming the key and file for a CA that is not PEM, a certificate or key that
    cannot be loaded, or a key that does not belong to the certificate; ``hark check`` builds the
    same context, so both refuse the same files.
    """
    tls = config.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.ca_file))
        except (OSError, ssl.SSLError, ValueError) as err:
            raise HarkError(f"mqtt.tls.ca_file: {tls.ca_file}: not a usable PEM certificate "
                            f"({_tls_reason(err)})") from None
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(certfile=str(tls.cert_file), keyfile=str(tls.key_file) if tls.key_file else None)
        except (OSError, ssl.SSLError, ValueError) as err:
            reason = _tls_reason(err)
            if "KEY_VALUES_MISMATCH" in str(err) or "key values mismatch" in reason:
                raise HarkError(f"mqtt.tls.key_file: {tls.key_file} is not the key of the certificate "
                                f"{tls.cert_file}") from None
            raise HarkError(f"mqtt.tls.cert_file: cannot load {tls.cert_file} with {tls.key_file} "
                            f"as a PEM certificate and key ({reason})") from None
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def new_client(config: MqttConfig, *, client_id: str) -> mqtt.Client:
    """A paho client with the credentials and TLS context of ``config`` (what ``run`` and ``check`` connect with)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                         clean_session=True)
    client.enable_logger(_paho_log)
    if config.username:
        client.username_pw_set(config.username, config.read_password())
    context = tls_context(config)
    if context is not None:
        client.tls_set_context(context)
        client.tls_insecure_set(config.tls.insecure if config.tls else False)
    return client


def validate(config: Config) -> None:
    """Everything ``hark run`` refuses about the ``mqtt`` section, raised at the key's line in the config:
    the password file must be readable and the TLS files must make a context. ``hark check`` calls this too."""
    mqtt_cfg = config.mqtt
    if mqtt_cfg is None:
        return
    try:
        mqtt_cfg.read_password()
        tls_context(mqtt_cfg)
    except HarkError as err:
        key, sep, problem = str(err).partition(": ")
        if sep and key.startswith("mqtt."):
            raise config.error(key, problem) from None
        if mqtt_cfg.password_file is not None and str(mqtt_cfg.password_file) in key:
            raise config.error("mqtt.password_file", str(err)) from None
        raise


def probe_broker(config: MqttConfig, *, timeout: float = 5.0) -> str | None:
    """Connect once as ``hark check`` does (its own client id, so a running daemon is not kicked off);
    None when the broker accepted the login, else why not, in the words the daemon logs."""
    client = new_client(config, client_id=f"hark-{config.effective_device_id}-check")
    answer: list[str | None] = []
    done = threading.Event()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        answer.append(None if not reason.is_failure else
                      f"the broker refused the connection: {reason}"
                      f"{' (check mqtt.username and the password)' if _is_auth(reason) else ''}")
        done.set()

    socket_error: list[str] = []

    def on_log(client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        if text.startswith("failed to receive on socket: "):
            socket_error.append(_SSL_NOISE.sub("", text.split(": ", 1)[1]).strip())
            done.set()

    client.on_connect = on_connect
    client.on_log = on_log
    host, port = config.host, config.effective_port
    try:
        client.connect(host, port, keepalive=max(5, int(timeout) + 1))
    except (OSError, ValueError) as err:
        return describe_connect_error(err, host, port)
    client.loop_start()
    try:
        if not done.wait(timeout):
            return f"no answer from {host}:{port} within {timeout:g} s (connected, but no CONNACK)"
    finally:
        client.disconnect()
        client.loop_stop()
    if answer:
        return answer[0]
    return f"{host}:{port} closed the connection: {socket_error[0] if socket_error else 'no reason given'}"


def _tls_reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        return str(err.verify_message)
    if isinstance(err, ssl.SSLError) and err.reason:
        return str(err.reason).replace("_", " ").lower()
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def describe_connect_error(err: BaseException, host: str, port: int) -> str:
    """Why ``host:port`` was not reached, in words: DNS, refused, unreachable, timeout, or TLS with the
    certificate problem."""
    if isinstance(err, socket.gaierror):
        return f"cannot resolve {host!r} ({err.strerror})"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate at {host}:{port} was refused: {_tls_reason(err)}"
    if isinstance(err, ssl.SSLError):
        return f"TLS handshake with {host}:{port} failed: {_tls_reason(err)}"
    if isinstance(err, ConnectionRefusedError):
        return f"{host}:{port} refused the connection (is the broker running, on this port?)"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return f"no answer from {host}:{port} (timed out)"
    if isinstance(err, OSError):
        return f"cannot reach {host}:{port} ({err.strerror or err})"
    return f"cannot reach {host}:{port} ({err})"


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
        ack_timeout_s: float = ACK_TIMEOUT_S,
        stuck_s: float = STUCK_S,
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
        self._inflight_at = 0.0  # when the in-flight event was (re)sent
        self.ack_timeout_s = ack_timeout_s
        self.stuck_s = stuck_s
        # Connected time an event has waited for its PUBACK (a broker that is away does not count, and
        # the reconnects an ack timeout causes do not reset it); and when the sender last turned.
        self._stuck_for = 0.0
        self._stepped_at = time.monotonic()
        self._failing_since: float | None = None  # the sender's first unexpected error in a row
        # Why the broker is not reached, each reason logged once per outage: a TLS 1.3 refusal reaches the client
        # as the broker's alert or as a bare EOF depending on timing, and the two must not alternate in the log.
        self._problems: set[str] = set()
        self._socket_error: str | None = None
        self._announced_at = -ANNOUNCE_MIN_S
        self._announce_due = False
        self._ignored_retained: set[str] = set()
        self._bad_commands = LogLimit(log)  # anyone on the broker can send them: their warnings are bounded
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
                # Entity ids the README's automations can name: Home Assistant reads default_entity_id
                # from 2025.10 on and stopped reading object_id in 2026.4; older versions read object_id.
                "default_entity_id": f"event.{uid}_detection",
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
                "default_entity_id": f"switch.{uid}_mute",
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
            "default_entity_id": f"sensor.{uid}_model",
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
                "default_entity_id": f"button.{uid}_wrong",
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
                    "default_entity_id": f"binary_sensor.{uid}_{label}",
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
        client = new_client(cfg, client_id=f"hark-{self.device_id}")
        client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=max(1, round(cfg.reconnect_min_s)),
                                   max_delay=max(1, round(cfg.reconnect_max_s)))
        # The outbox keeps at most one event in flight; the rest are small retained documents.
        client.max_inflight_messages_set(50)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_log = self._on_log
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

    def _trouble(self, problem: str) -> None:
        """Say why the broker is not reached: at WARNING the first time in this outage, then at DEBUG."""
        if problem not in self._problems and len(self._problems) < 32:
            self._problems.add(problem)
            log.warning("MQTT: %s; retrying with backoff, events wait in the outbox", problem)
        else:
            log.debug("MQTT: %s (still)", problem)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        # The socket error behind a dropped connection reaches us only as paho's log line; keep it for
        # on_disconnect, whose reason code says just "Unspecified error".
        for prefix in ("failed to receive on socket: ", "failed to send on socket: "):
            if text.startswith(prefix):
                self._socket_error = _SSL_NOISE.sub("", text[len(prefix):]).strip()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` around the attempt: the exception is the reason.
        err = sys.exc_info()[1]
        cfg = self.config
        self._trouble(describe_connect_error(err, cfg.host, cfg.effective_port) if err is not None
                      else f"cannot reach {cfg.host}:{cfg.effective_port}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._trouble(f"the broker at {self.config.host}:{self.config.effective_port} refused the connection: "
                          f"{reason}{' (check mqtt.username and the password)' if _is_auth(reason) else ''}")
            return
        self._problems.clear()
        log.info("MQTT: connected to %s:%d", self.config.host, self.config.effective_port)
        client.subscribe([(self.topic("mute/set"), 1), (self.topic("record/set"), 1), (self.topic("wrong/set"), 1)])
        if self.config.discovery:
            client.subscribe(f"{self.config.discovery_prefix}/status", 1)
        self._announce()
        self._connected.set()
        self._wake.put(("connected", 0))

    def _announce(self) -> None:
        """Discovery documents, ``online`` and the state: on every connect and when Home Assistant comes back."""
        self._announced_at = time.monotonic()
        self._announce_due = False
        if self.config.discovery:
            for topic, doc in self.discovery_documents().items():
                self.client.publish(topic, json.dumps(doc), qos=1, retain=True)
        self.client.publish(self.topic("availability"), "online", qos=1, retain=True)
        self._publish_state()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        detail, self._socket_error = self._socket_error, None
        if self._stopping:
            return
        if was_connected:
            self._trouble(f"lost the broker ({detail or reason})")
        elif detail:
            hint = (" (the broker wants a client certificate: set mqtt.tls.cert_file and key_file)"
                    if "certificate required" in detail else "")
            self._trouble(f"the broker at {self.config.host}:{self.config.effective_port} closed the connection: "
                          f"{detail}{hint}")
        # Otherwise the broker refused the CONNECT, and _on_connect said why.

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # Called with paho's locks held: hand the ack to the sender thread, never publish from here.
        self._wake.put(("ack", mid))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.retain:
                # A retained command would be acted on again at every connect, long after it was meant.
                if message.topic not in self._ignored_retained and len(self._ignored_retained) < 100:
                    self._ignored_retained.add(message.topic)
                    log.warning("MQTT: ignored a retained message on %s (commands must not be retained)",
                                message.topic)
                return
            if message.topic == f"{self.config.discovery_prefix}/status":
                if message.payload.strip() == b"online":
                    # Answered at most every ANNOUNCE_MIN_S: a flood of requests costs one announcement.
                    if time.monotonic() - self._announced_at >= ANNOUNCE_MIN_S:
                        log.info("MQTT: Home Assistant is back; publishing discovery again")
                        self._announce()
                    else:
                        self._announce_due = True
            elif message.topic == self.topic("mute/set"):
                muted = parse_mute(message.payload)
                log.info("MQTT: mute %s", "on" if muted else "off")
                if self.on_mute:
                    self.on_mute(muted)
            elif message.topic == self.topic("record/set"):
                command = parse_record(message.payload, max_seconds=self.record_max_s)
                log.debug("MQTT: record %s%s", command.label or BACKGROUND,
                         f" for {command.seconds:g} s" if command.seconds else "")
                if self.on_record:
                    self.on_record(command)
            elif message.topic == self.topic("wrong/set"):
                log.info("MQTT: that was wrong")
                if self.on_wrong:
                    self.on_wrong()
        except HarkError as err:
            self._bad_commands.warning(message.topic[:200], "MQTT: ignored a bad command on %s: %s",
                                       message.topic, err)
        except Exception:  # a command must never take the network thread down
            log.exception("MQTT: command on %s failed", message.topic)

    # ------------------------------------------------------------ events

    def on_detection(self, detection: Detection) -> None:
        """The :class:`hark.sinks.Sink` call: queue the event; an outbox that cannot store it is logged."""
        try:
            self.publish_event(detection.label, detection.score)
        except (sqlite3.Error, OSError) as err:
            log.error("MQTT outbox: could not store the %s event (%s)", detection.label, err)

    def close(self) -> None:
        """The :class:`hark.sinks.Sink` call: :meth:`stop`."""
        self.stop()

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
        """The only place events are handed to paho: oldest first, the next after the previous one's PUBACK.

        Nothing stops it but :meth:`stop`: an unexpected error is logged (with its traceback the
        first time) and the step retried with backoff up to ``SENDER_BACKOFF_MAX_S``.
        """
        failures = 0
        last_error = ""
        while True:
            try:
                kind, value = self._wake.get(timeout=0.5)
            except queue.Empty:
                kind, value = "tick", 0
            if kind == "stop":
                return
            try:
                self._step(kind, value)
            except Exception as err:
                failures += 1
                self._failing_since = self._failing_since or time.monotonic()
                text = f"{type(err).__name__}: {err}"
                delay = min(SENDER_BACKOFF_MAX_S, 0.5 * 2 ** min(failures, 10))
                if text != last_error:
                    last_error = text
                    log.exception("MQTT: sending events failed (%s); retrying in %.1f s", text, delay)
                else:
                    log.warning("MQTT: sending events failed again (%s); retrying in %.1f s", text, delay)
                self._inflight = None  # sent again after the pause: at least once
                if self._pause(delay):
                    return
                continue
            if failures:
                log.warning("MQTT: sending events works again after %d failure(s)", failures)
                failures, last_error = 0, ""
                self._failing_since = None
            with self._idle:
                self._idle.notify_all()

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; True when asked to stop meanwhile. Other wake-ups are kept for afterwards."""
        deadline = time.monotonic() + seconds
        kept: list[tuple[str, int]] = []
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = self._wake.get(timeout=left)
                except queue.Empty:
                    break
                if item[0] == "stop":
                    return True
                if item[0] != "tick":
                    kept.append(item)
        finally:
            for item in kept:
                self._wake.put(item)
        return False

    def _step(self, kind: str, value: int) -> None:
        now = time.monotonic()
        if self._inflight is not None and self._connected.is_set():
            self._stuck_for += now - self._stepped_at
        self._stepped_at = now
        if kind == "connected" and self._inflight is not None:
            self._inflight_at = now  # paho sends it again after the CONNACK: its timeout starts over
        if kind == "ack" and self._inflight is not None and self._inflight[1] == value:
            self.outbox.remove(self._inflight[0])
            self._inflight = None
            self._stuck_for = 0.0
        if self._inflight is not None and self._connected.is_set() and now - self._inflight_at > self.ack_timeout_s:
            self._ack_timed_out()
        if self._inflight is None:
            self._send_next()
        if self._announce_due and self._connected.is_set() and now - self._announced_at >= ANNOUNCE_MIN_S:
            log.info("MQTT: Home Assistant asked again; publishing discovery again")
            self._announce()

    def _ack_timed_out(self) -> None:
        """No PUBACK in time: drop the connection, so paho reconnects and sends the event again (MQTT 3.1.1
        resends unacknowledged messages only on a new connection, with the DUP flag)."""
        assert self._inflight is not None
        event_id = self._inflight[0]
        log.warning("MQTT: no PUBACK for event %d within %.0f s; reconnecting to send it again",
                    event_id, self.ack_timeout_s)
        self._inflight_at = time.monotonic()
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # paho's loop sees the connection drop and reconnects

    def healthy(self) -> bool:
        """False when events have been stuck for ``stuck_s``: the sender died, keeps failing, or a live
        broker has not acknowledged the event in flight. An unreachable broker is not "stuck" (a restart
        would not help); the daemon stops pinging the systemd watchdog when this is False."""
        if self._stopping:
            return True
        now = time.monotonic()
        if self._sender is not None and not self._sender.is_alive():
            return False
        if self._failing_since is not None and now - self._failing_since > self.stuck_s:
            return False
        if self._failing_since is None and now - self._stepped_at > self.stuck_s:
            return False  # the sender hangs (it turns at least every 0.5 s)
        return self._stuck_for <= self.stuck_s

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
            self._inflight_at = time.monotonic()
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
