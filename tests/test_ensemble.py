"""The ensemble's combination on hand-made probabilities (evaluation/ensemble.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bonexray.errors import ConfigError
from bonexray.evaluation import ensemble
from bonexray.evaluation.calibration import Temperatures
from bonexray.io import predictions
from bonexray.io.params import ParamsError
from bonexray.models.interface import ENSEMBLE, family_of, model_names

REGIONS = ["hand", "leg"]


def table(ids: list[str], splits: list[str], region: list[list[float]], p: list[float]):
    return predictions.to_frame(ids, splits, np.array(region), np.array(p), REGIONS)


def test_combine_is_the_mean_per_head():
    region, fracture = ensemble.combine(
        [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.5, 0.5], [0.4, 0.6]])],
        [np.array([0.8, 0.1]), np.array([0.4, 0.3])],
    )
    np.testing.assert_allclose(region, [[0.7, 0.3], [0.3, 0.7]])
    np.testing.assert_allclose(fracture, [0.6, 0.2])
    np.testing.assert_allclose(region.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="0 region and 0 fracture"):
        ensemble.combine([], [])


def test_member_table_averages_each_members_calibrated_probabilities_by_id():
    a = table(["x", "y"], ["val", "test"], [[0.9, 0.1], [0.2, 0.8]], [0.8, 0.1])
    # b lists the same images in another order: they are matched by id.
    b = table(["y", "x"], ["test", "val"], [[0.4, 0.6], [0.5, 0.5]], [0.3, 0.4])
    platt = Temperatures(region=2.0, fracture=0.5, fracture_bias=1.0)
    out = ensemble.member_table({"a": a, "b": b}, {"a": Temperatures(), "b": platt}, REGIONS)
    assert out["id"].tolist() == ["x", "y"] and out["split"].tolist() == ["val", "test"]
    b_by_id = b.set_index("id").loc[["x", "y"]]
    columns = predictions.region_columns(REGIONS)
    expected_region = (a[columns].to_numpy() + platt.region_proba(b_by_id[columns].to_numpy())) / 2
    expected_p = (a["p_fracture"].to_numpy() + platt.fracture_proba(b_by_id["p_fracture"])) / 2
    np.testing.assert_allclose(out[columns].to_numpy(), expected_region, atol=1e-12)
    np.testing.assert_allclose(out["p_fracture"], expected_p, atol=1e-12)
    assert not np.allclose(out["p_fracture"], (a["p_fracture"] + b_by_id["p_fracture"].values) / 2)


@pytest.mark.parametrize(
    "ids, splits, says",
    [
        (["x"], ["val"], "1 missing or in another split, 0 extra, e.g. 'y'"),
        (["x", "y", "z"], ["val", "test", "test"], "0 missing or in another split, 1 extra"),
        (["x", "y"], ["val", "val"], "1 missing or in another split, 0 extra, e.g. 'y'"),
    ],
)
def test_members_must_predict_the_same_images(ids, splits, says):
    a = table(["x", "y"], ["val", "test"], [[0.9, 0.1], [0.2, 0.8]], [0.8, 0.1])
    b = table(ids, splits, [[0.5, 0.5]] * len(ids), [0.5] * len(ids))
    with pytest.raises(ConfigError, match=f"ensemble: b did not predict the images a did .*{says}"):
        ensemble.member_table({"a": a, "b": b}, {"a": Temperatures(), "b": Temperatures()}, REGIONS)


def test_ensemble_is_a_reserved_model_name():
    assert family_of("ensemble") is ENSEMBLE and not ENSEMBLE.explainable
    assert model_names({"models": {"cnn": {}}}) == ["cnn", "rf"]
    with pytest.raises(ParamsError, match="'ensemble' and 'rf' are reserved"):
        model_names({"models": {"ensemble": {}}})


def test_one_uncalibrated_member_is_its_own_ensemble():
    a = table(["x"], ["test"], [[0.9, 0.1]], [0.8])
    out = ensemble.member_table({"a": a}, {"a": Temperatures()}, REGIONS)
    pd.testing.assert_frame_equal(out, a)
