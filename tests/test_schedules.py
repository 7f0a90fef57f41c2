"""train.lr_schedule: the callbacks every Keras fit gets (models/keras/schedules.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bonexray.io.params import ParamsError
from bonexray.models.keras.schedules import CosineDecayPerEpoch, fit_callbacks

TRAIN = {
    "early_stopping_patience": 4,
    "lr_plateau": {"factor": 0.5, "patience": 1, "min_lr": 1e-4},
}


def rates_over_fit(callbacks: list, epochs: int, val_noise: bool) -> list[float]:
    """The learning rate at each epoch of a one-weight regression fit for ``epochs``."""
    keras.utils.set_random_seed(0)
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(-1, 1)
    # Unlearnable targets: val_loss stalls at once, so a plateau schedule must act.
    y = np.random.default_rng(0).normal(size=(32, 1)).astype(np.float32) if val_noise else 2 * x
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    seen: list[float] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(
            float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        )
    )
    model.fit(
        x, y, validation_data=(x[::-1], y), epochs=epochs, verbose=0, callbacks=[*callbacks, record]
    )
    return seen


def test_cosine_anneals_from_the_compiled_rate():
    rates = rates_over_fit([CosineDecayPerEpoch(4)], epochs=4, val_noise=False)
    np.testing.assert_allclose(rates, 0.1 * (1 + np.cos(np.pi * np.arange(4) / 4)) / 2, rtol=1e-5)


def test_plateau_lowers_the_rate_when_val_loss_stalls_but_not_below_min_lr():
    callbacks = fit_callbacks(
        {**TRAIN, "lr_schedule": "plateau"}, epochs=12, restore_best_weights=True
    )
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds == ["EarlyStopping", "ReduceLROnPlateau"]
    rates = rates_over_fit(callbacks[1:], epochs=12, val_noise=True)
    assert rates[0] == pytest.approx(0.1) and min(rates) < 0.1
    assert min(rates) >= 1e-4 - 1e-12


def test_constant_adds_only_early_stopping_and_unknown_is_refused():
    stop = fit_callbacks({**TRAIN, "lr_schedule": "constant"}, epochs=3, restore_best_weights=False)
    assert [type(c).__name__ for c in stop] == ["EarlyStopping"]
    assert stop[0].patience == 4 and not stop[0].restore_best_weights
    with pytest.raises(ParamsError, match="lr_schedule"):
        fit_callbacks({**TRAIN, "lr_schedule": "step"}, epochs=3, restore_best_weights=True)
