"""params.yaml search spaces -> Keras Tuner hyperparameters.

One convention for every `models.<name>.space` (and `models.cnn.fixed`) in params.yaml:

- a scalar                                   -> hp.Fixed: not searched
- a list of two numbers, at least one float  -> hp.Float over [low, high]; log sampling for
                                                names ending in "learning_rate", which span
                                                orders of magnitude
- [true, false] (either order)               -> hp.Boolean, so trials record true/false
- any other list (ints, strings)             -> hp.Choice among its items

So a fixed model is just a space of scalars, and one builder serves the tuner and `cnn`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras_tuner as kt


def _is_float_range(spec: list) -> bool:
    return (
        len(spec) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
        and any(isinstance(v, float) for v in spec)
    )


def declare(hp: kt.HyperParameters, space: Mapping[str, Any], where: str = "space") -> dict:
    """Register every entry of ``space`` in ``hp``; return the values chosen for this build."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list | tuple):
            spec = list(spec)
            if not spec:
                raise ValueError(f"params.yaml {where}.{name}: empty list")
            if (
                len(spec) == 2
                and set(spec) == {True, False}
                and all(isinstance(v, bool) for v in spec)
            ):
                values[name] = hp.Boolean(name, default=spec[0])
            elif _is_float_range(spec):
                low, high = sorted(float(v) for v in spec)
                sampling = "log" if name.endswith("learning_rate") else "linear"
                if sampling == "log" and low <= 0:
                    raise ValueError(f"params.yaml {where}.{name}: log range needs low > 0")
                values[name] = hp.Float(name, low, high, sampling=sampling)
            else:
                values[name] = hp.Choice(name, spec)
        elif isinstance(spec, Mapping) or spec is None:
            raise ValueError(
                f"params.yaml {where}.{name}: expected a scalar or a list, got {spec!r}"
            )
        else:
            values[name] = hp.Fixed(name, spec)
    return values
