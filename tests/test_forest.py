"""The random forest stage on a tiny sample of feature vectors."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest
from tiny_sample import REGIONS, params, write_sample

from bonexray import predictions
from bonexray.forest import train_rf


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rf")
    sample = write_sample(root / "sample")
    out = {
        "model_dir": root / "models" / "rf",
        "predictions_path": root / "predictions" / "rf.parquet",
        "metrics_path": root / "metrics" / "rf.json",
        "trials_path": root / "plots" / "trials" / "rf.csv",
    }
    metrics = train_rf(params(), sample["labels"], sample["vectors"], **out)
    return sample, out, metrics


def test_predictions_cover_val_and_test_and_are_probabilities(trained):
    sample, out, _ = trained
    frame = predictions.read(out["predictions_path"], REGIONS)
    labels = pd.read_parquet(sample["labels"])
    assert set(frame["split"]) == {"val", "test"}
    assert sorted(frame["id"]) == sorted(labels.loc[labels["split"] != "train", "id"])
    proba = frame[predictions.region_columns(REGIONS)].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert frame["p_fracture"].between(0, 1).all()
    # The vectors carry region signal: the forest should find it on val and test.
    truth = frame["id"].map(labels.set_index("id")["region"])
    known = truth.notna().to_numpy()
    predicted = np.array(REGIONS)[proba.argmax(axis=1)]
    assert (predicted[known] == truth[known].to_numpy()).mean() > 0.6


def test_search_tables_models_and_metrics(trained):
    _, out, metrics = trained
    trials = pd.read_csv(out["trials_path"])
    assert len(trials) == 3  # rf.n_iter
    assert {"trial", "n_estimators", "max_depth", "region_score", "fracture_score"} <= set(trials)
    pd.testing.assert_frame_equal(trials, pd.read_csv(out["model_dir"] / "trials.csv"))
    assert json.loads(out["metrics_path"].read_text()) == metrics
    assert metrics["region"]["n_train"] == 35
    assert metrics["fracture"]["n_train"] < 35  # unknown fracture labels are left out
    assert metrics["region"]["best_cv_neg_log_loss"] == pytest.approx(trials["region_score"].max())
    region = joblib.load(out["model_dir"] / "region.joblib")
    fracture = joblib.load(out["model_dir"] / "fracture.joblib")
    assert list(region.classes_) == [0, 1, 2] and list(fracture.classes_) == [0, 1]


def test_same_seed_same_forest(trained, tmp_path):
    sample, out, _ = trained
    again = tmp_path / "rf.parquet"
    train_rf(
        params(),
        sample["labels"],
        sample["vectors"],
        tmp_path / "models",
        again,
        tmp_path / "rf.json",
        tmp_path / "rf.csv",
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(out["predictions_path"]), pd.read_parquet(again), check_exact=True
    )
