"""The Keras networks and their training loop, on a tiny sample (16x16x4, 60 images)."""

from __future__ import annotations

import json

import keras
import keras_tuner as kt
import numpy as np
import pandas as pd
import pytest
from tiny_sample import CHANNELS, GRID, REGIONS, TINY_CONV, TINY_RNN, params, write_sample

from bonexray.io import predictions
from bonexray.io.params import ParamsError
from bonexray.models.examples import load_examples
from bonexray.models.interface import TrainOutputs
from bonexray.models.keras.network import BoneHyperModel, FractureLoss, NetworkSpec
from bonexray.models.keras.training import HeadWeights, targets, train_keras

SHAPE = (GRID, GRID, CHANNELS)
LOSS_WEIGHTS = {"region": 1.0, "fracture": 1.0}


def build(space: dict, rnn: bool, shape=SHAPE) -> keras.Model:
    spec = NetworkSpec(tuple(shape), len(REGIONS), rnn, LOSS_WEIGHTS)
    return BoneHyperModel(space, spec).build(kt.HyperParameters())


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("sample"))


@pytest.mark.parametrize(
    "space, rnn",
    [
        (TINY_RNN, True),
        ({**TINY_RNN, "scan": "rows_columns", "lstm_layers": 2}, True),
        (TINY_CONV, False),
        ({**TINY_CONV, "residual": True, "batchnorm": True}, False),
        ({**TINY_RNN, "residual": True}, True),
    ],
    ids=["rnn_rows", "rnn_rows_columns_stacked", "cnn", "cnn_residual", "rnn_residual"],
)
def test_every_network_has_two_named_heads(space, rnn):
    model = build(space, rnn)
    out = model.predict(np.zeros((5, *SHAPE), np.float32), verbose=0)
    assert set(out) == {"region", "fracture"}
    assert out["region"].shape == (5, len(REGIONS))
    assert out["fracture"].shape == (5, 1)
    np.testing.assert_allclose(out["region"].sum(axis=1), 1.0, rtol=1e-5)
    assert ((out["fracture"] > 0) & (out["fracture"] < 1)).all()


def test_lstm_reads_the_feature_map_as_a_real_sequence():
    space = {**TINY_RNN, "conv_blocks": 3, "scan": "rows_columns", "lstm_layers": 2}
    model = build(space, rnn=True)
    recurrent = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert len(recurrent) == 4  # two stacked BiLSTMs for rows, two for columns
    for layer in recurrent:
        steps = layer.input.shape[1]
        assert steps > 1, f"{layer.name} reads a sequence of length {steps}"
    # 16 -> 8 -> 4 -> 2: the third pool stops at a 2x2 map, never 1x1.
    assert model.get_layer("rows").output.shape[1] == 2
    assert not any(
        isinstance(layer, keras.layers.Bidirectional) for layer in build(TINY_CONV, False).layers
    )


def test_residual_blocks_add_a_shortcut_and_keep_the_grad_cam_layer():
    plain = build(TINY_CONV, rnn=False)
    model = build({**TINY_CONV, "residual": True}, rnn=False)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert [layer.name for layer in adds] == ["add1", "add2"]
    # Block 1 widens 4 bands to 4 filters (identity shortcut), block 2 to 8 (a 1x1 projection).
    assert model.get_layer("conv2_shortcut").kernel.shape == (1, 1, 4, 8)
    assert "conv1_shortcut" not in [layer.name for layer in model.layers]
    # Grad-CAM reads relu<N>: each block ends in one, at the shape the plain block has.
    for block in (1, 2):
        name = f"relu{block}"
        assert model.get_layer(name).output.shape == plain.get_layer(name).output.shape
    assert model.count_params() > plain.count_params()


@pytest.mark.parametrize(
    "cfg, expected",
    [
        ({"kind": "bce", "focal_gamma": 2.0, "label_smoothing": 0.0}, None),
        ({"kind": "focal", "focal_gamma": 2.0, "label_smoothing": 0.0}, None),
        ({"kind": "bce", "focal_gamma": 2.0, "label_smoothing": 0.2}, None),
        ({"kind": "hinge", "focal_gamma": 2.0, "label_smoothing": 0.0}, "not one of"),
        ({"kind": "bce", "focal_gamma": 2.0, "label_smoothing": 1.0}, "label_smoothing"),
        ({"kind": "bce"}, "expected the keys"),
    ],
)
def test_fracture_loss_options(cfg, expected):
    if expected:
        with pytest.raises(ParamsError, match=expected):
            FractureLoss.from_params(cfg)
        return
    loss = FractureLoss.from_params(cfg).make()
    y = np.array([[1.0], [0.0], [1.0], [0.0]], np.float32)
    easy = np.array([[0.95], [0.05], [0.9], [0.1]], np.float32)
    hard = np.array([[0.3], [0.7], [0.4], [0.6]], np.float32)
    bce = keras.losses.BinaryCrossentropy()
    easy_loss, hard_loss = float(loss(y, easy)), float(loss(y, hard))
    assert 0 < easy_loss < hard_loss
    if cfg["kind"] == "focal":  # easy films are down-weighted far more than hard ones
        assert easy_loss / float(bce(y, easy)) < 0.1 < hard_loss / float(bce(y, hard))
    elif cfg["label_smoothing"]:  # a confident right answer is no longer free
        assert float(loss(y, np.clip(y, 1e-4, 1 - 1e-4))) > 0.1
    else:
        np.testing.assert_allclose(easy_loss, float(bce(y, easy)), rtol=1e-6)


def test_a_one_row_feature_map_is_refused():
    with pytest.raises(ValueError, match="sequence"):
        build(TINY_RNN, rnn=True, shape=(1, GRID, CHANNELS))


def test_space_keys_are_checked():
    with pytest.raises(ValueError, match="missing"):
        build({k: v for k, v in TINY_RNN.items() if k != "lstm_units"}, rnn=True)
    with pytest.raises(ValueError, match="not used"):
        build({**TINY_RNN, "pooling": "max"}, rnn=False)  # lstm keys: searched for nothing


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pooled_networks_summarise_the_map_as_asked(pooling):
    layer = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
    model = build({**TINY_CONV, "pooling": pooling}, rnn=False)
    assert sum(isinstance(x, layer[pooling]) for x in model.layers) == 1
    with pytest.raises(ValueError, match="median"):
        build({**TINY_CONV, "pooling": {"choice": ["max", "median"]}}, rnn=False)


def test_max_readout_pools_the_lstm_outputs_over_every_step():
    model = build({**TINY_RNN, "lstm_readout": "max", "lstm_layers": 2}, rnn=True)
    assert all(
        layer.return_sequences
        for layer in (model.get_layer(f"rows_bilstm{i}").forward_layer for i in (1, 2))
    )
    pooled = model.get_layer("rows_max_over_steps")
    assert pooled.input.shape[1] > 1 and pooled.output.shape[1] == 2 * TINY_RNN["lstm_units"]
    last = build(TINY_RNN, rnn=True)
    assert not last.get_layer("rows_bilstm1").forward_layer.return_sequences


def test_a_searched_scan_is_checked_option_by_option():
    searched = {**TINY_RNN, "scan": {"choice": ["rows", "rows_columns"]}}
    assert build(searched, rnn=True).get_layer("rows") is not None
    with pytest.raises(ValueError, match="diagonal"):
        build({**TINY_RNN, "scan": {"choice": ["rows", "diagonal"]}}, rnn=True)


def test_examples_join_features_by_id(sample, tmp_path):
    examples = load_examples(sample["labels"], sample["bands"], REGIONS)
    labels = pd.read_parquet(sample["labels"])
    assert list(examples.ids) == list(labels["id"])
    assert examples.features.shape == (len(labels), *SHAPE)
    train = examples.labelled("train")
    assert len(train) == 35 and (train.region >= 0).all()
    assert set(examples.to_predict().split) == {"val", "test"}
    labels.loc[0, "id"] = "data/nowhere.png"
    labels.to_parquet(tmp_path / "labels.parquet")
    with pytest.raises(ValueError, match="no features"):
        load_examples(tmp_path / "labels.parquet", sample["bands"], REGIONS)


def test_balanced_weights_mask_unknown_fractures(sample):
    train = load_examples(sample["labels"], sample["bands"], REGIONS).labelled("train")
    weights = HeadWeights.from_training(train, "balanced").for_rows(train)
    unknown = np.isnan(train.fracture)
    assert unknown.any()
    assert (weights["fracture"][unknown] == 0).all() and (weights["fracture"][~unknown] > 0).all()
    # Each head's weights average 1 over the rows, and each known class gets an equal share.
    for head in ("region", "fracture"):
        assert weights[head].mean() == pytest.approx(1.0)
    share = [weights["fracture"][train.fracture == c].sum() for c in (0, 1)]
    assert share[0] == pytest.approx(share[1])
    uniform = HeadWeights.from_training(train, "none").for_rows(train)
    assert len(set(uniform["fracture"][~unknown])) == 1


def test_masked_fracture_rows_do_not_contribute_to_the_fracture_loss(sample):
    train = load_examples(sample["labels"], sample["bands"], REGIONS).labelled("train")
    weights = HeadWeights.from_training(train, "balanced").for_rows(train)
    unknown = np.isnan(train.fracture)
    model = build(TINY_CONV, rnn=False)

    def fracture_loss(y_fracture):
        y = {**targets(train), "fracture": y_fracture.reshape(-1, 1).astype(np.float32)}
        result = model.evaluate(
            train.features, y, sample_weight=weights, verbose=0, return_dict=True
        )
        return result["fracture_loss"]

    base = targets(train)["fracture"].ravel()
    flipped_unknown = np.where(unknown, 1.0 - base, base)
    flipped_known = np.where(~unknown, 1.0 - base, base)
    assert fracture_loss(flipped_unknown) == pytest.approx(fracture_loss(base), abs=1e-7)
    assert fracture_loss(flipped_known) != pytest.approx(fracture_loss(base), abs=1e-4)


def run_cnn(sample, out, epochs=2):
    cfg = {"cnn": {"rnn": False, "epochs": epochs, "fixed": TINY_CONV}}
    outputs = TrainOutputs(
        model_dir=out / "models" / "cnn",
        predictions=out / "predictions" / "cnn.parquet",
        metrics=out / "metrics" / "cnn.json",
        live_dir=out / "plots" / "train" / "cnn",
        trials=out / "plots" / "trials" / "cnn.csv",
    )
    metrics = train_keras("cnn", params(**cfg), sample["labels"], sample["bands"], outputs)
    return outputs, metrics


def test_fixed_cnn_stage_outputs_and_is_deterministic(sample, tmp_path):
    first, metrics = run_cnn(sample, tmp_path / "a")
    second, _ = run_cnn(sample, tmp_path / "b")

    frame = predictions.read(first.predictions, REGIONS)
    labels = pd.read_parquet(sample["labels"])
    expected = labels.loc[labels["split"].isin(["val", "test"]), "id"]
    assert set(frame["split"]) == {"val", "test"}
    assert sorted(frame["id"]) == sorted(expected)  # unlabelled val/test images too
    proba = frame[predictions.region_columns(REGIONS)].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    pd.testing.assert_frame_equal(frame, pd.read_parquet(second.predictions), check_exact=True)

    written = json.loads(first.metrics.read_text())
    assert written == metrics
    assert {"best_val_loss", "best_epoch", "epochs_run", "n_train", "n_val"} <= set(written)
    assert written["n_train"] == 35 and written["n_val"] == 11 and written["search_trials"] == 0
    assert (first.live_dir / "metrics.json").is_file()
    assert (first.live_dir / "plots" / "metrics" / "eval" / "loss.tsv").is_file()
    trials = pd.read_csv(first.trials)
    assert len(trials) == 1 and trials.loc[0, "status"] == "COMPLETED"
    loaded = keras.saving.load_model(first.model_dir / "model.keras")
    examples = load_examples(sample["labels"], sample["bands"], REGIONS).to_predict()
    again = loaded.predict(examples.features, verbose=0)["fracture"].ravel()
    np.testing.assert_allclose(again, frame["p_fracture"], rtol=1e-5)
