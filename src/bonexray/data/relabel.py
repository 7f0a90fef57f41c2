"""Final region label per image: kept from the source, or assigned by the base model.

Runs after `split`, so that no val/test image influences a model evaluated on it:

- images whose raw region resolved to a canonical region ("original" or "synonym" in
  split.parquet's ``region_source``) keep it, with confidence 1.0 and no model involved;
- the base model (models/base_region.py) is fitted on TRAIN-split images of that kind only,
  and its accuracy is measured on VAL-split images of that kind (held out);
- images whose region is "missing", "ambiguous" or "unknown", in every split, are
  candidates: the model's most probable region is accepted when its softmax probability
  reaches ``relabel.confidence_threshold``; otherwise the image is excluded (region NA,
  label_source "excluded") with a reason, and listed in excluded.csv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import recall_score

from bonexray.data import base_region
from bonexray.errors import ConfigError
from bonexray.io import jsonfile
from bonexray.io.modelfiles import save_keras
from bonexray.io.shards import ShardReader

KNOWN_SOURCES = ("original", "synonym")
CANDIDATE_SOURCES = ("missing", "ambiguous", "unknown")
SPLIT_COLUMNS = ("id", "split", "region_hint", "region_source", "fracture", "hardware")
MODEL_FILE = "base_model.keras"
EXCLUDED_FILE = "excluded.csv"


@dataclass
class RelabelResult:
    # id, split, region, label_source, region_confidence, fracture, hardware, excluded_reason
    labels: pd.DataFrame
    excluded: pd.DataFrame  # id, split, region_source, reason, best_guess, confidence
    metrics: dict[str, Any]
    model: keras.Model
    train_ids: list[str]  # the images the base model was fitted on


def check_split_table(split: pd.DataFrame, regions: Sequence[str], name: str) -> None:
    """Fail early, naming the file, when split.parquet does not fit the taxonomy."""
    missing = set(SPLIT_COLUMNS) - set(split.columns)
    if missing:
        raise ConfigError(f"{name}: missing columns {sorted(missing)}")
    sources = set(split["region_source"].dropna())
    bad_sources = sources - set(KNOWN_SOURCES) - set(CANDIDATE_SOURCES)
    if bad_sources or split["region_source"].isna().any():
        raise ConfigError(
            f"{name}: unexpected region_source values {sorted(bad_sources) or ['NA']}"
        )
    known = split["region_source"].isin(KNOWN_SOURCES)
    hints = split.loc[known, "region_hint"]
    bad = sorted(set(hints.dropna()) - set(regions)) + (["NA"] if hints.isna().any() else [])
    if bad:
        raise ConfigError(
            f"{name}: region_hint {bad} on rows with a known region is not one of the "
            f"taxonomy regions {list(regions)} (was split run with another taxonomy?)"
        )


def low_confidence_reason(confidence: float, threshold: float, guess: str) -> str:
    # Rounded down so that 0.799 never reads as "0.80 < 0.80".
    shown = math.floor(confidence * 100) / 100
    return f"low confidence ({shown:.2f} < {threshold:.2f}) for {guess}"


def decide(
    proba: np.ndarray, regions: Sequence[str], threshold: float
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(best guess per row, its confidence = max softmax probability, accepted?)."""
    if proba.ndim != 2 or proba.shape[1] != len(regions):
        raise ValueError(f"probabilities of shape {proba.shape} for {len(regions)} regions")
    guesses = [regions[i] for i in proba.argmax(axis=1)]
    confidence = proba.max(axis=1).astype(np.float64)
    return guesses, confidence, confidence >= threshold


def relabel(
    split: pd.DataFrame,
    images: ShardReader,
    regions: Sequence[str],
    cfg: base_region.BaseModelConfig,
    threshold: float,
    seed: int,
) -> RelabelResult:
    """Label every image of ``split``; see the module docstring for the rules."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"relabel.confidence_threshold must be in (0, 1], got {threshold}")
    regions = list(regions)
    images.require(split["id"], "the split table's ids")
    known = split["region_source"].isin(KNOWN_SOURCES).to_numpy()
    candidate = ~known
    fit_rows = split[known & (split["split"] == "train").to_numpy()]
    held_out = split[known & (split["split"] == "val").to_numpy()]
    if fit_rows["region_hint"].nunique() < 2:
        raise ConfigError(
            f"relabel: the train split has known regions {sorted(set(fit_rows['region_hint']))} "
            f"({len(fit_rows)} images); the base model needs at least 2 regions to learn from"
        )

    train_ids = fit_rows["id"].tolist()
    model = base_region.train(
        images.take_ids(train_ids),
        fit_rows["region_hint"].map(regions.index).to_numpy(dtype=np.int64),
        len(regions),
        cfg,
        seed,
    )
    metrics = held_out_metrics(model, images, held_out, regions, cfg.batch_size)
    metrics["n_train"] = len(fit_rows)

    cand = split[candidate]
    proba = base_region.predict(model, images.take_ids(cand["id"]), cfg.batch_size)
    best, confidence, accepted = decide(proba, regions, threshold)
    guesses = np.asarray(best, dtype=object)
    reasons = np.array(
        [low_confidence_reason(c, threshold, g) for c, g in zip(confidence, best, strict=True)],
        dtype=object,
    )

    labels = pd.DataFrame(
        {
            "id": split["id"].to_numpy(),
            "split": split["split"].to_numpy(),
            "region": pd.array(split["region_hint"].where(known), dtype="string"),
            "label_source": split["region_source"].where(known).to_numpy(dtype=object),
            "region_confidence": np.where(known, 1.0, np.nan),
            "fracture": pd.array(split["fracture"], dtype="Int8"),
            "hardware": pd.array(split["hardware"], dtype="Int8"),
            "excluded_reason": pd.array([pd.NA] * len(split), dtype="string"),
        }
    )
    positions = np.flatnonzero(candidate)
    labels.loc[positions, "region_confidence"] = confidence
    labels.loc[positions[accepted], "region"] = guesses[accepted]
    labels.loc[positions[accepted], "label_source"] = "model"
    labels.loc[positions[~accepted], "label_source"] = "excluded"
    labels.loc[positions[~accepted], "excluded_reason"] = reasons[~accepted]
    labels["label_source"] = labels["label_source"].astype("string")

    excluded = pd.DataFrame(
        {
            "id": cand["id"].to_numpy()[~accepted],
            "split": cand["split"].to_numpy()[~accepted],
            "region_source": cand["region_source"].to_numpy()[~accepted],
            "reason": reasons[~accepted],
            "best_guess": guesses[~accepted],
            "confidence": confidence[~accepted],
        }
    )
    metrics |= {
        "confidence_threshold": threshold,
        "n_candidates": int(candidate.sum()),
        "n_accepted": int(accepted.sum()),
        "n_rejected": int((~accepted).sum()),
    }
    for region in regions:
        for source in ("original", "synonym", "model"):
            hit = (labels["region"] == region) & (labels["label_source"] == source)
            metrics[f"n_{region}_{source}"] = int(hit.sum())
    return RelabelResult(labels, excluded, metrics, model, train_ids)


def held_out_metrics(
    model: keras.Model,
    images: ShardReader,
    held_out: pd.DataFrame,
    regions: Sequence[str],
    batch_size: int,
) -> dict[str, Any]:
    """Accuracy and per-region recall on val images with a known region (None when absent)."""
    metrics: dict[str, Any] = {"n_val": len(held_out), "val_accuracy": None}
    metrics |= {f"val_recall_{r}": None for r in regions}
    if held_out.empty:
        return metrics
    truth = held_out["region_hint"].map(regions.index).to_numpy(dtype=np.int64)
    predicted = base_region.predict(model, images.take_ids(held_out["id"]), batch_size).argmax(1)
    metrics["val_accuracy"] = float(np.mean(predicted == truth))
    present = sorted(set(truth))
    recalls = recall_score(truth, predicted, labels=present, average=None, zero_division=0)
    for i, recall in zip(present, recalls, strict=True):
        metrics[f"val_recall_{regions[i]}"] = float(recall)
    return metrics


def write_outputs(
    result: RelabelResult, labels_path: str | Path, model_dir: str | Path, metrics_path: str | Path
) -> None:
    labels_path, model_dir, metrics_path = Path(labels_path), Path(model_dir), Path(metrics_path)
    for directory in (labels_path.parent, model_dir, metrics_path.parent):
        directory.mkdir(parents=True, exist_ok=True)
    result.labels.to_parquet(labels_path, index=False)
    save_keras(result.model, model_dir / MODEL_FILE)
    result.excluded.to_csv(model_dir / EXCLUDED_FILE, index=False, float_format="%.6f")
    jsonfile.write(metrics_path, result.metrics, sort_keys=True)
