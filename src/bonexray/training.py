"""The fit loop shared by the Keras models: sample weights, tf.data, fit, predict.

Unknown fracture labels never drop a row: they get sample weight 0 on the fracture head,
so they still train the region head. `make_dataset` is the one place that builds a tf.data
pipeline (from in-memory arrays for now; see models/examples.py).
`train_keras` runs one model end to end for the train@<name> stage.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bonexray import predictions
from bonexray.models.examples import Examples, load_examples
from bonexray.params import ParamsError, section
from bonexray.taxonomy import Taxonomy

CLASS_WEIGHT_MODES = ("balanced", "none")
MODEL_FILE = "model.keras"  # the final model, in the model directory


@dataclass(frozen=True)
class HeadWeights:
    """Per-class sample weights for each head, computed once from the training rows."""

    region: Mapping[int, float]
    fracture: Mapping[int, float]

    @classmethod
    def from_training(cls, train: Examples, mode: str) -> HeadWeights:
        """Class weights: "balanced" is sklearn's inverse class frequency; "none" is uniform.

        Each head's weights are scaled to average 1 over all training rows, so the share
        of unknown fracture labels (weight 0) does not shrink that head's loss relative to
        train.loss_weights.
        """
        if mode not in CLASS_WEIGHT_MODES:
            raise ValueError(
                f"params.yaml train.class_weight: {mode!r} is not one of {CLASS_WEIGHT_MODES}"
            )
        known_fracture = train.fracture[~np.isnan(train.fracture)].astype(np.int64)
        return cls(
            region=_class_weights(train.region[train.region >= 0], len(train), mode),
            fracture=_class_weights(known_fracture, len(train), mode),
        )

    def for_rows(self, examples: Examples) -> dict[str, np.ndarray]:
        region = np.array([self.region.get(int(c), 1.0) for c in examples.region], np.float32)
        region[examples.region < 0] = 0.0
        known = ~np.isnan(examples.fracture)
        fracture = np.zeros(len(examples), np.float32)
        fracture[known] = [self.fracture.get(int(c), 1.0) for c in examples.fracture[known]]
        return {"region": region, "fracture": fracture}


def _class_weights(labels: np.ndarray, n_rows: int, mode: str) -> dict[int, float]:
    if len(labels) == 0:
        return {}
    classes, counts = np.unique(labels, return_counts=True)
    balanced = mode == "balanced"
    weights = len(labels) / (len(classes) * counts) if balanced else np.ones(len(classes))
    scale = n_rows / len(labels)
    return {int(c): float(w * scale) for c, w in zip(classes, weights, strict=True)}


def targets(examples: Examples) -> dict[str, np.ndarray]:
    """Targets by head name; unknown labels get a placeholder that their weight 0 hides."""
    return {
        "region": np.where(examples.region >= 0, examples.region, 0).astype(np.int32),
        "fracture": np.nan_to_num(examples.fracture, nan=0.0).reshape(-1, 1).astype(np.float32),
    }


def make_dataset(
    examples: Examples,
    weights: HeadWeights,
    batch_size: int,
    shuffle_seed: int | None = None,
):
    """(features, targets, per-head sample weights) batches; shuffled when given a seed."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(
        (examples.features, targets(examples), weights.for_rows(examples))
    )
    if shuffle_seed is not None:
        data = data.shuffle(len(examples), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def configure_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make TF ops deterministic when asked."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def fit(model, train_data, val_data, epochs: int, patience: int, callbacks: Sequence = ()):
    """Fit with early stopping on val_loss, keeping the weights of the best epoch."""
    import keras

    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    return model.fit(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        callbacks=[stop, *callbacks],
        shuffle=False,  # the dataset shuffles itself, with the seed
        verbose=2,
    )


def predict_heads(model, features: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(region probabilities (n, regions), fracture probabilities (n,)) of a two-headed model."""
    proba = model.predict(features, batch_size=batch_size, verbose=0)
    return np.asarray(proba["region"]), np.asarray(proba["fracture"]).reshape(-1)


def predict_frame(model, examples: Examples, regions: Sequence[str], batch_size: int):
    """The predictions table (predictions.py format) for ``examples``."""
    region, fracture = predict_heads(model, examples.features, batch_size)
    return predictions.to_frame(examples.ids, examples.split, region, fracture, regions)


def history_summary(history: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Best epoch (by val_loss, as early stopping chose it) and its validation metrics."""
    best = int(np.argmin(history["val_loss"]))
    summary: dict[str, Any] = {"best_epoch": best + 1, "epochs_run": len(history["val_loss"])}
    for key, values in sorted(history.items()):
        if key.startswith("val_"):
            summary[f"best_{key}"] = float(values[best])
    return summary


def write_json(data: Mapping[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class KerasModelConfig:
    """models.<name> of params.yaml: a searched space, or fixed values."""

    name: str
    rnn: bool
    space: Mapping[str, Any]  # searched space, or the fixed values (scalars)
    search: Mapping[str, Any] | None  # None: no search (models.cnn)
    epochs: int  # epochs of the final fit

    @property
    def where(self) -> str:
        return f"models.{self.name}.{'space' if self.search else 'fixed'}"

    @classmethod
    def from_params(cls, params: Mapping[str, Any], name: str) -> KerasModelConfig:
        cfg = section(params, f"models.{name}")
        if "search" in cfg:
            keys = ("rnn", "search", "space", "final_epochs")
        else:
            keys = ("rnn", "fixed", "epochs")
        missing = [k for k in keys if k not in cfg]
        if missing:
            raise ParamsError(f"params.yaml models.{name}: missing {missing}")
        searched = "search" in cfg
        return cls(
            name=name,
            rnn=bool(cfg["rnn"]),
            space=cfg["space"] if searched else cfg["fixed"],
            search=cfg["search"] if searched else None,
            epochs=int(cfg["final_epochs"] if searched else cfg["epochs"]),
        )


@dataclass(frozen=True)
class KerasOutputs:
    model_dir: Path  # model.keras, best_hyperparameters.json, trials.csv, tuner/
    predictions: Path
    metrics: Path
    live_dir: Path  # DVCLive curves of the final fit
    trials: Path


def train_keras(
    name: str,
    params: Mapping[str, Any],
    labels_path: str | Path,
    bands_dir: str | Path,
    outputs: KerasOutputs,
) -> dict[str, Any]:
    """Search (if the model has a space), refit the best, predict val+test; return metrics."""
    import keras
    import keras_tuner as kt
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from bonexray.models.network import BoneHyperModel
    from bonexray.tuning import make_tuner, run_search, trials_table

    config = KerasModelConfig.from_params(params, name)
    train_params = section(params, "train")
    seed = int(section(params, "seed"))
    regions = Taxonomy.from_params(params).regions
    configure_determinism(seed, bool(train_params["deterministic"]))

    examples = load_examples(labels_path, bands_dir, regions)
    train, val = examples.labelled("train"), examples.labelled("val")
    for split, rows in (("train", train), ("val", val)):
        if len(rows) == 0:
            raise ValueError(f"{labels_path}: no labelled {split} rows to fit {name}")
    weights = HeadWeights.from_training(train, train_params["class_weight"])
    batch_size = int(train_params["batch_size"])
    patience = int(train_params["early_stopping_patience"])
    train_data = make_dataset(train, weights, batch_size, shuffle_seed=seed)
    val_data = make_dataset(val, weights, batch_size)
    hypermodel = BoneHyperModel(
        config.space,
        examples.features.shape[1:],
        len(regions),
        config.rnn,
        train_params["loss_weights"],
        name=name,
        where=config.where,
    )

    shutil.rmtree(outputs.model_dir, ignore_errors=True)
    outputs.model_dir.mkdir(parents=True)
    started = time.perf_counter()
    if config.search:
        tuner = make_tuner(
            hypermodel, config.search, outputs.model_dir / "tuner", seed, f"models.{name}.search"
        )
        best_hp = run_search(tuner, train_data, val_data, int(config.search["epochs"]), patience)
        trials = trials_table(tuner)
        print(f"{name}: search took {time.perf_counter() - started:.1f} s")
    else:
        best_hp = kt.HyperParameters()

    # The final fit starts from the same RNG state whatever the search consumed.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = hypermodel.build(best_hp)
    # Curves of the final fit only: every trial logging into one DVCLive directory would
    # splice unrelated architectures into one series; the trials table covers the search.
    live = Live(dir=str(outputs.live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    fit_started = time.perf_counter()
    callbacks = [DVCLiveCallback(live=live)]
    history = fit(model, train_data, val_data, config.epochs, patience, callbacks)
    fit_seconds = time.perf_counter() - fit_started
    summary = history_summary(history.history)
    print(
        f"{name}: final fit {fit_seconds:.1f} s, "
        f"{len(train) * summary['epochs_run'] / fit_seconds:.1f} training images/s"
    )
    if not config.search:
        trials = pd.DataFrame(
            [
                {
                    "trial": "fixed",
                    "status": "COMPLETED",
                    "score": summary["best_val_loss"],
                    "best_step": summary["best_epoch"] - 1,
                    **best_hp.values,
                }
            ]
        )

    model.save(outputs.model_dir / MODEL_FILE)
    write_json(best_hp.values, outputs.model_dir / "best_hyperparameters.json")
    trials.to_csv(outputs.model_dir / "trials.csv", index=False)
    outputs.trials.parent.mkdir(parents=True, exist_ok=True)
    trials.to_csv(outputs.trials, index=False)
    predictions.write(
        predict_frame(model, examples.to_predict(), regions, batch_size), outputs.predictions
    )
    metrics = {
        **summary,
        "n_train": len(train),
        "n_val": len(val),
        "search_trials": int((trials["status"] == "COMPLETED").sum()) if config.search else 0,
        "best_hyperparameters": dict(best_hp.values),
    }
    write_json(metrics, outputs.metrics)
    return metrics
