"""Score every model and two baselines on the same test rows with the same code.

Both heads of every model are scored on TEST; the fracture operating point is chosen on
VAL and applied unchanged to test. Which rows count:

- rows whose relabel ``label_source`` is "excluded" count nowhere (relabel dropped them);
- region: rows with a region from a source in ``evaluate.score_region_sources`` (default
  original and synonym). Model-assigned regions are left out by default because the
  relabel model produced them: scoring against them would reward agreeing with it;
- fracture: rows with a known fracture label; per flag of io.labels.FLAG_COLUMNS
  (hardware: an implant in the image), the fracture AUROC is also given on the test rows
  with and without it, where it is known (``auroc_by_hardware``; the key is left out when
  no test image has the flag). FracAtlas' implants go with fractures, so a model can score
  by spotting metal: the AUROC without hardware is the one free of that shortcut.

Calibration (``evaluate.calibration``: platt | temperature | none): each model's two heads
are rescaled (calibration.py: a temperature per head, and with platt a bias for the
fracture head) with parameters fitted on the VAL rows that are scored; every score, and
the operating point, is then computed on the calibrated probabilities, which are what
`bonexray predict` outputs. ECE, Brier and NLL before calibration are kept beside them
(``*_uncalibrated``).

The baselines are predictions tables like a model's, built from TRAIN-split label
frequencies with scikit-learn's DummyClassifier: ``baseline_majority`` predicts the most
frequent class with probability 1, ``baseline_chance`` predicts the class priors (AUROC 0.5
by construction; its Brier score is the prior's). They are never calibrated: they are
reference points defined by their construction (the priors are calibrated on train already;
the majority baseline is certainty on purpose), and fitting a temperature to a constant
would turn both into the val prevalence, a third baseline that tells nothing new.

The ensemble (``evaluate.ensemble``: mean | none; ensemble.py) is the mean of the trained
models' CALIBRATED probabilities, scored after them as one more model: its own threshold at
the val operating point, metrics/ensemble.json, its compare.json row, paired tests against
every member, plots and serving record. It is not calibrated again (calibration "none",
like the baselines: its members' calibrations are already in its probabilities). It may be
chosen as the best model by the same rule as every model (the val selection score), with
one caveat: its members' calibrations were fitted on those val rows, which a single model's
val AUROC and macro-F1 are blind to (both are rank or argmax scores, unchanged by a
monotone calibration) but the mean of several is not quite.

evaluate also writes the serving records (serving.py) that `bonexray predict` reads: per
model its temperatures and operating point, and the best model (chosen on VAL).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier

from bonexray.errors import ConfigError
from bonexray.evaluation import ensemble, metrics, ood, serving
from bonexray.evaluation.calibration import METHODS as CALIBRATION_METHODS
from bonexray.evaluation.calibration import Temperatures
from bonexray.io import jsonfile, predictions
from bonexray.io.labels import FLAG_COLUMNS, LABEL_COLUMNS, with_flags
from bonexray.io.params import ParamsError, section
from bonexray.models.interface import ENSEMBLE_MODEL, family_of

BASELINES = {"baseline_majority": "most_frequent", "baseline_chance": "prior"}
DECIMALS = 4

# compare.json key suffix -> path in a model's nested metrics.
COMPARE_KEYS = {
    "region_accuracy": ("region", "accuracy"),
    "region_macro_f1": ("region", "macro_f1"),
    "region_kappa": ("region", "kappa"),
    "fracture_auroc": ("fracture", "auroc"),
    "fracture_auroc_ci_low": ("fracture", "auroc_ci_low"),
    "fracture_auroc_ci_high": ("fracture", "auroc_ci_high"),
    "fracture_average_precision": ("fracture", "average_precision"),
    "fracture_sensitivity": ("fracture", "sensitivity"),
    "fracture_specificity": ("fracture", "specificity"),
    "fracture_threshold": ("fracture", "threshold"),
    "fracture_brier": ("fracture", "brier"),
    "fracture_brier_uncalibrated": ("fracture", "brier_uncalibrated"),
    "fracture_ece": ("fracture", "ece"),
    "fracture_ece_uncalibrated": ("fracture", "ece_uncalibrated"),
    "fracture_temperature": ("fracture", "temperature"),
    "fracture_bias": ("fracture", "bias"),
    "region_ece": ("region", "ece"),
    "region_ece_uncalibrated": ("region", "ece_uncalibrated"),
    "region_temperature": ("region", "temperature"),
}
# compare.json keys present only where some test image has the flag -> path in the
# model's metrics["fracture"].
FLAG_COMPARE_KEYS = {
    f"fracture_auroc_{side}_{flag}": (f"auroc_by_{flag}", f"{side}_{flag}", "auroc")
    for flag in FLAG_COLUMNS
    for side in ("with", "without")
}


@dataclass(frozen=True)
class Settings:
    bootstrap: int
    operating_point: metrics.OperatingPointMethod
    target_sensitivity: float
    calibration_bins: int
    score_region_sources: tuple[str, ...]
    report_examples: int
    seed: int
    calibration: str  # calibration.METHODS
    ensemble: str  # ensemble.COMBINATIONS

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Settings:
        ev = section(params, "evaluate")
        sources = tuple(ev.get("score_region_sources", ("original", "synonym")))
        bad = set(sources) - {"original", "synonym", "model"}
        if bad or not sources:
            raise ParamsError(
                f"params.yaml evaluate.score_region_sources: {sorted(bad) or 'empty'}; "
                "use some of original, synonym, model"
            )
        if ev["operating_point"] not in ("youden", "sensitivity"):
            raise ParamsError(
                "params.yaml evaluate.operating_point must be youden or sensitivity, "
                f"got {ev['operating_point']!r}"
            )
        if ev["calibration"] not in CALIBRATION_METHODS:
            raise ParamsError(
                f"params.yaml evaluate.calibration must be one of {CALIBRATION_METHODS}, "
                f"got {ev['calibration']!r}"
            )
        if ev["ensemble"] not in ensemble.COMBINATIONS:
            raise ParamsError(
                f"params.yaml evaluate.ensemble must be one of {ensemble.COMBINATIONS}, "
                f"got {ev['ensemble']!r}"
            )
        return cls(
            bootstrap=int(ev["bootstrap"]),
            operating_point=ev["operating_point"],
            target_sensitivity=float(ev["target_sensitivity"]),
            calibration_bins=int(ev["calibration_bins"]),
            score_region_sources=sources,
            report_examples=int(ev["report_examples"]),
            seed=int(section(params, "seed")),
            calibration=str(ev["calibration"]),
            ensemble=str(ev["ensemble"]),
        )


def with_ensemble(models: Sequence[str], settings: Settings) -> list[str]:
    """The names scored as models: the trained ``models``, then the ensemble of them where
    evaluate.ensemble asks for one (and there is a model to combine)."""
    wanted = settings.ensemble != "none" and len(models) > 0
    return [*models, ENSEMBLE_MODEL] if wanted else list(models)


def attach_labels(labels: pd.DataFrame, preds: pd.DataFrame, name: str) -> pd.DataFrame:
    """Join a predictions table to the labels of the val/test rows that are scored.

    Fails, naming the model, when predictions are missing for a scored row, name an
    unknown id, or put an image in another split than labels.parquet does: a model that
    skipped hard images would otherwise look better than it is.
    """
    scored = labels[labels["split"].isin(("val", "test")) & (labels["label_source"] != "excluded")]
    split_of = labels.set_index("id")["split"]
    unknown = preds.loc[~preds["id"].isin(split_of.index), "id"]
    if len(unknown):
        raise ConfigError(
            f"{name}: {len(unknown)} predicted ids not in labels, e.g. {unknown.iloc[0]!r}"
        )
    moved = preds[preds["split"].to_numpy() != split_of.loc[preds["id"]].to_numpy()]
    if len(moved):
        raise ConfigError(
            f"{name}: {len(moved)} predictions in another split than labels.parquet, "
            f"e.g. {moved['id'].iloc[0]!r} ({moved['split'].iloc[0]})"
        )
    if preds["id"].duplicated().any():
        raise ConfigError(f"{name}: duplicate predicted ids")
    absent = scored.loc[~scored["id"].isin(preds["id"]), "id"]
    if len(absent):
        raise ConfigError(
            f"{name}: no prediction for {len(absent)} val/test images, e.g. {absent.iloc[0]!r}"
        )
    return with_flags(scored)[[*LABEL_COLUMNS, *FLAG_COLUMNS]].merge(
        preds.drop(columns="split"), on="id", how="left"
    )


@dataclass
class Scores:
    """Everything evaluate knows about one model (or baseline) on the test set."""

    name: str
    metrics: dict[str, Any]
    roc: pd.DataFrame  # fpr, tpr, threshold
    pr: pd.DataFrame  # recall, precision
    calibration: pd.DataFrame  # bin, lower, upper, count, mean_predicted, fraction_positive
    confusion_pairs: pd.DataFrame  # actual, predicted: one row per region-scored test image
    # The joined test rows (calibrated probabilities) plus predicted_region and
    # predicted_fracture (at the threshold).
    test: pd.DataFrame = field(repr=False)
    selection_score: float = float("nan")  # on VAL: mean of region macro-F1 and fracture AUROC
    temperatures: Temperatures = field(default_factory=Temperatures)  # fitted on VAL


def _region_rows(frame: pd.DataFrame, sources: Sequence[str]) -> pd.DataFrame:
    return frame[frame["region"].notna() & frame["label_source"].isin(sources)]


def _fracture_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["fracture"].notna()]


def auroc_summary(y: pd.Series, p: pd.Series, settings: Settings) -> dict[str, Any]:
    """n, positives, fracture AUROC and its bootstrap CI over the rows given."""
    ci = metrics.bootstrap_auroc_ci(y, p, settings.bootstrap, settings.seed)
    return {
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "auroc": metrics.auroc(y, p),
        "auroc_ci_low": ci.low,
        "auroc_ci_high": ci.high,
        "auroc_ci_resamples": ci.resamples_used,
    }


def flag_breakdown(
    frac_rows: pd.DataFrame, flag: str, settings: Settings
) -> dict[str, dict[str, Any]] | None:
    """auroc_summary on the rows with the flag set and on those with it clear, where it is
    known; None when it is known for none of them."""
    known = frac_rows[frac_rows[flag].notna()]
    if known.empty:
        return None
    return {
        f"{side}_{flag}": auroc_summary(rows["fracture"].astype(int), rows["p_fracture"], settings)
        for side, rows in (("with", known[known[flag] == 1]), ("without", known[known[flag] == 0]))
    }


def _mean_defined(*values: float) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def calibrate(
    joined: pd.DataFrame, regions: Sequence[str], settings: Settings, method: str
) -> tuple[pd.DataFrame, Temperatures]:
    """Fit temperatures on the scored VAL rows of ``joined``; return it rescaled, and them."""
    columns = predictions.region_columns(regions)
    index = {r: i for i, r in enumerate(regions)}
    val = joined[joined["split"] == "val"]
    region_val, frac_val = _region_rows(val, settings.score_region_sources), _fracture_rows(val)
    temperatures = Temperatures.fit(
        method,
        region_val["region"].map(index).to_numpy(),
        region_val[columns].to_numpy(),
        frac_val["fracture"].astype(int).to_numpy(),
        frac_val["p_fracture"].to_numpy(),
    )
    scaled = joined.copy()
    scaled[columns] = temperatures.region_proba(joined[columns].to_numpy())
    scaled["p_fracture"] = temperatures.fracture_proba(joined["p_fracture"].to_numpy())
    return scaled, temperatures


@dataclass
class HeadScores:
    """Both heads' metrics on one set of labelled rows (score_heads)."""

    metrics: dict[str, Any]  # {"region": {...}, "fracture": {...}}
    calibration: pd.DataFrame  # calibration_bins of the fracture head on the scored rows
    region_rows: pd.DataFrame  # the rows scored for region (with predicted_region)
    fracture_rows: pd.DataFrame  # the rows scored for fracture


def score_heads(
    rows: pd.DataFrame,
    regions: Sequence[str],
    settings: Settings,
    point: metrics.OperatingPoint,
    temperatures: Temperatures,
    raw: pd.DataFrame | None = None,
) -> HeadScores:
    """Region and fracture metrics of calibrated predictions on labelled ``rows``.

    The one scoring of a labelled set, for evaluate's test split and for `bonexray
    validate`'s external sets. ``rows`` hold the label columns (region, label_source,
    fracture, the FLAG_COLUMNS), the calibrated probabilities and predicted_region;
    ``point`` is the operating point chosen on val (its threshold is applied here) and
    ``temperatures`` the calibration that was applied. ``raw``: the same rows (same index)
    before calibration, for the *_uncalibrated scores, which are left out without it.
    A head without a labelled row gets NaN scores.
    """
    columns = predictions.region_columns(regions)
    index = {r: i for i, r in enumerate(regions)}
    region_rows = _region_rows(rows, settings.score_region_sources)
    frac_rows = _fracture_rows(rows)
    region_y = region_rows["region"].map(index).astype(int)
    region = metrics.region_scores(region_y, region_rows[columns])
    confusion = region["confusion"]
    y, p = frac_rows["fracture"].astype(int), frac_rows["p_fracture"]
    sensitivity, specificity = metrics.sensitivity_specificity(y, p, point.threshold)
    bins = settings.calibration_bins
    calibration_table = metrics.calibration_bins(y, p, bins)
    by_region_rows = _region_rows(frac_rows, settings.score_region_sources)
    by_region = metrics.auroc_by_group(
        by_region_rows["fracture"].astype(int),
        by_region_rows["p_fracture"],
        by_region_rows["region"],
    )
    # Keys in the order metrics/<model>.json has always had.
    region_block: dict[str, Any] = {
        "n": region["n"],
        "n_by_source": {
            s: int((region_rows["label_source"] == s).sum()) for s in settings.score_region_sources
        },
        "accuracy": region["accuracy"],
        "macro_f1": region["macro_f1"],
        "kappa": region["kappa"],
        "recall": dict(zip(regions, region["recall"], strict=True)),
        "confusion": {
            a: {b: int(confusion[i, j]) for j, b in enumerate(regions)}
            for i, a in enumerate(regions)
        },
        "temperature": temperatures.region,
        "nll": metrics.multiclass_nll(region_y, region_rows[columns]),
    }
    fracture: dict[str, Any] = {
        **auroc_summary(y, p, settings),
        "average_precision": metrics.average_precision(y, p),
        "threshold": point.threshold,
        "val_sensitivity": point.sensitivity,
        "val_specificity": point.specificity,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "temperature": temperatures.fracture,
        "bias": temperatures.fracture_bias,
        "brier": metrics.brier(y, p),
    }
    if raw is None:
        region_block["ece"] = metrics.top_label_ece(region_y, region_rows[columns], bins)
        fracture |= {
            "ece": metrics.expected_calibration_error(calibration_table),
            "nll": metrics.binary_nll(y, p),
        }
    else:
        raw_region = raw.loc[region_rows.index, columns]
        raw_p = raw.loc[frac_rows.index, "p_fracture"]
        raw_calibration = metrics.calibration_bins(y, raw_p, bins)
        region_block |= {
            "nll_uncalibrated": metrics.multiclass_nll(region_y, raw_region),
            "ece": metrics.top_label_ece(region_y, region_rows[columns], bins),
            "ece_uncalibrated": metrics.top_label_ece(region_y, raw_region, bins),
        }
        fracture |= {
            "brier_uncalibrated": metrics.brier(y, raw_p),
            "ece": metrics.expected_calibration_error(calibration_table),
            "ece_uncalibrated": metrics.expected_calibration_error(raw_calibration),
            "nll": metrics.binary_nll(y, p),
            "nll_uncalibrated": metrics.binary_nll(y, raw_p),
        }
    fracture["auroc_by_region"] = {r: by_region.get(r, float("nan")) for r in regions}
    for flag in FLAG_COLUMNS:
        breakdown = flag_breakdown(frac_rows, flag, settings)
        if breakdown is not None:
            fracture[f"auroc_by_{flag}"] = breakdown
    return HeadScores(
        metrics={"region": region_block, "fracture": fracture},
        calibration=calibration_table,
        region_rows=region_rows,
        fracture_rows=frac_rows,
    )


def score(
    joined: pd.DataFrame,
    regions: Sequence[str],
    settings: Settings,
    name: str,
    calibration: str | None = None,
) -> Scores:
    """Score one predictions table (already joined to its labels) on both heads.

    ``calibration`` overrides settings.calibration ("none" for the baselines).
    """
    columns = predictions.region_columns(regions)
    index = {r: i for i, r in enumerate(regions)}
    raw = joined
    joined, temperatures = calibrate(raw, regions, settings, calibration or settings.calibration)
    val = joined[joined["split"] == "val"]
    test = joined[joined["split"] == "test"].copy()
    test["predicted_region"] = np.asarray(regions, dtype=object)[
        test[columns].to_numpy().argmax(axis=1)
    ]

    n_region = len(_region_rows(test, settings.score_region_sources))
    n_fracture = len(_fracture_rows(test))
    if not n_region or not n_fracture:
        raise ConfigError(
            f"{name}: nothing to score: {n_region} test images with a region labelled by "
            f"{list(settings.score_region_sources)}, {n_fracture} with a fracture label"
        )
    frac_val = _fracture_rows(val)
    point = metrics.choose_operating_point(
        frac_val["fracture"].astype(int),
        frac_val["p_fracture"],
        settings.operating_point,
        settings.target_sensitivity,
    )
    heads = score_heads(test, regions, settings, point, temperatures, raw=raw)

    region_val = _region_rows(val, settings.score_region_sources)
    val_f1 = metrics.region_scores(region_val["region"].map(index), region_val[columns])["macro_f1"]
    val_auroc = metrics.auroc(frac_val["fracture"].astype(int), frac_val["p_fracture"])
    result = {
        **heads.metrics,
        "selection": {"val_region_macro_f1": val_f1, "val_fracture_auroc": val_auroc},
    }
    test["predicted_fracture"] = (test["p_fracture"] >= point.threshold).astype(int)
    y, p = heads.fracture_rows["fracture"].astype(int), heads.fracture_rows["p_fracture"]
    return Scores(
        name=name,
        metrics=result,
        roc=metrics.roc_points(y, p),
        pr=metrics.pr_points(y, p),
        calibration=heads.calibration,
        confusion_pairs=heads.region_rows[["region", "predicted_region"]].set_axis(
            ["actual", "predicted"], axis=1
        ),
        test=test,
        selection_score=_mean_defined(val_f1, val_auroc),
        temperatures=temperatures,
    )


def baseline_predictions(labels: pd.DataFrame, regions: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Predictions tables of the majority and chance baselines for the val/test rows.

    Fitted on TRAIN rows (not excluded) only, like the models; DummyClassifier ignores
    the features, so a column of zeros stands in for them.
    """
    train = labels[(labels["split"] == "train") & (labels["label_source"] != "excluded")]
    region_train = train[train["region"].notna()]
    fracture_train = train[train["fracture"].notna()]
    if region_train.empty or fracture_train.empty:
        raise ConfigError(
            "labels: no train rows with a region and a fracture label to fit baselines on"
        )
    rows = labels[labels["split"].isin(("val", "test"))]
    blank = np.zeros((len(rows), 1))
    out = {}
    for name, strategy in BASELINES.items():
        region = DummyClassifier(strategy=strategy).fit(
            np.zeros((len(region_train), 1)), region_train["region"].map(regions.index)
        )
        region_proba = np.zeros((len(rows), len(regions)))
        region_proba[:, region.classes_] = region.predict_proba(blank)
        fracture = DummyClassifier(strategy=strategy).fit(
            np.zeros((len(fracture_train), 1)), fracture_train["fracture"].astype(int)
        )
        positive = list(fracture.classes_).index(1) if 1 in fracture.classes_ else None
        fracture_proba = (
            fracture.predict_proba(blank)[:, positive]
            if positive is not None
            else np.zeros(len(rows))
        )
        out[name] = predictions.to_frame(
            rows["id"].tolist(), rows["split"].tolist(), region_proba, fracture_proba, regions
        )
    return out


def evaluate_all(
    labels: pd.DataFrame,
    model_predictions: Mapping[str, pd.DataFrame],
    regions: Sequence[str],
    settings: Settings,
) -> dict[str, Scores]:
    """Scores of every model, then of their ensemble (``with_ensemble``), then of the
    baselines, keyed by name in that order."""
    scores = {
        name: score(attach_labels(labels, table, name), regions, settings, name)
        for name, table in model_predictions.items()
    }
    members = list(model_predictions)
    tables = baseline_predictions(labels, list(regions))
    if ENSEMBLE_MODEL in with_ensemble(members, settings):
        temperatures = {m: scores[m].temperatures for m in members}
        tables = {
            ENSEMBLE_MODEL: ensemble.member_table(model_predictions, temperatures, regions)
        } | tables
    for name, table in tables.items():
        # Not calibrated: the baselines by construction, the ensemble's members already are.
        scores[name] = score(
            attach_labels(labels, table, name), regions, settings, name, calibration="none"
        )
    if ENSEMBLE_MODEL in scores:
        scores[ENSEMBLE_MODEL].metrics["ensemble"] = {
            "combination": settings.ensemble,
            "members": members,
        }
    return scores


def score_predictions(
    labels: pd.DataFrame,
    predictions_dir: str | Path,
    models: Sequence[str],
    regions: Sequence[str],
    settings: Settings,
) -> dict[str, Scores]:
    """evaluate_all over the training stages' tables, <predictions_dir>/<model>.parquet."""
    tables = {m: predictions.read(Path(predictions_dir) / f"{m}.parquet", regions) for m in models}
    return evaluate_all(labels, tables, regions, settings)


def best_model(scores: Mapping[str, Scores], models: Sequence[str]) -> str:
    """The model with the best VALIDATION selection score (never chosen on test)."""
    ranked = [m for m in models if not math.isnan(scores[m].selection_score)]
    return max(ranked, key=lambda m: scores[m].selection_score) if ranked else models[0]


def serving_records(
    scores: Mapping[str, Scores],
    models: Sequence[str],
    regions: Sequence[str],
    settings: Settings,
    ood_reference: ood.Reference | None = None,
) -> dict[str, serving.ServingRecord]:
    """What predict needs of each model: the calibration and operating point fitted here,
    and the data's out-of-distribution reference."""
    records = {}
    for name in models:
        result = scores[name]
        frac = result.metrics["fracture"]
        members = result.metrics.get("ensemble", {}).get("members", [])
        records[name] = serving.ServingRecord(
            model=name,
            kind=family_of(name).name,
            artifact=None if members else serving.model_artifact(name),
            regions=tuple(regions),
            # The ensemble's members are calibrated (their records), the mean is not.
            calibration="none" if members else settings.calibration,
            temperatures=result.temperatures,
            threshold=frac["threshold"],  # unrounded: a rounded cut-off could flip a decision
            operating_point=settings.operating_point,
            target_sensitivity=(
                settings.target_sensitivity if settings.operating_point == "sensitivity" else None
            ),
            val_sensitivity=_finite_or_none(frac["val_sensitivity"]),
            val_specificity=_finite_or_none(frac["val_specificity"]),
            test=rounded(
                {key: result.metrics[g][m] for key, (g, m) in COMPARE_KEYS.items()}
                | {"val_selection_score": result.selection_score}
            ),
            ood=None if ood_reference is None else ood_reference.to_dict(),
            members=tuple(members),
        )
    return records


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# ---------------------------------------------------------------- paired comparison


def _pair_rows(test_a: pd.DataFrame, test_b: pd.DataFrame) -> pd.DataFrame:
    """The test rows both models scored, matched on id (suffixes _a and _b)."""
    keep = ["id", "region", "fracture", "label_source", "p_fracture", "predicted_region"]
    return test_a[keep].merge(
        test_b[["id", "p_fracture", "predicted_region"]], on="id", suffixes=("_a", "_b")
    )


def paired_tests(
    scores: Mapping[str, Scores], models: Sequence[str], settings: Settings
) -> dict[str, dict[str, Any]]:
    """For every pair of models "<a>~<b>" (in ``models`` order), on the test images both
    scored: DeLong's test of the fracture AUROC difference and McNemar's of the region
    accuracy difference (a minus b), with Holm-adjusted p across the pairs, per test.

    The fracture rows are those with a fracture label, the region rows those with a
    region from ``score_region_sources``: the rows each model's own scores use.
    """
    out: dict[str, dict[str, Any]] = {}
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            rows = _pair_rows(scores[a].test, scores[b].test)
            frac = _fracture_rows(rows)
            region = _region_rows(rows, settings.score_region_sources)
            delong = metrics.delong_test(
                frac["fracture"].astype(int), frac["p_fracture_a"], frac["p_fracture_b"]
            )
            mcnemar = metrics.mcnemar_test(
                region["predicted_region_a"] == region["region"],
                region["predicted_region_b"] == region["region"],
            )
            out[f"{a}~{b}"] = {
                "n_fracture": int(len(frac)),
                "fracture_auroc_difference": delong.difference,
                "fracture_auroc_difference_se": delong.standard_error,
                "fracture_auroc_z": delong.z,
                "fracture_auroc_p": delong.p,
                "n_region": int(len(region)),
                "region_accuracy_difference": mcnemar.difference,
                "region_only_a_right": mcnemar.b,
                "region_only_b_right": mcnemar.c,
                "region_accuracy_test": "exact binomial" if mcnemar.exact else "chi-square",
                "region_accuracy_p": mcnemar.p,
            }
    for test in ("fracture_auroc", "region_accuracy"):
        adjusted = metrics.holm([row[f"{test}_p"] for row in out.values()])
        for row, p in zip(out.values(), adjusted, strict=True):
            row[f"{test}_p_holm"] = p
    return out


PAIRED_ALPHA = 0.05  # the family-wise level the report's words use (Holm-adjusted p)


def paired_frame(paired: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """paired.json as a table: one row per model pair, the differences and p values."""
    columns = [
        "fracture_auroc_difference",
        "fracture_auroc_p",
        "fracture_auroc_p_holm",
        "region_accuracy_difference",
        "region_accuracy_p",
        "region_accuracy_p_holm",
        "n_fracture",
        "n_region",
    ]
    frame = pd.DataFrame.from_dict(dict(paired), orient="index")
    return frame.reindex(columns=columns).rename_axis("a~b")


def paired_findings(paired: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """In words: the differences that hold at PAIRED_ALPHA after Holm's adjustment."""
    found = []
    for pair, row in paired.items():
        a, b = pair.split("~", 1)
        for test, what in (
            ("fracture_auroc", "fracture AUROC"),
            ("region_accuracy", "region accuracy"),
        ):
            p, difference = row[f"{test}_p_holm"], row[f"{test}_difference"]
            if p is not None and not math.isnan(p) and p < PAIRED_ALPHA:
                better, worse = (a, b) if difference > 0 else (b, a)
                found.append(
                    f"{better} has a higher {what} than {worse} "
                    f"(difference {abs(difference):.3f}, Holm-adjusted p {p:.3g})"
                )
    return found


# ---------------------------------------------------------------- writing


def rounded(value: Any) -> Any:
    """Round floats to DECIMALS, NaN -> None (valid JSON, shown as '-' by dvc), recursively."""
    if isinstance(value, Mapping):
        return {str(k): rounded(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else round(float(value), DECIMALS)
    if isinstance(value, np.integer):
        return int(value)
    return value


def compare_table(scores: Mapping[str, Scores]) -> dict[str, Any]:
    """Flat '<model>.<metric>' keys, readable in `dvc metrics diff --md`."""
    flat: dict[str, Any] = {}
    for name, result in scores.items():
        for key, (group, metric) in COMPARE_KEYS.items():
            flat[f"{name}.{key}"] = result.metrics[group][metric]
        fracture = result.metrics["fracture"]
        for key, (breakdown, side, metric) in FLAG_COMPARE_KEYS.items():
            if breakdown in fracture:
                flat[f"{name}.{key}"] = fracture[breakdown][side][metric]
    any_result = next(iter(scores.values()))
    fracture = any_result.metrics["fracture"]
    flat["test_set.region_n"] = any_result.metrics["region"]["n"]
    flat["test_set.fracture_n"] = fracture["n"]
    flat["test_set.fracture_positive"] = fracture["n_positive"]
    for flag in FLAG_COLUMNS:
        for side, counts in fracture.get(f"auroc_by_{flag}", {}).items():
            flat[f"test_set.fracture_n_{side}"] = counts["n"]
            flat[f"test_set.fracture_positive_{side}"] = counts["n_positive"]
    return rounded(flat)


def compare_frame(flat: Mapping[str, Any]) -> pd.DataFrame:
    """compare.json (flat) as a table: one row per model and baseline, COMPARE_KEYS columns
    and the FLAG_COMPARE_KEYS that it holds."""
    rows: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        name, metric = key.split(".", 1)
        if metric in COMPARE_KEYS or metric in FLAG_COMPARE_KEYS:
            rows.setdefault(name, {})[metric] = value
    held = [key for key in FLAG_COMPARE_KEYS if any(key in row for row in rows.values())]
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*COMPARE_KEYS, *held])


def write_metrics(
    scores: Mapping[str, Scores],
    models: Sequence[str],
    settings: Settings,
    metrics_dir: str | Path,
) -> dict[str, dict[str, Any]]:
    """metrics/<model>.json (nested) for each model, metrics/compare.json (flat) and
    metrics/paired.json (paired_tests: one entry per model pair), which is returned.

    With evaluate.ensemble "none", metrics/ensemble.json says so: dvc.yaml declares it.
    """
    metrics_dir = Path(metrics_dir)
    for model in models:
        jsonfile.write(metrics_dir / f"{model}.json", rounded(scores[model].metrics))
    if ENSEMBLE_MODEL not in models:
        jsonfile.write(
            metrics_dir / f"{ENSEMBLE_MODEL}.json", {"ensemble": {"combination": "none"}}
        )
    jsonfile.write(metrics_dir / "compare.json", compare_table(scores))
    paired = paired_tests(scores, models, settings)
    jsonfile.write(metrics_dir / "paired.json", paired_table(paired))
    return paired


def paired_table(paired: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """paired_tests for paired.json: p values to 3 significant digits (4 decimals would
    write a p of 1e-7 as 0), everything else ``rounded``."""
    return {
        pair: {
            key: (
                float(f"{value:.3g}")
                if key.endswith(("_p", "_p_holm")) and not math.isnan(value)
                else rounded(value)
            )
            for key, value in row.items()
        }
        for pair, row in paired.items()
    }


PLOT_KINDS = ("roc", "pr", "calibration", "confusion", "region_recall")


def write_plots(scores: Mapping[str, Scores], models: Sequence[str], plots_dir: str | Path) -> None:
    """One CSV per model and kind under plots_dir/<kind>/<model>.csv, for `dvc plots`.

    One file per model because DVC's templates tell series apart by file and revision,
    not by a column; the confusion CSVs hold one (actual, predicted) row per image, since
    DVC's confusion template counts rows.
    """
    plots_dir = Path(plots_dir)
    for kind in PLOT_KINDS:
        shutil.rmtree(plots_dir / kind, ignore_errors=True)  # no stale files of removed models
        (plots_dir / kind).mkdir(parents=True)
    for model in models:
        result = scores[model]
        recall = result.metrics["region"]["recall"]
        tables = {
            "roc": result.roc[["fpr", "tpr", "threshold"]],
            "pr": result.pr[["recall", "precision"]],
            "calibration": result.calibration[
                ["bin", "mean_predicted", "fraction_positive", "count"]
            ],
            "confusion": result.confusion_pairs,
            "region_recall": pd.DataFrame(
                {"region": list(recall), "recall": list(recall.values())}
            ),
        }
        for kind, table in tables.items():
            table.round(DECIMALS).to_csv(plots_dir / kind / f"{model}.csv", index=False)
