"""``hark.loglimit``: a flood of one kind of warning becomes a bounded number of lines and a count."""

from __future__ import annotations

import logging

import pytest

from hark.loglimit import LogLimit


def test_burst_per_window_then_a_count(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("hark.loglimit.time.monotonic", lambda: now[0])
    limit = LogLimit(logging.getLogger("hark.test"), burst=3, window_s=60)
    logged = [limit.warning("topic/a", "bad %d", i) for i in range(10)]
    assert logged == [True] * 3 + [False] * 7
    assert limit.warning("topic/b", "other kind")  # each key has its own budget
    now[0] += 61
    assert limit.warning("topic/a", "bad again")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad 0", "bad 1", "bad 2", "other kind", "bad again (7 more like this were not logged)"]
