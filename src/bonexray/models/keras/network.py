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
    "residual",
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
FRACTURE_LOSSES = ("bce", "focal")  # train.fracture_loss.kind
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
        name = str(block + 1)
        filters = v["filters"] * 2**block
        if v["residual"]:
            x = _residual_block(x, filters, v, name)
        else:
            x = _conv_bn(x, filters, v["kernel_size"], v["batchnorm"], name)
            x = keras.layers.Activation("relu", name=f"relu{name}")(x)
        last = block == v["conv_blocks"] - 1
        # Never pool below 2x2: the recurrent part needs a real sequence to read.
        if (v["pool_every_block"] or last) and min(x.shape[1], x.shape[2]) >= 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool{name}")(x)
        x = keras.layers.Dropout(v["dropout"], name=f"dropout{name}")(x)
    return x


def _conv_bn(
    x: keras.KerasTensor, filters: int, kernel_size: int, batchnorm: bool, name: str
) -> keras.KerasTensor:
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=not batchnorm,  # batchnorm's shift replaces the bias
        name=f"conv{name}",
    )(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(name=f"bn{name}")(x)
    return x


def _residual_block(
    x: keras.KerasTensor, filters: int, v: Mapping[str, Any], name: str
) -> keras.KerasTensor:
    """Two convolutions plus an identity shortcut (He et al. 2016, "basic" block).

    The shortcut lets a thin, high-frequency finding in the input bands reach the deeper
    layers unchanged; a 1x1 convolution matches the channels where the block widens.
    The block's output activation is ``relu<N>``, the layer Grad-CAM reads.
    """
    y = _conv_bn(x, filters, v["kernel_size"], v["batchnorm"], f"{name}a")
    y = keras.layers.Activation("relu", name=f"relu{name}a")(y)
    y = _conv_bn(y, filters, v["kernel_size"], v["batchnorm"], f"{name}b")
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, v["batchnorm"], f"{name}_shortcut")
    x = keras.layers.Add(name=f"add{name}")([y, shortcut])
    return keras.layers.Activation("relu", name=f"relu{name}")(x)


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
class FractureLoss:
    """params.yaml train.fracture_loss: the fracture head's loss.

    "bce" is plain binary cross-entropy; "focal" (Lin et al. 2017) down-weights the easy,
    confidently right films by (1 - p_t)**gamma, so a few subtle fractures weigh more than
    many obvious normals. label_smoothing pulls the 0/1 targets towards 0.5 by that amount:
    less over-confidence on labels that are themselves uncertain (a hairline fracture read
    either way). evaluate recalibrates on val either way (evaluate.calibration).
    """

    kind: str = "bce"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0

    @classmethod
    def from_params(cls, cfg: Mapping[str, Any]) -> FractureLoss:
        where = "params.yaml train.fracture_loss"
        keys = {"kind", "focal_gamma", "label_smoothing"}
        if set(cfg) != keys:
            raise ParamsError(f"{where}: expected the keys {sorted(keys)}, got {sorted(cfg)}")
        loss = cls(str(cfg["kind"]), float(cfg["focal_gamma"]), float(cfg["label_smoothing"]))
        if loss.kind not in FRACTURE_LOSSES:
            raise ParamsError(f"{where}.kind: {loss.kind!r} is not one of {FRACTURE_LOSSES}")
        if not 0.0 <= loss.label_smoothing < 1.0 or loss.focal_gamma < 0.0:
            raise ParamsError(f"{where}: label_smoothing in [0, 1) and focal_gamma >= 0")
        return loss

    def make(self) -> keras.losses.Loss:
        if self.kind == "focal":
            return keras.losses.BinaryFocalCrossentropy(
                gamma=self.focal_gamma, label_smoothing=self.label_smoothing
            )
        return keras.losses.BinaryCrossentropy(label_smoothing=self.label_smoothing)


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
    fracture_loss: FractureLoss = FractureLoss()


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
            "fracture": spec.fracture_loss.make(),
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
