"""What every trained model offers its consumers, whatever its family.

Evaluation, reporting, inference and the CLI never test a model's name or family: they ask
`family_of` for its `Family` (which feature shards feed it, whether Grad-CAM and export
apply), load it as a `TwoHeadModel` and describe it for a model card (family.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bonexray.io.params import ParamsError, section

HEADS = ("region", "fracture")  # every model's two outputs
FOREST_MODEL = "rf"  # the train_rf stage's model; every other trained model is a Keras one
ENSEMBLE_MODEL = "ensemble"  # evaluate's mean of the trained models (evaluation/ensemble.py)


@dataclass(frozen=True)
class Family:
    name: str  # the serving record's kind
    # What feeds it: the feature shards "bands" or "vectors", or (the ensemble) the
    # "working" images, from which each member computes its own features.
    features: str
    explainable: bool  # Grad-CAM explains it, and `bonexray export` writes it as a TF graph


KERAS = Family("keras", "bands", explainable=True)
FOREST = Family("forest", "vectors", explainable=False)
# Not trained: no model files, training metrics or feature map of its own.
ENSEMBLE = Family("ensemble", "working", explainable=False)
FAMILIES = {family.name: family for family in (KERAS, FOREST, ENSEMBLE)}


def model_names(params: Mapping[str, Any]) -> list[str]:
    """The trained models: the Keras models of params.yaml, then the random forest (the
    ensemble's members; evaluation.scoring.with_ensemble adds the ensemble)."""
    keras_models = list(section(params, "models"))
    if ENSEMBLE_MODEL in keras_models or FOREST_MODEL in keras_models:
        raise ParamsError(
            f"params.yaml models: {ENSEMBLE_MODEL!r} and {FOREST_MODEL!r} are reserved names "
            "(the ensemble and the random forest); rename that model"
        )
    return [*keras_models, FOREST_MODEL]


def family_of(model: str) -> Family:
    """The family of a model of params.yaml `models` (Keras), the forest or the ensemble."""
    return {FOREST_MODEL: FOREST, ENSEMBLE_MODEL: ENSEMBLE}.get(model, KERAS)


class TwoHeadModel(Protocol):
    """A trained model as its consumers call it."""

    family: Family
    input_shape: tuple[int, ...]  # of one input (bands or vector)
    network: Any  # the underlying keras.Model ({head: forest} for the forest)

    def predict_heads(
        self, inputs: np.ndarray, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(region probabilities (n, regions), fracture probabilities (n,))."""
        ...


@dataclass(frozen=True)
class TrainOutputs:
    """What a training stage writes (its dvc.yaml outs, passed as arguments)."""

    model_dir: Path  # the saved model, trials.csv (and a Keras search's tuner/)
    predictions: Path  # val and test predictions (io/predictions.py)
    metrics: Path
    trials: Path  # the search's trials table, for `dvc plots`
    live_dir: Path | None = None  # DVCLive curves of a Keras model's final fit


@dataclass(frozen=True)
class Description:
    """A model card's Model section: a paragraph, a table, an optional closing line."""

    summary: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    note: str = ""


def setting_text(value: Any) -> Any:
    """A hyperparameter as written: 4 significant digits (a learning rate of 0.00207)."""
    return f"{value:.4g}" if isinstance(value, float) else value
