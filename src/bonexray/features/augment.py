"""Train-only augmentation in image space, before the wavelet transform (params train.augment).

`augment` turns a batch of uint8 working images (N, S, S) into augmented uint8 images of the
same shape, by one affine resampling (flip, rotation, scale, translation; bilinear) and then
intensity changes (gamma, contrast about the content's mean, brightness), optional Gaussian
detector noise, clipped and rounded back to uint8, the working images' own domain.

What is kept:
- the letterbox: the content box (the bounding box of pixels other than the pad value) is
  mapped so that it stays inside the canvas, as if the film had been rotated and scaled and
  then letterboxed: a scale or rotation that would push it out is shrunk to fit, a shift
  clipped to the room left. A fracture at the edge of a film is never cut off. Pixels outside
  the mapped box are the pad value (resize.PAD_VALUE), untouched by intensity and noise;
- determinism: every draw of an image comes from ``np.random.default_rng([seed, epoch,
  row_key(id)])``, so a (seed, epoch, image) always gets the same transform, whatever the
  batch it lands in, the batch size or the number of parallel calls;
- the identity: with every magnitude at its neutral value an image comes back bit for bit.

`AugmentedBands` is the train input path's per-batch function: rows of the train split ->
their working images -> `augment` -> the features stage's own `wavelet.describe` and
`standardise` (its configuration and train statistics read from bands/meta.json), so an
un-augmented image gives the features stage's row. It is plain numpy (no TensorFlow): the
tf.data pipeline (models/keras/training.py) calls it through tf.numpy_function, and a
keras.utils.PyDataset could call it as it is.

It lives in features/ rather than data/ because it exists to feed the wavelet transform and
its batch function needs features.wavelet; data/ sits below features and cannot import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy.ndimage import affine_transform

from bonexray.data.resize import PAD_VALUE
from bonexray.errors import ConfigError
from bonexray.features.wavelet import FeatureConfig, describe, standardise
from bonexray.io.params import ParamsError
from bonexray.io.shards import ShardRows

WHERE = "params.yaml train.augment"
N_DRAWS = 8  # uniform draws per image: flip, angle, scale, shift x2, brightness, contrast, gamma


@dataclass(frozen=True)
class AugmentConfig:
    """params.yaml train.augment."""

    enabled: bool
    hflip: float  # probability of a horizontal mirror
    rotation_deg: float  # angle drawn uniformly in [-rotation_deg, rotation_deg]
    scale: tuple[float, float]  # log-uniform
    translation: float  # shift per axis, uniform in +-translation x the image side
    brightness: float  # additive shift, uniform in +-brightness (fraction of full scale)
    contrast: tuple[float, float]  # log-uniform factor about the content's mean
    gamma: tuple[float, float]  # log-uniform exponent of the [0, 1] intensities
    noise_std: float  # Gaussian noise std (fraction of full scale); 0 = off

    @classmethod
    def from_params(cls, cfg: Mapping[str, Any]) -> AugmentConfig:
        missing = [f.name for f in fields(cls) if f.name not in cfg]
        if missing:
            raise ParamsError(f"{WHERE}: missing {missing}")
        config = cls(
            enabled=bool(cfg["enabled"]),
            hflip=float(cfg["hflip"]),
            rotation_deg=float(cfg["rotation_deg"]),
            scale=_positive_range(cfg["scale"], "scale"),
            translation=float(cfg["translation"]),
            brightness=float(cfg["brightness"]),
            contrast=_positive_range(cfg["contrast"], "contrast"),
            gamma=_positive_range(cfg["gamma"], "gamma"),
            noise_std=float(cfg["noise_std"]),
        )
        if not 0.0 <= config.hflip <= 1.0:
            raise ParamsError(f"{WHERE}.hflip: {config.hflip}, expected a probability in [0, 1]")
        if not 0.0 <= config.translation < 0.5:
            raise ParamsError(f"{WHERE}.translation: {config.translation}, expected [0, 0.5)")
        for name in ("rotation_deg", "brightness", "noise_std"):
            if getattr(config, name) < 0:
                raise ParamsError(f"{WHERE}.{name}: {getattr(config, name)}, expected >= 0")
        return config


def _positive_range(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ParamsError(f"{WHERE}.{name}: {value!r}, expected [low, high]")
    low, high = float(value[0]), float(value[1])
    if not 0 < low <= high:
        raise ParamsError(f"{WHERE}.{name}: {value!r}, expected 0 < low <= high")
    return low, high


def row_key(item_id: str) -> int:
    """A stable 64-bit key of an image id (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.sha256(item_id.encode("utf-8")).digest()[:8], "little")


def _log_uniform(u: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low * (high / low) ** u


def _affine(image: np.ndarray, u: np.ndarray, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Warp a float image; return it and the mask of pixels inside the mapped content box."""
    side = image.shape[0]
    rows = np.flatnonzero((image != PAD_VALUE).any(axis=1))
    cols = np.flatnonzero((image != PAD_VALUE).any(axis=0))
    if len(rows) == 0:  # a blank image: nothing to move
        return image, np.zeros(image.shape, bool)
    centre = np.array([(rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2])
    half = np.array([rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1]) / 2  # to the outer edges
    angle = np.deg2rad((2 * u[1] - 1) * cfg.rotation_deg)
    cos, sin = np.cos(angle), np.sin(angle)
    flip = -1.0 if u[0] < cfg.hflip else 1.0
    forward = (
        _log_uniform(u[2], cfg.scale) * np.array([[cos, -sin], [sin, cos]]) @ np.diag([1.0, flip])
    )
    mapped = np.abs(forward) @ half  # half-extent of the mapped box
    forward *= min(1.0, side / 2 / mapped.max())  # shrink to fit the canvas
    mapped = np.abs(forward) @ half
    # Pixel centres are integers, so the canvas spans [-0.5, side - 0.5].
    shift = (2 * u[3:5] - 1) * cfg.translation * side
    target = np.clip(centre + shift, mapped - 0.5, side - 0.5 - mapped)
    # scipy maps output coordinates to input ones: input = inverse @ output + offset.
    inverse = np.linalg.inv(forward)
    offset = centre - inverse @ target
    warped = affine_transform(image, inverse, offset, order=1, cval=PAD_VALUE, prefilter=False)
    box = np.zeros(image.shape)
    box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = 1.0
    inside = affine_transform(box, inverse, offset, order=0, cval=0.0, prefilter=False) > 0.5
    return warped, inside


def augment_one(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One (S, S) uint8 working image, augmented with the draws of ``rng``."""
    u = rng.random(N_DRAWS)  # all draws, always: one magnitude's value leaves the others'
    warped, inside = _affine(image.astype(np.float64), u, cfg)
    pixels = warped[inside] / 255.0
    pixels = pixels ** _log_uniform(u[7], cfg.gamma)
    mean = pixels.mean() if len(pixels) else 0.0
    pixels = _log_uniform(u[6], cfg.contrast) * (pixels - mean) + mean
    pixels += (2 * u[5] - 1) * cfg.brightness
    if cfg.noise_std > 0:
        pixels += rng.normal(0.0, cfg.noise_std, size=pixels.shape)
    out = np.full(image.shape, PAD_VALUE, np.uint8)
    out[inside] = np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


def augment(
    images: np.ndarray, keys: Sequence[int], seed: int, epoch: int, cfg: AugmentConfig
) -> np.ndarray:
    """Augment uint8 (N, S, S) working images; image k's draws come from (seed, epoch, keys[k])."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 (N, S, S) working images, got {images.dtype} {images.shape}"
        )
    if len(keys) != len(images):
        raise ValueError(f"{len(keys)} keys for {len(images)} images")
    out = np.empty_like(images)
    for k, (image, key) in enumerate(zip(images, keys, strict=True)):
        rng = np.random.default_rng([int(seed), int(epoch), int(key)])
        out[k] = augment_one(image, rng, cfg)
    return out


class AugmentedBands:
    """Rows of the train split -> augmented, described, standardised band channels.

    ``images`` are the working images (repair's shards) of the rows, in the rows' order;
    ``ids`` the rows' image ids; ``bands_meta`` the bands' meta.json (features config and the
    train statistics), so that the channels are made exactly as the features stage made them.
    """

    def __init__(
        self,
        images: ShardRows,
        ids: Sequence[str],
        bands_meta: Mapping[str, Any],
        cfg: AugmentConfig,
        seed: int,
    ) -> None:
        if len(images) != len(ids):
            raise ValueError(f"{len(images)} images for {len(ids)} ids")
        self.images = images
        self.keys = np.array([row_key(i) for i in ids], dtype=np.uint64)
        self.features = FeatureConfig.from_params(
            {f.name: bands_meta[f.name] for f in fields(FeatureConfig)}
        )
        self.mean = np.asarray(bands_meta["mean"], np.float64)
        self.std = np.asarray(bands_meta["std"], np.float64)
        self.cfg = cfg
        self.seed = int(seed)
        probe = describe(images.read(np.arange(min(1, len(images)))), self.features)[0]
        if list(probe.shape[1:]) != list(bands_meta["item_shape"]):
            raise ConfigError(
                f"working images of shape {images.item_shape} give band channels of shape "
                f"{list(probe.shape[1:])}, but the bands hold {bands_meta['item_shape']}: "
                "were they made from other images?"
            )

    def __call__(self, rows: np.ndarray, epoch: int) -> np.ndarray:
        """float32 (len(rows), G, G, C): the channels of the augmented images at ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        images = augment(self.images.read(rows), self.keys[rows], self.seed, int(epoch), self.cfg)
        return standardise(describe(images, self.features)[0], self.mean, self.std)
