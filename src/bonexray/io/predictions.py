"""The one table format every model writes and `evaluate` reads.

Columns: ``id`` (image id), ``split`` ("val" | "test"), ``p_region__<region>`` for each
canonical region in taxonomy order (rows sum to 1), and ``p_fracture``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bonexray.errors import ConfigError

REGION_PREFIX = "p_region__"


def region_columns(regions: Sequence[str]) -> list[str]:
    return [f"{REGION_PREFIX}{r}" for r in regions]


def to_frame(
    ids: Sequence[str],
    split: Sequence[str] | str,
    region_proba: np.ndarray,
    fracture_proba: np.ndarray,
    regions: Sequence[str],
) -> pd.DataFrame:
    region_proba = np.asarray(region_proba, dtype=np.float64)
    fracture_proba = np.asarray(fracture_proba, dtype=np.float64).reshape(-1)
    if region_proba.shape != (len(ids), len(regions)):
        raise ValueError(
            f"region probabilities have shape {region_proba.shape}, "
            f"expected ({len(ids)}, {len(regions)})"
        )
    if fracture_proba.shape != (len(ids),):
        raise ValueError(
            f"fracture probabilities: {fracture_proba.shape[0]} rows for {len(ids)} ids"
        )
    frame = pd.DataFrame(region_proba, columns=region_columns(regions))
    frame.insert(0, "split", split if isinstance(split, str) else list(split))
    frame.insert(0, "id", list(ids))
    frame["p_fracture"] = fracture_proba
    return frame


def write(frame: pd.DataFrame, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def read(path: str | Path, regions: Sequence[str]) -> pd.DataFrame:
    """Read a predictions table and check it against the taxonomy it is scored with."""
    frame = pd.read_parquet(path)
    missing = {"id", "split", "p_fracture", *region_columns(regions)} - set(frame.columns)
    if missing:
        raise ConfigError(f"{path}: missing columns {sorted(missing)}")
    return frame
