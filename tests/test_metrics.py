"""bonexray.evaluation.metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bonexray.evaluation import metrics


def test_auroc_of_perfect_and_reversed_rankings():
    y = np.array([0, 0, 1, 1])
    assert metrics.auroc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auroc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.auroc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_undefined_binary_metrics_are_nan_not_errors():
    y = np.zeros(4, int)
    p = [0.1, 0.2, 0.3, 0.4]
    assert math.isnan(metrics.auroc(y, p))
    assert math.isnan(metrics.average_precision(y, p))
    sensitivity, specificity = metrics.sensitivity_specificity(y, p, 0.25)
    assert math.isnan(sensitivity) and specificity == 0.5
    assert metrics.roc_points(y, p).empty


def test_region_scores_by_hand():
    # truth 0,0,1,1 ; predicted 0,1,1,1 ; class 2 never occurs
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    scores = metrics.region_scores(np.array([0, 0, 1, 1]), proba)
    assert scores["accuracy"] == 0.75
    # po = 0.75; pe = 0.5*0.25 + 0.5*0.75 = 0.5; kappa = (0.75 - 0.5) / (1 - 0.5)
    assert scores["kappa"] == pytest.approx(0.5)
    # F1 class 0: p=1, r=.5 -> 2/3; class 1: p=2/3, r=1 -> 0.8; class 2 absent -> not averaged
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert scores["confusion"].tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert scores["recall"][:2].tolist() == [0.5, 1.0]
    assert math.isnan(scores["recall"][2])


def test_kappa_is_zero_for_a_constant_prediction():
    proba = np.tile([0.9, 0.1], (4, 1))
    assert metrics.region_scores(np.array([0, 0, 0, 1]), proba)["kappa"] == pytest.approx(0.0)


def test_brier_by_hand():
    assert metrics.brier([1, 0], [0.8, 0.4]) == pytest.approx((0.2**2 + 0.4**2) / 2)
    assert metrics.brier([0, 0], [0.0, 0.0]) == 0.0


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # p=0.25 for four cases with one positive, p=0.75 for four with three positives
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.25] * 4 + [0.75] * 4)
    table = metrics.calibration_bins(y, p, n_bins=10)
    assert table["bin"].tolist() == [2, 7]
    assert table["count"].tolist() == [4, 4]
    assert metrics.expected_calibration_error(table) == pytest.approx(0.0)


def test_ece_of_an_overconfident_model_by_hand():
    y = np.array([1, 0, 1, 0])
    p = np.full(4, 0.9)  # says 90% but half are positive
    table = metrics.calibration_bins(y, p, n_bins=10)
    assert metrics.expected_calibration_error(table) == pytest.approx(0.4)


def test_calibration_bins_are_equal_width_with_the_last_one_closed():
    table = metrics.calibration_bins(np.array([0, 1, 1, 0]), np.array([0.0, 0.1, 1.0, 0.95]), 10)
    assert table["bin"].tolist() == [0, 1, 9]
    assert table["lower"].tolist() == pytest.approx([0.0, 0.1, 0.9])
    assert table["count"].tolist() == [1, 1, 2]


def _noisy_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, y + rng.normal(0, 1.0, n)


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_n():
    widths = []
    for n in (60, 1200):
        y, p = _noisy_scores(n, seed=1)
        ci = metrics.bootstrap_auroc_ci(y, p, n_resamples=300, seed=0)
        assert ci.low <= metrics.auroc(y, p) <= ci.high
        assert ci.resamples_used == 300
        widths.append(ci.high - ci.low)
    assert widths[1] < widths[0] / 2  # width shrinks roughly as 1/sqrt(n)


def test_bootstrap_is_seeded_and_skips_one_class_resamples():
    y = np.array([1] + [0] * 9)
    p = np.linspace(0.9, 0.0, 10)
    first = metrics.bootstrap_auroc_ci(y, p, n_resamples=200, seed=3)
    assert first == metrics.bootstrap_auroc_ci(y, p, n_resamples=200, seed=3)
    # P(no positive drawn) = 0.9**10 ~ 0.35: about a third of the resamples have no AUROC
    assert 80 < first.resamples_used < 180
    assert first.low == first.high == 1.0
    assert math.isnan(metrics.bootstrap_auroc_ci(np.zeros(5, int), p[:5], 100, 0).low)


def test_operating_point_is_chosen_on_val_and_applied_to_test():
    # On val, positives score above 0.3 and negatives below: Youden picks 0.35.
    y_val = np.array([0, 0, 0, 1, 1, 1])
    p_val = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.9])
    point = metrics.choose_operating_point(y_val, p_val, "youden")
    assert point.threshold == 0.35
    assert (point.sensitivity, point.specificity) == (1.0, 1.0)
    # On test the best threshold would be 0.7; the val threshold is applied regardless.
    y_test = np.array([0, 0, 1, 1])
    p_test = np.array([0.4, 0.5, 0.7, 0.8])
    assert metrics.sensitivity_specificity(y_test, p_test, point.threshold) == (1.0, 0.0)


def test_operating_point_meeting_a_target_sensitivity():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.55, 0.4, 0.6, 0.7, 0.8, 0.9])
    point = metrics.choose_operating_point(y, p, "sensitivity", target_sensitivity=0.8)
    assert point.threshold == 0.6  # 4 of 5 positives, the most specific such threshold
    assert point.sensitivity == pytest.approx(0.8)
    assert point.specificity == 1.0
    with pytest.raises(ValueError, match="operating point"):
        metrics.choose_operating_point(y, p, "f1")  # type: ignore[arg-type]


def test_operating_point_without_both_classes_falls_back_to_one_half():
    point = metrics.choose_operating_point(np.zeros(3, int), [0.2, 0.6, 0.7], "youden")
    assert point.threshold == 0.5
    assert point.specificity == pytest.approx(1 / 3)


def test_auroc_by_region_is_nan_where_a_region_has_one_class():
    y = np.array([0, 1, 0, 1, 0, 0])
    p = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.4])
    groups = ["hand", "hand", "leg", "leg", "hip", "hip"]
    by_region = metrics.auroc_by_group(y, p, groups)
    assert by_region["hand"] == 1.0 and by_region["leg"] == 1.0
    assert math.isnan(by_region["hip"])


def test_curves_have_the_expected_ends():
    y = np.array([0, 1, 0, 1])
    p = np.array([0.2, 0.9, 0.4, 0.6])
    roc = metrics.roc_points(y, p)
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[0]) == (0.0, 0.0)
    assert (roc["fpr"].iloc[-1], roc["tpr"].iloc[-1]) == (1.0, 1.0)
    assert np.isfinite(roc["threshold"]).all()
    pr = metrics.pr_points(y, p)
    assert pr["recall"].iloc[-1] == 0.0 and pr["precision"].iloc[-1] == 1.0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="0 or 1"):
        metrics.auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels but"):
        metrics.brier([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="class indices"):
        metrics.region_scores(np.array([0, 3]), np.eye(2))


def test_wilson_interval_by_hand():
    # Wilson 95% for 8/10 and 0/10 (Newcombe 1998, Table I method 3).
    assert metrics.wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert metrics.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert all(np.isnan(metrics.wilson_interval(0, 0)))
    with pytest.raises(ValueError, match="11 successes out of 10"):
        metrics.wilson_interval(11, 10)


# ---------------------------------------------------------------- paired tests


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _brute_force_delong_variance(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Var(AUC_a - AUC_b) from DeLong's (1988) structural components by their definition."""
    components = []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        v10 = np.array([np.mean([_psi(x, z) for z in neg]) for x in pos])
        v01 = np.array([np.mean([_psi(x, z) for x in pos]) for z in neg])
        components.append((v10, v01))
    (a10, a01), (b10, b01) = components
    s10 = np.cov(np.vstack([a10, b10]))
    s01 = np.cov(np.vstack([a01, b01]))
    cov = s10 / a10.size + s01 / a01.size
    return float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])


def test_delong_aurocs_match_sklearn_and_variance_matches_brute_force():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    # Rounded to one decimal: many ties, within and across classes.
    a = np.round(y + rng.normal(0, 1, 40), 1)
    b = np.round(0.5 * y + rng.normal(0, 1, 40), 1)
    result = metrics.delong_test(y, a, b)
    from sklearn.metrics import roc_auc_score

    assert result.auroc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.auroc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert result.difference == pytest.approx(result.auroc_a - result.auroc_b, abs=1e-12)
    variance = _brute_force_delong_variance(y, a, b)
    assert result.standard_error**2 == pytest.approx(variance, rel=1e-9)
    assert result.z == pytest.approx(result.difference / math.sqrt(variance), rel=1e-9)
    assert result.p == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(abs(result.z) / 2**0.5))))


def test_delong_of_identical_scores_has_p_one():
    y, p = _noisy_scores(100, seed=1)
    result = metrics.delong_test(y, p, p)
    assert result.difference == 0.0 and result.p == 1.0


def test_delong_of_a_perfect_against_a_random_scorer():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    result = metrics.delong_test(y, y + 0.1 * rng.random(200), rng.random(200))
    assert result.auroc_a == 1.0
    assert result.difference > 0.3 and result.p < 0.001


def test_delong_without_both_classes_is_nan():
    result = metrics.delong_test(np.ones(5), np.arange(5), np.arange(5))
    assert math.isnan(result.p) and math.isnan(result.difference)


def test_mcnemar_exact_by_hand():
    correct_a = np.array([1] * 10 + [1] * 5 + [0] * 3)
    correct_b = np.array([0] * 10 + [1] * 5 + [0] * 3)
    result = metrics.mcnemar_test(correct_a, correct_b)
    assert (result.b, result.c, result.exact) == (10, 0, True)
    assert result.p == pytest.approx(2 * 0.5**10)
    assert result.difference == pytest.approx(10 / 18)


def test_mcnemar_chi_square_with_continuity_correction_by_hand():
    # b = 30, c = 10: (|30 - 10| - 1)^2 / 40 = 9.025, 1 df.
    correct_a = np.array([1] * 30 + [0] * 10 + [1] * 60)
    correct_b = np.array([0] * 30 + [1] * 10 + [1] * 60)
    result = metrics.mcnemar_test(correct_a, correct_b)
    assert not result.exact
    assert result.statistic == pytest.approx(9.025)
    assert result.p == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))  # chi2(1) tail


def test_mcnemar_of_identical_outcomes_has_p_one():
    outcomes = np.array([1, 0, 1, 1, 0])
    result = metrics.mcnemar_test(outcomes, outcomes)
    assert (result.b, result.c, result.p) == (0, 0, 1.0)


def test_holm_by_hand():
    adjusted = metrics.holm([0.01, 0.04, 0.03, float("nan")])
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone: 0.03, 0.06, 0.06.
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])
    assert metrics.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_tests_reject_mismatched_inputs_and_need_two_cases_per_class():
    with pytest.raises(ValueError):
        metrics.delong_test([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError):
        metrics.mcnemar_test([1, 0], [1])
    one_positive = metrics.delong_test([0, 0, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    assert (one_positive.auroc_a, one_positive.auroc_b) == (1.0, 0.0)
    assert math.isnan(one_positive.p)
