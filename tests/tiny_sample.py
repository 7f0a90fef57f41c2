"""A tiny labels.parquet + band/vector shard sample for the model tests (no pipeline run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bonexray.io.shards import ShardWriter

REGIONS = ["hand", "elbow", "leg"]
GRID, CHANNELS, VECTOR = 16, 4, 12
SPLITS = {"train": 36, "val": 12, "test": 12}


def labels_frame(seed: int = 0) -> pd.DataFrame:
    """60 images; every split has every region; a few unknown fractures and exclusions."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in SPLITS.items():
        for i in range(n):
            region = REGIONS[i % len(REGIONS)]
            fracture = pd.NA if i % 5 == 4 else int(i % 2)
            source = "original"
            if i == n - 1:  # one excluded image per split, region unknown
                region, source = pd.NA, "excluded"
            rows.append(
                {
                    "id": f"data/{split}/img{i:03d}.png",
                    "split": split,
                    "region": region,
                    "label_source": source,
                    "region_confidence": float(rng.uniform(0.8, 1.0)),
                    "fracture": fracture,
                    "excluded_reason": "low confidence" if source == "excluded" else pd.NA,
                }
            )
    frame = pd.DataFrame(rows)
    frame["fracture"] = frame["fracture"].astype("Int8")
    return frame


def write_sample(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Write labels.parquet, bands/ (GRID, GRID, CHANNELS) and vectors/ (VECTOR,) shards.

    Features carry a little signal (region and fracture shift some channels) so that a
    model can do better than chance, and the shards list ids in a different order than
    labels.parquet so that the join by id is exercised.
    """
    rng = np.random.default_rng(seed)
    labels = labels_frame(seed)
    paths = {
        "labels": directory / "labels.parquet",
        "bands": directory / "bands",
        "vectors": directory / "vectors",
    }
    directory.mkdir(parents=True, exist_ok=True)
    labels.to_parquet(paths["labels"], index=False)
    shuffled = labels.sample(frac=1.0, random_state=seed)
    with (
        ShardWriter(paths["bands"], (GRID, GRID, CHANNELS), np.float32, shard_size=25) as bands,
        ShardWriter(paths["vectors"], (VECTOR,), np.float32, shard_size=25) as vectors,
    ):
        for row in shuffled.itertuples():
            shift = 0.0 if pd.isna(row.region) else REGIONS.index(row.region) - 1.0
            broken = 0.0 if pd.isna(row.fracture) else float(row.fracture)
            image = rng.normal(size=(GRID, GRID, CHANNELS)).astype(np.float32)
            image[..., 0] += shift
            image[: GRID // 2, :, 1] += broken  # top half only: a spatial cue
            bands.add(row.id, image, split=row.split)  # as the features stage writes
            vector = rng.normal(size=VECTOR).astype(np.float32)
            vector[0] += 2 * shift
            vector[1] += 2 * broken
            vectors.add(row.id, vector)
    return paths


# train.augment's magnitudes, as in params.yaml; IDENTITY changes nothing.
AUGMENT = {
    "hflip": 0.5,
    "rotation_deg": 10.0,
    "scale": [0.9, 1.1],
    "translation": 0.05,
    "brightness": 0.05,
    "contrast": [0.85, 1.15],
    "gamma": [0.8, 1.25],
    "noise_std": 0.01,
}
IDENTITY = {
    "hflip": 0.0,
    "rotation_deg": 0.0,
    "scale": [1.0, 1.0],
    "translation": 0.0,
    "brightness": 0.0,
    "contrast": [1.0, 1.0],
    "gamma": [1.0, 1.0],
    "noise_std": 0.0,
}
IMAGE_SIDE = 2 * GRID  # haar, level 1: the level-1 grid is half the side
IMAGE_FEATURES = {  # features params giving (GRID, GRID, CHANNELS) bands from the images
    "wavelet": "haar",
    "level": 1,
    "mode": "periodization",
    "fft": False,
    "grid": "finest",
    "rf_approx_size": 4,
    "entropy_bins": 8,
    "shard_size": 25,
}


def write_image_sample(directory: Path, seed: int = 0) -> dict[str, Path]:
    """labels.parquet, working images (repair's layout, IMAGE_SIDE px uint8) and the bands
    the features stage makes from them, for the augmentation tests.

    Each image is a letterboxed film (content narrower than the canvas, on black): a bright
    bar whose column moves with the region, broken by a dark gap when fractured.
    """
    from bonexray.features.wavelet import FeatureConfig, build
    from bonexray.io.shards import ShardReader

    rng = np.random.default_rng(seed)
    labels = labels_frame(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "labels": directory / "labels.parquet",
        "images": directory / "repair",
        "bands": directory / "features" / "bands",
    }
    labels.to_parquet(paths["labels"], index=False)
    side, margin = IMAGE_SIDE, IMAGE_SIDE // 8
    with ShardWriter(paths["images"], (side, side), np.uint8, shard_size=25) as images:
        for row in labels.sample(frac=1.0, random_state=seed).itertuples():
            film = rng.integers(30, 70, size=(side, side - 2 * margin))
            column = 4 + 6 * (0 if pd.isna(row.region) else REGIONS.index(row.region))
            film[2:-2, column : column + 4] = 220
            if not pd.isna(row.fracture) and row.fracture:
                film[side // 2 : side // 2 + 2, column : column + 4] = 40
            canvas = np.zeros((side, side), np.uint8)
            canvas[:, margin:-margin] = film
            images.add(row.id, canvas, split=row.split)
    build(
        labels[["id", "split"]],
        ShardReader(paths["images"]),
        directory / "features",
        FeatureConfig.from_params(IMAGE_FEATURES),
    )
    return paths


def params(**models: dict) -> dict:
    """params.yaml sections the training stages read, sized for tests."""
    return {
        "seed": 7,
        "taxonomy": {"regions": REGIONS},
        "train": {
            "batch_size": 12,
            "class_weight": "balanced",
            "loss_weights": {"region": 1.0, "fracture": 1.0},
            "early_stopping_patience": 2,
            "lr_schedule": "plateau",
            "lr_plateau": {"factor": 0.5, "patience": 1, "min_lr": 1e-5},
            "fracture_loss": {"kind": "bce", "focal_gamma": 2.0, "label_smoothing": 0.0},
            "deterministic": True,
            "mixed_precision": False,
            "distribution": "auto",
            "oracle_address": "127.0.0.1",
            "oracle_port": 0,
            "augment": {"enabled": False, **AUGMENT},
        },
        "models": models,
        "rf": {
            "n_iter": 3,
            "cv": 2,
            "scoring": "neg_log_loss",
            "class_weight": "balanced",
            "n_jobs": 1,
            "distributions": {
                "n_estimators": [10, 20],
                "max_depth": [None, 4],
                "min_samples_leaf": [1, 2],
                "max_features": ["sqrt", 0.5],
            },
        },
    }


TINY_LAYERS = {  # what the recurrent and the pooled networks share
    "conv_blocks": 2,
    "filters": 4,
    "kernel_size": 3,
    "residual": False,
    "pool_every_block": True,
    "batchnorm": False,
    "dropout": 0.1,
    "dense_units": 8,
    "learning_rate": 0.01,
}
TINY_CONV = {**TINY_LAYERS, "pooling": "max"}
TINY_RNN = {
    **TINY_LAYERS,
    "lstm_units": 4,
    "lstm_layers": 1,
    "scan": "rows",
    "lstm_readout": "last",
}
