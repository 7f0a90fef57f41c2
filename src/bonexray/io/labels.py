"""The labels table the relabel stage writes (labels.parquet), which every model trains on
and evaluate scores against: one home for its columns, values and reader."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bonexray.errors import ConfigError

LABEL_COLUMNS = ("id", "split", "region", "label_source", "fracture")
# Nullable 1/0 flags about an image that evaluate breaks the fracture scores down by
# (hardware: an implant in the image, from FracAtlas). A table without one (built by hand,
# or by a test) reads as all unknown.
FLAG_COLUMNS = ("hardware",)
LABEL_SOURCES = ("original", "synonym", "model", "excluded")
SPLITS = ("train", "val", "test")
PREDICTED_SPLITS = ("val", "test")  # the splits every model predicts and evaluate scores


def read_labels(path: str | Path, regions: Sequence[str]) -> pd.DataFrame:
    """Read labels.parquet and check it against the taxonomy, naming the file on error."""
    labels = with_flags(pd.read_parquet(path))
    missing = set(LABEL_COLUMNS) - set(labels.columns)
    if missing:
        raise ConfigError(f"{path}: missing columns {sorted(missing)}")
    problems = {
        "split": set(labels["split"].dropna()) - set(SPLITS),
        "label_source": set(labels["label_source"].dropna()) - set(LABEL_SOURCES),
        "region": set(labels["region"].dropna()) - set(regions),
        **{
            flag: set(labels[flag].dropna().astype(int)) - {0, 1}
            for flag in ("fracture", *FLAG_COLUMNS)
        },
    }
    for column, bad in problems.items():
        if bad:
            raise ConfigError(f"{path}: unexpected {column} values {sorted(bad)}")
    if labels["id"].duplicated().any():
        raise ConfigError(
            f"{path}: duplicate ids, e.g. {labels['id'][labels['id'].duplicated()].iloc[0]}"
        )
    return labels


def with_flags(labels: pd.DataFrame) -> pd.DataFrame:
    """``labels`` with every FLAG_COLUMNS column, all unknown (NA) where it was absent."""
    absent = [flag for flag in FLAG_COLUMNS if flag not in labels.columns]
    return labels.assign(**{flag: pd.array([pd.NA] * len(labels), dtype="Int8") for flag in absent})
