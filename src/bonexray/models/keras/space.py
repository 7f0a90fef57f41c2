"""params.yaml search spaces -> Keras Tuner hyperparameters.

Every `models.<name>.space` (and `models.cnn.fixed`) entry says what it is:

- a scalar                            -> hp.Fixed: not searched
- {choice: [a, b, ...]}               -> hp.Choice among the items; hp.Boolean for
                                         [true, false] (either order), so trials record
                                         true/false, with the first item as default
- {range: [low, high]}                -> hp.Float over [low, high], linear sampling
- {range: [low, high], log: true}     -> the same, sampled on a log scale (learning rates)

A bare list is refused rather than guessed at (is [0, 1] a choice or a range?). A fixed
model is a space of scalars, so one builder serves the tuner and `cnn`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras_tuner as kt

from bonexray.io.params import ParamsError

CHOICE, RANGE, LOG = "choice", "range", "log"
SYNTAX = "a scalar, {choice: [...]}, or {range: [low, high]} (optionally with log: true)"


def options(spec: Any) -> list:
    """The values an entry can take: a choice's items, or the one fixed value."""
    if isinstance(spec, Mapping) and CHOICE in spec:
        return list(spec[CHOICE])
    return [spec]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def declare_one(hp: kt.HyperParameters, name: str, spec: Any, where: str) -> Any:
    """Register one entry in ``hp``; return the value chosen for this build."""
    key = f"params.yaml {where}.{name}"
    if isinstance(spec, list | tuple):
        raise ParamsError(f"{key}: a bare list {list(spec)!r} is ambiguous; write {SYNTAX}")
    if not isinstance(spec, Mapping):
        if spec is None:
            raise ParamsError(f"{key}: no value; write {SYNTAX}")
        return hp.Fixed(name, spec)
    if set(spec) == {CHOICE}:
        items = spec[CHOICE]
        if not isinstance(items, list | tuple) or not items:
            raise ParamsError(f"{key}.{CHOICE}: expected a non-empty list, got {items!r}")
        items = list(items)
        if len(items) == 2 and all(isinstance(v, bool) for v in items) and len(set(items)) == 2:
            return hp.Boolean(name, default=items[0])
        return hp.Choice(name, items)
    if RANGE in spec and set(spec) <= {RANGE, LOG}:
        bounds, log = spec[RANGE], spec.get(LOG, False)
        if not (
            isinstance(bounds, list | tuple) and len(bounds) == 2 and all(map(_number, bounds))
        ):
            raise ParamsError(f"{key}.{RANGE}: expected [low, high] numbers, got {bounds!r}")
        if not isinstance(log, bool):
            raise ParamsError(f"{key}.{LOG}: expected true or false, got {log!r}")
        low, high = sorted(float(v) for v in bounds)
        if log and low <= 0:
            raise ParamsError(f"{key}: a log range needs low > 0, got {low}")
        return hp.Float(name, low, high, sampling="log" if log else "linear")
    raise ParamsError(f"{key}: {dict(spec)!r} is not {SYNTAX}")


def declare(hp: kt.HyperParameters, space: Mapping[str, Any], where: str = "space") -> dict:
    """Register every entry of ``space`` in ``hp``; return the values chosen for this build."""
    return {name: declare_one(hp, name, spec, where) for name, spec in space.items()}
