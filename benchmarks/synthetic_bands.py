"""A synthetic labels.parquet + band-feature shard set for the training benchmarks.

Random features of the default profile's band shape (repair.image_size 128, haar level 2,
fft on: 64x64x8 float32, 128 KiB an image), labels spread over the taxonomy's regions,
splits 60/20/20, shards of 2048 like features.shard_size. What the networks see does not
matter to a throughput or memory figure; the shapes and the file layout do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SHAPE = (64, 64, 8)
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}


def write(directory: Path, n: int, regions: Sequence[str], seed: int = 0) -> dict[str, Path]:
    """Write ``directory``/labels.parquet and ``directory``/bands/ for n images."""
    from bonexray.io.shards import ShardWriter

    rng = np.random.default_rng(seed)
    labels = pd.DataFrame(
        {
            "id": [f"img{i:06d}" for i in range(n)],
            "split": rng.choice(list(SPLITS), size=n, p=list(SPLITS.values())),
            "region": rng.choice(list(regions), size=n),
            "label_source": "original",
            "fracture": pd.array(rng.integers(0, 2, size=n), dtype="Int8"),
        }
    )
    directory.mkdir(parents=True)
    paths = {"labels": directory / "labels.parquet", "bands": directory / "bands"}
    labels.to_parquet(paths["labels"], index=False)
    with ShardWriter(paths["bands"], SHAPE, np.float32, shard_size=2048) as bands:
        for item_id in labels["id"]:
            bands.add(item_id, rng.standard_normal(SHAPE, dtype=np.float32))
    return paths
