"""Temperature and Platt scaling: they recover known parameters, evaluate reports them honestly."""

from __future__ import annotations

import numpy as np
import pytest
from test_evaluate import REGIONS, fabricate_labels, fabricate_predictions, settings

from bonexray.evaluation import calibration, metrics
from bonexray.evaluation import scoring as evaluate


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident_binary(n: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z); the 'model' reports sigmoid(z * temperature)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < sigmoid(z)).astype(int)
    return y, sigmoid(z * temperature)


def test_binary_temperature_is_recovered():
    y, p = overconfident_binary(20_000, 3.0, seed=0)
    assert calibration.fit_binary(y, p) == pytest.approx(3.0, rel=0.08)
    np.testing.assert_allclose(
        calibration.scale_binary(p, 3.0)[:5],
        sigmoid(np.log(p[:5] / (1 - p[:5])) / 3.0),
    )


def test_platt_recovers_a_shifted_base_rate_that_no_temperature_can():
    """As balanced class weights do: the 'model' reports sigmoid(2 z + 1.5), labels follow
    sigmoid(z), so its mean probability is far above the prevalence."""
    rng = np.random.default_rng(5)
    z = rng.normal(-1.5, 1.5, 20_000)
    y = (rng.random(z.size) < sigmoid(z)).astype(int)
    p = sigmoid(2.0 * z + 1.5)
    t, b = calibration.fit_platt(y, p)
    assert t == pytest.approx(2.0, rel=0.08) and b == pytest.approx(-0.75, abs=0.08)
    platt = calibration.scale_binary(p, t, b)
    temperature = calibration.scale_binary(p, calibration.fit_binary(y, p))
    assert abs(platt.mean() - y.mean()) < 0.01 < abs(temperature.mean() - y.mean())
    assert metrics.binary_nll(y, platt) < metrics.binary_nll(y, temperature)
    assert calibration.fit_platt(np.zeros(5), np.full(5, 0.3)) == (1.0, 0.0)  # one class


def test_softmax_temperature_is_recovered():
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 1.5, (20_000, 5))
    y = np.array([rng.choice(5, p=row) for row in softmax(logits)])
    timid = softmax(logits * 0.5)  # under-confident: the fitted T must sharpen (T = 0.5)
    assert calibration.fit_softmax(y, timid) == pytest.approx(0.5, rel=0.08)
    scaled = calibration.scale_softmax(timid, 0.5)
    np.testing.assert_allclose(scaled, softmax(logits), atol=1e-6)
    assert (scaled.argmax(axis=1) == timid.argmax(axis=1)).all()  # argmax unchanged


def test_ece_and_nll_drop_on_held_out_rows_of_a_miscalibrated_model():
    y, p = overconfident_binary(8_000, 4.0, seed=2)
    fit_y, fit_p, y, p = y[:4000], p[:4000], y[4000:], p[4000:]
    t = calibration.fit_binary(fit_y, fit_p)
    scaled = calibration.scale_binary(p, t)
    before = metrics.expected_calibration_error(metrics.calibration_bins(y, p, 10))
    after = metrics.expected_calibration_error(metrics.calibration_bins(y, scaled, 10))
    assert before > 0.1 and after < before / 3
    assert metrics.binary_nll(y, scaled) < metrics.binary_nll(y, p)
    assert metrics.auroc(y, scaled) == pytest.approx(metrics.auroc(y, p))  # monotone


def test_degenerate_inputs_keep_the_identity_and_stay_finite():
    assert calibration.fit_binary(np.ones(10), np.linspace(0.1, 0.9, 10)) == 1.0
    assert calibration.fit_softmax(np.array([0]), np.array([[0.5, 0.5]])) == 1.0
    p = np.array([0.0, 0.3, 1.0])
    np.testing.assert_array_equal(calibration.Temperatures().fracture_proba(p), p)
    scaled = calibration.scale_binary(p, 2.0)
    assert np.isfinite(scaled).all() and (np.diff(scaled) > 0).all()
    certain = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    rows = calibration.scale_softmax(certain, 2.0)
    assert np.isfinite(rows).all()
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="calibration method"):
        calibration.Temperatures.fit("isotonic", [], np.zeros((0, 2)), [], [])


def test_evaluate_scores_calibrated_probabilities_and_keeps_the_raw_ones():
    labels = fabricate_labels()
    preds = fabricate_predictions(labels, 3.0, seed=4)
    # fabricate_predictions' fracture logits are ~3x too timid (Bayes log-odds 3x for skill
    # 3 and unit noise): x12 makes them ~4x over-confident.
    p = preds["p_fracture"]
    preds["p_fracture"] = sigmoid(12 * np.log(p / (1 - p)))
    scaled = evaluate.evaluate_all(labels, {"cnn": preds}, REGIONS, settings(bootstrap=10))
    raw = evaluate.evaluate_all(
        labels, {"cnn": preds}, REGIONS, settings(bootstrap=10, calibration="none")
    )
    frac, raw_frac = scaled["cnn"].metrics["fracture"], raw["cnn"].metrics["fracture"]
    assert frac["temperature"] > 2 and raw_frac["temperature"] == 1.0
    assert frac["ece"] < frac["ece_uncalibrated"] == raw_frac["ece"]
    assert frac["brier_uncalibrated"] == raw_frac["brier"]
    assert frac["auroc"] == pytest.approx(raw_frac["auroc"])
    assert scaled["cnn"].metrics["region"]["accuracy"] == raw["cnn"].metrics["region"]["accuracy"]
    for baseline in evaluate.BASELINES:  # never calibrated
        assert scaled[baseline].temperatures == calibration.Temperatures()
        b = scaled[baseline].metrics["fracture"]
        assert b["ece"] == b["ece_uncalibrated"]
    with pytest.raises(ValueError, match="evaluate.calibration"):
        settings(calibration="isotonic")
