"""The relabel stage's base model: a small CNN whose feature map is read row by row by an LSTM.

It predicts the anatomical region only (softmax over every region of the taxonomy) and is
used to label images whose region is missing or ambiguous. Two defects of the study it
replaces are ruled out by construction:

- the output is a softmax over ``len(regions)`` columns, checked when the model is built
  (the study took argmax over one sigmoid column, so every image became "hand");
- the LSTM runs over the H' rows of the last feature map, each row a (W' * C) vector, so the
  sequence has H' >= 2 steps (the study's LSTM saw a sequence of length one).

The model takes images at the working size (uint8 values as floats) and downsamples them
itself, so the saved ``.keras`` file is self-contained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers
from sklearn.utils.class_weight import compute_class_weight

from bonexray.errors import ConfigError


@dataclass(frozen=True)
class BaseModelConfig:
    """params.yaml relabel.base_model."""

    epochs: int
    batch_size: int
    conv_filters: tuple[int, ...]
    lstm_units: int
    dropout: float
    learning_rate: float
    input_size: int  # images larger than this are downsampled to it inside the model

    @classmethod
    def from_params(cls, cfg: Mapping[str, Any]) -> BaseModelConfig:
        return cls(
            epochs=int(cfg["epochs"]),
            batch_size=int(cfg["batch_size"]),
            conv_filters=tuple(int(f) for f in cfg["conv_filters"]),
            lstm_units=int(cfg["lstm_units"]),
            dropout=float(cfg["dropout"]),
            learning_rate=float(cfg["learning_rate"]),
            input_size=int(cfg["input_size"]),
        )


def build(image_size: int, n_classes: int, cfg: BaseModelConfig) -> keras.Model:
    """Conv blocks -> rows of the feature map as a sequence -> LSTM -> softmax(n_classes)."""
    if n_classes < 2:
        raise ConfigError(f"the base model needs at least 2 regions, got {n_classes}")
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    if image_size > cfg.input_size:
        # Antialiased so that thin cortical lines survive the downsampling as grey, not gaps.
        x = layers.Resizing(cfg.input_size, cfg.input_size, antialias=True)(x)
    for filters in cfg.conv_filters:
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    rows, cols, channels = x.shape[1:]
    if rows < 2:
        raise ConfigError(
            f"{len(cfg.conv_filters)} conv blocks leave {rows} row(s) of a "
            f"{min(image_size, cfg.input_size)} px image: the LSTM needs a sequence of >= 2 steps"
        )
    x = layers.Reshape((rows, cols * channels), name="rows_as_sequence")(x)
    x = layers.LSTM(cfg.lstm_units)(x)
    x = layers.Dropout(cfg.dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="region")(x)
    model = keras.Model(inputs, outputs, name="base_region")
    if model.output_shape[-1] != n_classes:  # the study's one-column bug must not recur
        raise AssertionError(f"region head has {model.output_shape[-1]} outputs, not {n_classes}")
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def balanced_class_weight(labels: np.ndarray) -> dict[int, float]:
    """sklearn's 'balanced' weights for the classes present (absent classes weigh 1 in Keras)."""
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights, strict=True)}


def train(
    images: np.ndarray, labels: np.ndarray, n_classes: int, cfg: BaseModelConfig, seed: int
) -> keras.Model:
    """Fit a fresh base model on (N, S, S) uint8 images and integer region labels."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build(images.shape[1], n_classes, cfg)
    model.fit(
        as_batch(images),
        np.asarray(labels, dtype=np.int64),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        class_weight=balanced_class_weight(labels),
        shuffle=True,
        verbose=2,
    )
    return model


def predict(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax probabilities, shape (N, n_classes); an empty input gives an empty array."""
    n_classes = model.output_shape[-1]
    if len(images) == 0:
        return np.zeros((0, n_classes), np.float32)
    return np.asarray(model.predict(as_batch(images), batch_size=batch_size, verbose=0))


def as_batch(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """(N, S, S) uint8 -> (N, S, S, 1) float32, the model's input layout."""
    return np.asarray(images, dtype=np.float32)[..., np.newaxis]
