"""Images joined to their labels, and which rows each model fits, selects on and predicts.

Labels (artifacts/labels.parquet) are joined by id to per-image arrays in a shard directory:
the wavelet bands for the networks, the feature vectors for the forest. Nothing is read into
RAM: `load_examples` joins labels to shard rows left on disk (`ShardRows`), and
training.make_dataset streams batches from them, so a model stage's memory does not grow
with the data set. `Examples.features` reads the rows into memory where an array is wanted
(the forest's small vectors, tests).

- fitting: the train split, rows whose region is known (label_source != "excluded");
- early stopping and model selection: the same rows of the val split;
- predictions: every val and test image, labelled or not (evaluate filters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bonexray.errors import ConfigError
from bonexray.io.labels import PREDICTED_SPLITS, read_labels
from bonexray.io.shards import ShardReader, ShardRows


@dataclass(frozen=True)
class Examples:
    """Images and their labels, aligned row by row."""

    ids: np.ndarray  # str
    split: np.ndarray  # "train" | "val" | "test"
    label_source: np.ndarray
    region: np.ndarray  # int64 class index in taxonomy order, -1 when unknown
    fracture: np.ndarray  # float32 1/0, NaN when unknown
    rows: ShardRows  # (n, *item_shape) float32, on disk

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def features(self) -> np.ndarray:
        """Every row's array, read into memory now (each call reads again)."""
        return self.rows.read()

    def subset(self, mask: np.ndarray) -> Examples:
        return Examples(
            self.ids[mask],
            self.split[mask],
            self.label_source[mask],
            self.region[mask],
            self.fracture[mask],
            self.rows.subset(mask),
        )

    def labelled(self, split: str) -> Examples:
        """Rows of ``split`` that can be fitted or scored: region known, not excluded."""
        keep = (self.split == split) & (self.label_source != "excluded") & (self.region >= 0)
        return self.subset(keep)

    def to_predict(self) -> Examples:
        return self.subset(np.isin(self.split, PREDICTED_SPLITS))


def load_examples(
    labels_path: str | Path, features_dir: str | Path, regions: Sequence[str]
) -> Examples:
    """Join labels.parquet to the arrays of a shard directory by image id."""
    labels = read_labels(labels_path, regions)
    reader = ShardReader(features_dir)
    absent = set(labels["id"]) - set(reader.index["id"])
    if absent:
        raise ConfigError(
            f"{features_dir}: {len(absent)} ids of {labels_path} have no features, "
            f"e.g. {sorted(absent)[0]}"
        )
    index = {region: i for i, region in enumerate(regions)}
    region = labels["region"].map(index).fillna(-1).astype("int64").to_numpy()
    fracture = labels["fracture"].astype("Float32").to_numpy(dtype="float32", na_value=np.nan)
    return Examples(
        ids=labels["id"].astype(str).to_numpy(),
        split=labels["split"].astype(str).to_numpy(),
        label_source=labels["label_source"].astype(str).to_numpy(),
        region=region,
        fracture=fracture,
        rows=reader.rows(labels["id"]),
    )
