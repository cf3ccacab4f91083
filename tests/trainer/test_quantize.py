"""The int8 speech embedding (:mod:`hark.trainer.quantize`): rebuilt exactly, quantized deterministically,
calibrated on a fixed draw of the user's audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hark.basemodels import fetch_base
from hark.errors import HarkError
from hark.frontend import SpeechFrontend
from hark.trainer import quantize as Q


@pytest.fixture(scope="module")
def speech(shared_dir: Path) -> dict[str, Path]:
    return fetch_base("speech")


@pytest.fixture(scope="module")
def frontend(speech: dict[str, Path]) -> SpeechFrontend:
    return SpeechFrontend(mel_model=speech["melspectrogram.tflite"], embedding_model=speech["embedding_model.tflite"])


def _sounds(seed: int, n: int, seconds: float = 2.0) -> list[np.ndarray]:
    """Noise, tones and sweeps at several levels: the kinds of audio a room gives."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            x = rng.standard_normal(len(t))
        elif kind == 1:
            x = np.sin(2 * np.pi * rng.uniform(200, 3000) * t)
        else:
            x = np.sin(2 * np.pi * (rng.uniform(200, 800) + rng.uniform(500, 3000) * t) * t)
        out.append((x * 10 ** rng.uniform(-2.5, -0.5)).astype(np.float32))
    return out


def test_the_rebuilt_network_is_the_file(speech: dict[str, Path], frontend: SpeechFrontend) -> None:
    windows = np.concatenate([frontend.embedding_inputs(x) for x in _sounds(0, 6)])
    reference = Q.embed(speech["embedding_model.tflite"], windows)
    rebuilt = Q.rebuild(speech["embedding_model.tflite"]).predict(windows[..., None], verbose=0)
    rebuilt = rebuilt.reshape(len(windows), -1)
    assert np.abs(rebuilt - reference).max() < 1e-3 * max(1.0, np.abs(reference).max())


def test_embedding_inputs_are_the_windows_the_frontend_embeds(frontend: SpeechFrontend,
                                                              speech: dict[str, Path]) -> None:
    clip = _sounds(3, 1, seconds=3.0)[0]
    windows = frontend.embedding_inputs(clip)
    assert windows.shape[1:] == (76, 32)
    np.testing.assert_allclose(Q.embed(speech["embedding_model.tflite"], windows), frontend.transform(clip),
                               rtol=1e-4, atol=1e-3)
    assert frontend.embedding_inputs(clip[:400]).shape == (0, 76, 32)


def test_int8_copy_is_deterministic_close_and_int8(speech: dict[str, Path], frontend: SpeechFrontend,
                                                   tmp_path: Path) -> None:
    import tensorflow as tf

    windows = Q.representative_windows(frontend, _sounds(1, 6), _sounds(2, 3, seconds=10.0), count=120)
    made = Q.int8_embedding(speech["embedding_model.tflite"], windows, tmp_path / "a")
    again = Q.int8_embedding(speech["embedding_model.tflite"], windows, tmp_path / "b")
    assert made.path.read_bytes() == again.path.read_bytes() and made.sha256 == again.sha256
    assert made.path.name == "embedding_model_int8.tflite" and made.windows == 120
    # Every convolution's weights are int8, the input and output float32 (the frontend and head do not change).
    it = tf.lite.Interpreter(str(made.path))
    assert it.get_input_details()[0]["dtype"] == np.float32 and it.get_output_details()[0]["dtype"] == np.float32
    ops = it._get_ops_details()
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert len(convs) == 20
    details = {t["index"]: t for t in it.get_tensor_details()}
    assert all(details[op["inputs"][1]]["dtype"] == np.int8 for op in convs)
    # Close to the float embedding on audio it was not calibrated on.
    test = np.concatenate([frontend.embedding_inputs(x) for x in _sounds(7, 6)])
    sims = Q.cosine(Q.embed(made.path, test), Q.embed(speech["embedding_model.tflite"], test))
    assert sims.mean() > 0.97 and made.cosine_mean > 0.97


def test_representative_windows_are_a_fixed_half_and_half_draw(frontend: SpeechFrontend) -> None:
    clips, background = _sounds(4, 4), _sounds(5, 2, seconds=20.0)
    one = Q.representative_windows(frontend, clips, background, count=40)
    assert one.shape == (40, 76, 32)
    np.testing.assert_array_equal(one, Q.representative_windows(frontend, clips, background, count=40))
    of_clips = np.concatenate([frontend.embedding_inputs(c) for c in clips])
    from_clips = [any(np.array_equal(w, c) for c in of_clips) for w in one]
    assert sum(from_clips) == 20  # half the windows from the clips, half from the background
    # Fewer windows than asked for: all of them. Only background: all from it.
    assert len(Q.representative_windows(frontend, clips[:1], [], count=1000)) == len(
        frontend.embedding_inputs(clips[0]))
    assert len(Q.representative_windows(frontend, [], background, count=30)) == 30
    with pytest.raises(HarkError, match="long enough"):
        Q.representative_windows(frontend, [np.zeros(400, np.float32)], [], count=10)
