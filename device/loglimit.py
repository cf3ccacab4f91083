"""Warnings about what others send, bounded: a flood of bad commands must not become a flood of log lines.

:class:`LogLimit` lets ``burst`` lines of one kind through per ``window_s`` seconds; the rest
are counted, and the next line let through says how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time


class LogLimit:
    """At most ``burst`` log lines per ``key`` in any ``window_s`` seconds; what is held back is counted."""

    def __init__(self, logger: logging.Logger, *, burst: int = 20, window_s: float = 60.0) -> None:
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (window start, lines, held back)

    def warning(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` at WARNING unless ``key`` has had its ``burst`` this window; True when logged."""
        now = time.monotonic()
        with self._lock:
            start, lines, held = self._windows.get(key, (now, 0, 0))
            if now - start >= self.window_s:
                start, lines = now, 0
            if lines >= self.burst:
                self._windows[key] = (start, lines, held + 1)
                return False
            self._windows[key] = (start, lines + 1, 0)
            if len(self._windows) > 1000:  # keys come from outside (topics): keep the table bounded
                self._windows.pop(next(iter(self._windows)))
        if held:
            message += f" ({held} more like this were not logged)"
        self.logger.warning(message, *args)
        return True
