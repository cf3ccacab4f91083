"""Where a detection goes: one interface for the GPIO pins, the MQTT outbox and the recorder.

Each sink takes a detection with :meth:`Sink.on_detection` and is shut with :meth:`Sink.close`.
The daemon keeps its sinks in the order that matters in the room (the pins first: they return at
once; then the outbox: one local write, the network is paho's thread; then the capture) and hands
each detection to all of them with :func:`dispatch`, which logs a sink that fails and goes on with
the others: a stuck buzzer must not cost the event, nor a full disk the LED.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from hark.detector import Detection

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    """Something that acts on detections."""

    def on_detection(self, detection: Detection) -> None:
        """Act on one detection; quickly: it is called from the audio loop."""

    def close(self) -> None:
        """Stop acting and let go of what the sink holds (pins, connections, files)."""


def dispatch(sinks: Iterable[Sink], detection: Detection) -> None:
    """Hand ``detection`` to every sink in order; a sink that raises is logged, the rest still run."""
    for sink in sinks:
        try:
            sink.on_detection(detection)
        except Exception:  # one sink's failure must not silence the others
            log.exception("%s: could not act on the %s detection", type(sink).__name__, detection.label)


def close_all(sinks: Iterable[Sink]) -> None:
    """Close every sink; one that raises is logged and the others are still closed."""
    for sink in sinks:
        try:
            sink.close()
        except Exception:
            log.exception("%s: could not close", type(sink).__name__)
