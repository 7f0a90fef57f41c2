"""`bonexray export`: SavedModel and TFLite exports of tiny networks match the Keras model."""

from __future__ import annotations

import json

import keras
import keras_tuner as kt
import pytest
from tiny_sample import CHANNELS, GRID, REGIONS, TINY_CONV, TINY_RNN, write_sample

from bonexray import cli
from bonexray.inference import export
from bonexray.models.keras.network import BoneHyperModel, NetworkSpec

NETWORKS = {"cnn": (TINY_CONV, False), "cnn_rnn_nas": (TINY_RNN, True)}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    write_sample(root / "features")  # features/bands, with the split column
    keras.utils.set_random_seed(3)
    for name, (space, rnn) in NETWORKS.items():
        spec = NetworkSpec(
            (GRID, GRID, CHANNELS), len(REGIONS), rnn, {"region": 1.0, "fracture": 1.0}
        )
        hypermodel = BoneHyperModel(space, spec)
        (root / "models" / name).mkdir(parents=True)
        hypermodel.build(kt.HyperParameters()).save(root / "models" / name / "model.keras")
    return root


@pytest.mark.parametrize("name", NETWORKS)
def test_exports_give_the_keras_probabilities(artifacts, name, capsys):
    out = artifacts / "export" / name
    assert cli.main(["export", name, "--artifacts", str(artifacts), "--inputs", "8"]) == 0
    assert (out / "saved_model" / "saved_model.pb").is_file()
    assert (out / "model.tflite").stat().st_size > 1000
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["inputs"]["count"] == 8  # 8 of the 12 test images
    for variant, tolerance in export.TOLERANCES.items():
        for head in ("region", "fracture"):
            assert 0 <= parity[variant][f"{head}_max_abs_diff"] <= tolerance, (variant, head)
    assert parity["tflite"]["ops"] == "TFLITE_BUILTINS"  # the BiLSTM too: no Flex delegate
    assert "tflite: max |difference| from Keras" in capsys.readouterr().out


def test_a_difference_above_the_tolerance_fails():
    parity = {
        "saved_model": {"region_max_abs_diff": 0.0, "fracture_max_abs_diff": 2e-5},
        "tflite": {"region_max_abs_diff": float("nan"), "fracture_max_abs_diff": 1e-6},
    }
    assert export.failures(parity) == [
        "saved_model fracture: max |difference| 2e-05 > tolerance 1e-05",
        "tflite region: max |difference| nan > tolerance 0.0001",
    ]


def test_an_export_above_its_tolerance_fails_after_writing_the_figures(artifacts, tmp_path):
    model = artifacts / "models" / "cnn" / "model.keras"
    impossible = {"saved_model": -1.0, "tflite": -1.0}  # no difference is below it
    with pytest.raises(export.ParityError, match=r"parity.json: saved_model region"):
        export.export_model(model, artifacts / "features" / "bands", tmp_path, 4, impossible)
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["passed"] is False and parity["tflite"]["tolerance"] == -1.0


def test_the_forest_the_ensemble_and_missing_models_are_clear_errors(artifacts, capsys):
    assert cli.main(["export", "rf", "--artifacts", str(artifacts)]) == 2
    assert "random forest has no TF graph to export" in capsys.readouterr().err
    assert cli.main(["export", "ensemble", "--artifacts", str(artifacts)]) == 2
    assert "export its Keras members one by one" in capsys.readouterr().err
    assert cli.main(["export", "cnn_nas", "--artifacts", str(artifacts)]) == 2
    assert "cnn_nas/model.keras: no such model" in capsys.readouterr().err
