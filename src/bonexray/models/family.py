"""Load or describe a trained model by its family: the one place that knows the families."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bonexray.models import forest
from bonexray.models.interface import (
    ENSEMBLE,
    FAMILIES,
    FOREST,
    Description,
    TwoHeadModel,
    family_of,
)
from bonexray.models.keras import files


def load(family: str, directory: str | Path, n_regions: int) -> TwoHeadModel:
    """The model saved in ``directory`` (a training stage's output) by family name.

    FileNotFoundError names the missing file; ValueError a file that cannot be loaded.
    """
    if FAMILIES[family] is ENSEMBLE:
        raise ValueError(f"{directory}: the ensemble has no model files; load its members")
    if FAMILIES[family] is FOREST:
        return forest.ForestModel.load(directory, n_regions)
    return files.KerasModel.load(directory)


def describe(
    model: str,
    params: Mapping[str, Any],
    trained: Mapping[str, Any],
    bands_meta: Mapping[str, Any] | None,
) -> Description:
    """How trained ``model`` was built and trained, from params.yaml and its training
    metrics (the ensemble's card describes it from its scores: reporting/model_card.py)."""
    if family_of(model) is FOREST:
        return forest.describe(trained)
    return files.describe(model, params, trained, bands_meta)
