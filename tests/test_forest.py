"""The random forest stage on a tiny sample of feature vectors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.preprocessing import FunctionTransformer
from tiny_sample import REGIONS, params, write_sample

from bonexray.io import predictions
from bonexray.models.examples import load_examples
from bonexray.models.forest import UntrustedModelError, load_forests, predict_frame, train_rf
from bonexray.models.interface import TrainOutputs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rf")
    sample = write_sample(root / "sample")
    out = TrainOutputs(
        model_dir=root / "models" / "rf",
        predictions=root / "predictions" / "rf.parquet",
        metrics=root / "metrics" / "rf.json",
        trials=root / "plots" / "trials" / "rf.csv",
    )
    metrics = train_rf(params(), sample["labels"], sample["vectors"], out)
    return sample, out, metrics


def test_predictions_cover_val_and_test_and_are_probabilities(trained):
    sample, out, _ = trained
    frame = predictions.read(out.predictions, REGIONS)
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
    trials = pd.read_csv(out.trials)
    assert len(trials) == 3  # rf.n_iter
    assert {"trial", "n_estimators", "max_depth", "region_score", "fracture_score"} <= set(trials)
    pd.testing.assert_frame_equal(trials, pd.read_csv(out.model_dir / "trials.csv"))
    assert json.loads(out.metrics.read_text()) == metrics
    assert metrics["region"]["n_train"] == 35
    assert metrics["fracture"]["n_train"] < 35  # unknown fracture labels are left out
    assert metrics["region"]["best_cv_neg_log_loss"] == pytest.approx(trials["region_score"].max())
    forests = load_forests(out.model_dir)
    assert list(forests["region"].classes_) == [0, 1, 2]
    assert list(forests["fracture"].classes_) == [0, 1]
    assert not list(out.model_dir.glob("*.joblib"))  # no pickles left to load by mistake


def test_same_seed_same_forest(trained, tmp_path):
    sample, out, _ = trained
    again = tmp_path / "rf.parquet"
    train_rf(
        params(),
        sample["labels"],
        sample["vectors"],
        TrainOutputs(tmp_path / "models", again, tmp_path / "rf.json", tmp_path / "rf.csv"),
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(out.predictions), pd.read_parquet(again), check_exact=True
    )


def test_loaded_forests_predict_what_the_stage_predicted(trained):
    sample, out, _ = trained
    examples = load_examples(sample["labels"], sample["vectors"], REGIONS).to_predict()
    frame = predict_frame(load_forests(out.model_dir), examples, REGIONS)
    pd.testing.assert_frame_equal(
        frame, predictions.read(out.predictions, REGIONS), check_exact=True
    )


def test_a_forest_holding_an_untrusted_type_is_refused(trained, tmp_path):
    _, out, _ = trained
    for head in ("region", "fracture"):
        shutil.copy(out.model_dir / f"{head}.skops", tmp_path)
    # What a pickle would simply call on load: a transformer whose function is os.system.
    skops.io.dump(FunctionTransformer(os.system), tmp_path / "fracture.skops")
    with pytest.raises(UntrustedModelError, match=r"fracture\.skops.*'(posix|nt)\.system'"):
        load_forests(tmp_path)
    (tmp_path / "fracture.skops").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"fracture\.skops: not a skops model file"):
        load_forests(tmp_path)
