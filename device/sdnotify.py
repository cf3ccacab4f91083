"""Tell systemd how the daemon is doing (``Type=notify``), with the standard library only.

systemd passes ``$NOTIFY_SOCKET``: a datagram AF_UNIX socket, in the abstract namespace when
it starts with ``@``. The daemon sends ``READY=1`` once it listens, ``STATUS=...`` for
``systemctl status``, ``WATCHDOG=1`` at half the ``WatchdogSec`` period (from
``$WATCHDOG_USEC``) so a hung process is restarted, and ``STOPPING=1`` on the way out.
Outside systemd every call is a no-op, so the same code runs from a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Notifier:
    """A connection to systemd's notify socket (or nothing, when there is none)."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | bytes | None = None
        if address:
            # '@' stands for the abstract namespace, which the kernel spells with a leading NUL.
            self._address = b"\0" + address[1:].encode() if address.startswith("@") else address
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *states: str) -> bool:
        """Send ``states`` (``"READY=1"``, ``"STATUS=..."``) in one datagram; False when it could not be sent."""
        if self._address is None:
            return False
        message = "\n".join(states).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message, self._address)
                return True
            except OSError as err:
                # Losing a notification must never stop detection; systemd's watchdog will speak if it matters.
                log.debug("sd_notify failed: %s", err)
                return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    @staticmethod
    def watchdog_interval() -> float | None:
        """Seconds between pings: half of ``$WATCHDOG_USEC`` when it is meant for this process, else None."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            value = int(usec)
        except ValueError:
            return None
        return value / 2e6 if value > 0 else None

    def start_watchdog(self, healthy: Callable[[], bool] = lambda: True) -> bool:
        """Ping ``WATCHDOG=1`` every half period from a thread, while ``healthy()`` says so.

        ``healthy`` lets the daemon stop pinging when its audio loop has stalled, so that
        systemd restarts a process that is alive but no longer listening.
        """
        interval = self.watchdog_interval()
        if interval is None or not self.enabled or self._watchdog is not None:
            return False

        def run() -> None:
            while not self._stop.wait(interval):
                if healthy():
                    self.watchdog()
                else:
                    log.warning("not pinging the systemd watchdog: the audio loop has stalled")

        self._watchdog = threading.Thread(target=run, name="sd-watchdog", daemon=True)
        self._watchdog.start()
        return True

    def close(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=2)
            self._watchdog = None
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
