"""The one implementation of every evaluation metric: pure functions on numpy arrays.

Every model and every baseline is scored by these functions, so their numbers are
comparable. scikit-learn does the work wherever it has the metric; what is written here is
the glue it lacks: undefined cases return NaN instead of raising or warning, the bootstrap
confidence interval, the operating point chosen on one set and applied to another, and an
expected calibration error that returns its bins for plotting.

Conventions: ``y`` holds integer class indices (region) or 0/1 (fracture); ``p`` holds
probabilities; a case is predicted positive when ``p >= threshold`` (scikit-learn's
``roc_curve`` convention).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

OperatingPointMethod = Literal["youden", "sensitivity"]
# Probabilities are kept this far from 0 and 1 wherever a logarithm is taken: a model (or
# the majority baseline) that says 0 or 1 would otherwise give an infinite loss. Tiny, so
# that clipping merges (ties) only probabilities that are 0 or 1 to float precision.
PROBABILITY_EPS = 1e-12


def _binary(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{y.shape[0]} labels but {p.shape[0]} probabilities")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("binary labels must be 0 or 1")
    return y, p


def has_both_classes(y: np.ndarray) -> bool:
    y = np.asarray(y)
    return bool((y == 1).any() and (y == 0).any())


# ---------------------------------------------------------------- region (multi-class)


def region_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, object]:
    """Accuracy, macro-F1, Cohen's kappa, confusion matrix and per-class recall.

    ``proba`` has one column per class (the class index is the column); the prediction is
    its argmax. The confusion matrix has every class; a class absent from ``y`` has recall
    NaN (undefined, not 0) and, unless predicted, no F1 term in macro-F1 (scikit-learn's
    default: the classes seen in truth or prediction).
    """
    y = np.asarray(y).astype(np.int64).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities of shape {proba.shape} for {y.shape[0]} labels")
    labels = np.arange(proba.shape[1])
    if not np.isin(y, labels).all():
        raise ValueError(f"class indices outside 0..{proba.shape[1] - 1}")
    if y.size == 0:
        nan = float("nan")
        return {
            "n": 0,
            "accuracy": nan,
            "macro_f1": nan,
            "kappa": nan,
            "confusion": np.zeros((labels.size, labels.size), np.int64),
            "recall": np.full(labels.size, np.nan),
        }
    predicted = proba.argmax(axis=1)
    confusion = confusion_matrix(y, predicted, labels=labels)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(confusion) / support, np.nan)
    with warnings.catch_warnings():
        # Kappa is undefined (NaN, as documented) when truth and prediction are one class.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = cohen_kappa_score(y, predicted, labels=labels, replace_undefined_by=np.nan)
    return {
        "n": int(y.size),
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
        "kappa": float(kappa),
        "confusion": confusion,
        "recall": recall,
    }


def multiclass_nll(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log); NaN without rows."""
    y = np.asarray(y).astype(np.int64).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities of shape {proba.shape} for {y.shape[0]} labels")
    if y.size == 0:
        return float("nan")
    picked = proba[np.arange(y.size), y]
    return float(-np.mean(np.log(np.clip(picked, PROBABILITY_EPS, 1.0))))


def top_label_ece(y: np.ndarray, proba: np.ndarray, n_bins: int) -> float:
    """Multi-class ECE of the predicted class: its probability (confidence) against whether
    it was right, over ``calibration_bins``' equal-width bins; NaN without rows."""
    y = np.asarray(y).astype(np.int64).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    correct = (proba.argmax(axis=1) == y).astype(np.int64)
    return expected_calibration_error(calibration_bins(correct, proba.max(axis=1), n_bins))


# ---------------------------------------------------------------- fracture (binary)


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; NaN when ``y`` lacks one of the two classes."""
    y, p = _binary(y, p)
    return float(roc_auc_score(y, p)) if has_both_classes(y) else float("nan")


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise); NaN without both classes."""
    y, p = _binary(y, p)
    return float(average_precision_score(y, p)) if has_both_classes(y) else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (lower is better)."""
    y, p = _binary(y, p)
    return float(brier_score_loss(y, p, labels=[0, 1])) if y.size else float("nan")


def binary_nll(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy (natural log), p clipped by PROBABILITY_EPS; NaN without rows."""
    y, p = _binary(y, p)
    if y.size == 0:
        return float("nan")
    p = np.clip(p, PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


@dataclass(frozen=True)
class BootstrapCI:
    low: float
    high: float
    resamples_used: int  # resamples with both classes; the others have no AUROC


def bootstrap_auroc_ci(
    y: np.ndarray,
    p: np.ndarray,
    n_resamples: int,
    seed: int,
    level: float = 0.95,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of the AUROC.

    Cases are resampled with replacement ``n_resamples`` times from a generator seeded with
    ``seed`` (so two models scored on the same rows see the same resamples). A resample
    that happens to hold one class only has no AUROC and is skipped; the interval is taken
    over the others, and their number is returned.
    """
    y, p = _binary(y, p)
    if not has_both_classes(y) or n_resamples < 1:
        return BootstrapCI(float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        rows = rng.integers(0, y.size, y.size)
        if has_both_classes(y[rows]):
            values.append(roc_auc_score(y[rows], p[rows]))
    if not values:
        return BootstrapCI(float("nan"), float("nan"), 0)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return BootstrapCI(float(low), float(high), len(values))


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (accuracy, sensitivity, specificity).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0/n and n/n,
    which small test sets (a handful of fractured hips) produce. NaNs when n is 0.
    """
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: {successes} successes out of {n}")
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    share = successes / n
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    sensitivity: float  # on the set the threshold was chosen on
    specificity: float


def choose_operating_point(
    y: np.ndarray,
    p: np.ndarray,
    method: OperatingPointMethod,
    target_sensitivity: float = 0.9,
) -> OperatingPoint:
    """Pick a decision threshold on (validation) data.

    ``youden``: the threshold maximising sensitivity + specificity - 1 (the highest such
    threshold on ties). ``sensitivity``: the highest threshold whose sensitivity reaches
    ``target_sensitivity``, i.e. the most specific one that meets the target.
    Without both classes there is no ROC curve to choose from: the threshold is 0.5.
    """
    y, p = _binary(y, p)
    if not has_both_classes(y):
        sensitivity, specificity = sensitivity_specificity(y, p, 0.5)
        return OperatingPoint(0.5, sensitivity, specificity)
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    # The first threshold is +inf (nothing positive): not a usable operating point.
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]
    if method == "youden":
        best = int(np.argmax(tpr - fpr))
    elif method == "sensitivity":
        if not 0.0 < target_sensitivity <= 1.0:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
        best = int(np.argmax(tpr >= target_sensitivity))  # tpr reaches 1 at the last threshold
    else:
        raise ValueError(f"operating point must be 'youden' or 'sensitivity', not {method!r}")
    return OperatingPoint(float(thresholds[best]), float(tpr[best]), float(1.0 - fpr[best]))


def sensitivity_specificity(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) of ``p >= threshold``; NaN where a class is absent."""
    y, p = _binary(y, p)
    positive = p >= threshold
    sensitivity = positive[y == 1].mean() if (y == 1).any() else float("nan")
    specificity = (~positive[y == 0]).mean() if (y == 0).any() else float("nan")
    return float(sensitivity), float(specificity)


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int) -> pd.DataFrame:
    """Reliability table over ``n_bins`` equal-width probability bins.

    Bin k holds probabilities in [k/n, (k+1)/n); the last bin also holds 1.0. Returns the
    non-empty bins: bin, lower, upper, count, mean_predicted, fraction_positive.
    (scikit-learn's ``calibration_curve`` bins the same way but drops the counts that the
    expected calibration error needs.)
    """
    y, p = _binary(y, p)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y})
    table = frame.groupby("bin").agg(
        count=("y", "size"), mean_predicted=("p", "mean"), fraction_positive=("y", "mean")
    )
    table.insert(0, "lower", edges[table.index])
    table.insert(1, "upper", edges[table.index + 1])
    return table.reset_index()


def expected_calibration_error(table: pd.DataFrame) -> float:
    """ECE: the count-weighted mean |fraction_positive - mean_predicted| over the bins of
    ``calibration_bins``; 0 for perfectly calibrated binned predictions."""
    total = table["count"].sum()
    if not total:
        return float("nan")
    gap = (table["fraction_positive"] - table["mean_predicted"]).abs()
    return float((gap * table["count"]).sum() / total)


def roc_points(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """ROC curve as (fpr, tpr, threshold) rows; empty without both classes."""
    y, p = _binary(y, p)
    if not has_both_classes(y):
        return pd.DataFrame(columns=["fpr", "tpr", "threshold"], dtype=float)
    fpr, tpr, thresholds = roc_curve(y, p)
    # +inf is not valid JSON/CSV for plotting tools; it stands for "above every score".
    thresholds = np.minimum(thresholds, 1.0)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds})


def pr_points(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Precision-recall curve as (recall, precision) rows; empty without both classes."""
    y, p = _binary(y, p)
    if not has_both_classes(y):
        return pd.DataFrame(columns=["recall", "precision"], dtype=float)
    precision, recall, _ = precision_recall_curve(y, p)
    return pd.DataFrame({"recall": recall, "precision": precision})


def auroc_by_group(y: np.ndarray, p: np.ndarray, groups: Sequence[object]) -> dict[object, float]:
    """AUROC within each group (e.g. region); NaN for a group lacking either class."""
    y, p = _binary(y, p)
    groups = np.asarray(groups, dtype=object)
    return {g: auroc(y[groups == g], p[groups == g]) for g in pd.unique(groups)}


# ---------------------------------------------------------------- paired model comparison


@dataclass(frozen=True)
class DeLongResult:
    auroc_a: float
    auroc_b: float
    difference: float  # auroc_a - auroc_b
    standard_error: float
    z: float
    p: float  # two-sided; 1 where the difference and its variance are both 0


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongResult:
    """DeLong's test of two correlated AUROCs: two scorers on the same cases.

    The fast algorithm of Sun & Xu (2014, IEEE SPL 21:1389): the structural components
    (placement values) come from midranks of the positives, the negatives and both
    together, so ties count one half as in the AUROC itself. Their covariance gives the
    variance of the difference; z = difference / SE, p two-sided from the normal. All NaN
    without both classes; SE, z and p NaN with fewer than two cases of a class (no
    covariance to estimate).
    """
    y, a = _binary(y, score_a)
    _, b = _binary(y, score_b)
    nan = float("nan")
    if not has_both_classes(y):
        return DeLongResult(nan, nan, nan, nan, nan, nan)
    m, n = int((y == 1).sum()), int((y == 0).sum())
    positives = np.vstack([a[y == 1], b[y == 1]])  # (2, m)
    negatives = np.vstack([a[y == 0], b[y == 0]])  # (2, n)
    from scipy.stats import norm, rankdata

    # Midranks (ties get the mean of their ranks), within each class and over both.
    tx = rankdata(positives, method="average", axis=1)
    ty = rankdata(negatives, method="average", axis=1)
    tz = rankdata(np.hstack([positives, negatives]), method="average", axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    # Structural components (ties count one half): per positive the share of negatives
    # ranked below it, per negative the share of positives ranked above it.
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    difference = float(aucs[0] - aucs[1])
    if m < 2 or n < 2:
        return DeLongResult(float(aucs[0]), float(aucs[1]), difference, nan, nan, nan)
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    if variance <= 0.0:
        # No spread (e.g. the same ranking twice): the difference seen is the only one these
        # cases allow, so p is 1 when it is 0 and 0 otherwise.
        z = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        se = 0.0
    else:
        se = math.sqrt(variance)
        z = difference / se
    return DeLongResult(
        float(aucs[0]), float(aucs[1]), difference, se, z, float(2 * norm.sf(abs(z)))
    )


@dataclass(frozen=True)
class McNemarResult:
    b: int  # cases only A got right
    c: int  # cases only B got right
    difference: float  # accuracy of A - accuracy of B: (b - c) / n
    statistic: float  # the chi-square statistic, or b for the exact test
    p: float
    exact: bool


# Below this many discordant pairs the chi-square approximation is poor: exact binomial.
MCNEMAR_EXACT_BELOW = 25


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """McNemar's test of two classifiers' accuracies on the same cases.

    Only discordant cases count: b (A right, B wrong) and c (the reverse). With
    b + c < MCNEMAR_EXACT_BELOW the exact two-sided binomial test (scipy's binomtest);
    otherwise chi-square with continuity correction, (|b - c| - 1)^2 / (b + c), 1 df.
    p is 1 with no discordant pair; NaN without cases.
    """
    right_a = np.asarray(correct_a).astype(bool).reshape(-1)
    right_b = np.asarray(correct_b).astype(bool).reshape(-1)
    if right_a.shape != right_b.shape:
        raise ValueError(f"{right_a.size} and {right_b.size} outcomes for the same cases")
    b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    difference = (b - c) / right_a.size if right_a.size else float("nan")
    if right_a.size == 0:
        return McNemarResult(0, 0, difference, float("nan"), float("nan"), True)
    if b + c < MCNEMAR_EXACT_BELOW:
        from scipy.stats import binomtest

        p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
        return McNemarResult(b, c, difference, float(b), p, True)
    from scipy.stats import chi2

    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return McNemarResult(b, c, difference, float(statistic), float(chi2.sf(statistic, 1)), False)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values (family-wise error), in the input order; NaNs
    stay NaN and do not count towards the family."""
    # scipy has no Holm adjustment (statsmodels does, but is not a dependency).
    values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(values.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(values))
    order = defined[np.argsort(values[defined], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (order.size - rank) * values[i]))
        adjusted[i] = running
    return [float(v) for v in adjusted]
