"""The trainable head (Keras) and its export to TFLite.

Heads are small on purpose: with 8 clips a class, the pretrained base does the hearing and the
head only has to tell a few embeddings apart. Only long-standing builtin ops (ones that even
``tflite_runtime`` 2.14 has) are used: convolutions, pooling, fully-connected, softmax.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from typing import Any

import numpy as np

# TensorFlow's start-up talk (oneDNN, CUDA stubs, "failed call to cuInit" on a machine without a
# GPU, absl's banner) reads like a failure on every training and says nothing a hark user can act
# on. Recent TensorFlow writes it from C++ before its own TF_CPP_MIN_LOG_LEVEL is honoured, so the
# import and the device probe that calls cuInit run with fd 2 pointed at a file; what was written
# there goes back to stderr except the lines known to be that noise. Nothing else runs then: the
# trainer's feature threads have finished, so no other thread's line can be held back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_NOISE = re.compile(r"oneDNN custom operations|cudart_stub|cuInit|cuda_(platform|executor|diagnostics)|"
                    r"absl::InitializeLog|Unable to register cu(DNN|FFT|BLAS) factory|computation placer|"
                    r"TF-TRT|This TensorFlow binary is optimized|rebuild TensorFlow with the appropriate")


def _import_tensorflow() -> Any:
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (pytest's capture): nothing to hide
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), fd)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices()  # where cuInit is called
        finally:
            os.dup2(saved, fd)
            os.close(saved)
        held.seek(0)
        kept = [line for line in held.read().decode(errors="replace").splitlines() if not _NOISE.search(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr, flush=True)
    for name in ("absl", "tensorflow"):  # "Using new converter", the converter's deprecation notices
        logging.getLogger(name).setLevel(logging.ERROR)
    return tensorflow


tf = _import_tensorflow()
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # noqa: E402

keras = tf.keras
layers = keras.layers


# Training steps run per call into TensorFlow: the head is so small that Python's overhead between
# steps was a third of fitting it. The steps and their order are the same, so are the weights.
STEPS_PER_EXECUTION = 32


def build_head(base: str, *, window: int, feature_shape: tuple[int, ...], n_outputs: int,
               norm_mean: np.ndarray, norm_var: np.ndarray) -> keras.Model:
    """The head of ``base``: ``[batch, window, *feature_shape]`` in, softmax over labels out."""
    inputs = keras.Input((window, *feature_shape), name="features")
    x = layers.Normalization(axis=-1, mean=norm_mean, variance=norm_var)(inputs)
    if base == "speech":
        x = layers.Dropout(0.1)(x)
        x = layers.Conv1D(64, 3, activation="relu")(x)
        x = layers.Conv1D(64, 3, activation="relu")(x)
        x = layers.GlobalMaxPooling1D()(x)
        x = layers.Dropout(0.3)(x)
    elif base == "sounds":
        x = layers.Dropout(0.2)(x)
        x = layers.Conv1D(128, 1, activation="relu")(x)
        x = layers.GlobalMaxPooling1D()(x)
        x = layers.Dropout(0.3)(x)
    else:
        # Convolution over time with the mel bands as channels: a 2-D CNN over 100 x 40 frames
        # costs ten times more to train on a 2-core desktop for no gain on a few clips.
        for filters, size in ((32, 5), (48, 5)):
            x = layers.Conv1D(filters, size, activation="relu")(x)
            x = layers.MaxPooling1D(2)(x)
        x = layers.Conv1D(64, 3, activation="relu")(x)
        x = layers.GlobalMaxPooling1D()(x)
        x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(n_outputs, activation="softmax", name="scores")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=STEPS_PER_EXECUTION)
    return model


def average(members: list[keras.Model], *, window: int, feature_shape: tuple[int, ...]) -> keras.Model:
    """One model whose scores are the mean of the members' (a single member is returned as it is)."""
    if len(members) == 1:
        return members[0]
    inputs = keras.Input((window, *feature_shape), name="features")
    outputs = layers.Average(name="scores")([m(inputs) for m in members])
    return keras.Model(inputs, outputs)


def scores(model: keras.Model, x: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """The model's softmax outputs for ``x``, a batch at a time.

    ``model.predict`` builds a tf.data pipeline on every call (about 0.1 s here); training scores
    hundreds of small segments, which made that overhead a fifth of a training's time.
    """
    if not len(x):
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def export_tflite(model: keras.Model, *, window: int, feature_shape: tuple[int, ...]) -> bytes:
    """The head as a float32 TFLite flatbuffer with a resizable batch dimension."""

    @tf.function(input_signature=[tf.TensorSpec([None, window, *feature_shape], tf.float32, name="features")])
    def serve(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    # Variables frozen into constants first: otherwise Keras 3 variables reach the flatbuffer as
    # READ_VARIABLE ops, and the model from from_keras_model carries signature defs that
    # tflite_runtime 2.14 cannot parse.
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
