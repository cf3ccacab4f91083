"""Log-mel spectrograms for the page: live columns for the Live tab, PNG pictures of clips.

What is drawn is what the model's frontend computes before anything learned: for a model on
``--base none`` hark's own log-mel (:class:`hark.frontend.LogMelFrontend`) with the very parameters
of its manifest, so the page shows exactly the frames the head sees; for ``--base speech`` the
frames of openWakeWord's mel model that the speech embedding sees (:class:`SpeechMel`); for
``--base sounds`` (whose mel runs inside YAMNet's graph) hark's default 40 bands of the same audio.
Values are mapped to 0..255 over a fixed range per kind, so that colours mean the same level on
every clip and in the live view.

The PNG encoder is the format's few lines over :mod:`zlib`: the device has no imaging library.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from hark.audio import SAMPLE_RATE
from hark.frontend import LogMelFrontend, SpeechFrontend
from hark.model import Model

# log(power) of the frontend: silence sits near log(1e-6) = -13.8, a loud sound near +8.
LOW, HIGH = -12.0, 6.0
MAX_PICTURE_FRAMES = 3000  # 30 s at 10 ms; longer clips are drawn from their first 30 s
# A perceptually even dark-to-bright ramp (viridis' anchors), 256 entries of RGB.
_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float)
PALETTE = np.stack([np.interp(np.linspace(0, 4, 256), np.arange(5), _ANCHORS[:, c]) for c in range(3)],
                   axis=1).astype(np.uint8)


class SpeechMel:
    """The mel frames of a speech-base model (openWakeWord's mel model, rescaled as the embedding sees
    them), streamed like a frontend: 32 bands every 10 ms, computed in groups of 8 frames as
    :class:`hark.frontend.SpeechFrontend` computes them. It has mel and embedding models of its own (a
    clone), so it never shares a TFLite interpreter with the daemon's audio thread."""

    LEVELS = (2.0, 12.0)  # a quiet room sits near 3-6, speech peaks near 11, digital silence at -8

    def __init__(self, speech: SpeechFrontend) -> None:
        self._speech = speech
        self.hop_samples = speech.MEL_HOP
        self.receptive_samples = speech.MEL_WINDOW
        self.feature_shape = (32,)
        self._pending = np.zeros(0, dtype=np.float32)

    def clone(self) -> SpeechMel:
        return SpeechMel(self._speech.clone())  # type: ignore[arg-type]

    def push(self, samples: np.ndarray) -> np.ndarray:
        speech = self._speech
        self._pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        groups = max(0, (len(self._pending) - speech.OVERLAP) // speech.CHUNK)
        if groups == 0:
            return np.zeros((0, 32), dtype=np.float32)
        mel = speech._run_mel(self._pending[:groups * speech.CHUNK + speech.OVERLAP])
        self._pending = self._pending[groups * speech.CHUNK:]
        return np.asarray(mel, dtype=np.float32)

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)

    def transform(self, samples: np.ndarray) -> np.ndarray:
        self.reset()
        return self.push(samples)


Drawn = Union[LogMelFrontend, SpeechMel]  # noqa: UP007 - an alias used at runtime


def frontend_for(model: Model) -> Drawn:
    """What the page draws a model's audio with (see the module notes); a new instance each call."""
    spec = model.manifest.frontend
    if spec.name == "none":
        return LogMelFrontend(n_mels=int(spec.feature_shape[0]), win_samples=spec.receptive_samples,
                              hop_samples=spec.hop_samples, n_fft=spec.n_fft, fmin=spec.fmin, fmax=spec.fmax)
    if spec.name == "speech":
        frontend = model.new_frontend()
        if isinstance(frontend, SpeechFrontend):
            return SpeechMel(frontend)
    return LogMelFrontend()


def levels(frontend: Drawn) -> tuple[float, float]:
    """The values drawn darkest and brightest for what ``frontend`` computes."""
    return SpeechMel.LEVELS if isinstance(frontend, SpeechMel) else (LOW, HIGH)


def to_bytes(features: np.ndarray, low: float = LOW, high: float = HIGH) -> np.ndarray:
    """Frames ``[frames, mels]`` as uint8 levels 0..255 over ``low``..``high``."""
    scaled = (np.asarray(features, dtype=np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def png(levels: np.ndarray) -> bytes:
    """An RGB PNG of ``levels`` ``[frames, mels]``: time left to right, low bands at the bottom."""
    image = PALETTE[np.ascontiguousarray(levels.T[::-1])]  # [mels, frames, 3]
    height, width = image.shape[:2]
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def picture(path: Path, model: Model) -> bytes:
    """The spectrogram PNG of an audio file (its first 30 s), read as every clip is (16 kHz mono)."""
    import soundfile as sf

    frontend = frontend_for(model)
    wanted = frontend.receptive_samples + MAX_PICTURE_FRAMES * frontend.hop_samples
    if sf.info(str(path)).samplerate == SAMPLE_RATE:
        # What hark records is 16 kHz already: read just the part drawn, without scipy (60 MB on a Pi).
        block = sf.read(str(path), frames=wanted, dtype="float32", always_2d=True)[0]
        samples = block.mean(axis=1)
    else:
        from hark.audiofile import read_audio

        samples = read_audio(path)[:wanted]
    features = frontend.transform(samples)
    if len(features) == 0:
        features = np.full((1, frontend.feature_shape[0]), levels(frontend)[0], dtype=np.float32)
    return png(to_bytes(features, *levels(frontend)))
