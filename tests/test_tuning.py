"""Search spaces from params.yaml and a real (tiny) Keras Tuner search."""

from __future__ import annotations

import json

import keras
import keras_tuner as kt
import pandas as pd
import pytest
from tiny_sample import CHANNELS, GRID, REGIONS, TINY_RNN, params, write_sample

from bonexray.io import predictions
from bonexray.io.params import ParamsError
from bonexray.models.interface import TrainOutputs
from bonexray.models.keras.network import BoneHyperModel, NetworkSpec
from bonexray.models.keras.space import declare
from bonexray.models.keras.training import train_keras
from bonexray.models.keras.tuning import make_tuner


def test_space_convention():
    hp = kt.HyperParameters()
    declare(
        hp,
        {
            "filters": {"choice": [16, 32]},
            "pool_every_block": {"choice": [True, False]},
            "scan": {"choice": ["rows", "rows_columns"]},
            "dropout": {"range": [0.1, 0.4]},
            "learning_rate": {"range": [0.005, 0.0005], "log": True},
            "kernel_size": 3,
        },
    )
    space = {p.name: p for p in hp.space}
    assert isinstance(space["filters"], kt.engine.hyperparameters.Choice)
    assert space["filters"].values == [16, 32]
    assert isinstance(space["pool_every_block"], kt.engine.hyperparameters.Boolean)
    assert hp.values["pool_every_block"] is True  # a bool, not 1, in trials and metrics
    assert isinstance(space["scan"], kt.engine.hyperparameters.Choice)
    assert isinstance(space["dropout"], kt.engine.hyperparameters.Float)
    assert space["dropout"].sampling == "linear"
    rate = space["learning_rate"]
    assert isinstance(rate, kt.engine.hyperparameters.Float)
    assert (rate.min_value, rate.max_value, rate.sampling) == (0.0005, 0.005, "log")
    assert isinstance(space["kernel_size"], kt.engine.hyperparameters.Fixed)
    assert hp.values["kernel_size"] == 3


@pytest.mark.parametrize(
    "bad, reason",
    [
        ([0, 1], "a bare list"),  # a choice or a range? refused, not guessed
        ([], "a bare list"),
        ({"min": 1}, "is not a scalar"),
        (None, "no value"),
        ({"choice": []}, "non-empty list"),
        ({"range": [1]}, r"\[low, high\]"),
        ({"range": [0.0, 1.0], "log": True}, "low > 0"),
        ({"range": [0.1, 1.0], "log": "yes"}, "true or false"),
    ],
)
def test_space_rejects_what_it_cannot_read(bad, reason):
    with pytest.raises(ParamsError, match=rf"params.yaml space\.x.*{reason}"):
        declare(kt.HyperParameters(), {"x": bad})


@pytest.mark.parametrize(
    "kind, cls",
    [
        ("bayesian", kt.BayesianOptimization),
        ("hyperband", kt.Hyperband),
        ("random", kt.RandomSearch),
    ],
)
def test_tuner_kinds(tmp_path, kind, cls):
    spec = NetworkSpec((GRID, GRID, CHANNELS), len(REGIONS), True, {"region": 1, "fracture": 1})
    model = BoneHyperModel(TINY_RNN, spec)
    search = {"tuner": kind, "max_trials": 2, "epochs": 3, "executions_per_trial": 1}
    tuner = make_tuner(model, search, tmp_path, seed=1)
    assert isinstance(tuner, cls)
    assert tuner.oracle.objective.name == "val_loss"
    with pytest.raises(ValueError, match="grid"):
        make_tuner(model, {**search, "tuner": "grid"}, tmp_path, seed=1)


def test_search_saves_trials_and_a_loadable_model(tmp_path):
    sample = write_sample(tmp_path / "sample")
    space = {
        **TINY_RNN,
        "filters": {"choice": [4, 8]},
        "dropout": {"range": [0.0, 0.3]},
        "learning_rate": {"range": [0.001, 0.01], "log": True},
    }
    cfg = {
        "rnn": True,
        "search": {
            "tuner": "bayesian",
            "max_trials": 2,
            "epochs": 1,
            "executions_per_trial": 1,
            "workers": 1,
        },
        "final_epochs": 2,
        "space": space,
    }
    out = tmp_path / "out"
    outputs = TrainOutputs(
        model_dir=out / "models" / "nas",
        predictions=out / "predictions" / "nas.parquet",
        metrics=out / "metrics" / "nas.json",
        live_dir=out / "plots" / "train" / "nas",
        trials=out / "plots" / "trials" / "nas.csv",
    )
    metrics = train_keras("nas", params(nas=cfg), sample["labels"], sample["bands"], outputs)

    trials = pd.read_csv(outputs.trials)
    assert len(trials) == 2 and (trials["status"] == "COMPLETED").all()
    assert {"trial", "score", "filters", "dropout", "learning_rate", "lstm_units"} <= set(trials)
    pd.testing.assert_frame_equal(trials, pd.read_csv(outputs.model_dir / "trials.csv"))
    assert metrics["search_trials"] == 2
    best = json.loads((outputs.model_dir / "best_hyperparameters.json").read_text())
    assert best == metrics["best_hyperparameters"]
    best_trial = trials.loc[trials["score"].idxmin()]
    assert best["filters"] == best_trial["filters"]
    assert (outputs.model_dir / "tuner" / "search").is_dir()

    model = keras.saving.load_model(outputs.model_dir / "model.keras")
    assert model.get_layer("conv1").filters == best["filters"]
    assert model.get_layer("rows_bilstm1").input.shape[1] > 1
    frame = predictions.read(outputs.predictions, REGIONS)
    assert set(frame["split"]) == {"val", "test"} and len(frame) == 24
