"""An int8 copy of the speech embedding, made by the trainer for the bundle to carry.

90% of the device's CPU with the speech base is one network, ``embedding_model.tflite`` (float32),
run every 80 ms. Its int8 copy (int8 weights and activations, float32 in and out, so the
frontend and the head do not change) takes a third of the CPU on LiteRT. The device cannot make
it (it has no TensorFlow), and base files come from official addresses with pinned hashes, so
the trainer makes it, trains the head on its features, and writes it into the bundle
(``base/embedding_model_int8.tflite``, listed with its sha256); the manifest's
``frontend.embedding`` says ``int8``, and the device runs that file: what was trained is what runs.

TensorFlow's converter starts from a TensorFlow model, not a ``.tflite`` file, but this network is
a plain stack of 20 convolutions, leaky ReLUs (slope 0.2) clipped below at -0.4 and 5 max-pools:
:func:`rebuild` makes it again in Keras from the file's own weights (largest difference from the
file 1.4e-4 on outputs up to 83), and :func:`quantize` converts that.

**The representative set** (what the converter measures each layer's range on) is the user's own
audio, the audio the device will hear: :func:`representative_windows` takes the embedding's input
windows (76 mel frames, one every 80 ms) of every clip of the dataset (its classes and
``_unknown_``) and of its background recordings, and draws up to :data:`REPRESENTATIVE_WINDOWS`
of them, half from the clips and half from the background, with a fixed seed (not the training
seed). The same dataset therefore always gives the same file, whatever ``--seed``; a dataset
with other clips gives another.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hark.audiofile import SAMPLE_RATE
from hark.errors import HarkError
from hark.frontend import SpeechFrontend

REPRESENTATIVE_WINDOWS = 500  # windows the converter calibrates on (half clips, half background)
REPRESENTATIVE_SEED = 0  # fixed: the same dataset gives the same embedding whatever the training seed
BACKGROUND_PIECE_S = 30.0  # background recordings are read into windows this much at a time ...
BACKGROUND_MAX_S = 600.0  # ... up to this much of each
EMBEDDING_INPUT = (76, 32, 1)


@dataclass(frozen=True)
class QuantizedEmbedding:
    """The int8 file and how close it stays to the float embedding on the representative windows."""

    path: Path
    sha256: str
    windows: int
    cosine_mean: float
    cosine_min: float

    def summary(self) -> dict[str, Any]:
        """What the manifest's ``metrics.embedding`` records, for people."""
        return {"kind": "int8", "sha256": self.sha256, "representative_windows": self.windows,
                "cosine_to_float_mean": round(self.cosine_mean, 5), "cosine_to_float_min": round(self.cosine_min, 5)}


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


def rebuild(path: Path) -> Any:
    """The speech embedding at ``path`` as a Keras model with the file's weights.

    Refuses (:class:`~hark.errors.HarkError`) a file with an operator the rebuild does not know,
    rather than make a different network.
    """
    tf = _tf()
    it = tf.lite.Interpreter(str(path))
    it.allocate_tensors()
    details = {t["index"]: t for t in it.get_tensor_details()}
    # Every layer named: Keras numbers unnamed layers per process, and the names go into the file, so
    # a second rebuild would otherwise convert to other bytes (the same network).
    inp = tf.keras.Input(EMBEDDING_INPUT, name="mel")
    x = tf.keras.layers.ZeroPadding2D(((0, 0), (1, 1)), name="pad")(inp)
    first = True
    for n, op in enumerate(it._get_ops_details()):
        name = op["op_name"]
        if name == "CONV_2D":
            w, b = it.get_tensor(op["inputs"][1]), it.get_tensor(op["inputs"][2])  # [out, kh, kw, in]
            # The (1, 3) convolutions keep the width ('same'); the (3, 1) and the first 3x3 shrink ('valid').
            padding = "same" if w.shape[1] == 1 and not first else "valid"
            conv = tf.keras.layers.Conv2D(w.shape[0], (w.shape[1], w.shape[2]), padding=padding, name=f"conv{n}")
            x = conv(x)
            conv.set_weights([w.transpose(1, 2, 3, 0), b])
            first = False
        elif name == "LEAKY_RELU":
            x = tf.keras.layers.LeakyReLU(negative_slope=0.2, name=f"leaky{n}")(x)
        elif name == "MAXIMUM":
            floor = float(it.get_tensor(op["inputs"][1]))
            x = tf.keras.layers.Lambda(lambda t, f=floor: tf.maximum(t, f), name=f"floor{n}")(x)
        elif name == "MAX_POOL_2D":
            (_, h_in, w_in, _), (_, h_out, w_out, _) = (details[op["inputs"][0]]["shape"],
                                                        details[op["outputs"][0]]["shape"])
            x = tf.keras.layers.MaxPooling2D((h_in // h_out, w_in // w_out), name=f"pool{n}")(x)
        elif name not in ("PAD", "DELEGATE"):  # DELEGATE: the node XNNPACK took the graph into
            raise HarkError(f"{path}: unexpected operator {name}; not the speech embedding this trainer can quantize")
    return tf.keras.Model(inp, x, name="speech_embedding")


def quantize(model: Any, representative: np.ndarray, *, mode: str = "int8") -> bytes:
    """``model`` converted to TFLite: ``int8`` (weights and activations, calibrated on ``representative``
    windows ``[n, 76, 32]`` in their order; float32 input and output) or ``dynamic-range`` (int8 weights)."""
    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        windows = np.asarray(representative, np.float32).reshape(-1, *EMBEDDING_INPUT)
        if not len(windows):
            raise HarkError("no representative windows to calibrate an int8 embedding on")

        def data() -> Iterator[list[np.ndarray]]:
            for i in range(len(windows)):
                yield [windows[i:i + 1]]

        converter.representative_dataset = data
        # Every operator int8: a layer left in float would keep its cost.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    elif mode != "dynamic-range":
        raise ValueError(f"unknown quantization {mode!r}")
    with _quiet():
        return bytes(converter.convert())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Standard output and error silenced, at the file descriptors: the converter prints its saved model's
    signature (pages of it) from Python and its settings from C++, none of it for the user."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def embed(model: Path | bytes, windows: np.ndarray) -> np.ndarray:
    """Embeddings ``[n, 96]`` of mel windows ``[n, 76, 32]`` by a ``.tflite`` file or its bytes."""
    tf = _tf()
    it = tf.lite.Interpreter(model_content=model) if isinstance(model, bytes) else tf.lite.Interpreter(str(model))
    windows = np.asarray(windows, np.float32).reshape(-1, *EMBEDDING_INPUT)
    it.resize_tensor_input(it.get_input_details()[0]["index"], [len(windows), *EMBEDDING_INPUT])
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], windows)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).reshape(len(windows), -1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def representative_windows(frontend: SpeechFrontend, clips: Sequence[np.ndarray], background: Sequence[np.ndarray],
                           *, count: int = REPRESENTATIVE_WINDOWS, seed: int = REPRESENTATIVE_SEED) -> np.ndarray:
    """Up to ``count`` embedding inputs ``[n, 76, 32]`` of the user's audio: half from ``clips``, half from
    ``background`` (all from one when the other has none), drawn with ``seed``, in the order of the audio."""
    of_clips = [frontend.embedding_inputs(c) for c in clips]
    of_background = []
    piece, most = int(BACKGROUND_PIECE_S * SAMPLE_RATE), int(BACKGROUND_MAX_S * SAMPLE_RATE)
    for recording in background:
        for start in range(0, min(len(recording), most), piece):
            of_background.append(frontend.embedding_inputs(recording[start:start + piece]))
    pools = [np.concatenate(p) if p else np.zeros((0, *EMBEDDING_INPUT[:2]), np.float32)
             for p in (of_clips, of_background)]
    pools = [p for p in pools if len(p)]
    if not pools:
        raise HarkError("the dataset has no clip or background recording long enough (0.8 s) to calibrate "
                        "an int8 embedding on; train with --embedding float")
    rng = np.random.default_rng(seed)
    out = []
    for i, pool in enumerate(pools):
        share = count // len(pools) + (1 if i < count % len(pools) else 0)
        out.append(pool[np.sort(rng.choice(len(pool), min(share, len(pool)), replace=False))])
    return np.concatenate(out).astype(np.float32)


def int8_embedding(float_model: Path, representative: np.ndarray, folder: Path) -> QuantizedEmbedding:
    """The int8 copy of the float embedding at ``float_model``, calibrated on ``representative`` and
    written to ``folder/embedding_model_int8.tflite``; with its fidelity on those windows."""
    from hark.manifest import EMBEDDING_FILES

    data = quantize(rebuild(float_model), representative)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / EMBEDDING_FILES["int8"]
    path.write_bytes(data)
    sims = cosine(embed(data, representative), embed(float_model, representative))
    return QuantizedEmbedding(path=path, sha256=hashlib.sha256(data).hexdigest(), windows=len(representative),
                              cosine_mean=float(sims.mean()), cosine_min=float(sims.min()))
