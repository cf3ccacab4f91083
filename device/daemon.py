"""``hark run``: the daemon. Listens, detects, and acts (GPIO, MQTT, captures) until told to stop.

One loop on the main thread takes audio chunks from the source (the microphone, or
``--input FILE``) and feeds them to the recorder (recent audio, clips, captures) and to the
pipeline; each detection is printed and handed to the sinks in the order that matters in the
room: GPIO first (it returns at once), then the MQTT outbox (one local write; the network is
paho's thread), then the capture. Nothing in the loop waits for the network.

With ``--input`` the file is run through exactly the pipeline ``hark detect`` uses, so the
detections are the same; at the end the daemon waits up to ``mqtt.flush_s`` for the broker to
acknowledge what is pending (what is not stays in the outbox for the next start) and exits 0.
SIGTERM and SIGINT stop it cleanly: ``offline`` is published and systemd is told ``STOPPING``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from hark.config import Config, load_config
from hark.sdnotify import Notifier

log = logging.getLogger(__name__)

STALL_S = 10.0  # no audio chunk for this long: stop pinging the systemd watchdog


class Daemon:
    """The parts of ``hark run`` wired together; :meth:`run` is the loop."""

    def __init__(self, config: Config, *, input_path: str | Path | None = None, realtime: bool = False) -> None:
        from hark.model import Model
        from hark.pipeline import Pipeline

        self.config = config
        self.input_path = Path(input_path) if input_path is not None else None
        self.realtime = realtime
        self.model = Model.load(config.model)
        config.check_labels(self.model.labels)
        self.model_name = self.model.bundle.name
        self.classes = self.model.bundle.classes
        self.pipeline = Pipeline(
            self.model,
            thresholds=dict(config.detection.thresholds) or None,
            refractory_s=dict(config.detection.refractory_s) or None,
            verify=config.detection.verify,
            gate=config.detection.gate.settings(),
        )
        self.state_dir = config.resolve_state_dir()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            # Detection goes on: the MQTT outbox holds events in memory until the directory can be written.
            log.warning("%s: cannot create the state directory (%s); going on without it", self.state_dir,
                        err.strerror)
        self.muted = False
        self.recording = False
        self.audio_lost = False
        self.detections = 0
        self._stop = threading.Event()
        self._last_chunk = time.monotonic()
        self.notifier = Notifier()
        self.gpio: Any = None
        self.mqtt: Any = None
        self.recorder: Any = None
        self.source: Any = None

    # ------------------------------------------------------------ building the sinks

    def _open_sinks(self) -> None:
        from hark.gpio import open_gpio
        from hark.recorder import Recorder

        rec = self.config.recording
        dataset = rec.dataset or self.state_dir / "dataset"
        captures = rec.captures or (self.state_dir / "captures" if rec.dataset is None else None)
        self.recorder = Recorder(
            dataset_dir=dataset, captures_dir=captures, clip_seconds=rec.clip_seconds,
            background_seconds=rec.background_seconds, max_seconds=rec.max_seconds,
            capture=rec.capture, capture_seconds=rec.capture_seconds, model=self.model_name,
            on_recording=self._on_recording,
        )
        self.gpio = open_gpio(self.config, classes=self.classes, on_button=self._on_button)
        if self.config.mqtt is not None:
            from hark.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(
                self.config.mqtt, state_dir=self.state_dir, model_name=self.model_name, labels=self.model.labels,
                on_mute=self._on_mute, on_record=lambda cmd: self._on_button(cmd.label, cmd.seconds),
                record_max_s=rec.max_seconds,
            )
            self.mqtt.start()

    def _open_source(self) -> Iterable[np.ndarray]:
        from hark.audio import FileSource, MicSource

        if self.input_path is not None:
            self.source = FileSource(self.input_path, realtime=self.realtime)
            log.info("reading %s (%.1f s%s)", self.input_path, self.source.duration_s,
                     ", paced in real time" if self.realtime else "")
        else:
            self.source = MicSource(device=self.config.audio.device, rate=self.config.audio.rate)
        return self.source

    # ------------------------------------------------------------ events from outside (other threads)

    def _on_button(self, label: str | None, seconds: float | None = None) -> None:
        if self.recorder is not None:
            self.recorder.request_clip(label, seconds)

    def _on_mute(self, muted: bool) -> None:
        self.muted = muted
        self._show_state()

    def _on_recording(self, active: bool) -> None:
        self.recording = active
        self._show_state()

    def _show_state(self) -> None:
        if self.recording:
            state = "recording"
        elif self.muted:
            state = "muted"
        else:
            state = "listening"
        if self.gpio is not None:
            self.gpio.set_status("error" if self.audio_lost and not self.recording else state)
        if self.mqtt is not None:
            self.mqtt.set_state(state, muted=self.muted)
        self.notifier.status(f"{state}: model {self.model_name}, {self.detections} detection(s)")

    # ------------------------------------------------------------ the loop

    def _chunks(self, source: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for chunk in source:
            self._last_chunk = time.monotonic()
            lost = bool(getattr(self.source, "lost", False))
            if lost != self.audio_lost:
                self.audio_lost = lost
                self._show_state()
            yield chunk
            if self._stop.is_set():
                return

    def dispatch(self, detection: Any) -> None:
        """Hand one detection to every sink; a failing sink is logged and the others still run."""
        self.detections += 1
        print(f"{detection.time_s:9.3f} s  {detection.label:<16} {detection.score:.3f}", flush=True)
        if self.gpio is not None:
            self.gpio.detection(detection.label)
        if self.mqtt is not None:
            try:
                self.mqtt.publish_event(detection.label, detection.score)
            except (sqlite3.Error, OSError) as err:
                log.error("MQTT outbox: could not store the %s event (%s)", detection.label, err)
        if self.recorder is not None:
            self.recorder.capture(detection)

    def healthy(self) -> bool:
        """What the systemd watchdog is pinged on: audio keeps coming and events are not stuck."""
        if time.monotonic() - self._last_chunk >= STALL_S:
            return False
        return self.mqtt is None or self.mqtt.healthy()

    def run(self) -> int:
        """Listen until the input ends or a signal comes; returns the exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._open_sinks()
            source = self._open_source()
            self._show_state()
            self.notifier.ready(f"listening: model {self.model_name} ({', '.join(self.classes)})")
            self.notifier.start_watchdog(healthy=self.healthy)
            log.info("listening for %s with model %s", ", ".join(self.classes), self.model_name)
            silence: np.ndarray | None = None
            for chunk in self._chunks(source):
                if self.recorder is not None:
                    self.recorder.feed(chunk)
                if self.muted:
                    # Zeros keep the stream clock running and cost nothing behind the energy gate.
                    if silence is None or len(silence) != len(chunk):
                        silence = np.zeros(len(chunk), dtype=np.float32)
                    self.pipeline.process(silence)
                    continue
                for detection in self.pipeline.process(chunk):
                    self.dispatch(detection)
            if not self._stop.is_set():
                for detection in self.pipeline.flush():
                    self.dispatch(detection)
                if self.input_path is not None:
                    log.info("end of %s: %d detection(s)", self.input_path, self.detections)
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        self._stop.set()
        if self.source is not None and hasattr(self.source, "close") and self.input_path is None:
            # Wakes the microphone iterator at once instead of at its next 1 s timeout.
            self.source.close()

    def _shutdown(self) -> None:
        self.notifier.stopping()
        if self.recorder is not None:
            self.recorder.close()
        if self.mqtt is not None:
            ended = self.input_path is not None and not self._stop.is_set()
            if ended and not self.mqtt.flush(self.config.mqtt.flush_s):
                log.warning("MQTT: broker did not take every event within %.0f s", self.config.mqtt.flush_s)
            self.mqtt.stop()
        if self.gpio is not None:
            self.gpio.close()
        if self.source is not None:
            self.source.close()
        self.notifier.close()


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return Daemon(config, input_path=args.input, realtime=args.realtime).run()
