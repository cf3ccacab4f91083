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
import dataclasses
import gc
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from hark import SAMPLE_RATE
from hark.config import Config, load_config
from hark.detector import Detection
from hark.errors import HarkError
from hark.sdnotify import Notifier
from hark.sinks import Sink, close_all
from hark.sinks import dispatch as dispatch_to

log = logging.getLogger(__name__)

STALL_S = 10.0  # no audio chunk for this long: stop pinging the systemd watchdog


def load_pipeline(config: Config, model: Any = None) -> Any:
    """The model and detector ``hark run`` listens with: the bundle loaded and validated (manifest,
    hashes, the head's tensors, the frontend), the config's labels checked against it and its
    overrides applied. ``hark check`` calls this very function, so it refuses what ``run`` would.

    ``model``: an already loaded and checked model (one deployed from the page) instead of ``model:``.
    """
    from hark.model import Model
    from hark.pipeline import Pipeline

    if model is None:
        path = config.model
        if config.web is not None:
            from hark.web.models import startup_model

            path = startup_model(config)
        model = Model.load(path)
    config.check_labels(model.labels)
    return Pipeline(
        model,
        thresholds=dict(config.detection.thresholds) or None,
        refractory_s=dict(config.detection.refractory_s) or None,
        verify=config.detection.verify,
        gate=config.detection.gate.settings(),
    )


class Daemon:
    """The parts of ``hark run`` wired together; :meth:`run` is the loop."""

    def __init__(self, config: Config, *, input_path: str | Path | None = None, realtime: bool = False) -> None:
        self.config = config
        self.input_path = Path(input_path) if input_path is not None else None
        self.realtime = realtime
        if config.mqtt is not None:
            from hark.mqtt import validate

            validate(config)  # before the model loads: the same refusal, at the same line, as hark check
        if config.web is not None:
            from hark.web import check_web

            check_web(config)  # the page's password and TLS files, before the model loads too
        self.pipeline = load_pipeline(config)
        self.model = self.pipeline.model
        self.model_name = self.model.bundle.name
        self.classes = self.model.bundle.classes
        # A model swapped in while running (hark.web): applied by the audio loop between two chunks.
        self._swap: Any = None
        self._swapped = threading.Event()
        self._time_offset = 0.0  # stream seconds before the running pipeline started
        self.web: Any = None
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
            on_recording=self._on_recording, on_saved=self._on_saved,
            # What anyone on the broker (or at the buttons) may ask for: bounded in labels, length, rate and disk.
            labels=[c for c in self.model.labels if c != "background"] + list(rec.labels),
            min_seconds=rec.min_seconds, max_per_minute=rec.max_per_minute,
            max_bytes=int(rec.max_dataset_mb * 1e6),
        )
        self.gpio = open_gpio(self.config, classes=self.classes, on_button=self._on_button, on_wrong=self._on_wrong)
        if self.config.mqtt is not None:
            from hark.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(
                self.config.mqtt, state_dir=self.state_dir, model_name=self.model_name, labels=self.model.labels,
                on_mute=self._on_mute, on_record=lambda cmd: self._on_button(cmd.label, cmd.seconds),
                record_max_s=rec.max_seconds, on_wrong=self._on_wrong,
                model_created=self.model.manifest.created or None,
                ack_timeout_s=self.config.mqtt.ack_timeout_s, stuck_s=self.config.mqtt.stuck_s,
            )
            self.mqtt.start()
        if self.config.web is not None:
            try:
                from hark.web.server import WebServer
            except ModuleNotFoundError as err:
                raise HarkError(f"web: the page needs {err.name}: pip install 'hark[device]'") from None
            self.web = WebServer(self, self.config.web)
            self.web.start()

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

    def set_muted(self, muted: bool) -> None:
        """Mute or unmute (the page, like the MQTT command)."""
        self._on_mute(muted)

    def _on_saved(self, path: Path) -> None:
        if self.web is not None:
            self.web.saved(path)

    def _on_wrong(self) -> None:
        """The "that was wrong" button or MQTT command: the newest capture goes to the dataset's _unknown_."""
        from hark.review import mark_latest_wrong

        if self.recorder is None:
            return
        try:
            mark_latest_wrong(self.recorder.captures_dir, self.recorder.dataset_dir)
        except HarkError as err:
            log.warning("that was wrong: %s", err)

    def swap_model(self, model: Any, *, timeout: float = 30.0) -> None:
        """Run ``model`` from the next audio chunk on, without stopping (called from the page's thread).

        The new pipeline is built here, off the audio thread; the loop swaps it in between two
        chunks, after feeding it the last window's worth of audio from the recorder, so no audio is
        skipped or heard late, and queued MQTT events are not touched. Raises
        :class:`HarkError` when the loop did not take it within ``timeout`` seconds.
        """
        pipeline = load_pipeline(self.config, model)
        self._swapped.clear()
        self._swap = pipeline
        if not self._swapped.wait(timeout):
            self._swap = None
            raise HarkError("the audio loop did not take the new model (is audio flowing?)")

    def _apply_swap(self) -> None:
        pipeline, self._swap = self._swap, None
        if pipeline is None:
            return
        consumed = self._time_offset + self.pipeline.time_s  # stream seconds so far, on the recorder's clock
        primed = 0
        if self.recorder is not None:
            # The new model hears the last window's worth of audio first, so a sound going on across the
            # swap is judged whole and on time; what that priming detects was the old model's to judge.
            history = self.recorder.history(pipeline.model.span_samples / SAMPLE_RATE + 0.5)
            if len(history):
                pipeline.process(history)
            primed = len(history)
        self._time_offset = consumed - primed / SAMPLE_RATE
        self.pipeline, self.model = pipeline, pipeline.model
        self.model_name = self.model.bundle.name
        self.classes = self.model.bundle.classes
        if self.recorder is not None:
            self.recorder.model = self.model_name
            self.recorder.labels = frozenset(self.classes) | set(self.config.recording.labels)
        if self.gpio is not None:
            self.gpio.classes = list(self.classes)
        if self.mqtt is not None:
            self.mqtt.set_model(self.model_name, self.model.labels, created=self.model.manifest.created or None)
        log.info("now listening for %s with model %s", ", ".join(self.classes), self.model_name)
        self._swapped.set()
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

    @property
    def sinks(self) -> list[Sink]:
        """The sinks in the order a detection reaches them: pins, MQTT outbox, capture, the page."""
        return [sink for sink in (self.gpio, self.mqtt, self.recorder, self.web) if sink is not None]

    def dispatch(self, detection: Detection) -> None:
        """Print one detection and hand it to every sink; a failing sink is logged and the others still run."""
        if self._time_offset:
            # After a model swap the pipeline's clock restarted; the recorder's goes on.
            detection = dataclasses.replace(detection, time_s=detection.time_s + self._time_offset)
        self.detections += 1
        print(detection.line(), flush=True)
        dispatch_to(self.sinks, detection)

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
            # Everything made while starting (modules, the model, the page's server) lives as long as the
            # daemon: frozen out of the garbage collector's passes, which then only look at what the loop
            # makes. Done before the microphone opens, so no audio waits for it.
            gc.collect()
            gc.freeze()
            source = self._open_source()
            self._show_state()
            self.notifier.ready(f"listening: model {self.model_name} ({', '.join(self.classes)})")
            self.notifier.start_watchdog(healthy=self.healthy)
            log.info("listening for %s with model %s", ", ".join(self.classes), self.model_name)
            silence: np.ndarray | None = None
            for chunk in self._chunks(source):
                if self._swap is not None:
                    self._apply_swap()
                if self.recorder is not None:
                    self.recorder.feed(chunk)
                if self.web is not None and self.web.active:  # audio goes to the page only while one is open
                    self.web.feed(chunk)
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
        if self.mqtt is not None:
            ended = self.input_path is not None and not self._stop.is_set()
            if ended and not self.mqtt.flush(self.config.mqtt.flush_s):
                log.warning("MQTT: broker did not take every event within %.0f s", self.config.mqtt.flush_s)
        close_all(reversed(self.sinks))  # capture, outbox, pins: the reverse of the order they act in
        if self.source is not None:
            self.source.close()
        self.notifier.close()


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return Daemon(config, input_path=args.input, realtime=args.realtime).run()
