"""Export a trained Keras model as a TF SavedModel and a TFLite flatbuffer, and check parity.

``bonexray export MODEL`` writes, under ``--out`` (default artifacts/export/<MODEL>):

- ``saved_model/``: Keras 3 ``model.export(format="tf_saved_model")``, any batch size, for
  TF Serving or ``tf.saved_model.load``; input "bands", outputs "region" and "fracture".
- ``model.tflite``: float32, TFLite builtin ops only, converted from a batch-1 SavedModel.
  Why batch 1: with a free batch dimension the BiLSTM's tensor list has no static element
  shape, so the converter can only keep it as a Flex (SELECT_TF_OPS) op, which the Python
  interpreter shipped with TensorFlow cannot run without the Flex delegate (on-device it
  needs the larger select-ops runtime). With a static batch the LSTM lowers to builtins;
  one image per call is how an on-device model is used anyway.
- ``parity.json``: the largest absolute difference of the region and fracture
  probabilities between the Keras model and each export, on the first N TEST images of the
  band shards (default 64), with the tolerances below. Above a tolerance the export fails.

The random forest is not exported: it has no TF graph (it is saved with skops). Export is
TensorFlow-only: under another Keras backend (KERAS_BACKEND) it raises a ConfigError.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bonexray.errors import ConfigError
from bonexray.io import jsonfile
from bonexray.io.shards import ShardReader
from bonexray.models.interface import HEADS

# Measured on the embedded sample's three models (README "Export"): the SavedModel runs the
# same TF kernels as Keras, 0 difference; TFLite's kernels round differently, < 1e-6.
# The tolerances leave an order of magnitude or more above what was measured.
TOLERANCES = {"saved_model": 1e-5, "tflite": 1e-4}
DEFAULT_INPUTS = 64
SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "model.tflite"
PARITY_FILE = "parity.json"
INPUT_NAME = "bands"  # network.build_network's input layer


class ParityError(RuntimeError):
    """An export's outputs differ from the Keras model's by more than its tolerance."""


def held_out_bands(bands_dir: str | Path, count: int) -> tuple[list[str], np.ndarray]:
    """Ids and band arrays of the first ``count`` test images of a band shard directory."""
    reader = ShardReader(bands_dir)
    if "split" not in reader.index.columns:
        raise ConfigError(f"{bands_dir}: the shard index has no split column (features stage)")
    positions = np.flatnonzero(reader.index["split"].to_numpy() == "test")[:count]
    if len(positions) == 0:
        raise ConfigError(f"{bands_dir}: no test images to check the export on")
    return reader.index["id"].iloc[positions].tolist(), reader.take(positions)


def export_saved_model(model, directory: Path, batch: int | None = None) -> None:
    """``model`` as a TF SavedModel; ``batch`` fixes the batch dimension (None: any)."""
    import keras

    spec = keras.InputSpec(shape=(batch, *model.input_shape[1:]), dtype="float32", name=INPUT_NAME)
    model.export(str(directory), format="tf_saved_model", verbose=False, input_signature=[spec])


def tflite_flatbuffer(model) -> bytes:
    """A float32 TFLite model with builtin ops only, converted from a batch-1 SavedModel."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="bonexray-export-") as scratch:
        export_saved_model(model, Path(scratch) / "batch1", batch=1)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(scratch) / "batch1"))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()


def keras_outputs(model, bands: np.ndarray) -> dict[str, np.ndarray]:
    proba = model.predict(bands, batch_size=32, verbose=0)
    return {head: np.asarray(proba[head]) for head in HEADS}


def saved_model_outputs(directory: Path, bands: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))  # held: serve() needs its variables alive
    served = loaded.serve(tf.constant(bands))
    return {head: np.asarray(served[head]) for head in HEADS}


def tflite_outputs(flatbuffer: bytes, bands: np.ndarray) -> dict[str, np.ndarray]:
    """Run the TFLite interpreter image by image (the model's batch is 1)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        # tf.lite.Interpreter announces its move to the ai_edge_litert package; it still
        # runs in TF 2.21, and LiteRT is not a dependency of this project.
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        runner = tf.lite.Interpreter(model_content=flatbuffer).get_signature_runner()
    rows = [runner(**{INPUT_NAME: bands[i : i + 1]}) for i in range(len(bands))]
    return {head: np.concatenate([row[head] for row in rows]) for head in HEADS}


def max_differences(
    reference: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Largest absolute difference per head, as ``<head>_max_abs_diff``."""
    out = {}
    for head in HEADS:
        if reference[head].shape != other[head].shape:
            raise ValueError(
                f"{head}: export output shape {other[head].shape}, Keras {reference[head].shape}"
            )
        out[f"{head}_max_abs_diff"] = float(np.max(np.abs(reference[head] - other[head])))
    return out


def failures(parity: Mapping[str, Any], tolerances: Mapping[str, float] = TOLERANCES) -> list[str]:
    """One line per export and head whose difference exceeds its tolerance."""
    return [
        f"{variant} {head}: max |difference| {parity[variant][f'{head}_max_abs_diff']:.3g} "
        f"> tolerance {tolerances[variant]:g}"
        for variant in tolerances
        for head in HEADS
        if not parity[variant][f"{head}_max_abs_diff"] <= tolerances[variant]  # NaN fails too
    ]


def export_model(
    model_path: str | Path,
    bands_dir: str | Path,
    out_dir: str | Path,
    count: int = DEFAULT_INPUTS,
    tolerances: Mapping[str, float] = TOLERANCES,
) -> dict[str, Any]:
    """Write saved_model/, model.tflite and parity.json under ``out_dir``; return the parity.

    Raises ParityError (after writing everything, so the figures can be read) when a
    difference exceeds its tolerance.
    """
    from bonexray.models.keras.devices import backend
    from bonexray.models.keras.files import load_keras_model

    if backend() != "tensorflow":
        # SavedModel and TFLite are TensorFlow's formats; their converters need its graph.
        raise ConfigError(
            f"bonexray export needs the tensorflow Keras backend, not {backend()!r}: "
            "run it with KERAS_BACKEND=tensorflow (a .keras file loads under any backend)"
        )
    model = load_keras_model(model_path)
    ids, bands = held_out_bands(bands_dir, count)
    if tuple(bands.shape[1:]) != tuple(model.input_shape[1:]):
        raise ConfigError(
            f"{bands_dir}: bands of shape {bands.shape[1:]}, but {model_path} expects "
            f"{model.input_shape[1:]} (features changed since the model was trained?)"
        )
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / SAVED_MODEL_DIR, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_saved_model(model, out_dir / SAVED_MODEL_DIR)
    flatbuffer = tflite_flatbuffer(model)
    (out_dir / TFLITE_FILE).write_bytes(flatbuffer)

    reference = keras_outputs(model, bands)
    parity: dict[str, Any] = {
        "model": str(model_path),
        "inputs": {"bands": str(bands_dir), "split": "test", "count": len(ids), "first": ids[0]},
        "saved_model": {
            **max_differences(reference, saved_model_outputs(out_dir / SAVED_MODEL_DIR, bands)),
            "tolerance": tolerances["saved_model"],
        },
        "tflite": {
            **max_differences(reference, tflite_outputs(flatbuffer, bands)),
            "tolerance": tolerances["tflite"],
            "bytes": len(flatbuffer),
            "batch": 1,
            "ops": "TFLITE_BUILTINS",
        },
    }
    failed = failures(parity, tolerances)
    parity["passed"] = not failed
    jsonfile.write(out_dir / PARITY_FILE, parity)
    if failed:
        raise ParityError(f"{out_dir / PARITY_FILE}: " + "; ".join(failed))
    return parity
