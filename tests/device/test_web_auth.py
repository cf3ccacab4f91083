"""hark.web.auth: the password check, sessions and the failed-login limit, on a clock the test moves."""

from __future__ import annotations

from hark.web.auth import FAIL_WINDOW_S, FAILS_PER_CLIENT, FAILS_TOTAL, Auth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_password_sessions_and_csrf() -> None:
    clock = Clock()
    auth = Auth("secret", session_s=60, clock=clock)
    assert auth.required
    assert not auth.check_password("a", "Secret") and not auth.check_password("a", "secret ")
    assert auth.check_password("a", "secret")
    session = auth.new_session()
    assert auth.session(session.token) is session
    assert auth.session("x" * 43) is None and auth.session(None) is None
    assert Auth.csrf_ok(session, session.csrf)
    assert not Auth.csrf_ok(session, None) and not Auth.csrf_ok(session, "") and not Auth.csrf_ok(session, "x")
    clock.now += 61
    assert auth.session(session.token) is None  # expired
    other = auth.new_session()
    auth.end(other.token)
    assert auth.session(other.token) is None


def test_failed_logins_are_limited_per_client_and_in_all() -> None:
    clock = Clock()
    auth = Auth("secret", session_s=60, clock=clock)
    for _ in range(FAILS_PER_CLIENT):
        assert auth.retry_after("10.0.0.1") == 0
        auth.check_password("10.0.0.1", "guess")
    assert 0 < auth.retry_after("10.0.0.1") <= FAIL_WINDOW_S
    assert auth.retry_after("10.0.0.2") == 0  # another client is not held up by this one
    clock.now += FAIL_WINDOW_S + 1
    assert auth.retry_after("10.0.0.1") == 0
    # many addresses, a few guesses each: the total limit holds them all
    for i in range(FAILS_TOTAL):
        auth.check_password(f"10.1.{i}.1", "guess")
    assert auth.retry_after("10.9.9.9") > 0


def test_no_password_means_open() -> None:
    auth = Auth(None, session_s=60)
    assert not auth.required and auth.check_password("a", "anything")
