"""Where a trained Keras model lives (artifacts/models/<name>/model.keras) and how it is read."""

from __future__ import annotations

from pathlib import Path

KERAS_FILE = "model.keras"  # written by training.train_keras
FOREST = "rf"  # the random forest: skops files (forest.load_forests), no Keras model


def keras_model_path(models_dir: str | Path, name: str) -> Path:
    """models_dir/<name>/model.keras; a clear error for the forest or a missing model."""
    if name == FOREST:
        raise ValueError(
            f"{name}: the random forest is not a Keras model (load it with "
            "bonexray.forest.load_forests)"
        )
    path = Path(models_dir) / name / KERAS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model (run the train@{name} stage)")
    return path


def load_keras_model(path: str | Path):
    """Load a .keras file with safe_mode on: a Lambda layer's pickled code is refused."""
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot load the Keras model: {exc}") from exc
