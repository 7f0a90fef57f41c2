"""Keras Tuner wiring: which tuner, what it optimises, and the trials table.

The objective is the validation loss, i.e. the sum over both heads of their class-weighted
losses times train.loss_weights. Selecting on one head's accuracy (the original study used
region accuracy alone) would pick architectures that ignore the fracture head; the combined
loss is what each network is trained on, is what early stopping watches in the final fit,
and is a proper scoring rule, so it rewards calibrated probabilities too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import pandas as pd

OBJECTIVE = kt.Objective("val_loss", direction="min")
PROJECT_NAME = "search"
TUNERS = ("bayesian", "hyperband", "random")


def make_tuner(
    hypermodel: kt.HyperModel,
    search: Mapping[str, Any],
    directory: str | Path,
    seed: int,
    where: str = "search",
) -> kt.Tuner:
    """A fresh tuner (overwrite=True: a DVC stage always reruns its search from scratch)."""
    kind = search.get("tuner")
    common = {
        "hypermodel": hypermodel,
        "objective": OBJECTIVE,
        "seed": seed,
        "executions_per_trial": int(search["executions_per_trial"]),
        "directory": str(directory),
        "project_name": PROJECT_NAME,
        "overwrite": True,
    }
    if kind == "bayesian":
        return kt.BayesianOptimization(max_trials=int(search["max_trials"]), **common)
    if kind == "random":
        return kt.RandomSearch(max_trials=int(search["max_trials"]), **common)
    if kind == "hyperband":
        # Hyperband sizes its own brackets from max_epochs; max_trials does not apply.
        return kt.Hyperband(max_epochs=int(search["epochs"]), factor=3, **common)
    raise ValueError(f"params.yaml {where}.tuner: {kind!r} is not one of {TUNERS}")


def run_search(
    tuner: kt.Tuner, train_data, val_data, epochs: int, patience: int
) -> kt.HyperParameters:
    """Run the search and return the best hyperparameters."""
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    tuner.search(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        callbacks=[stop],
        shuffle=False,  # the dataset shuffles itself, with the seed
        verbose=2,
    )
    completed = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    if not completed:
        raise RuntimeError(f"{tuner.project_dir}: no trial completed; see the log above")
    return tuner.get_best_hyperparameters(1)[0]


def trials_table(tuner: kt.Tuner) -> pd.DataFrame:
    """One row per trial: trial, status, score (best val_loss), best_step, hyperparameters."""
    rows = [
        {
            "trial": trial.trial_id,
            "status": trial.status,
            "score": trial.score,
            "best_step": trial.best_step,
            **trial.hyperparameters.values,
        }
        for trial in tuner.oracle.trials.values()
    ]
    return pd.DataFrame(rows).sort_values("trial", kind="stable", ignore_index=True)
