"""hark.web.spectrogram: the page's log-mel pictures are the model's own frames, as a valid PNG."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from hark.frontend import LogMelFrontend, SpeechFrontend
from hark.model import Model
from hark.web.spectrogram import HIGH, LOW, PALETTE, SpeechMel, frontend_for, levels, picture, png, to_bytes


def decode(data: bytes) -> np.ndarray:
    """The RGB pixels of a PNG written by :func:`png` (8-bit RGB, filter 0 on every row)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + 3 * width)
    assert not raw[:, 0].any()
    return raw[:, 1:].reshape(height, width, 3)


def test_levels_map_to_the_palette_with_low_bands_at_the_bottom() -> None:
    levels = np.zeros((5, 3), np.uint8)
    levels[:, 0] = 255  # the lowest band loud in every frame
    pixels = decode(png(levels))
    assert pixels.shape == (3, 5, 3)
    assert (pixels[-1] == PALETTE[255]).all() and (pixels[0] == PALETTE[0]).all()
    assert to_bytes(np.array([[LOW - 5, HIGH + 5, (LOW + HIGH) / 2]])).tolist() == [[0, 255, 127]]


def test_a_base_none_model_is_drawn_with_its_own_frontend(tone_bundle: Path, tmp_path: Path) -> None:
    model = Model.load(tone_bundle)
    manifest = model.manifest
    frontend = frontend_for(model)
    assert isinstance(frontend, LogMelFrontend)
    assert frontend.feature_shape == tuple(manifest.frontend.feature_shape)
    assert frontend.hop_samples == manifest.frontend.hop_samples
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 16000)
    pixels = decode(picture(tmp_path / "tone.wav", model))
    features = frontend.transform(sf.read(tmp_path / "tone.wav", dtype="float32")[0])
    # exactly the frames the head sees (for --base none), time left to right, low bands at the bottom
    assert (pixels == PALETTE[to_bytes(features).T[::-1]]).all()
    assert to_bytes(features).max() > 128  # the tone shows up bright


def test_a_speech_model_is_drawn_with_the_mel_frames_its_embedding_sees(speech_tone_bundle: Path,
                                                                       tmp_path: Path) -> None:
    model = Model.load(speech_tone_bundle)
    drawn = frontend_for(model)
    assert isinstance(drawn, SpeechMel) and drawn.feature_shape == (32,) and drawn.hop_samples == 160
    t = np.arange(24000) / 16000
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 800 * t)).astype(np.float32), 16000)
    samples = sf.read(tmp_path / "tone.wav", dtype="float32")[0]
    # streamed in uneven pieces, the same frames as the speech frontend computes in one go
    pieces = [drawn.push(samples[i:i + 700]) for i in range(0, len(samples), 700)]
    streamed = np.concatenate(pieces)
    speech = model.new_frontend()
    assert isinstance(speech, SpeechFrontend)
    whole = speech._run_mel(samples[:len(streamed) * 160 + 480])
    np.testing.assert_allclose(streamed, whole, atol=1e-4)
    pixels = decode(picture(tmp_path / "tone.wav", model))
    assert pixels.shape[0] == 32
    assert (pixels == PALETTE[to_bytes(frontend_for(model).transform(samples), *levels(drawn)).T[::-1]]).all()
