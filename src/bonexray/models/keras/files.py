"""A trained Keras model: where it lives (artifacts/models/<name>/model.keras), how it is
read, and how it answers the TwoHeadModel interface (models/family.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bonexray.errors import ConfigError
from bonexray.io.params import section
from bonexray.models.interface import KERAS, Description, setting_text

MODEL_FILE = "model.keras"  # the final model, in the model directory


def keras_model_path(models_dir: str | Path, name: str) -> Path:
    """models_dir/<name>/model.keras, or FileNotFoundError naming it and its stage."""
    path = Path(models_dir) / name / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model (run the train@{name} stage)")
    return path


def load_keras_model(path: str | Path):
    """Load a .keras file for inference; ValueError naming the file when it cannot be.

    safe_mode refuses Lambda layers (their pickled code would run); the optimizer is not
    needed to predict, so the model is not compiled.
    """
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many kinds for a bad or foreign file
        raise ConfigError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None


def predict_heads(model, inputs, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(region probabilities (n, regions), fracture probabilities (n,)) of a two-headed model.

    ``inputs``: an array (cut into ``batch_size`` batches) or training.make_dataset's batches.
    """
    proba = model.predict(inputs, batch_size=batch_size, verbose=0)
    return np.asarray(proba["region"]), np.asarray(proba["fracture"]).reshape(-1)


class KerasModel:
    """A loaded keras.Model behind the TwoHeadModel interface."""

    family = KERAS

    def __init__(self, network: Any) -> None:
        self.network = network
        self.input_shape = tuple(network.input_shape[1:])

    @classmethod
    def load(cls, model_dir: str | Path) -> KerasModel:
        path = Path(model_dir) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found")
        return cls(load_keras_model(path))

    def predict_heads(
        self, inputs: np.ndarray, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return predict_heads(self.network, inputs, batch_size)


def describe(
    name: str,
    params: Mapping[str, Any],
    trained: Mapping[str, Any],
    bands_meta: Mapping[str, Any] | None,
) -> Description:
    """The model card's Model section, from models.<name> and train@<name>'s metrics."""
    cfg = section(params, f"models.{name}")
    hp = trained["best_hyperparameters"]
    if cfg.get("rnn"):
        scan = "rows and columns" if hp.get("scan") == "rows_columns" else "rows"
        body = f"conv blocks, then a bidirectional LSTM reading the last feature map's {scan}"
    else:
        body = f"conv blocks, then global {hp.get('pooling', '?')} pooling"
    if "search" in cfg:
        search = cfg["search"]
        how = (
            f"architecture searched with Keras Tuner ({search['tuner']}, "
            f"{trained.get('search_trials', '?')} completed trials; objective: weighted "
            "validation loss of both heads)"
        )
    else:
        how = "fixed hyperparameters, no search"
    inputs = ""
    if bands_meta:
        shape = "x".join(str(s) for s in bands_meta["item_shape"])
        inputs = (
            f" Input: {shape} wavelet bands ({bands_meta['wavelet']}, level "
            f"{bands_meta['level']}, {bands_meta['mode']}, "
            f"{bands_meta['grid']} grid; channels "
            f"{', '.join(bands_meta['channels'])}), standardised with train-split statistics."
        )
    summary = (
        f"Keras network: {body}; two heads, region (softmax) and fracture (sigmoid); {how}.{inputs}"
        " Saved as `model.keras` (load with `safe_mode=True`); `bonexray export` writes a "
        "SavedModel and a TFLite flatbuffer."
    )
    rows = [[key, setting_text(value)] for key, value in sorted(hp.items())]
    note = (
        f"Final fit: {trained['n_train']} training and {trained['n_val']} validation images, "
        f"best epoch {trained['best_epoch']} of {trained['epochs_run']} (early stopping on the "
        "validation loss)."
    )
    return Description(summary, ["hyperparameter", "value"], rows, note)
