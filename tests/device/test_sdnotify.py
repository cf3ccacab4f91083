"""sd_notify over a real AF_UNIX datagram socket, in a path and in the abstract namespace."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hark.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(3)
    yield str(path), sock
    sock.close()


def test_ready_status_stopping_reach_the_socket(notify_socket: tuple[str, socket.socket]) -> None:
    address, sock = notify_socket
    n = Notifier(address)
    assert n.enabled
    assert n.ready("listening: model tones")
    assert sock.recv(4096) == b"READY=1\nSTATUS=listening: model tones"
    assert n.status("muted")
    assert sock.recv(4096) == b"STATUS=muted"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_namespace_address() -> None:
    name = f"hark-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(3)
    try:
        n = Notifier("@" + name)
        assert n.watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
        n.close()
    finally:
        sock.close()


def test_watchdog_pings_at_half_the_period(notify_socket: tuple[str, socket.socket],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    address, sock = notify_socket
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: pings every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier(address)
    assert n.watchdog_interval() == pytest.approx(0.1)
    healthy = [True]
    assert n.start_watchdog(lambda: healthy[0])
    t0 = time.monotonic()
    pings = [sock.recv(100) for _ in range(3)]
    elapsed = time.monotonic() - t0
    assert pings == [b"WATCHDOG=1"] * 3
    assert 0.2 <= elapsed < 1.0
    healthy[0] = False  # a stalled loop stops the pings, so systemd restarts the process
    time.sleep(0.15)
    sock.settimeout(0.05)
    while True:  # drain a ping that may have been in flight
        try:
            sock.recv(100)
        except TimeoutError:
            break
    sock.settimeout(0.35)
    with pytest.raises(TimeoutError):
        sock.recv(100)
    n.close()


def test_watchdog_for_another_pid_or_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    assert Notifier.watchdog_interval() == 0.5
    monkeypatch.delenv("WATCHDOG_USEC")
    assert Notifier.watchdog_interval() is None


def test_without_systemd_everything_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.start_watchdog()
    assert not Notifier("/nonexistent/socket").ready()  # a vanished socket is not fatal
    n.close()
