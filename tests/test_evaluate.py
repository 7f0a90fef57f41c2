"""evaluate end to end on fabricated labels, predictions, repair shards and DVCLive logs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from paths import REPO

from bonexray import cli
from bonexray.errors import ConfigError
from bonexray.evaluation import ensemble, metrics, ood, serving
from bonexray.evaluation import scoring as evaluate
from bonexray.io import predictions
from bonexray.io.labels import read_labels
from bonexray.io.params import ParamsError
from bonexray.io.shards import ShardWriter
from bonexray.reporting import report

REGIONS = ["hand", "elbow", "shoulder", "hip", "leg"]
MODELS = ["cnn_rnn_nas", "cnn_nas", "cnn", "rf"]
SCORED = [*MODELS, "ensemble"]  # what evaluate scores as models (evaluate.ensemble: mean)
# How informative each fabricated model is (0 = noise).
SKILL = {"cnn_rnn_nas": 3.0, "cnn_nas": 2.5, "cnn": 2.0, "rf": 0.0}
# metrics/train/<model>.json as the training stages write them (the cards read them).
_KERAS_TRAINED = {
    "best_epoch": 5,
    "epochs_run": 9,
    "n_train": 240,
    "n_val": 80,
    "search_trials": 4,
    "best_hyperparameters": {"conv_blocks": 3, "filters": 16, "learning_rate": 0.00207},
}
_RF_HEAD = {
    "best_cv_neg_log_loss": -0.65,
    "best_params": {"n_estimators": 400, "max_depth": "none"},
    "n_train": 240,
}
TRAINED = {
    "cnn_rnn_nas": {**_KERAS_TRAINED, "best_hyperparameters": {"scan": "rows", "lstm_units": 32}},
    "cnn_nas": {**_KERAS_TRAINED, "best_hyperparameters": {"pooling": "max"}},
    "cnn": {**_KERAS_TRAINED, "search_trials": 0},
    "rf": {"n_iter": 12, "cv": 3, "region": _RF_HEAD, "fracture": {**_RF_HEAD, "n_train": 228}},
}
PARAMS = {
    "seed": 7,
    "sources": {"clinic_a": {"kind": "folder", "path": "data/clinic_a"}},
    "taxonomy": {"regions": REGIONS},
    "models": {
        "cnn_rnn_nas": {"rnn": True, "search": {"tuner": "bayesian"}},
        "cnn_nas": {"rnn": False, "search": {"tuner": "random"}},
        "cnn": {"rnn": False},
    },
    "split": {
        "fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
        "near_duplicate_distance": 6,
        "dhash_distance": 12,
        "group_by_patient": True,
    },
    "evaluate": {
        "bootstrap": 200,
        "operating_point": "youden",
        "target_sensitivity": 0.9,
        "calibration_bins": 10,
        "calibration": "temperature",
        "ensemble": "mean",
        "report_examples": 12,
        "score_region_sources": ["original", "synonym"],
        "ood_val_pass": 0.99,
        "ood_min_threshold": 3.0,
    },
}


def fabricate_labels(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, n, p=[0.4, 0.2, 0.15, 0.1, 0.15]).astype(object)
    source = rng.choice(["original", "synonym", "model", "excluded"], n, p=[0.6, 0.2, 0.12, 0.08])
    region[source == "excluded"] = None
    fracture = pd.array(rng.random(n) < 0.4, dtype="Int8")
    fracture[rng.random(n) < 0.05] = pd.NA
    return pd.DataFrame(
        {
            "id": [f"data/clinic_a/img_{i:04d}.png" for i in range(n)],
            "split": rng.choice(["train", "val", "test"], n, p=[0.6, 0.2, 0.2]),
            "region": region,
            "label_source": source,
            "region_confidence": 1.0,
            "fracture": fracture,
            "excluded_reason": np.where(source == "excluded", "low confidence", None),
        }
    )


def fabricate_predictions(labels: pd.DataFrame, skill: float, seed: int) -> pd.DataFrame:
    """Val/test predictions whose logits lean towards the truth by ``skill``."""
    rng = np.random.default_rng(seed)
    rows = labels[labels["split"].isin(("val", "test"))]
    truth = rows["region"].map({r: i for i, r in enumerate(REGIONS)}).fillna(0).astype(int)
    logits = rng.normal(0, 1, (len(rows), len(REGIONS)))
    logits[np.arange(len(rows)), truth] += skill
    region_proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    fractured = rows["fracture"].fillna(0).astype(int).to_numpy()
    fracture_proba = 1 / (1 + np.exp(-(skill * (fractured - 0.5) + rng.normal(0, 1, len(rows)))))
    return predictions.to_frame(
        rows["id"].tolist(), rows["split"].tolist(), region_proba, fracture_proba, REGIONS
    )


def fabricate_repo(root: Path) -> Path:
    """A directory laid out like the pipeline's, with every input evaluate reads."""
    labels = fabricate_labels()
    (root / "artifacts" / "predictions").mkdir(parents=True)
    labels.to_parquet(root / "artifacts" / "labels.parquet", index=False)
    for i, model in enumerate(MODELS):
        predictions.write(
            fabricate_predictions(labels, SKILL[model], seed=i),
            root / "artifacts" / "predictions" / f"{model}.parquet",
        )
    rng = np.random.default_rng(1)
    meta = {"size": 32, "keep_aspect": True}  # as repair writes them
    with ShardWriter(
        root / "artifacts" / "repair", (32, 32), np.uint8, shard_size=128, meta=meta
    ) as writer:
        for item_id in labels["id"]:
            image = rng.integers(0, 256, (32, 32), dtype=np.uint8)
            writer.add(item_id, image, status="ok", orig_width=32, orig_height=32)
    from dvclive import Live  # real DVCLive output, as the Keras training stages write it

    for model in ("cnn_rnn_nas", "cnn"):
        with Live(root / "plots" / "train" / model, dvcyaml=None, save_dvc_exp=False) as live:
            for epoch in range(3):
                for name, value in {
                    "train/loss": 1 / (epoch + 1),
                    "eval/loss": 1.2 / (epoch + 1),
                    "train/region_accuracy": 0.5 + epoch / 10,
                }.items():
                    live.log_metric(name, value)
                live.next_step()
    (root / "plots" / "trials").mkdir(parents=True)
    pd.DataFrame({"trial": ["t0", "t1"], "filters": [16, 32], "val_loss": [0.9, 0.7]}).to_csv(
        root / "plots" / "trials" / "cnn_rnn_nas.csv", index=False
    )
    (root / "metrics" / "train").mkdir(parents=True)
    for model in MODELS:
        (root / "metrics" / "train" / f"{model}.json").write_text(json.dumps(TRAINED[model]))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return root


def scored_repo(root: Path) -> dict:
    """fabricate_repo(root) and evaluate's scores of it: root, labels, settings, scores."""
    fabricate_repo(root)
    labels = read_labels(root / "artifacts" / "labels.parquet", REGIONS)
    tables = {
        m: predictions.read(root / "artifacts" / "predictions" / f"{m}.parquet", REGIONS)
        for m in MODELS
    }
    settings = evaluate.Settings.from_params(PARAMS)
    scores = evaluate.evaluate_all(labels, tables, REGIONS, settings)
    return {"root": root, "labels": labels, "settings": settings, "scores": scores}


def settings(**overrides: object) -> evaluate.Settings:
    params = {**PARAMS, "evaluate": {**PARAMS["evaluate"], **overrides}}
    return evaluate.Settings.from_params(params)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return fabricate_repo(tmp_path_factory.mktemp("evaluate"))


@pytest.fixture(scope="module")
def staged(repo: Path) -> Path:
    """Run the stage scripts as dvc.yaml does: evaluate, then report."""
    for argv in (
        [
            "evaluate.py",
            "--labels",
            "artifacts/labels.parquet",
            "--images",
            "artifacts/repair",
            "--predictions",
            "artifacts/predictions",
            "--metrics",
            "metrics",
            "--plots",
            "plots/eval",
            "--serving",
            "artifacts/serving",
        ],
        [
            "report.py",
            "--labels",
            "artifacts/labels.parquet",
            "--predictions",
            "artifacts/predictions",
            "--repair",
            "artifacts/repair",
            "--train-plots",
            "plots/train",
            "--trials",
            "plots/trials",
            "--train-metrics",
            "metrics/train",
            "--report",
            "plots/report.html",
            "--cards",
            "artifacts/cards",
        ],
    ):
        subprocess.run(
            [sys.executable, str(REPO / "stages" / argv[0]), *argv[1:]],
            cwd=repo,
            check=True,
            capture_output=True,
        )
    return repo


def test_stage_writes_per_model_metrics_and_a_flat_compare_file(staged: Path):
    for model in MODELS:
        nested = json.loads((staged / "metrics" / f"{model}.json").read_text())
        assert set(nested) == {"region", "fracture", "selection"}
        for head in ("region", "fracture"):
            assert {"temperature", "ece", "ece_uncalibrated", "nll", "nll_uncalibrated"} <= set(
                nested[head]
            )
        assert set(nested["fracture"]["auroc_by_region"]) == set(REGIONS)
    compare = json.loads((staged / "metrics" / "compare.json").read_text())
    for name in [*SCORED, "baseline_majority", "baseline_chance"]:
        for key in evaluate.COMPARE_KEYS:
            assert f"{name}.{key}" in compare
    assert all(not isinstance(v, dict) for v in compare.values())  # flat
    floats = [v for v in compare.values() if isinstance(v, float)]
    assert all(round(v, 4) == v for v in floats)


def test_stage_writes_one_model_card_per_model(staged: Path):
    cards = sorted(p.name for p in (staged / "artifacts" / "cards").iterdir())
    assert cards == sorted(f"{m}.md" for m in SCORED)
    auroc = json.loads((staged / "metrics" / "cnn.json").read_text())["fracture"]["auroc"]
    assert (
        f"| fracture AUROC | {auroc:.3f} |"
        in (staged / "artifacts" / "cards" / "cnn.md").read_text()
    )


def test_stage_writes_serving_records_with_the_best_model_chosen_on_val(staged: Path):
    directory = staged / "artifacts" / "serving"
    assert serving.available(directory) == sorted(SCORED)  # models only, no baselines
    # The ensemble may be chosen like any model: here the mean of the fabricated models,
    # whose errors are independent, beats the most skilful of them (cnn_rnn_nas) on val.
    val_scores = {m: serving.read(directory, m).test["val_selection_score"] for m in SCORED}
    assert val_scores["ensemble"] > max(val_scores[m] for m in MODELS)
    assert val_scores["cnn_rnn_nas"] == max(val_scores[m] for m in MODELS)
    assert serving.best_model(directory) == "ensemble"
    assert serving.read(directory).model == "ensemble"
    for model in MODELS:
        record = serving.read(directory, model)
        nested = json.loads((staged / "metrics" / f"{model}.json").read_text())
        assert record.kind == ("forest" if model == "rf" else "keras")
        assert record.artifact == f"models/{model}"
        assert record.regions == tuple(REGIONS)
        assert record.calibration == "temperature" and record.operating_point == "youden"
        frac = nested["fracture"]
        assert record.threshold == pytest.approx(frac["threshold"], abs=1e-4)
        assert record.temperatures.fracture == pytest.approx(frac["temperature"], abs=1e-4)
        assert record.temperatures.region == pytest.approx(
            nested["region"]["temperature"], abs=1e-4
        )
        assert record.ood["features"] == list(ood.FEATURES) and record.ood["val_pass"] == 0.99
        assert record.test["fracture_auroc"] == frac["auroc"]
    reference = ood.Reference.from_dict(serving.read(directory).ood)
    labels = pd.read_parquet(staged / "artifacts" / "labels.parquet")
    counts = [(labels["split"] == split).sum() for split in ("train", "val")]
    assert [reference.n_train, reference.n_val] == counts
    with pytest.raises(serving.ServingError, match="no serving record for model 'resnet'"):
        serving.read(directory, "resnet")


def test_compare_command_tabulates_every_model(staged: Path, capsys):
    compare = staged / "metrics" / "compare.json"
    table = evaluate.compare_frame(json.loads(compare.read_text()))
    assert set(table.index) == {*SCORED, "baseline_majority", "baseline_chance"}
    assert list(table.columns) == list(evaluate.COMPARE_KEYS) and table.notna().all().all()
    assert cli.main(["compare", "--metrics", str(compare)]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in table.index) and "AUROC" in printed
    # paired.json beside compare.json: its pairs are printed too.
    paired = json.loads((staged / "metrics" / "paired.json").read_text())
    assert "paired tests" in printed and all(pair in printed for pair in paired)
    assert cli.main(["compare", "--metrics", str(staged / "missing.json")]) == 2
    assert "missing.json: No such file" in capsys.readouterr().err


def test_stage_writes_one_plot_csv_per_model_and_kind(staged: Path):
    for kind in evaluate.PLOT_KINDS:
        assert sorted(p.stem for p in (staged / "plots" / "eval" / kind).glob("*.csv")) == sorted(
            SCORED
        )
    confusion = pd.read_csv(staged / "plots" / "eval" / "confusion" / "cnn.csv")
    assert list(confusion.columns) == ["actual", "predicted"]
    nested = json.loads((staged / "metrics" / "cnn.json").read_text())
    assert len(confusion) == nested["region"]["n"]  # one row per scored image
    roc = pd.read_csv(staged / "plots" / "eval" / "roc" / "cnn.csv")
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    assert (staged / "plots" / "report.html").stat().st_size > 1_000_000  # plotly.js inline


def test_informative_models_beat_the_baselines(staged: Path):
    compare = json.loads((staged / "metrics" / "compare.json").read_text())
    majority = compare["baseline_majority.region_accuracy"]
    for model in ("cnn_rnn_nas", "cnn_nas", "cnn"):
        assert compare[f"{model}.region_accuracy"] > majority + 0.15, model
        assert compare[f"{model}.fracture_auroc"] > 0.7, model
        assert compare[f"{model}.fracture_brier"] < compare["baseline_chance.fracture_brier"]
    assert abs(compare["rf.fracture_auroc"] - 0.5) < 0.15  # the noise model is at chance


def test_baselines_are_scored_by_the_same_code():
    labels = fabricate_labels()
    scores = evaluate.evaluate_all(labels, {}, REGIONS, settings())
    train = labels[(labels["split"] == "train") & (labels["label_source"] != "excluded")]
    test = labels[(labels["split"] == "test") & (labels["label_source"] != "excluded")]
    scored = test[test["label_source"].isin(["original", "synonym"])]
    majority_region = train["region"].value_counts().idxmax()
    assert scores["baseline_majority"].metrics["region"]["accuracy"] == pytest.approx(
        (scored["region"] == majority_region).mean()
    )
    chance = scores["baseline_chance"].metrics["fracture"]
    assert chance["auroc"] == 0.5 and chance["auroc_ci_low"] == chance["auroc_ci_high"] == 0.5
    prior = train["fracture"].dropna().astype(int).mean()
    y = test["fracture"].dropna().astype(int)
    assert chance["brier"] == pytest.approx(((prior - y) ** 2).mean())


def test_model_assigned_regions_are_not_scored_unless_asked():
    labels = fabricate_labels()
    preds = {"cnn": fabricate_predictions(labels, 2.0, seed=0)}
    test = labels[labels["split"] == "test"]
    default = evaluate.evaluate_all(labels, preds, REGIONS, settings())["cnn"].metrics["region"]
    assert default["n"] == test["label_source"].isin(["original", "synonym"]).sum()
    assert "model" not in default["n_by_source"]
    wider = evaluate.evaluate_all(
        labels, preds, REGIONS, settings(score_region_sources=["original", "synonym", "model"])
    )["cnn"].metrics["region"]
    assert wider["n"] == default["n"] + (test["label_source"] == "model").sum()
    with pytest.raises(ValueError, match="score_region_sources"):
        settings(score_region_sources=["excluded"])


@pytest.mark.parametrize("calibration", ["platt", "temperature", "none"])
def test_threshold_is_chosen_on_val_and_applied_to_test(calibration):
    """On the calibrated scale (what predict outputs); the same decisions as uncalibrated,
    since every calibration map is strictly increasing."""
    labels = fabricate_labels()
    preds = fabricate_predictions(labels, 1.0, seed=3)
    result = evaluate.evaluate_all(
        labels, {"cnn": preds}, REGIONS, settings(calibration=calibration)
    )["cnn"]
    joined = evaluate.attach_labels(labels, preds, "cnn")
    val = joined[(joined["split"] == "val") & joined["fracture"].notna()]
    test = joined[(joined["split"] == "test") & joined["fracture"].notna()]
    scale = result.temperatures.fracture_proba
    assert (result.temperatures.fracture == 1.0) == (calibration == "none")
    chosen = metrics.choose_operating_point(
        val["fracture"].astype(int), scale(val["p_fracture"]), "youden"
    )
    frac = result.metrics["fracture"]
    assert frac["threshold"] == chosen.threshold
    assert (frac["sensitivity"], frac["specificity"]) == metrics.sensitivity_specificity(
        test["fracture"].astype(int), scale(test["p_fracture"]), chosen.threshold
    )
    raw = metrics.choose_operating_point(val["fracture"].astype(int), val["p_fracture"], "youden")
    assert (frac["sensitivity"], frac["specificity"]) == metrics.sensitivity_specificity(
        test["fracture"].astype(int), test["p_fracture"], raw.threshold
    )


def test_missing_or_misplaced_predictions_are_errors_naming_the_model():
    labels = fabricate_labels()
    preds = fabricate_predictions(labels, 1.0, seed=0)
    scored_test = labels[(labels["split"] == "test") & (labels["label_source"] != "excluded")]
    with pytest.raises(ValueError, match=r"cnn: no prediction for 1 val/test images"):
        evaluate.attach_labels(labels, preds[preds["id"] != scored_test["id"].iloc[0]], "cnn")
    moved = preds.copy()
    moved.loc[moved["split"] == "test", "split"] = "val"
    with pytest.raises(ValueError, match="cnn: .* another split"):
        evaluate.attach_labels(labels, moved, "cnn")
    with pytest.raises(ValueError, match="not in labels"):
        evaluate.attach_labels(labels[labels["id"] != preds["id"].iloc[0]], preds, "cnn")


def test_labels_file_is_checked(tmp_path: Path):
    labels = fabricate_labels(50)
    labels.loc[0, "region"] = "skull"
    labels.to_parquet(tmp_path / "labels.parquet")
    with pytest.raises(ValueError, match=r"labels.parquet: unexpected region values \['skull'\]"):
        read_labels(tmp_path / "labels.parquet", REGIONS)


def test_best_model_is_chosen_on_validation():
    labels = fabricate_labels()
    preds = {m: fabricate_predictions(labels, SKILL[m], seed=i) for i, m in enumerate(MODELS)}
    scores = evaluate.evaluate_all(labels, preds, REGIONS, settings(bootstrap=10))
    assert evaluate.best_model(scores, MODELS) == "cnn_rnn_nas"
    assert not math.isnan(scores["rf"].selection_score)


def test_fracture_auroc_with_and_without_hardware(tmp_path: Path, capsys):
    """Perfect on test images with hardware, ties (AUROC 0.5) on those without, and wrong
    on those whose flag is unknown, which belong to neither group."""
    labels = fabricate_labels()
    rng = np.random.default_rng(5)
    labels["hardware"] = pd.array(rng.choice([1, 0, None], len(labels)), dtype="Int8")
    fractured = labels["fracture"].fillna(0).astype(int)
    p = np.where(labels["hardware"].fillna(-1) == 1, 0.2 + 0.6 * fractured, 0.5)
    p = np.where(labels["hardware"].isna(), 0.8 - 0.6 * fractured, p)
    preds = fabricate_predictions(labels, 2.0, seed=0)
    preds["p_fracture"] = pd.Series(p, index=labels["id"]).loc[preds["id"]].to_numpy()
    labels.to_parquet(tmp_path / "labels.parquet")
    labels = read_labels(tmp_path / "labels.parquet", REGIONS)
    assert labels["hardware"].dtype == "Int8"
    scores = evaluate.evaluate_all(labels, {"cnn": preds}, REGIONS, settings(bootstrap=50))

    frac = scores["cnn"].metrics["fracture"]
    test = labels[
        (labels["split"] == "test")
        & (labels["label_source"] != "excluded")
        & labels["fracture"].notna()
    ]
    expected = {"with_hardware": (1, 1.0), "without_hardware": (0, 0.5)}
    assert set(frac["auroc_by_hardware"]) == set(expected)
    for side, (flag, auroc) in expected.items():
        group = frac["auroc_by_hardware"][side]
        rows = test[test["hardware"] == flag]
        assert (group["n"], group["n_positive"]) == (len(rows), int(rows["fracture"].sum()))
        assert group["auroc"] == pytest.approx(auroc)
        assert group["auroc_ci_low"] == pytest.approx(auroc)
        assert group["auroc_ci_high"] == pytest.approx(auroc)
    assert frac["n"] == len(test)  # the overall score still counts every test image

    flat = evaluate.compare_table(scores)
    assert flat["cnn.fracture_auroc_with_hardware"] == 1.0
    assert flat["cnn.fracture_auroc_without_hardware"] == 0.5
    assert flat["baseline_chance.fracture_auroc_without_hardware"] == 0.5
    assert (
        flat["test_set.fracture_n_with_hardware"] == frac["auroc_by_hardware"]["with_hardware"]["n"]
    )
    table = evaluate.compare_frame(flat)
    assert list(table.columns) == [*evaluate.COMPARE_KEYS, *evaluate.FLAG_COMPARE_KEYS]
    (tmp_path / "compare.json").write_text(json.dumps(flat))
    assert cli.main(["compare", "--metrics", str(tmp_path / "compare.json")]) == 0
    assert "AUROC no hw" in capsys.readouterr().out
    html = report.flag_tables(scores)
    assert "with and without hardware" in html and "<td>1.000 [1.000, 1.000]</td>" in html

    # No test image with the flag (as on the embedded sample): no key, no column.
    labels.loc[labels["split"] == "test", "hardware"] = pd.NA
    bare = evaluate.evaluate_all(labels, {"cnn": preds}, REGIONS, settings(bootstrap=10))
    assert "auroc_by_hardware" not in bare["cnn"].metrics["fracture"]
    flat = evaluate.compare_table(bare)
    assert not any("hardware" in key for key in flat)
    assert list(evaluate.compare_frame(flat).columns) == list(evaluate.COMPARE_KEYS)
    assert report.flag_tables(bare) == ""

    labels.loc[0, "hardware"] = 2
    labels.to_parquet(tmp_path / "labels.parquet")
    with pytest.raises(ValueError, match=r"unexpected hardware values \[2\]"):
        read_labels(tmp_path / "labels.parquet", REGIONS)


def test_hardware_auroc_is_undefined_when_every_such_image_is_fractured():
    """As on FracAtlas' test split: the group lacks a negative, so AUROC and CI are null."""
    rows = pd.DataFrame(
        {
            "fracture": pd.array([1, 1, 1, 0, 0], dtype="Int8"),
            "hardware": pd.array([1, 1, 0, 0, None], dtype="Int8"),
            "p_fracture": [0.9, 0.2, 0.7, 0.3, 0.8],
        }
    )
    breakdown = evaluate.rounded(evaluate.flag_breakdown(rows, "hardware", settings()))
    assert breakdown["with_hardware"] == {
        "n": 2,
        "n_positive": 2,
        "auroc": None,
        "auroc_ci_low": None,
        "auroc_ci_high": None,
        "auroc_ci_resamples": 0,
    }
    assert breakdown["without_hardware"]["auroc"] == 1.0
    assert breakdown["without_hardware"]["n"] == 2


def test_stage_writes_one_paired_test_per_model_pair(staged: Path):
    paired = json.loads((staged / "metrics" / "paired.json").read_text())
    # Each unordered pair once, named "<a>~<b>" in the params' model order.
    by_pair = {frozenset(pair.split("~")): pair for pair in paired}
    assert len(by_pair) == len(paired)
    assert set(by_pair) == {frozenset((a, b)) for a in SCORED for b in SCORED if a != b}
    compare = json.loads((staged / "metrics" / "compare.json").read_text())
    for pair, row in paired.items():
        a, b = pair.split("~")
        assert row["n_fracture"] == compare["test_set.fracture_n"]
        assert row["n_region"] == compare["test_set.region_n"]
        for test in ("fracture_auroc", "region_accuracy"):
            expected = compare[f"{a}.{test}"] - compare[f"{b}.{test}"]
            assert row[f"{test}_difference"] == pytest.approx(expected, abs=2e-4)
            assert 0.0 <= row[f"{test}_p"] <= row[f"{test}_p_holm"] <= 1.0
    # The fabricated cnn_rnn_nas is informative, rf is noise: its lead holds after Holm.
    assert paired[by_pair[frozenset(("cnn_rnn_nas", "rf"))]]["fracture_auroc_p_holm"] < 0.05
    report_html = (staged / "plots" / "report.html").read_text()
    assert "Paired tests between models" in report_html
    assert all(f"<td>{pair}</td>" in report_html for pair in paired)


def test_paired_tests_of_a_model_with_itself_find_nothing(tmp_path: Path):
    scored = scored_repo(tmp_path)
    scores = {**scored["scores"], "twin": scored["scores"]["cnn"]}
    paired = evaluate.paired_tests(scores, ["cnn", "twin"], scored["settings"])
    row = paired["cnn~twin"]
    assert row["fracture_auroc_difference"] == 0.0 and row["fracture_auroc_p"] == 1.0
    assert row["region_accuracy_difference"] == 0.0 and row["region_accuracy_p"] == 1.0
    assert evaluate.paired_findings(paired) == []


# ---------------------------------------------------------------- the ensemble


def test_the_ensemble_is_the_mean_of_the_calibrated_members_scored_as_a_model(staged: Path):
    labels = read_labels(staged / "artifacts" / "labels.parquet", REGIONS)
    tables = {
        m: predictions.read(staged / "artifacts" / "predictions" / f"{m}.parquet", REGIONS)
        for m in MODELS
    }
    scores = evaluate.evaluate_all(labels, tables, REGIONS, settings())
    assert list(scores)[: len(SCORED)] == SCORED  # the models, then their ensemble
    ensemble_test = scores["ensemble"].test.set_index("id")
    columns = predictions.region_columns(REGIONS)
    member_tests = [scores[m].test.set_index("id").loc[ensemble_test.index] for m in MODELS]
    np.testing.assert_allclose(
        ensemble_test["p_fracture"], np.mean([m["p_fracture"] for m in member_tests], axis=0)
    )
    np.testing.assert_allclose(
        ensemble_test[columns], np.mean([m[columns].to_numpy() for m in member_tests], axis=0)
    )
    nested = json.loads((staged / "metrics" / "ensemble.json").read_text())
    members = nested["ensemble"]["members"]  # the params' model order (the YAML's, here sorted)
    assert nested["ensemble"]["combination"] == "mean" and sorted(members) == sorted(MODELS)
    frac = nested["fracture"]
    assert frac["temperature"] == 1.0 and frac["bias"] == 0.0  # not calibrated again
    assert frac["ece"] == frac["ece_uncalibrated"]
    # Its own operating point, chosen on val like every model's.
    combined = ensemble.member_table(tables, {m: scores[m].temperatures for m in MODELS}, REGIONS)
    val = labels.merge(combined, on=["id", "split"])
    val = val[(val["label_source"] != "excluded") & val["fracture"].notna()]
    val = val[val["split"] == "val"]
    point = metrics.choose_operating_point(
        val["fracture"].astype(int), val["p_fracture"], "youden", 0.9
    )
    assert frac["threshold"] == pytest.approx(point.threshold, abs=1e-4)
    # The informative members carry the noise model: the mean beats chance clearly.
    assert frac["auroc"] > 0.8
    record = serving.read(staged / "artifacts" / "serving", "ensemble")
    assert record.kind == "ensemble" and record.members == tuple(members)
    assert record.artifact is None and record.calibration == "none"
    assert record.threshold == pytest.approx(frac["threshold"], abs=1e-4)


def test_compare_and_review_list_the_ensemble(staged: Path, capsys):
    from bonexray.reporting import review

    compare = json.loads((staged / "metrics" / "compare.json").read_text())
    assert cli.main(["compare", "--metrics", str(staged / "metrics" / "compare.json")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("ensemble ") for line in printed)
    assert sum(line.startswith(f"{m}~ensemble ") for m in MODELS for line in printed) == 4
    # A review against a revision from before the ensemble: its rows are new ones.
    before = {k: v for k, v in compare.items() if not k.startswith("ensemble.")}
    rows = [row for row in review.metric_rows(before, compare) if row[0] == "ensemble"]
    assert {row[1] for row in rows} >= {"fracture AUROC", "region accuracy"}
    auroc = next(row for row in rows if row[1] == "fracture AUROC")
    assert auroc[2] is None and auroc[3] == compare["ensemble.fracture_auroc"]
    card = (staged / "artifacts" / "cards" / "ensemble.md").read_text()
    assert "| rf | forest | vectors |" in card
    report_html = (staged / "plots" / "report.html").read_text()
    assert "<th>ensemble</th>" in report_html


def test_ensemble_none_scores_no_ensemble_and_says_so(tmp_path: Path):
    labels = fabricate_labels()
    tables = {m: fabricate_predictions(labels, SKILL[m], seed=i) for i, m in enumerate(MODELS)}
    off = settings(ensemble="none")
    scores = evaluate.evaluate_all(labels, tables, REGIONS, off)
    assert "ensemble" not in scores and evaluate.with_ensemble(MODELS, off) == MODELS
    evaluate.write_metrics(scores, MODELS, off, tmp_path)
    assert json.loads((tmp_path / "ensemble.json").read_text()) == {
        "ensemble": {"combination": "none"}
    }
    with pytest.raises(ParamsError, match="evaluate.ensemble must be one of"):
        settings(ensemble="stacking")


def test_an_ensemble_member_that_skipped_images_is_an_error():
    labels = fabricate_labels()
    tables = {m: fabricate_predictions(labels, SKILL[m], seed=i) for i, m in enumerate(MODELS)}
    # An extra image only rf predicted (in labels, but train: scored nowhere).
    extra_id = labels.loc[labels["split"] == "train", "id"].iloc[0]
    extra = tables["rf"].iloc[:1].assign(id=extra_id, split="train")
    tables["rf"] = pd.concat([tables["rf"], extra], ignore_index=True)
    with pytest.raises(ConfigError, match="ensemble: rf did not predict the images"):
        evaluate.evaluate_all(labels, tables, REGIONS, settings())
