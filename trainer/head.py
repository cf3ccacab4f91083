"""The trainable head (Keras) and its export to TFLite.

Heads are small on purpose: with 8 clips a class, the pretrained base does the hearing and the
head only has to tell a few embeddings apart. Only ops that ``tflite_runtime`` 2.14 (the Pi's
runtime on Python 3.11) has are used: convolutions, pooling, fully-connected, softmax.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

keras = tf.keras
layers = keras.layers


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
        x = layers.Reshape((window, feature_shape[0], 1))(x)
        for filters in (16, 32):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        x = layers.GlobalMaxPooling2D()(x)
        x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(n_outputs, activation="softmax", name="scores")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def export_tflite(model: keras.Model, *, window: int, feature_shape: tuple[int, ...]) -> bytes:
    """The head as a float32 TFLite flatbuffer with a resizable batch dimension."""

    @tf.function(input_signature=[tf.TensorSpec([None, window, *feature_shape], tf.float32, name="features")])
    def serve(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
