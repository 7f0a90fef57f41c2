"""benchmarks/seeds.py without running it (it trains every model once per seed): the
aggregation over two fake compare.json files, and --help."""

from __future__ import annotations

import importlib.util
import math

import pytest
from paths import REPO

SPEC = importlib.util.spec_from_file_location("seeds", REPO / "benchmarks" / "seeds.py")
seeds = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(seeds)

RUNS = {
    1: {
        "cnn.fracture_auroc": 0.60,
        "cnn.region_accuracy": 0.70,
        "ensemble.fracture_auroc": 0.66,
        "ensemble.region_accuracy": 0.80,
        "cnn.fracture_temperature": None,  # NaN in compare.json: not a value
        "test_set.fracture_n": 232,
    },
    2: {
        "cnn.fracture_auroc": 0.70,
        "cnn.region_accuracy": 0.74,
        "ensemble.fracture_auroc": 0.72,
        "ensemble.region_accuracy": 0.80,
        "test_set.fracture_n": 229,
    },
}


def test_mean_std_min_max_per_model_and_metric_in_compare_order():
    long = seeds.runs_frame(RUNS)
    assert set(long["model"]) == {"cnn", "ensemble"}  # test_set counts left out
    assert len(long) == 8
    table = seeds.summarise(long).set_index(["model", "metric"])
    assert list(table.index.get_level_values("model").unique()) == ["cnn", "ensemble"]
    cnn = table.loc[("cnn", "fracture_auroc")]
    assert cnn["mean"] == pytest.approx(0.65) and cnn["n"] == 2
    assert cnn["std"] == pytest.approx(math.sqrt(2 * 0.05**2))  # sample std, ddof 1
    assert (cnn["min"], cnn["max"]) == pytest.approx((0.60, 0.70))
    assert table.loc[("ensemble", "region_accuracy"), "std"] == pytest.approx(0.0)
    assert set(table.index.get_level_values("metric")) == set(seeds.METRICS)


def test_help_says_what_it_runs(capsys):
    with pytest.raises(SystemExit) as exit_:
        seeds.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--seeds", "--jobs", "--work", "--params", "--vary-split"):
        assert option in text
