"""The ensemble of the trained models: the mean of their calibrated probabilities.

Each member's probabilities are first calibrated with that member's own parameters, fitted
on val (calibration.py, evaluate.calibration); the ensemble is the plain mean of those
calibrated probabilities, per head (region: the mean of the softmax vectors, which still
sum to 1; fracture: the mean of p). No calibration is fitted on top of the mean: it would
be a second fit on the same val rows. The mean of calibrated probabilities may be a little
under-confident (averaging pulls them towards the middle); its ECE and Brier on test, as
every model's, say by how much. Everything after the mean (the threshold at the val operating
point, the metrics, the serving record) is what every model goes through (scoring.py).

evaluate (``member_table``) and `bonexray predict --model ensemble` (inference/predict.py)
both combine with ``combine``, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bonexray.errors import ConfigError
from bonexray.evaluation.calibration import Temperatures
from bonexray.io import predictions

COMBINATIONS = ("mean", "none")  # params.yaml evaluate.ensemble; none: no ensemble


def combine(
    region: Sequence[np.ndarray], fracture: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The mean over members of calibrated (region (n, regions), fracture (n,)) arrays."""
    if not region or len(region) != len(fracture):
        raise ValueError(f"{len(region)} region and {len(fracture)} fracture member outputs")
    return (
        np.mean(np.stack([np.asarray(r, np.float64) for r in region]), axis=0),
        np.mean(np.stack([np.asarray(f, np.float64).reshape(-1) for f in fracture]), axis=0),
    )


def member_table(
    tables: Mapping[str, pd.DataFrame],
    temperatures: Mapping[str, Temperatures],
    regions: Sequence[str],
) -> pd.DataFrame:
    """The ensemble's predictions table (io/predictions.py) from its members' raw tables and
    their val-fitted calibrations, over the ids of the first member, in its order.

    Every member must have predicted the same images in the same splits: an ensemble over
    a subset would be scored on other images than its members (ConfigError otherwise).
    """
    columns = predictions.region_columns(regions)
    first, *others = tables
    keys = tables[first].set_index("id")["split"]
    for name in others:
        other = tables[name].set_index("id")["split"]
        differ = keys.index[~other.reindex(keys.index).eq(keys).to_numpy()]
        extra = other.index.difference(keys.index)
        if len(differ) or len(extra):
            raise ConfigError(
                f"ensemble: {name} did not predict the images {first} did ({len(differ)} "
                f"missing or in another split, {len(extra)} extra, e.g. "
                f"{(differ if len(differ) else extra)[0]!r}): every member must predict the "
                "same val and test images"
            )
    aligned = {name: table.set_index("id").loc[keys.index] for name, table in tables.items()}
    region, fracture = combine(
        [temperatures[n].region_proba(t[columns].to_numpy()) for n, t in aligned.items()],
        [temperatures[n].fracture_proba(t["p_fracture"].to_numpy()) for n, t in aligned.items()],
    )
    return predictions.to_frame(list(keys.index), list(keys), region, fracture, regions)
