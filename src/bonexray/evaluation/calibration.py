"""Calibration of both heads, fitted on validation predictions.

One temperature per head (Guo et al., 2017, applied to the probabilities the models
already write), and with method "platt" a bias for the fracture head:

- fracture (sigmoid): ``sigmoid(logit(p) / T + b)`` (b = 0 for "temperature");
- region (softmax): ``softmax(log p / T)``.

T > 1 softens over-confident probabilities, T < 1 sharpens timid ones. The bias moves the
fracture head's base rate: the Keras models are trained with balanced class weights
(train.class_weight), as if half the images were fractured, so their mean fracture
probability sits well above the real prevalence, and no temperature can move it (on
FracAtlas, prevalence 0.18, the main model's mean was 0.36). Platt scaling (Platt, 1999; a
logistic regression on the logit) fixes both. The parameters minimise the head's negative
log-likelihood on VAL. Every map is strictly increasing in p, so AUROC, average precision
and the region argmax are unchanged; what changes is how far the probabilities can be taken
at face value (ECE, Brier, NLL).
Probabilities are clipped by metrics.PROBABILITY_EPS before the logarithm, so that a 0 or
a 1 (the forest says so often) stays finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from bonexray.evaluation import metrics

METHODS = ("platt", "temperature", "none")
# Far beyond what a trained model needs (~0.5..5): the bound only keeps the search finite
# when val data is separable (NLL keeps falling as T -> 0) or a head is constant.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def _log_clipped(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, dtype=np.float64), metrics.PROBABILITY_EPS, 1.0))


def scale_binary(p: np.ndarray, temperature: float, bias: float = 0.0) -> np.ndarray:
    """sigmoid(logit(p) / T + b); T = 1, b = 0 returns p unchanged (not even clipped)."""
    p = np.asarray(p, dtype=np.float64)
    if temperature == 1.0 and bias == 0.0:
        return p
    q = np.clip(p, metrics.PROBABILITY_EPS, 1.0 - metrics.PROBABILITY_EPS)
    logit = np.log(q) - np.log1p(-q)
    return 1.0 / (1.0 + np.exp(-(logit / temperature + bias)))


def scale_softmax(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) over the last axis; T = 1 returns proba unchanged."""
    proba = np.asarray(proba, dtype=np.float64)
    if temperature == 1.0:
        return proba
    z = _log_clipped(proba) / temperature
    z -= z.max(axis=-1, keepdims=True)  # exp of the largest term is 1: no overflow
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _minimise(nll_at) -> float:
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: nll_at(math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(found.x))


def fit_binary(y: np.ndarray, p: np.ndarray) -> float:
    """The T minimising binary NLL of scale_binary(p, T) on (y, p); 1 without both classes."""
    y, p = np.asarray(y).astype(np.int64).reshape(-1), np.asarray(p, dtype=np.float64)
    if not metrics.has_both_classes(y):
        return 1.0
    return _minimise(lambda t: metrics.binary_nll(y, scale_binary(p, t)))


def fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(T, b) minimising binary NLL of scale_binary(p, T, b); (1, 0) without both classes."""
    y, p = np.asarray(y).astype(np.int64).reshape(-1), np.asarray(p, dtype=np.float64)
    if not metrics.has_both_classes(y):
        return 1.0, 0.0
    found = minimize(
        lambda x: metrics.binary_nll(y, scale_binary(p, math.exp(x[0]), x[1])),
        x0=[math.log(fit_binary(y, p)), 0.0],  # from the best temperature alone
        method="L-BFGS-B",
        bounds=[tuple(math.log(b) for b in TEMPERATURE_BOUNDS), (-20.0, 20.0)],
    )
    return float(math.exp(found.x[0])), float(found.x[1])


def fit_softmax(y: np.ndarray, proba: np.ndarray) -> float:
    """The T minimising multi-class NLL of scale_softmax(proba, T); 1 with under two rows."""
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if y.size < 2:
        return 1.0
    return _minimise(lambda t: metrics.multiclass_nll(y, scale_softmax(proba, t)))


@dataclass(frozen=True)
class Temperatures:
    """The two heads' temperatures and the fracture bias; the default is the identity."""

    region: float = 1.0
    fracture: float = 1.0
    fracture_bias: float = 0.0  # 0 unless fitted with "platt"

    @classmethod
    def fit(
        cls,
        method: str,
        region_y: np.ndarray,
        region_proba: np.ndarray,
        fracture_y: np.ndarray,
        fracture_p: np.ndarray,
    ) -> Temperatures:
        """Fit both heads on validation rows with ``method`` (one of METHODS)."""
        if method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
        if method == "none":
            return cls()
        region = fit_softmax(region_y, region_proba)
        if method == "temperature":
            return cls(region=region, fracture=fit_binary(fracture_y, fracture_p))
        fracture, bias = fit_platt(fracture_y, fracture_p)
        return cls(region=region, fracture=fracture, fracture_bias=bias)

    def region_proba(self, proba: np.ndarray) -> np.ndarray:
        return scale_softmax(proba, self.region)

    def fracture_proba(self, p: np.ndarray) -> np.ndarray:
        return scale_binary(p, self.fracture, self.fracture_bias)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> Temperatures:
        return cls(
            region=float(values["region"]),
            fracture=float(values["fracture"]),
            fracture_bias=float(values.get("fracture_bias", 0.0)),  # records before "platt"
        )
