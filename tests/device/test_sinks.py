"""hark.sinks: one interface for every place a detection goes, and a failing sink costs the others nothing."""

from __future__ import annotations

import logging

import pytest

from hark.detector import Detection
from hark.gpio import Gpio
from hark.mqtt import MqttPublisher
from hark.recorder import Recorder
from hark.sinks import Sink, close_all, dispatch


class Collects:
    def __init__(self, name: str, seen: list[str], *, fail: bool = False) -> None:
        self.name, self.seen, self.fail = name, seen, fail

    def on_detection(self, detection: Detection) -> None:
        self.seen.append(f"{self.name} {detection.label}")
        if self.fail:
            raise OSError("disk full")

    def close(self) -> None:
        self.seen.append(f"{self.name} closed")
        if self.fail:
            raise OSError("stuck")


def test_gpio_mqtt_and_recorder_are_sinks() -> None:
    for kind in (Gpio, MqttPublisher, Recorder):
        assert issubclass(kind, Sink), kind


def test_every_sink_gets_the_detection_in_order_even_after_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    sinks = [Collects("pins", seen), Collects("outbox", seen, fail=True), Collects("capture", seen)]
    with caplog.at_level(logging.ERROR):
        dispatch(sinks, Detection(label="beep", score=0.9, time_s=1.0))
        close_all(sinks)
    assert seen == ["pins beep", "outbox beep", "capture beep", "pins closed", "outbox closed", "capture closed"]
    assert "could not act on the beep detection" in caplog.text and "disk full" in caplog.text
    assert "Collects: could not close" in caplog.text


def test_one_detection_line_format() -> None:
    assert Detection(label="beep", score=0.98765, time_s=75.5).line() == "01:15.500  beep                 0.988"
