"""One process of tests/test_backends.py: train, predict, load and explain on the Keras
backend that KERAS_BACKEND names (fixed when keras is imported, hence a process of its own).

    python tests/backend_job.py SAMPLE_DIR OUT_DIR [FOREIGN_MODEL]

Writes under OUT_DIR: train_keras's outputs for the searched model `nas` (`SEARCHED`),
replicas.txt (its strategy's replicas), batches.npz (the train and val batches of its input
pipeline), mixed.npz (`mixed_precision_step`), and, with FOREIGN_MODEL (a
.keras file saved under another backend), foreign.npz: its predictions and Grad-CAM maps on
every predicted row here. The test process calls `run` directly on its own backend.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from tiny_sample import REGIONS, TINY_CONV, TINY_RNN, params

from bonexray.explain import gradcam
from bonexray.models.examples import load_examples
from bonexray.models.interface import TrainOutputs
from bonexray.models.keras import devices
from bonexray.models.keras.files import load_keras_model, predict_heads
from bonexray.models.keras.network import build_network
from bonexray.models.keras.training import prepare, steps_per_epoch, train_keras

NAME = "nas"
SEARCHED = {
    "rnn": True,
    "search": {
        "tuner": "random",
        "max_trials": 2,
        "epochs": 1,
        "executions_per_trial": 1,
        "workers": 1,
    },
    "final_epochs": 1,
    "space": {**TINY_RNN, "filters": {"choice": [4, 8]}},
}
EPOCHS_SEEN = 2  # epochs of train batches written to batches.npz


def outputs(out: Path) -> TrainOutputs:
    return TrainOutputs(
        model_dir=out / "models" / NAME,
        predictions=out / "predictions.parquet",
        metrics=out / "metrics.json",
        live_dir=out / "live",
        trials=out / "trials.csv",
    )


def job_params(distribution: str = "auto") -> dict:
    cfg = params(**{NAME: SEARCHED})
    cfg["train"]["distribution"] = distribution
    return cfg


def explain_both_heads(model, bands: np.ndarray) -> np.ndarray:
    """(2, N, G, G): the fracture maps, then the region maps (each image's predicted region)."""
    return np.stack([gradcam.explain(model, bands, head) for head in ("fracture", "region")])


def run(sample: Path, out: Path, distribution: str, foreign: Path | None = None) -> None:
    cfg = job_params(distribution)
    train_keras(NAME, cfg, sample / "labels.parquet", sample / "bands", outputs(out))

    job = prepare(NAME, cfg, sample / "labels.parquet", sample / "bands")
    replicas = devices.strategy(distribution).num_replicas_in_sync
    (out / "replicas.txt").write_text(str(replicas))
    train_data, val_data, steps = job.datasets()
    seen = _first_batches(train_data, EPOCHS_SEEN * steps)
    val = _first_batches(val_data, steps_per_epoch(len(job.val), job.batch_size))
    np.savez(out / "batches.npz", **_flatten("train", seen), **_flatten("val", val))

    np.savez(out / "mixed.npz", **mixed_precision_step(job))
    if foreign is not None:
        examples = load_examples(sample / "labels.parquet", sample / "bands", REGIONS)
        bands = examples.to_predict().features
        model = load_keras_model(foreign)
        region, fracture = predict_heads(model, bands, batch_size=12)
        maps = explain_both_heads(model, bands)
        np.savez(out / "foreign.npz", region=region, fracture=fracture, maps=maps)


def mixed_precision_step(job) -> dict[str, np.ndarray]:
    """A mixed-precision TINY_CONV trained a few steps: its conv and head compute dtypes,
    whether its optimizer scales the loss, and the losses."""
    import keras

    spec = replace(job.hypermodel.spec, rnn=False, mixed_precision=True)
    model = build_network(TINY_CONV, spec)
    train_data, _, _ = job.datasets()
    first = _first_batches(train_data, 1)[0]
    losses = [model.train_on_batch(*first, return_dict=True)["loss"] for _ in range(4)]
    return {
        "dtypes": np.array(
            [model.get_layer(name).compute_dtype for name in ("conv1", "region", "fracture")]
        ),
        "scaled": np.array(isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)),
        "losses": np.array(losses, np.float64),
    }


def _first_batches(dataset, count: int) -> list[tuple]:
    """The first ``count`` batches of make_dataset's PyDataset or tf.data.Dataset."""
    import keras

    if isinstance(dataset, keras.utils.PyDataset):
        return [dataset[i] for i in range(count)]
    return list(dataset.take(count).as_numpy_iterator())


def _flatten(split: str, batches: list) -> dict[str, np.ndarray]:
    """Batches of (features, targets, weights) as arrays named <split>_<part>[_<head>]."""
    flat: dict[str, list] = {}
    for features, target, weight in batches:
        flat.setdefault(f"{split}_features", []).append(np.asarray(features))
        for part, values in (("target", target), ("weight", weight)):
            for head, value in values.items():
                flat.setdefault(f"{split}_{part}_{head}", []).append(np.asarray(value))
    flat[f"{split}_sizes"] = [np.array([len(f) for f in flat[f"{split}_features"]])]
    return {key: np.concatenate(parts) for key, parts in flat.items()}


if __name__ == "__main__":
    sample_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    run(sample_dir, out_dir, "mirrored", Path(sys.argv[3]) if len(sys.argv) > 3 else None)
