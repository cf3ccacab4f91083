"""A spoken word must be speech: a last check before a spoken class's detection fires.

A head trained on 8 clips of a word has never heard a dog, a kettle or rain, and sometimes scores
them as the word. The verifier's templates (:mod:`hark.verifier`) catch much of that, but a bark
can sit as near the clips as a mumbled word does. YAMNet (the ``sounds`` base) was trained on
AudioSet's 521 classes, among them "Speech", "Dog" and "Rain"; a detection with no "Speech" score
over the ``lookback_s`` before it is turned away, as the verifier turns one away.

It is an option (``hark train --speech-check``): YAMNet also hears no speech in some words said in
much noise, and over all the benchmark's keyword sets the check cost 5.5 points of recall for 57%
fewer false detections (docs/quality.md). openWakeWord offers the same idea with a voice-activity
model (its ``vad_threshold``). YAMNet is the network hark already pins for sounds; the trainer puts
it in the bundle with this check's settings (the manifest's ``speech_check``).

It costs nothing while nothing is detected: the network is loaded at the first candidate
detection, with the built-in kernels on the file's own weights (8 MB at the peak; XNNPACK's packed
copy of them would add about 4 MB more), and run on 4 windows of 0.975 s (about 20 ms on a desktop
core) at each candidate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from hark import SAMPLE_RATE
from hark.runtime import load_interpreter

log = logging.getLogger(__name__)

WINDOW = 15600  # YAMNet's input: 0.975 s at 16 kHz
SPEECH = 0  # YAMNet's class 0 is "Speech"
HOP = 4800  # windows 0.3 s apart over the look-back


class SpeechCheck:
    """``score(samples)``: the highest "Speech" score of YAMNet over ``samples``; ``passes`` compares it
    with ``threshold``. The network is loaded when first needed."""

    def __init__(self, model_path: Path, *, threshold: float, lookback_s: float) -> None:
        self.model_path = Path(model_path)
        self.threshold = float(threshold)
        self.lookback = int(round(lookback_s * SAMPLE_RATE))
        self._net: Any = None
        self.runs = 0  # candidates checked, for tests and benchmarks
        self.turned_away = 0

    def _load(self) -> Any:
        if self._net is None:
            net = load_interpreter(self.model_path, xnnpack=False)
            net.resize_tensor_input(net.get_input_details()[0]["index"], [WINDOW])
            net.allocate_tensors()
            self._in = net.get_input_details()[0]["index"]
            self._out = net.get_output_details()[0]["index"]
            self._net = net
        return self._net

    def score(self, samples: np.ndarray) -> float:
        """The highest "Speech" score over windows of ``samples`` (its last ``lookback_s``), the last
        window ending at its end; a short input is padded with silence before it."""
        x = np.asarray(samples, dtype=np.float32)[-self.lookback:]
        if len(x) < WINDOW:
            x = np.concatenate([np.zeros(WINDOW - len(x), np.float32), x])
        net = self._load()
        best = 0.0
        for end in range(len(x), WINDOW - 1, -HOP):
            net.set_tensor(self._in, x[end - WINDOW:end])
            net.invoke()
            best = max(best, float(net.get_tensor(self._out).reshape(-1, 521)[:, SPEECH].max()))
        return best

    def passes(self, samples: np.ndarray) -> bool:
        """Whether ``samples`` (the audio up to a candidate detection) hold speech."""
        self.runs += 1
        found = self.score(samples)
        if found < self.threshold:
            self.turned_away += 1
            log.debug("speech check: no speech before the detection (%.3f < %.3f)", found, self.threshold)
            return False
        return True
