"""The Keras networks: conv blocks, an optional bidirectional LSTM, two heads.

One builder serves all three Keras models: `cnn_rnn_nas` (recurrent part on, searched),
`cnn_nas` (global average pooling instead, searched) and `cnn` (fixed values, no search).
Every network has two outputs, named "region" (softmax over the taxonomy's regions) and
"fracture" (sigmoid), returned as a dict so that per-output targets and sample weights are
matched by name. With train.mixed_precision the layers compute in float16, but both heads
(their Dense and activation) stay float32: a softmax or sigmoid in float16 saturates, and
the cross-entropies of such outputs lose the precision they need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import keras
import keras_tuner as kt

from bonexray.errors import ConfigError
from bonexray.io.params import ParamsError
from bonexray.models.interface import HEADS
from bonexray.models.keras.devices import precision
from bonexray.models.keras.space import declare, options

CONV_KEYS = (
    "conv_blocks",
    "filters",
    "kernel_size",
    "pool_every_block",
    "batchnorm",
    "dropout",
    "dense_units",
    "learning_rate",
)
RNN_KEYS = ("lstm_units", "lstm_layers", "scan", "lstm_readout")
SCANS = ("rows", "rows_columns")
# What the last BiLSTM hands on: its final states ("last"), or the maximum of its outputs
# over all steps ("max"), which keeps a finding seen in one row from fading by the end.
READOUTS = ("last", "max")
# Models without the recurrent part summarise the last feature map by global pooling, as
# keras.applications' `pooling` argument does: "avg" or "max". Max suits findings that are
# small and anywhere (a fracture line, a screw); average dilutes them over the whole film.
POOL_KEYS = ("pooling",)
POOLINGS = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def _check_keys(values: Mapping[str, Any], rnn: bool, where: str) -> None:
    expected = set(CONV_KEYS) | set(RNN_KEYS if rnn else POOL_KEYS)
    missing = expected - set(values)
    unused = set(values) - expected
    if missing:
        raise ParamsError(f"params.yaml {where}: missing {sorted(missing)}")
    if unused:
        # An unused key would still be searched by the tuner, wasting trials.
        raise ParamsError(f"params.yaml {where}: keys not used by this model {sorted(unused)}")
    choices = {"scan": SCANS, "lstm_readout": READOUTS} if rnn else {"pooling": tuple(POOLINGS)}
    for key, known in choices.items():
        unknown = [option for option in options(values[key]) if option not in known]
        if unknown:
            raise ParamsError(f"params.yaml {where}.{key}: {unknown} not in {known}")


def _conv_blocks(x: keras.KerasTensor, v: Mapping[str, Any]) -> keras.KerasTensor:
    for block in range(v["conv_blocks"]):
        x = keras.layers.Conv2D(
            v["filters"] * 2**block,
            v["kernel_size"],
            padding="same",
            use_bias=not v["batchnorm"],  # batchnorm's shift replaces the bias
            name=f"conv{block + 1}",
        )(x)
        if v["batchnorm"]:
            x = keras.layers.BatchNormalization(name=f"bn{block + 1}")(x)
        x = keras.layers.Activation("relu", name=f"relu{block + 1}")(x)
        last = block == v["conv_blocks"] - 1
        # Never pool below 2x2: the recurrent part needs a real sequence to read.
        if (v["pool_every_block"] or last) and min(x.shape[1], x.shape[2]) >= 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool{block + 1}")(x)
        x = keras.layers.Dropout(v["dropout"], name=f"dropout{block + 1}")(x)
    return x


def _bidirectional(seq: keras.KerasTensor, v: Mapping[str, Any], name: str):
    layers, readout = v["lstm_layers"], v["lstm_readout"]
    for i in range(layers):
        seq = keras.layers.Bidirectional(
            keras.layers.LSTM(v["lstm_units"], return_sequences=i < layers - 1 or readout == "max"),
            name=f"{name}_bilstm{i + 1}",
        )(seq)
    if readout == "max":
        seq = keras.layers.GlobalMaxPooling1D(name=f"{name}_max_over_steps")(seq)
    return seq


def _recurrent(x: keras.KerasTensor, v: Mapping[str, Any]) -> keras.KerasTensor:
    """Read the feature map as sequences: its H' rows (and optionally its W' columns)."""
    height, width, channels = x.shape[1:]
    if height < 2 or (v["scan"] == "rows_columns" and width < 2):
        raise ConfigError(
            f"feature map {height}x{width} is too small for a recurrent scan "
            "(an LSTM over a sequence of length 1 learns nothing sequential); "
            "use larger inputs or fewer conv blocks"
        )
    rows = keras.layers.Reshape((height, width * channels), name="rows")(x)
    outputs = [_bidirectional(rows, v, "rows")]
    if v["scan"] == "rows_columns":
        columns = keras.layers.Permute((2, 1, 3), name="transpose")(x)
        columns = keras.layers.Reshape((width, height * channels), name="columns")(columns)
        outputs.append(_bidirectional(columns, v, "columns"))
    if len(outputs) == 1:
        return outputs[0]
    return keras.layers.Concatenate(name="scans")(outputs)


@dataclass(frozen=True)
class NetworkSpec:
    """What a network is built for, apart from its hyperparameter values."""

    input_shape: tuple[int, ...]  # of one input (the band channels)
    n_regions: int
    rnn: bool  # a bidirectional LSTM reads the feature map (else global pooling)
    loss_weights: Mapping[str, float]  # train.loss_weights, by head
    name: str = "bonexray"
    where: str = "space"  # the params.yaml key of the values, for error messages
    mixed_precision: bool = False


def build_network(values: Mapping[str, Any], spec: NetworkSpec) -> keras.Model:
    """Build and compile the two-headed network for one set of hyperparameter values."""
    _check_keys(values, spec.rnn, spec.where)
    if set(spec.loss_weights) != set(HEADS):
        raise ParamsError(f"params.yaml train.loss_weights: expected keys {HEADS}")
    # Compiled inside the scope too: Keras wraps the optimizer in loss scaling when the
    # model's policy is mixed.
    with precision(spec.mixed_precision):
        return _build(values, spec)


def _build(values: Mapping[str, Any], spec: NetworkSpec) -> keras.Model:
    inputs = keras.Input(shape=tuple(spec.input_shape), name="bands")
    x = _conv_blocks(inputs, values)
    if spec.rnn:
        x = _recurrent(x, values)
    else:
        x = POOLINGS[values["pooling"]](name=f"global_{values['pooling']}_pool")(x)
    x = keras.layers.Dense(values["dense_units"], activation="relu", name="dense")(x)
    x = keras.layers.Dropout(values["dropout"], name="dropout_dense")(x)
    head = partial(keras.layers.Dense, dtype="float32")  # whatever the policy (see above)
    outputs = {
        "region": head(spec.n_regions, activation="softmax", name="region")(x),
        "fracture": head(1, activation="sigmoid", name="fracture")(x),
    }
    model = keras.Model(inputs, outputs, name=spec.name)
    model.compile(
        optimizer=keras.optimizers.Adam(values["learning_rate"]),
        loss={
            "region": keras.losses.SparseCategoricalCrossentropy(),
            "fracture": keras.losses.BinaryCrossentropy(),
        },
        loss_weights={head: float(spec.loss_weights[head]) for head in HEADS},
        # Weighted, so rows with an unknown fracture label (weight 0) are left out of
        # the fracture metrics too, as they are of its loss. With train.class_weight
        # "balanced" the weighted region accuracy is the balanced accuracy (mean recall);
        # AUC is unchanged by per-class weights.
        weighted_metrics={
            "region": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            "fracture": [keras.metrics.AUC(name="auc")],
        },
    )
    return model


class BoneHyperModel(kt.HyperModel):
    """A Keras Tuner hypermodel over one params.yaml space (or fixed values)."""

    def __init__(self, space: Mapping[str, Any], spec: NetworkSpec) -> None:
        super().__init__(name=spec.name)
        self.space = dict(space)
        self.spec = spec
        _check_keys(self.space, spec.rnn, spec.where)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        return build_network(declare(hp, self.space, self.spec.where), self.spec)
