"""Where a trained Keras model lives (artifacts/models/<name>/model.keras) and how it is read."""

from __future__ import annotations

from pathlib import Path

from bonexray.training import MODEL_FILE


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
        raise ValueError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None
