"""The fit loop shared by the Keras models: sample weights, the input pipeline, fit, predict.

Unknown fracture labels never drop a row: they get sample weight 0 on the fracture head,
so they still train the region head. `make_dataset` is the one place that builds the input
pipeline (tf.data on TensorFlow, a keras.utils.PyDataset on another Keras backend, the same
batches either way); it streams each batch's features from the shards (models/examples.py). With
train.augment.enabled the train split's batches are made from its working images instead
(features/augment.py: augmented, then described and standardised as the features stage
does), a new draw every epoch; val, test and predictions always read the precomputed bands.
`train_keras` runs one model end to end for the train@<name> stage: in this process, or
with its search spread over a chief and worker processes (distributed.py), each of which
runs worker.py; both build their search with `prepare`.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from bonexray.data.taxonomy import Taxonomy
from bonexray.errors import ConfigError
from bonexray.features.augment import AugmentConfig, AugmentedBands
from bonexray.io import jsonfile, predictions
from bonexray.io.modelfiles import save_keras
from bonexray.io.params import ParamsError, section
from bonexray.io.shards import ShardReader
from bonexray.models.examples import Examples, load_examples
from bonexray.models.interface import HEADS, TrainOutputs
from bonexray.models.keras import devices, distributed
from bonexray.models.keras.files import MODEL_FILE, predict_heads

if TYPE_CHECKING:
    import keras_tuner as kt

    from bonexray.models.keras.network import BoneHyperModel

CLASS_WEIGHT_MODES = ("balanced", "none")
JAX_DETERMINISM = "--xla_gpu_deterministic_ops=true"  # train.deterministic on JAX


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
            raise ParamsError(
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
    classes = np.unique(labels)
    weights = compute_class_weight(
        "balanced" if mode == "balanced" else None, classes=classes, y=labels
    )
    scale = n_rows / len(labels)
    return {int(c): float(w * scale) for c, w in zip(classes, weights, strict=True)}


def targets(examples: Examples) -> dict[str, np.ndarray]:
    """Targets by head name; unknown labels get a placeholder that their weight 0 hides."""
    return {
        "region": np.where(examples.region >= 0, examples.region, 0).astype(np.int32),
        "fracture": np.nan_to_num(examples.fracture, nan=0.0).reshape(-1, 1).astype(np.float32),
    }


def epoch_order(n_rows: int, seed: int, epoch: int) -> np.ndarray:
    """The rows of one shuffled epoch: a permutation drawn from (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch]).permutation(n_rows)


@dataclass(frozen=True)
class BatchPlan:
    """Which rows batch ``index`` holds, and their features, targets and weights: the one
    numpy definition of a batch that both input paths (tf.data, PyDataset) serve.

    Shuffled or augmented plans are endless: batch ``index`` is step ``index % steps`` of
    epoch ``index // steps``, so the order and the draws depend on the epoch and not on
    Keras's iterator handling. Otherwise one pass in row order.
    """

    examples: Examples
    weights: HeadWeights | None
    batch_size: int
    shuffle_seed: int | None = None
    augmented: Callable[[np.ndarray, int], np.ndarray] | None = None

    @property
    def steps(self) -> int:
        return steps_per_epoch(len(self.examples), self.batch_size)

    @property
    def endless(self) -> bool:
        return self.shuffle_seed is not None or self.augmented is not None

    def rows(self, index: int) -> tuple[int, np.ndarray]:
        """(epoch, row numbers) of batch ``index``."""
        epoch, step = divmod(int(index), self.steps)
        order = np.arange(len(self.examples))
        if self.shuffle_seed is not None:
            order = epoch_order(len(self.examples), self.shuffle_seed, epoch)
        return epoch, order[step * self.batch_size : (step + 1) * self.batch_size]

    def batch(self, index: int) -> tuple:
        """(features, targets, per-head weights), or (features,) when weights is None."""
        epoch, rows = self.rows(index)
        if self.augmented is None:
            features = self.examples.rows.read(rows).astype(np.float32, copy=False)
        else:
            features = np.asarray(self.augmented(rows, epoch), np.float32)
        if self.weights is None:
            return (features,)
        target, weight = self._labels
        return (
            features,
            {head: values[rows] for head, values in target.items()},
            {head: values[rows] for head, values in weight.items()},
        )

    @cached_property
    def _labels(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Every row's targets and weights (bytes a row), computed once."""
        return targets(self.examples), self.weights.for_rows(self.examples)


def make_dataset(
    examples: Examples,
    weights: HeadWeights | None,
    batch_size: int,
    shuffle_seed: int | None = None,
    augmented: Callable[[np.ndarray, int], np.ndarray] | None = None,
):
    """(features, targets, per-head sample weights) batches, or features alone when
    ``weights`` is None (to predict); shuffled when given a seed (a new order each epoch,
    `epoch_order`).

    A tf.data.Dataset on the TensorFlow backend, a keras.utils.PyDataset on any other; both
    serve `BatchPlan`'s batches, the same rows in the same order. Each batch's features are
    read from the shards when it is due, the next batch prepared while one trains.

    With ``augmented`` (rows, epoch) -> features (an AugmentedBands), the features come from
    it instead. Shuffled or augmented, the dataset is endless: fit it with steps_per_epoch
    (`steps_per_epoch`). Augmented batches are made in parallel; each image's draws depend
    only on (seed, epoch, image), so the batches do not depend on the parallelism.
    """
    import keras

    plan = BatchPlan(examples, weights, batch_size, shuffle_seed, augmented)
    if keras.backend.backend() == "tensorflow":
        return _tf_dataset(plan)
    return _py_dataset(plan)


def _tf_dataset(plan: BatchPlan):
    import tensorflow as tf

    shape = (None, *plan.examples.rows.item_shape)
    labelled = plan.weights is not None
    # Flattened for tf.numpy_function: features, region, fracture targets, their weights.
    dtypes = [tf.float32, *([tf.int32, tf.float32, tf.float32, tf.float32] if labelled else [])]

    def flat(index: np.ndarray) -> list[np.ndarray]:
        batch = plan.batch(int(index))
        if not labelled:
            return [batch[0]]
        features, target, weight = batch
        return [features, target["region"], target["fracture"], *(weight[h] for h in HEADS)]

    def structured(index):
        features, *rest = tf.numpy_function(flat, [index], dtypes, stateful=False)
        features.set_shape(shape)
        if not labelled:
            return features
        region, fracture, *weight = rest
        region.set_shape((None,))
        fracture.set_shape((None, 1))
        for w in weight:
            w.set_shape((None,))
        weights = dict(zip(HEADS, weight, strict=True))
        return features, {"region": region, "fracture": fracture}, weights

    indices = tf.data.Dataset.counter() if plan.endless else tf.data.Dataset.range(plan.steps)
    if plan.augmented is None:
        return indices.map(structured).prefetch(tf.data.AUTOTUNE)
    batches = indices.map(structured, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


def _py_dataset(plan: BatchPlan):
    import keras

    class PlanDataset(keras.utils.PyDataset):
        """`plan`'s batches for a backend without tf.data (JAX, PyTorch)."""

        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)

        @property
        def num_batches(self) -> int | None:
            return None if plan.endless else plan.steps

        def __getitem__(self, index: int) -> tuple:
            return plan.batch(index)

    return PlanDataset()


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Batches in one epoch of ``n_rows`` (the last one partial), as batch() makes them."""
    return math.ceil(n_rows / batch_size)


def configure_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy, Keras (and TensorFlow where it is the backend); make the
    backend's ops deterministic when asked.

    On JAX that is XLA's flag, read when JAX starts its runtime (the first computation):
    set here before any, it holds for this process; JAX on the CPU is deterministic anyway.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if not deterministic:
        return
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif keras.backend.backend() == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if JAX_DETERMINISM not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {JAX_DETERMINISM}".strip()


def fit(
    model,
    train_data,
    val_data,
    epochs: int,
    callbacks: Sequence = (),
    steps_per_epoch: int | None = None,
):
    """Fit with the given callbacks (``fit_callbacks``: early stopping restores the best
    epoch's weights). ``steps_per_epoch``: for an endless (shuffled) train dataset; None
    for a finite one."""
    return model.fit(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        callbacks=list(callbacks),
        shuffle=False,  # the dataset shuffles itself, with the seed
        steps_per_epoch=steps_per_epoch,
        verbose=2,
    )


def predict_frame(model, examples: Examples, regions: Sequence[str], batch_size: int):
    """The predictions table (predictions.py format) for ``examples``."""
    # Streamed from the shards, as in training: the features never sit in memory at once.
    region, fracture = predict_heads(model, make_dataset(examples, None, batch_size))
    return predictions.to_frame(examples.ids, examples.split, region, fracture, regions)


def history_summary(history: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Best epoch (by val_loss, as early stopping chose it) and its validation metrics."""
    best = int(np.argmin(history["val_loss"]))
    summary: dict[str, Any] = {"best_epoch": best + 1, "epochs_run": len(history["val_loss"])}
    for key, values in sorted(history.items()):
        if key.startswith("val_"):
            summary[f"best_{key}"] = float(values[best])
    return summary


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

    @property
    def workers(self) -> int:
        """Processes training trials: 1 searches in the stage's own process."""
        if not self.search:
            return 1
        workers = self.search["workers"]
        if not isinstance(workers, int) or workers < 1:
            raise ParamsError(
                f"params.yaml models.{self.name}.search.workers: {workers!r}, expected an "
                "integer >= 1"
            )
        return workers

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
class KerasJob:
    """One Keras model's settings, data and hypermodel, as every process of its stage sees them."""

    config: KerasModelConfig
    train_params: Mapping[str, Any]
    seed: int
    regions: Sequence[str]
    examples: Examples
    train: Examples
    val: Examples
    weights: HeadWeights
    hypermodel: BoneHyperModel
    augmented: AugmentedBands | None  # None: train.augment.enabled is false

    @property
    def batch_size(self) -> int:
        return int(self.train_params["batch_size"])

    def callbacks(self, epochs: int, final: bool) -> list:
        """Early stopping and the learning-rate schedule; the final fit keeps the weights
        of its best epoch (a search trial's score is already its best epoch's)."""
        from bonexray.models.keras.schedules import fit_callbacks

        return fit_callbacks(self.train_params, epochs, restore_best_weights=final)

    def datasets(self, replicas: int = 1) -> tuple[Any, Any, int]:
        """Train (shuffled, endless; augmented when enabled) and val batches, and the train
        batches per epoch; train.batch_size is per replica. Val is never augmented."""
        batch = self.batch_size * replicas
        train = make_dataset(
            self.train, self.weights, batch, shuffle_seed=self.seed, augmented=self.augmented
        )
        steps = steps_per_epoch(len(self.train), batch)
        return train, make_dataset(self.val, self.weights, batch), steps

    def tuner(self, directory: Path, **kwargs: Any) -> kt.Tuner:
        from bonexray.models.keras.tuning import make_tuner

        where = f"models.{self.config.name}.search"
        search = self.config.search
        return make_tuner(self.hypermodel, search, directory, self.seed, where, **kwargs)


def prepare(
    name: str,
    params: Mapping[str, Any],
    labels_path: str | Path,
    bands_dir: str | Path,
    images_dir: str | Path | None = None,
) -> KerasJob:
    """Seed and configure this process, join labels to features, build the hypermodel.

    ``images_dir``: the working images (repair's shards) that train.augment reads; needed
    only when it is enabled."""
    from bonexray.models.keras.network import BoneHyperModel, FractureLoss, NetworkSpec

    config = KerasModelConfig.from_params(params, name)
    train_params = section(params, "train")
    seed = int(section(params, "seed"))
    regions = Taxonomy.from_params(params).regions
    augment = AugmentConfig.from_params(section(params, "train.augment"))
    configure_determinism(seed, bool(train_params["deterministic"]))

    examples = load_examples(labels_path, bands_dir, regions)
    train, val = examples.labelled("train"), examples.labelled("val")
    for split, rows in (("train", train), ("val", val)):
        if len(rows) == 0:
            raise ConfigError(f"{labels_path}: no labelled {split} rows to fit {name}")
    spec = NetworkSpec(
        tuple(examples.rows.item_shape),
        len(regions),
        config.rnn,
        train_params["loss_weights"],
        name=name,
        where=config.where,
        mixed_precision=bool(train_params["mixed_precision"]),
        fracture_loss=FractureLoss.from_params(train_params["fracture_loss"]),
    )
    hypermodel = BoneHyperModel(config.space, spec)
    augmented = None
    if augment.enabled:
        if images_dir is None:
            raise ConfigError(
                "params.yaml train.augment.enabled is true: the train stage needs the working "
                "images (--images artifacts/repair)"
            )
        images = ShardReader(images_dir)
        images.require(train.ids, "the train rows' ids")
        augmented = AugmentedBands(
            images.rows(train.ids), train.ids, examples.rows.reader.meta, augment, seed
        )
    return KerasJob(
        config=config,
        train_params=train_params,
        seed=seed,
        regions=regions,
        examples=examples,
        train=train,
        val=val,
        weights=HeadWeights.from_training(train, train_params["class_weight"]),
        hypermodel=hypermodel,
        augmented=augmented,
    )


def train_keras(
    name: str,
    params: Mapping[str, Any],
    labels_path: str | Path,
    bands_dir: str | Path,
    outputs: TrainOutputs,
    images_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Search (if the model has a space), train the best trial on, predict val+test; metrics."""
    import keras
    import keras_tuner as kt
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from bonexray.models.keras.tuning import best_hyperparameters, run_search, runners, trials_table

    if "KERASTUNER_ORACLE_IP" in os.environ:
        # Keras Tuner would make this process a client of that oracle, not a search.
        raise RuntimeError(
            "KERASTUNER_ORACLE_IP is set: unset it; the stage starts its own chief and "
            f"workers (params.yaml models.{name}.search.workers)"
        )
    job = prepare(name, params, labels_path, bands_dir, images_dir)
    config, train, val, seed = job.config, job.train, job.val, job.seed
    train_params = job.train_params

    shutil.rmtree(outputs.model_dir, ignore_errors=True)
    outputs.model_dir.mkdir(parents=True)
    tuner_dir = outputs.model_dir / "tuner"
    started = time.perf_counter()
    if config.search and config.workers > 1:
        # Before this process builds a tensor: TensorFlow's runtime, once started, holds
        # the GPUs' memory that the workers need.
        spec = {
            "model": name,
            "params": params,
            "labels": str(labels_path),
            "bands": str(bands_dir),
            "images": None if images_dir is None else str(images_dir),
        }
        distributed.run(
            tuner_dir,
            spec,
            config.workers,
            str(train_params["oracle_address"]),
            int(train_params["oracle_port"]),
            seed,
        )
    strategy = devices.strategy(train_params["distribution"])
    train_data, val_data, steps = job.datasets(strategy.num_replicas_in_sync)
    if config.search:
        if config.workers > 1:
            tuner = job.tuner(tuner_dir, overwrite=False, distribution_strategy=strategy)
            tuner.oracle.reload()  # the trials the chief recorded
            per_worker = pd.Series(runners(tuner_dir)).value_counts().sort_index()
            print(f"{name}: trials run per worker: {per_worker.to_dict()}")
        else:
            tuner = job.tuner(tuner_dir, distribution_strategy=strategy)
            epochs = int(config.search["epochs"])
            run_search(
                tuner, train_data, val_data, epochs, job.callbacks(epochs, final=False), steps
            )
        best_hp = best_hyperparameters(tuner)
        trials = trials_table(tuner)
        print(f"{name}: search took {time.perf_counter() - started:.1f} s")
    else:
        best_hp = kt.HyperParameters()

    # The final fit starts from the same RNG state whatever the search consumed.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    if config.search:
        # It continues from the best trial's best epoch rather than a fresh initialisation:
        # a refit from scratch can stall at chance where the trial did not (seen: cnn_nas,
        # no batchnorm, region accuracy at the majority's for all its epochs).
        model = tuner.get_best_models(1)[0]
    else:
        with strategy.scope():
            model = job.hypermodel.build(best_hp)
    # Curves of the final fit only: every trial logging into one DVCLive directory would
    # splice unrelated architectures into one series; the trials table covers the search.
    live = Live(dir=str(outputs.live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    fit_started = time.perf_counter()
    callbacks = [*job.callbacks(config.epochs, final=True), DVCLiveCallback(live=live)]
    history = fit(model, train_data, val_data, config.epochs, callbacks, steps)
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

    save_keras(model, outputs.model_dir / MODEL_FILE)
    jsonfile.write(outputs.model_dir / "best_hyperparameters.json", best_hp.values, sort_keys=True)
    trials.to_csv(outputs.model_dir / "trials.csv", index=False)
    outputs.trials.parent.mkdir(parents=True, exist_ok=True)
    trials.to_csv(outputs.trials, index=False)
    batch_size = job.batch_size * strategy.num_replicas_in_sync
    predictions.write(
        predict_frame(model, job.examples.to_predict(), job.regions, batch_size),
        outputs.predictions,
    )
    metrics = {
        **summary,
        "n_train": len(train),
        "n_val": len(val),
        "search_trials": int((trials["status"] == "COMPLETED").sum()) if config.search else 0,
        "best_hyperparameters": dict(best_hp.values),
    }
    jsonfile.write(outputs.metrics, metrics, sort_keys=True)
    return metrics
