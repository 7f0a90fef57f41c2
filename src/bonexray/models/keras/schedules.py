"""What runs beside every Keras fit (search trials and final fits alike): early stopping on
val_loss and the learning-rate schedule of train.lr_schedule.

"plateau" multiplies the rate by lr_plateau.factor after lr_plateau.patience epochs without a
better val_loss (fewer than early stopping's, so a stalled fit first tries a smaller step);
"cosine" anneals it per epoch from the compiled rate towards 0 over the fit's epochs. Either
way a searched learning rate keeps its meaning: it is where the schedule starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from bonexray.io.params import ParamsError

LR_SCHEDULES = ("constant", "plateau", "cosine")  # train.lr_schedule


class CosineDecayPerEpoch(keras.callbacks.Callback):
    """Learning rate of epoch e (from 0): start * (1 + cos(pi * e / epochs)) / 2."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = max(int(epochs), 1)
        self.start = 0.0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.start = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.model.optimizer.learning_rate = (
            self.start * 0.5 * (1.0 + np.cos(np.pi * epoch / self.epochs))
        )


def fit_callbacks(
    train_params: Mapping[str, Any], epochs: int, restore_best_weights: bool
) -> list[keras.callbacks.Callback]:
    """Early stopping (train.early_stopping_patience) and the learning-rate schedule."""
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=int(train_params["early_stopping_patience"]),
            restore_best_weights=restore_best_weights,
        )
    ]
    kind = train_params["lr_schedule"]
    if kind == "plateau":
        plateau = train_params["lr_plateau"]
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=float(plateau["factor"]),
                patience=int(plateau["patience"]),
                min_lr=float(plateau["min_lr"]),
                verbose=1,
            )
        )
    elif kind == "cosine":
        callbacks.append(CosineDecayPerEpoch(epochs))
    elif kind != "constant":
        raise ParamsError(f"params.yaml train.lr_schedule: {kind!r} is not one of {LR_SCHEDULES}")
    return callbacks
