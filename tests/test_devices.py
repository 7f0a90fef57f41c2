"""GPU switches on a CPU: mixed precision and the distribution strategy."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
from tiny_sample import CHANNELS, GRID, REGIONS, TINY_CONV, TINY_RNN, write_sample

from bonexray.models.examples import load_examples
from bonexray.models.keras import devices
from bonexray.models.keras.network import BoneHyperModel, NetworkSpec
from bonexray.models.keras.training import HeadWeights, make_dataset

LOSS_WEIGHTS = {"region": 1.0, "fracture": 1.0}


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    sample = write_sample(tmp_path_factory.mktemp("sample"))
    return load_examples(sample["labels"], sample["bands"], REGIONS).labelled("train")


def hypermodel(space: dict, rnn: bool, mixed: bool) -> BoneHyperModel:
    shape = (GRID, GRID, CHANNELS)
    spec = NetworkSpec(tuple(shape), len(REGIONS), rnn, LOSS_WEIGHTS, mixed_precision=mixed)
    return BoneHyperModel(space, spec)


@pytest.mark.parametrize("space, rnn", [(TINY_CONV, False), (TINY_RNN, True)])
def test_mixed_precision_computes_in_float16_with_float32_heads(train, space, rnn):
    keras.backend.clear_session()  # as Keras Tuner does before each trial: it resets the policy
    model = hypermodel(space, rnn, mixed=True).build(kt.HyperParameters())
    assert keras.config.dtype_policy().name == "float32"  # the scope did not leak
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.get_layer("conv1").kernel.dtype == "float32"  # variables stay float32
    for head in ("region", "fracture"):
        assert model.get_layer(head).compute_dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    batch = next(iter(make_dataset(train, HeadWeights.from_training(train, "none"), 12)))
    outputs = model(batch[0])
    assert {str(outputs[head].dtype) for head in outputs} == {"<dtype: 'float32'>"}
    before = model.get_layer("conv1").kernel.numpy().copy()
    # Dynamic loss scaling skips a step whose float16 gradients overflow and halves the
    # scale (it starts at 2**15), so the first steps may leave the weights as they were.
    for _ in range(8):
        logs = model.train_on_batch(*batch, return_dict=True)
        if not np.array_equal(model.get_layer("conv1").kernel.numpy(), before):
            break
    assert np.isfinite(logs["loss"])
    assert not np.array_equal(model.get_layer("conv1").kernel.numpy(), before)


def test_full_precision_is_the_default():
    model = hypermodel(TINY_CONV, rnn=False, mixed=False).build(kt.HyperParameters())
    assert model.get_layer("conv1").compute_dtype == "float32"
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_without_gpus_auto_and_none_pick_the_default_strategy():
    assert devices.visible_gpus() == []
    for mode in ("auto", "none"):
        strategy = devices.strategy(mode)
        assert strategy is tf.distribute.get_strategy()
        assert strategy.num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="train.distribution"):
        devices.strategy("horovod")


def test_mirrored_on_one_cpu_builds_in_scope_and_trains(train):
    strategy = devices.strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    with strategy.scope():
        model = hypermodel(TINY_CONV, rnn=False, mixed=False).build(kt.HyperParameters())
    assert isinstance(model.get_layer("conv1").kernel.value, tf.distribute.DistributedValues)
    data = make_dataset(train, HeadWeights.from_training(train, "none"), 12)
    history = model.fit(data, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
