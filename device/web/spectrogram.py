"""Log-mel spectrograms for the page: live columns for the Live tab, PNG pictures of clips.

Both use hark's own log-mel frontend (:class:`hark.frontend.LogMelFrontend`): for a model on
``--base none`` with the very parameters of its manifest, so the page shows exactly the frames
the head sees; for the speech and sounds bases (whose mel runs inside their TFLite graph) the
default 40 bands of the same audio. Values are mapped to 0..255 over a fixed dB range so that
colours mean the same level on every clip and in the live view.

The PNG encoder is the format's few lines over :mod:`zlib`: the device has no imaging library.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from hark.audio import SAMPLE_RATE
from hark.frontend import LogMelFrontend
from hark.manifest import Manifest

# log(power) of the frontend: silence sits near log(1e-6) = -13.8, a loud sound near +8.
LOW, HIGH = -12.0, 6.0
MAX_PICTURE_FRAMES = 3000  # 30 s at 10 ms; longer clips are drawn from their first 30 s
# A perceptually even dark-to-bright ramp (viridis' anchors), 256 entries of RGB.
_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float)
PALETTE = np.stack([np.interp(np.linspace(0, 4, 256), np.arange(5), _ANCHORS[:, c]) for c in range(3)],
                   axis=1).astype(np.uint8)


def frontend_for(manifest: Manifest) -> LogMelFrontend:
    """The log-mel frontend the page draws with: the model's own for ``--base none``, else the default."""
    spec = manifest.frontend
    if spec.name == "none":
        return LogMelFrontend(n_mels=int(spec.feature_shape[0]), win_samples=spec.receptive_samples,
                              hop_samples=spec.hop_samples, n_fft=spec.n_fft, fmin=spec.fmin, fmax=spec.fmax)
    return LogMelFrontend()


def to_bytes(features: np.ndarray) -> np.ndarray:
    """Log-mel frames ``[frames, mels]`` as uint8 levels 0..255 over the fixed range."""
    scaled = (np.asarray(features, dtype=np.float32) - LOW) * (255.0 / (HIGH - LOW))
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


def picture(path: Path, manifest: Manifest) -> bytes:
    """The spectrogram PNG of an audio file (its first 30 s), read as every clip is (16 kHz mono)."""
    import soundfile as sf

    frontend = frontend_for(manifest)
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
        features = np.full((1, frontend.feature_shape[0]), LOW, dtype=np.float32)
    return png(to_bytes(features))
