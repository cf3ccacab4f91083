"""A spoken word must be speech: a last check before a spoken class's detection fires.

A head trained on 8 clips of a word has never heard a dog, a kettle or rain, and sometimes scores
them as the word. The verifier's templates (:mod:`hark.verifier`) catch much of that, but a bark
can sit as near the clips as a mumbled word does. YAMNet (the ``sounds`` base) was trained on
AudioSet's 521 classes, among them "Speech", "Dog" and "Rain". A detection is turned away, as the
verifier turns one away, when over the ``lookback_s`` before it YAMNet hears no speech *and* hears a
sound the home does not hold: some class scores ``margin`` more than it ever did over the user's
background recordings and clips (``familiar``, measured by the trainer). A word said over the home's
running tap is heard as the tap, not as speech; it still fires, because the tap is familiar. A dog
the user never recorded, or a clock, is not.

The audio is brought to one level first (its peak to ``LEVEL``): YAMNet takes a quiet word for
"Silence", and a word spoken softly or far from the microphone is still a word.

openWakeWord offers a similar idea with a voice-activity model (its ``vad_threshold``). YAMNet is the
network hark already pins for sounds; the trainer puts it in the bundle with this check's settings
(the manifest's ``speech_check``). A bundle whose check has no ``familiar`` turns away every
detection without speech.

It costs nothing while nothing is detected: the network is loaded at the first candidate
detection, with the built-in kernels on the file's own weights (8 MB at the peak; XNNPACK's packed
copy of them would add about 4 MB more), and run on up to 4 windows of 0.975 s at each candidate,
the latest first, stopping at the first that holds speech: a real word costs one run (about 8 ms
on a desktop core), a bark or a clock four.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hark import SAMPLE_RATE
from hark.manifest import DEFAULT_SPEECH_CHECK_MARGIN, YAMNET_CLASSES
from hark.runtime import load_interpreter

log = logging.getLogger(__name__)

WINDOW = 15600  # YAMNet's input: 0.975 s at 16 kHz
SPEECH = 0  # YAMNet's class 0 is "Speech"
CLASSES = YAMNET_CLASSES  # YAMNet's outputs, AudioSet's classes in the order of yamnet_class_map.csv
# YAMNet's classes 0-12 are speech and the raised or hushed voice (shouting, whispering...): none of them
# is a sound that shows a detection was not a word.
VOICE_CLASSES = 13
HOP = 4800  # windows 0.3 s apart over the look-back
LEVEL = 0.5  # the peak the audio is brought to before YAMNet hears it
MAX_GAIN = 100.0  # ... by at most 40 dB: digital silence and a dead microphone stay quiet


def leveled(samples: np.ndarray) -> np.ndarray:
    """``samples`` scaled so their peak is ``LEVEL`` (by at most ``MAX_GAIN``)."""
    x = np.asarray(samples, dtype=np.float32)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return x * np.float32(min(LEVEL / peak, MAX_GAIN)) if peak > 0 else x


class SpeechCheck:
    """``scores(samples)``: YAMNet's highest score of each class over ``samples``; ``passes`` turns
    away what holds no speech (``threshold``) and an unfamiliar sound (``familiar`` + ``margin``).
    The network is loaded when first needed."""

    def __init__(self, model_path: Path, *, threshold: float, lookback_s: float,
                 familiar: Sequence[float] | None = None, margin: float = DEFAULT_SPEECH_CHECK_MARGIN,
                 xnnpack: bool = False) -> None:
        self.model_path = Path(model_path)
        self.xnnpack = xnnpack  # the trainer's choice, which hears hundreds of pieces; the device saves memory
        self.threshold = float(threshold)
        self.lookback = int(round(lookback_s * SAMPLE_RATE))
        self.familiar = None if familiar is None else np.asarray(familiar, np.float32)
        if self.familiar is not None and self.familiar.shape != (CLASSES,):
            raise ValueError(f"familiar: {CLASSES} scores expected, not {self.familiar.shape}")
        self.margin = float(margin)
        self._net: Any = None
        self.runs = 0  # candidates checked, for tests and benchmarks
        self.turned_away = 0
        self.windows = 0  # runs of YAMNet

    def _load(self) -> Any:
        if self._net is None:
            net = load_interpreter(self.model_path, xnnpack=self.xnnpack)
            net.resize_tensor_input(net.get_input_details()[0]["index"], [WINDOW])
            net.allocate_tensors()
            self._in = net.get_input_details()[0]["index"]
            self._out = net.get_output_details()[0]["index"]
            self._net = net
        return self._net

    def _windows(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        """YAMNet's scores of each window of ``samples`` (its last ``lookback_s``, brought to ``LEVEL``),
        the latest first, the last window ending at its end; a short input is padded with silence."""
        x = leveled(np.asarray(samples, dtype=np.float32)[-self.lookback:])
        if len(x) < WINDOW:
            x = np.concatenate([np.zeros(WINDOW - len(x), np.float32), x])
        net = self._load()
        for end in range(len(x), WINDOW - 1, -HOP):
            net.set_tensor(self._in, x[end - WINDOW:end])
            net.invoke()
            self.windows += 1
            yield net.get_tensor(self._out).reshape(-1, CLASSES).max(axis=0)

    def scores(self, samples: np.ndarray) -> np.ndarray:
        """Each class's highest score over the windows of ``samples`` (:meth:`_windows`)."""
        best = np.zeros(CLASSES, np.float32)
        for window in self._windows(samples):
            best = np.maximum(best, window)
        return best

    def score(self, samples: np.ndarray) -> float:
        """The highest "Speech" score over ``samples``, as :meth:`scores` hears them."""
        return float(self.scores(samples)[SPEECH])

    def unfamiliar(self, scores: np.ndarray) -> tuple[int, float]:
        """The class (not a voice's) that exceeds ``familiar`` the most, and by how much."""
        if self.familiar is None:
            return -1, float("inf")
        excess = scores[VOICE_CLASSES:] - self.familiar[VOICE_CLASSES:]
        top = int(excess.argmax())
        return top + VOICE_CLASSES, float(excess[top])

    def passes(self, samples: np.ndarray) -> bool:
        """Whether ``samples`` (the audio up to a candidate detection) hold speech or only the home's
        familiar sounds."""
        self.runs += 1
        heard = np.zeros(CLASSES, np.float32)
        for window in self._windows(samples):
            # Speech in any window is enough: a real word, heard first in the window that ends at the
            # detection, costs one run of YAMNet instead of four.
            if window[SPEECH] >= self.threshold:
                return True
            heard = np.maximum(heard, window)
        top, excess = self.unfamiliar(heard)
        if excess <= self.margin:
            return True
        self.turned_away += 1
        if log.isEnabledFor(logging.DEBUG):
            what = "no speech" if top < 0 else \
                f"YAMNet class {top} at {heard[top]:.2f} (familiar up to {self.familiar[top]:.2f})"  # type: ignore[index]
            log.debug("speech check: %s before the detection (speech %.3f < %.3f)", what, heard[SPEECH],
                      self.threshold)
        return False
