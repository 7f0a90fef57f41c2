"""Grad-CAM (Selvaraju et al., 2017) for the Keras networks, and overlays on the radiograph.

The class activation map is taken at the last conv block's activation (``relu<N>``, named by
network.build_network, before that block's pooling: the finest map that has seen every conv
layer). Each channel of that map is weighted by the spatial mean of the gradient of the
head's LOGIT (the pre-sigmoid/softmax score, which does not saturate as a probability does),
summed, rectified, resized (bilinear) to the band grid and scaled to a maximum of 1.

Grids: the network reads wavelet bands on the band grid of features.grid
(features.describe): with "finest" the level-1 detail grid, half the working image's side
for periodization (band cell k covers pixels 2k and 2k+1); with "coarsest" the level-L grid,
size / 2**L (cell k covers pixels 2**L k .. 2**L (k + 1) - 1). Either is an integer ratio, and
`to_image`'s bilinear resize with pixel centres aligned puts each cell's value at the centre
of its block. Other DWT modes (finest only) add a few boundary coefficients, so there the map
is stretched to the image and is off by up to half the wavelet's filter length at the
borders. `overlay` colours the map onto the working image.

A map shows what raised the head's score, not where the finding is; behind a BiLSTM it is
looser still (the recurrent readout mixes rows, and on tests/tiny_sample.py's cue its maps
are far less consistent than the pooled CNN's). benchmarks/gradcam_pointing.py scores the
maps against FracAtlas's fracture boxes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from bonexray.errors import ConfigError
from bonexray.models.interface import HEADS

BATCH = 32
ALPHA = 0.6  # the colour's weight where the map is 1; it fades to the plain image at 0
# Black -> purple -> red -> yellow -> white ("inferno"-like): ordered in lightness, so a
# printed or colour-blind reader still sees where the map is high.
COLOURS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64
)
_ACTIVATION = re.compile(r"relu(\d+)$")


def cam_layer_name(model) -> str:
    """Name of the last conv block's activation layer, ``relu<N>``."""
    blocks = sorted(
        int(m.group(1)) for m in map(_ACTIVATION.match, (layer.name for layer in model.layers)) if m
    )
    if not blocks:
        raise ValueError(f"{model.name}: no relu<k> conv activation layer; not a bonexray network")
    return f"relu{blocks[-1]}"


def explain(
    model, bands: np.ndarray, head: str = "fracture", class_index: int | None = None
) -> np.ndarray:
    """Grad-CAM heatmaps in [0, 1] on the band grid: (N, G, G) for (N, G, G, C) bands.

    A single (G, G, C) image gives one (G, G) map. ``head`` is "fracture" (the map of the
    fracture logit) or "region" (of region ``class_index``; default each image's predicted
    region). A map with no positive evidence is all zeros. Runs on the TensorFlow and JAX
    backends (`_logit_gradients`).
    """
    import keras
    from keras import ops

    if head not in HEADS:
        raise ValueError(f"head {head!r} not in {HEADS}")
    bands = np.asarray(bands, dtype=np.float32)
    single = bands.ndim == 3
    batch = bands[None] if single else bands
    if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(
            f"bands of shape {bands.shape}; {model.name} reads {model.input_shape[1:]}"
        )
    output = model.get_layer(head)
    cam = model.get_layer(cam_layer_name(model)).output
    # The network cut at the map: the part up to it, and the part from it to what the head's
    # Dense layer reads (its logits are computed from that layer's own weights, so no
    # activation needs undoing). Nothing after the last conv block reads an earlier layer.
    to_map = keras.Model(model.inputs, cam)
    from_map = keras.Model(cam, output.input)
    kernel, bias = (ops.convert_to_tensor(w) for w in output.get_weights())

    def target(features):
        """Each image's chosen logit; images do not interact, so the gradient of their
        sum is each image's own gradient."""
        logits = ops.matmul(from_map(features, training=False), kernel) + bias
        if head == "fracture":
            return ops.sum(logits[:, 0])
        chosen = ops.argmax(logits, axis=1) if class_index is None else class_index
        chosen = ops.broadcast_to(chosen, (ops.shape(logits)[0],))
        return ops.sum(ops.take_along_axis(logits, chosen[:, None], axis=1))

    maps = []
    for start in range(0, len(batch), BATCH):
        features = to_map(ops.convert_to_tensor(batch[start : start + BATCH]), training=False)
        grads = _logit_gradients(target, features)
        weights = ops.mean(grads, axis=(1, 2), keepdims=True)
        heat = ops.relu(ops.sum(weights * features, axis=-1))
        heat = ops.image.resize(heat[..., None], batch.shape[1:3], interpolation="bilinear")
        heat = ops.convert_to_numpy(heat[..., 0])
        peak = heat.max(axis=(1, 2), keepdims=True)
        maps.append(np.divide(heat, peak, out=np.zeros_like(heat), where=peak > 0))
    heatmaps = np.clip(np.concatenate(maps), 0.0, 1.0).astype(np.float32)
    return heatmaps[0] if single else heatmaps


def _logit_gradients(target, features):
    """d target(features) / d features: the one step keras.ops has no backend-free form of."""
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(features)
            value = target(features)
        return tape.gradient(value, features)
    if name == "jax":
        import jax

        return jax.grad(target)(features)
    raise ConfigError(f"Grad-CAM runs on the tensorflow and jax Keras backends, not {name!r}")


def to_image(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (g, g) band-grid map resized (bilinear, pixel centres aligned) to an image's shape."""
    resized = Image.fromarray(np.asarray(heatmap, np.float32)).resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized), 0.0, 1.0)


def colourise(values: np.ndarray) -> np.ndarray:
    """[0, 1] values -> RGB float (..., 3) along COLOURS."""
    position = np.clip(values, 0.0, 1.0) * (len(COLOURS) - 1)
    low = np.minimum(position.astype(np.int64), len(COLOURS) - 2)
    share = (position - low)[..., None]
    return COLOURS[low] * (1 - share) + COLOURS[low + 1] * share


def overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3): the (H, W) grayscale (or RGB) image with the heatmap over it."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    values = to_image(heatmap, image.shape[:2])
    weight = ALPHA * values[..., None]
    blended = image.astype(np.float64) * (1 - weight) + colourise(values) * weight
    return np.rint(blended).astype(np.uint8)


def save_overlay(path: str | Path, image: np.ndarray, heatmap: np.ndarray) -> None:
    """Write `overlay` as a PNG (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, heatmap)).save(path, format="PNG")
