"""Who may use the page: the password, sessions, CSRF tokens and the failed-login limit.

The page controls a microphone in someone's home, so (see ``docs/web.md``):

* the password (``web.password_file``) is compared in constant time, through the SHA-256 of
  both sides so not even its length leaks;
* a login makes a random session token held in an ``HttpOnly; SameSite=Strict`` cookie
  (``Secure`` over TLS), which scripts cannot read and other sites cannot send;
* each session has a CSRF token of its own, which the page reads from ``/api/session`` and
  sends in ``X-CSRF-Token`` with every request that changes anything;
* failed logins are limited per client address (:data:`FAILS_PER_CLIENT` a minute) and in
  all (:data:`FAILS_TOTAL` a minute), so guessing is slow even from many addresses.

Without a password (allowed only when the page is bound to 127.0.0.1) every visitor gets a
session at once; the CSRF token is still required, so another site open in the same browser
cannot drive the page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "hark_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSIONS = 64
FAIL_WINDOW_S = 60.0
FAILS_PER_CLIENT = 5
FAILS_TOTAL = 30


@dataclass
class Session:
    token: str
    csrf: str
    expires: float


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class Auth:
    """Sessions in memory (a restart logs everyone out, which is fine for a device) and the login limit."""

    def __init__(self, password: str | None, *, session_s: float, clock: Callable[[], float] | None = None) -> None:
        self._password = _digest(password) if password else None
        self.session_s = session_s
        self._clock = clock or time.monotonic
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._fails: dict[str, deque[float]] = {}
        self._all_fails: deque[float] = deque()
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        """True when a password must be given (False: open to this machine only)."""
        return self._password is not None

    # -- sessions --------------------------------------------------------------------------

    def new_session(self) -> Session:
        now = self._clock()
        session = Session(token=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), expires=now + self.session_s)
        with self._lock:
            self._sessions[session.token] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie value, or None."""
        if not token or len(token) > 100:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if session.expires < self._clock():
                del self._sessions[token]
                return None
            return session

    def end(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode("utf-8", "replace"))

    # -- logging in ------------------------------------------------------------------------

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            waits = []
            fails = self._fails.get(client)
            if fails is not None and len(fails) >= FAILS_PER_CLIENT:
                waits.append(fails[0] + FAIL_WINDOW_S - now)
            if len(self._all_fails) >= FAILS_TOTAL:
                waits.append(self._all_fails[0] + FAIL_WINDOW_S - now)
        return max([0.0, *waits])

    def check_password(self, client: str, given: str) -> bool:
        """True when ``given`` is the password; a wrong one counts against ``client``'s limit."""
        if self._password is None:
            return True
        ok = hmac.compare_digest(_digest(given), self._password)
        if not ok:
            now = self._clock()
            with self._lock:
                self._fails.setdefault(client, deque()).append(now)
                self._all_fails.append(now)
                self._expire(now)
        return ok

    def _expire(self, now: float) -> None:
        while self._all_fails and self._all_fails[0] < now - FAIL_WINDOW_S:
            self._all_fails.popleft()
        for client in list(self._fails):
            fails = self._fails[client]
            while fails and fails[0] < now - FAIL_WINDOW_S:
                fails.popleft()
            if not fails:
                del self._fails[client]
