"""The labels table the relabel stage writes (labels.parquet), which every model trains on
and evaluate scores against: one home for its columns, values and reader."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bonexray.errors import ConfigError

LABEL_COLUMNS = ("id", "split", "region", "label_source", "fracture")
LABEL_SOURCES = ("original", "synonym", "model", "excluded")
SPLITS = ("train", "val", "test")
PREDICTED_SPLITS = ("val", "test")  # the splits every model predicts and evaluate scores


def read_labels(path: str | Path, regions: Sequence[str]) -> pd.DataFrame:
    """Read labels.parquet and check it against the taxonomy, naming the file on error."""
    labels = pd.read_parquet(path)
    missing = set(LABEL_COLUMNS) - set(labels.columns)
    if missing:
        raise ConfigError(f"{path}: missing columns {sorted(missing)}")
    problems = {
        "split": set(labels["split"].dropna()) - set(SPLITS),
        "label_source": set(labels["label_source"].dropna()) - set(LABEL_SOURCES),
        "region": set(labels["region"].dropna()) - set(regions),
        "fracture": set(labels["fracture"].dropna().astype(int)) - {0, 1},
    }
    for column, bad in problems.items():
        if bad:
            raise ConfigError(f"{path}: unexpected {column} values {sorted(bad)}")
    if labels["id"].duplicated().any():
        raise ConfigError(
            f"{path}: duplicate ids, e.g. {labels['id'][labels['id'].duplicated()].iloc[0]}"
        )
    return labels
