"""Keras Tuner wiring: which tuner, what it optimises, and the trials table.

The objective is the validation loss, i.e. the sum over both heads of their class-weighted
losses times train.loss_weights. Selecting on one head's accuracy (the original study used
region accuracy alone) would pick architectures that ignore the fracture head; the combined
loss is what each network is trained on, is what early stopping watches in the final fit,
and is a proper scoring rule, so it rewards calibrated probabilities too.

Every tuner writes, in each trial's directory, which tuner process ran it (runner.json):
Keras Tuner's own trial records do not say, and in a distributed search (distributed.py)
that is the one place that tells the workers' trials apart.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import pandas as pd

from bonexray.io.params import ParamsError

OBJECTIVE = kt.Objective("val_loss", direction="min")
PROJECT_NAME = "search"
TUNERS = ("bayesian", "hyperband", "random")
RUNNER = "runner.json"


class _Recorded:
    """Tuner mixin: record each trial's runner; optionally reseed before each trial.

    With ``trial_seed`` every trial starts from the same RNG state, so its score depends
    on its hyperparameters alone, not on which worker ran it or what that worker ran before.
    """

    trial_seed: int | None = None

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        if self.trial_seed is not None:
            keras.utils.set_random_seed(self.trial_seed)
        record = {"tuner_id": self.tuner_id, "host": socket.gethostname(), "pid": os.getpid()}
        (Path(self.get_trial_dir(trial.trial_id)) / RUNNER).write_text(json.dumps(record) + "\n")
        super().on_trial_begin(trial)


class BayesianOptimization(_Recorded, kt.BayesianOptimization):
    pass


class RandomSearch(_Recorded, kt.RandomSearch):
    pass


class Hyperband(_Recorded, kt.Hyperband):
    pass


def make_tuner(
    hypermodel: kt.HyperModel,
    search: Mapping[str, Any],
    directory: str | Path,
    seed: int,
    where: str = "search",
    overwrite: bool = True,
    distribution_strategy=None,
    trial_seed: int | None = None,
) -> kt.Tuner:
    """A tuner over ``directory``.

    overwrite=True (a DVC stage reruns its search from scratch) empties the directory;
    the processes of a distributed search share one directory, emptied before they start,
    and pass False. ``distribution_strategy``: the scope trials build their models in.
    """
    kind = search.get("tuner")
    common = {
        "hypermodel": hypermodel,
        "objective": OBJECTIVE,
        "seed": seed,
        "executions_per_trial": int(search["executions_per_trial"]),
        "directory": str(directory),
        "project_name": PROJECT_NAME,
        "overwrite": overwrite,
        "distribution_strategy": distribution_strategy,
    }
    if kind == "bayesian":
        tuner = BayesianOptimization(max_trials=int(search["max_trials"]), **common)
    elif kind == "random":
        tuner = RandomSearch(max_trials=int(search["max_trials"]), **common)
    elif kind == "hyperband":
        # Hyperband sizes its own brackets from max_epochs; max_trials does not apply.
        tuner = Hyperband(max_epochs=int(search["epochs"]), factor=3, **common)
    else:
        raise ParamsError(f"params.yaml {where}.tuner: {kind!r} is not one of {TUNERS}")
    tuner.trial_seed = trial_seed
    return tuner


def run_search(
    tuner: kt.Tuner,
    train_data,
    val_data,
    epochs: int,
    callbacks: Sequence[keras.callbacks.Callback],
    steps_per_epoch: int | None = None,
) -> None:
    """Run trials until the oracle stops (on a distributed search's worker: the chief's).

    ``callbacks`` (schedules.fit_callbacks) are copied into each trial by Keras Tuner.
    ``steps_per_epoch``: for an endless (shuffled) train dataset; each trial's fit starts
    its own iteration, at epoch 0, so every trial sees the same draws."""
    tuner.search(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        callbacks=list(callbacks),
        shuffle=False,  # the dataset shuffles itself, with the seed
        steps_per_epoch=steps_per_epoch,
        verbose=2,
    )


def best_hyperparameters(tuner: kt.Tuner) -> kt.HyperParameters:
    """The best completed trial's hyperparameters; fails if no trial completed."""
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


def runners(directory: str | Path) -> dict[str, str]:
    """Trial id -> the tuner id that ran it, from the records of a search's directory."""
    records = sorted(Path(directory, PROJECT_NAME).glob(f"trial_*/{RUNNER}"))
    return {
        path.parent.name.removeprefix("trial_"): json.loads(path.read_text())["tuner_id"]
        for path in records
    }
