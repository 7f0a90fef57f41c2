"""`bonexray validate` on FracAtlas (read in place, a small subset) with the tiny trained
artifacts of served.py: the JSON's schema and counts, a refused file counted and listed,
and the numbers equal to a direct computation with the metrics functions."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from paths import FRACATLAS

from bonexray import cli
from bonexray.evaluation import metrics
from bonexray.inference.predict import Predictor
from bonexray.io.predictions import region_columns

pytestmark = [
    pytest.mark.fracatlas,
    pytest.mark.skipif(not (FRACATLAS / "dataset.csv").is_file(), reason="FracAtlas not available"),
]
PER_CLASS = 24  # fractured and not: 48 FracAtlas images, every region among them
BROKEN = "IMG9999999.jpg"  # listed in the CSV, a JPEG header and nothing else


def fracatlas_subset(root: Path) -> list[dict[str, str]]:
    """A FracAtlas-layout folder of symlinks to a few FracAtlas images (dataset.csv
    trimmed to them) plus one file the decoder refuses. Returns the CSV rows."""
    with open(FRACATLAS / "dataset.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    fieldnames = list(table[0])
    rows = []
    for fractured, folder in (("1", "Fractured"), ("0", "Non_fractured")):
        chosen = [r for r in table if r["fractured"] == fractured][:: 40 if fractured == "0" else 8]
        rows += [{**r, "folder": folder} for r in chosen[:PER_CLASS]]
    for folder in ("Fractured", "Non_fractured"):
        (root / "images" / folder).mkdir(parents=True)
    for row in rows:
        target = FRACATLAS / "images" / row["folder"] / row["image_id"]
        (root / "images" / row["folder"] / row["image_id"]).symlink_to(target)
    (root / "images" / "Fractured" / BROKEN).write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 60)
    rows.append({**rows[0], "image_id": BROKEN, "folder": "Fractured"})
    with open(root / "dataset.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def fracatlas_region(row: dict[str, str]) -> str:
    """The raw region of a FracAtlas CSV row, as its adapter reads it."""
    flags = [k for k in ("hand", "leg", "hip", "shoulder") if row[k] == "1"]
    return flags[0] if len(flags) == 1 and row["mixed"] != "1" else "mixed"


@pytest.fixture(scope="module")
def validated(served, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("validate")
    rows = fracatlas_subset(root / "external")
    params = {**served["cfg"], "validate": {"atlas": {"kind": "fracatlas", "path": "external"}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = root / "metrics" / "external"
    argv = ["validate", "atlas", "--params", str(root / "params.yaml"), "--out", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main([*argv, "--artifacts", str(served["artifacts"])])
    return {
        **served,
        "code": code,
        "printed": printed.getvalue(),
        "rows": rows,
        "external": root / "external",
        "result": json.loads((out / "atlas.json").read_text()),
    }


def test_every_served_model_is_scored_with_counts_that_add_up(validated):
    assert validated["code"] == 0
    result = validated["result"]
    assert sorted(result["models"]) == ["cnn", "ensemble", "rf"]  # every serving record
    images = result["images"]
    assert images["n"] == len(validated["rows"]) == 2 * PER_CLASS + 1
    assert images["n_fracture_labelled"] == images["n"]
    assert images["n_fracture_positive"] == PER_CLASS + 1
    # Taxonomy of the tiny artifacts: hand, elbow, leg; FracAtlas' hip, shoulder and mixed
    # are not among them, so they are not scored for region.
    sources = images["region_label_sources"]
    assert sum(sources.values()) == images["n"] and images["n_region_scored"] == sources.get(
        "original", 0
    )
    assert 0 < images["n_region_scored"] < images["n"]
    assert result["refused"] == [
        {"id": f"images/Fractured/{BROKEN}", "why": result["refused"][0]["why"]}
    ]
    assert result["refused"][0]["why"].startswith(("corrupt", "truncated", "not_image"))
    for model in result["models"].values():
        counts = model["counts"]
        assert counts["n"] == counts["scored"] + counts["refused"] == images["n"]
        assert counts["refused"] == 1 and sum(counts["refused_by_status"].values()) == 1
        assert counts["scored"] == counts["called"] + counts["withheld"]
        assert model["fracture"]["n"] == counts["scored"]  # every decoded image is labelled
        # the refused file is counted among the labelled images, not scored
        broken_scored = fracatlas_region(validated["rows"][-1]) in ("hand", "leg")
        assert model["region"]["n"] == images["n_region_scored"] - broken_scored
        frac = model["fracture"]
        assert 0 <= frac["auroc_ci_low"] <= frac["auroc"] <= frac["auroc_ci_high"] <= 1
        region = model["region"]
        assert 0 <= region["accuracy_ci_low"] <= region["accuracy"] <= region["accuracy_ci_high"]
        assert sum(b["count"] for b in model["reliability"]) == frac["n"]
        assert set(frac["auroc_by_region"]) == {"hand", "elbow", "leg"}
        assert "with_hardware" in frac["auroc_by_hardware"]  # FracAtlas gives the flag
    printed = validated["printed"]
    assert "AUROC" in printed and "cnn" in printed and "rf" in printed


@pytest.mark.parametrize("model", ["cnn", "rf"])
def test_numbers_equal_a_direct_computation(validated, model):
    """Predictor on the same files, then the metrics functions by hand."""
    predictor = Predictor.load(validated["artifacts"], validated["cfg"], model)
    rows = [r for r in validated["rows"] if r["image_id"] != BROKEN]
    paths = [validated["external"] / "images" / r["folder"] / r["image_id"] for r in rows]
    out = predictor.run(paths)
    y = np.array([int(r["fractured"]) for r in rows])
    p = out["p_fracture"].to_numpy(float)
    got = validated["result"]["models"][model]
    frac, settings = got["fracture"], validated["cfg"]["evaluate"]
    threshold = predictor.record.threshold
    assert frac["auroc"] == pytest.approx(metrics.auroc(y, p), abs=1e-3)
    ci = metrics.bootstrap_auroc_ci(y, p, settings["bootstrap"], validated["cfg"]["seed"])
    assert (frac["auroc_ci_low"], frac["auroc_ci_high"]) == pytest.approx(
        (ci.low, ci.high), abs=1e-3
    )
    sens, spec = metrics.sensitivity_specificity(y, p, threshold)
    assert (frac["sensitivity"], frac["specificity"]) == pytest.approx((sens, spec), abs=1e-4)
    assert frac["threshold"] == pytest.approx(threshold, abs=1e-4)
    table = metrics.calibration_bins(y, p, settings["calibration_bins"])
    ece = metrics.expected_calibration_error(table)
    assert frac["ece"] == pytest.approx(ece, abs=1e-3)
    regions = [fracatlas_region(r) for r in rows]
    keep = np.array([r in predictor.record.regions for r in regions])
    proba = out[region_columns(predictor.record.regions)].to_numpy(float)[keep]
    truth = [predictor.record.regions.index(r) for r, k in zip(regions, keep, strict=True) if k]
    accuracy = metrics.region_scores(np.array(truth), proba)["accuracy"]
    assert got["region"]["accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_limit_takes_a_stratified_sample_of_fracatlas_itself(served, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["validate", "atlas", "--kind", "fracatlas", "--path", str(FRACATLAS), "--limit", "12"]
    argv += ["--model", "rf", "--params", str(served["params"]), "--out", str(out)]
    assert cli.main([*argv, "--artifacts", str(served["artifacts"])]) == 0
    result = json.loads((out / "atlas.json").read_text())
    assert list(result["models"]) == ["rf"] and result["images"]["n"] == 12
    # FracAtlas: 717 of 4,024 fractured -> about 2 of 12.
    assert 1 <= result["images"]["n_fracture_positive"] <= 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "validate.nowhere: no such source"),
        (["--kind", "fracatlas", "--path", "/no/such/folder"], "is not a directory"),
        (["--kind", "folder", "--path", "UNLABELLED"], "nothing to score"),
        (["--kind", "fracatlas", "--path", str(FRACATLAS), "--model", "cnn_nas"], "cnn_nas"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(served, tmp_path, capsys, extra, message):
    (tmp_path / "loose.png").write_bytes(b"")  # no folders: no region, no fracture label
    extra = [str(tmp_path) if e == "UNLABELLED" else e for e in extra]
    argv = ["validate", "nowhere", *extra, "--params", str(served["params"])]
    assert cli.main([*argv, "--artifacts", str(served["artifacts"])]) == 2
    assert message in capsys.readouterr().err


def test_missing_artifacts_exit_2(served, tmp_path, capsys):
    argv = ["validate", "atlas", "--kind", "fracatlas", "--path", str(FRACATLAS)]
    assert cli.main([*argv, "--params", str(served["params"]), "--artifacts", str(tmp_path)]) == 2
    assert "no serving records" in capsys.readouterr().err
