"""Out-of-distribution score of a working image against the TRAIN split's working images.

A few intensity statistics of the image content (the working image without its letterbox
padding, at the size the models see), each standardised with the train split's mean and
std; the score is the largest |z|. The threshold is the ``val_pass`` quantile of the val
split's scores, so that share of in-distribution images passes by construction, but never
below ``min_threshold`` (a small val set's quantile is too tight to trust). The
evaluate stage fits it (``fit_on_shards``) and stores it in every serving record; predict
withholds an image scoring above it. The statistics are simple on purpose: they catch
inputs that are not radiographs of the training kind (noise, a photo of a screen, a
blank or saturated scan, a strip), not subtle shifts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from bonexray.data.resize import Letterbox, content_box
from bonexray.errors import ConfigError
from bonexray.io.shards import ShardReader

# Intensities on [0, 1]: mean, std and percentiles of the content; padding, the share of
# the square that is letterbox; gradient, the mean |difference| of neighbouring pixels
# (texture: noise is far above any radiograph's).
FEATURES = ("mean", "std", "p05", "p50", "p95", "padding", "gradient")
# A feature that hardly varies in train (e.g. padding when every image has one shape)
# would make a tiny difference look extreme; its std is floored at this.
STD_FLOOR = 0.02
BATCH = 512  # working images read at once while fitting


def statistics(working: np.ndarray, box: Letterbox) -> np.ndarray:
    """FEATURES of one (size, size) uint8 working image, float64."""
    size = working.shape[0]
    crop = working[box.top : box.top + box.height, box.left : box.left + box.width]
    pixels = crop.astype(np.float64) / 255.0
    p05, p50, p95 = np.percentile(pixels, [5, 50, 95])
    steps = [np.abs(np.diff(pixels, axis=a)).ravel() for a in (0, 1) if pixels.shape[a] > 1]
    gradient = float(np.concatenate(steps).mean()) if steps else 0.0
    padding = 1.0 - box.width * box.height / size**2
    return np.array([pixels.mean(), pixels.std(), p05, p50, p95, padding, gradient])


@dataclass(frozen=True)
class Reference:
    """Train statistics and the val-chosen threshold; JSON-safe via to_dict/from_dict."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]  # floored at STD_FLOOR
    threshold: float  # score > threshold -> out of distribution
    val_pass: float  # the quantile of the val scores the threshold is (unless floored)
    min_threshold: float  # the floor
    n_train: int
    n_val: int

    def score(self, stats: np.ndarray) -> np.ndarray:
        """max |z| over the features, for stats of shape (..., len(features))."""
        z = (np.asarray(stats, np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return np.abs(z).max(axis=-1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return data | {k: list(data[k]) for k in ("features", "mean", "std")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        values = dict(data)
        for key in ("features", "mean", "std"):
            values[key] = tuple(values[key])
        if values["features"] != FEATURES:
            raise ValueError(f"features {values['features']} are not this version's {FEATURES}")
        return cls(**values)


def fit(train: np.ndarray, val: np.ndarray, val_pass: float, min_threshold: float) -> Reference:
    """Reference from (n, len(FEATURES)) statistics of the train and val images."""
    if not 0 < val_pass <= 1:
        raise ConfigError(f"params.yaml evaluate.ood_val_pass: must be in (0, 1], got {val_pass}")
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(
            f"out-of-distribution reference: needs train and val images, got "
            f"{len(train)} train and {len(val)} val"
        )
    mean = train.mean(axis=0)
    std = np.maximum(train.std(axis=0), STD_FLOOR)
    partial = Reference(FEATURES, tuple(mean), tuple(std), np.inf, val_pass, 0.0, 0, 0)
    threshold = max(float(np.quantile(partial.score(val), val_pass)), float(min_threshold))
    return Reference(
        FEATURES,
        tuple(float(m) for m in mean),
        tuple(float(s) for s in std),
        threshold,
        float(val_pass),
        float(min_threshold),
        len(train),
        len(val),
    )


def fit_on_shards(
    images: ShardReader, labels: pd.DataFrame, val_pass: float, min_threshold: float
) -> Reference:
    """Reference from the repair stage's working images of the labels' train and val rows."""
    images.require(labels["id"], "the labels' ids")
    size, keep_aspect = int(images.meta["size"]), bool(images.meta["keep_aspect"])
    found = {}
    for split in ("train", "val"):
        positions = [images.position(i) for i in labels.loc[labels["split"] == split, "id"]]
        index = images.index.iloc[positions]
        boxes = [
            content_box(int(w), int(h), size, keep_aspect)
            for w, h in zip(index["orig_width"], index["orig_height"], strict=True)
        ]
        rows = []
        for start, batch in zip(
            range(0, len(positions), BATCH), images.iter_batches(positions, BATCH), strict=True
        ):
            rows += [statistics(w, boxes[start + k]) for k, w in enumerate(batch)]
        found[split] = np.array(rows).reshape(-1, len(FEATURES))
    return fit(found["train"], found["val"], val_pass, min_threshold)
