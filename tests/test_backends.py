"""The Keras models on two Keras backends: TensorFlow (this process) and JAX (a child
process, tests/backend_job.py, since the backend is fixed when keras is imported).

Both train the same searched model through train_keras (a Keras Tuner search, then the
final fit; on JAX over two host CPU devices, keras.distribution.DataParallel); each loads
the other's .keras file and predicts what the other predicted; Grad-CAM agrees across
backends; the PyDataset input path serves the tf.data path's batches; mixed precision
trains on both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from backend_job import EPOCHS_SEEN, NAME, explain_both_heads, job_params, outputs, run
from tiny_sample import GRID, REGIONS, write_sample

from bonexray.errors import ConfigError
from bonexray.inference import export
from bonexray.io import predictions
from bonexray.models.examples import load_examples
from bonexray.models.keras import devices
from bonexray.models.keras.files import load_keras_model, predict_heads
from bonexray.models.keras.training import epoch_order, prepare, steps_per_epoch

pytest.importorskip("jax")
JOB = Path(__file__).with_name("backend_job.py")
HOST_DEVICES = 2  # JAX's CPU split into this many devices, for keras.distribution


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train on TensorFlow here, then on JAX in a child that also loads the TF model."""
    assert keras.backend.backend() == "tensorflow"
    root = tmp_path_factory.mktemp("backends")
    sample = root / "sample"
    write_sample(sample)
    tf_out, jax_out = root / "tensorflow", root / "jax"
    run(sample, tf_out, "auto")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KERASTUNER_") and key != "XLA_FLAGS"
    }
    env.update(
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={HOST_DEVICES}",
    )
    done = subprocess.run(
        [sys.executable, str(JOB), str(sample), str(jax_out), str(model_file(tf_out))],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"sample": sample, "tensorflow": tf_out, "jax": jax_out, "log": done.stdout}


def model_file(out: Path) -> Path:
    return outputs(out).model_dir / "model.keras"


def predicted(out: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = predictions.read(outputs(out).predictions, REGIONS)
    return frame[predictions.region_columns(REGIONS)].to_numpy(), frame["p_fracture"].to_numpy()


def test_both_backends_train_and_predict_sane_values(runs):
    assert (runs["jax"] / "replicas.txt").read_text() == str(HOST_DEVICES)  # DataParallel
    assert (runs["tensorflow"] / "replicas.txt").read_text() == "1"
    shapes = []
    for backend in ("tensorflow", "jax"):
        region, fracture = predicted(runs[backend])
        assert np.isfinite(region).all() and np.isfinite(fracture).all()
        assert ((region >= 0) & (region <= 1)).all() and ((fracture >= 0) & (fracture <= 1)).all()
        np.testing.assert_allclose(region.sum(axis=1), 1.0, atol=1e-5)
        assert len(np.unique(fracture.round(6))) > 1  # not one constant answer
        shapes.append((region.shape, fracture.shape))
        assert (outputs(runs[backend]).model_dir / "trials.csv").is_file()
    assert shapes[0] == shapes[1]


def test_a_model_saved_under_one_backend_predicts_the_same_under_the_other(runs):
    examples = load_examples(runs["sample"] / "labels.parquet", runs["sample"] / "bands", REGIONS)
    bands = examples.to_predict().features
    # JAX's model, loaded here on TensorFlow.
    region, fracture = predict_heads(load_keras_model(model_file(runs["jax"])), bands, 12)
    jax_region, jax_fracture = predicted(runs["jax"])
    np.testing.assert_allclose(region, jax_region, atol=1e-4)
    np.testing.assert_allclose(fracture, jax_fracture, atol=1e-4)
    # TensorFlow's model, loaded by the JAX process.
    foreign = np.load(runs["jax"] / "foreign.npz")
    tf_region, tf_fracture = predicted(runs["tensorflow"])
    np.testing.assert_allclose(foreign["region"], tf_region, atol=1e-4)
    np.testing.assert_allclose(foreign["fracture"], tf_fracture, atol=1e-4)


def test_grad_cam_on_jax_matches_tensorflow(runs):
    examples = load_examples(runs["sample"] / "labels.parquet", runs["sample"] / "bands", REGIONS)
    bands = examples.to_predict().features
    on_jax = np.load(runs["jax"] / "foreign.npz")["maps"]
    assert on_jax.shape == (2, len(bands), GRID, GRID)
    assert on_jax.min() >= 0 and on_jax.max() <= 1 and on_jax.max() == 1
    on_tf = explain_both_heads(load_keras_model(model_file(runs["tensorflow"])), bands)
    np.testing.assert_allclose(on_jax, on_tf, atol=1e-3)


def test_the_py_dataset_serves_the_tf_data_batches(runs):
    on_tf = np.load(runs["tensorflow"] / "batches.npz")
    on_jax = np.load(runs["jax"] / "batches.npz")
    assert sorted(on_tf.files) == sorted(on_jax.files)
    for key in on_tf.files:
        if "features" in key:
            np.testing.assert_allclose(on_jax[key], on_tf[key], atol=1e-6)
        else:
            np.testing.assert_array_equal(on_jax[key], on_tf[key], err_msg=key)
    # The rows are epoch_order's: a new permutation each epoch, every train row once.
    job = prepare(NAME, job_params(), runs["sample"] / "labels.parquet", runs["sample"] / "bands")
    n = len(job.train)
    steps = steps_per_epoch(n, job.batch_size)
    assert on_tf["train_sizes"].tolist() == EPOCHS_SEEN * [12, 12, n - 24]
    assert steps == 3
    orders = [epoch_order(n, job.seed, epoch) for epoch in range(EPOCHS_SEEN)]
    assert orders[0].tolist() != orders[1].tolist()
    np.testing.assert_array_equal(
        on_tf["train_features"], job.train.features[np.concatenate(orders)]
    )
    np.testing.assert_array_equal(on_tf["val_features"], job.val.features)


def test_export_names_the_backend_it_needs(monkeypatch, tmp_path):
    monkeypatch.setattr("bonexray.models.keras.devices.backend", lambda: "jax")
    with pytest.raises(ConfigError, match="tensorflow Keras backend, not 'jax'"):
        export.export_model(tmp_path / "model.keras", tmp_path, tmp_path / "out")


def test_mixed_precision_trains_on_both_backends(runs):
    for backend in ("tensorflow", "jax"):
        mixed = np.load(runs[backend] / "mixed.npz")
        assert mixed["dtypes"].tolist() == ["float16", "float32", "float32"], backend
        assert bool(mixed["scaled"]) and np.isfinite(mixed["losses"]).all()


def test_jax_counts_gpus_without_starting_them_here():
    assert devices._gpu_count.__wrapped__("jax") == 0  # a child process counts (CPU only)
