"""Image files as bytes, with fixed encoder settings so equal pixels give equal bytes.

PIL writes no timestamps into PNG or JPEG unless asked; optimisation passes and progressive
scans are off, so the output depends only on the pixels and the settings here.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image

from bonexray.synth.geometry import Array

Format = Literal["jpeg", "png8", "png16", "png12"]
SUFFIX = {"jpeg": ".jpg", "png8": ".png", "png16": ".png", "png12": ".png"}


def to_uint8(image: Array) -> Array:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_pil(image: Array, fmt: Format) -> Image.Image:
    """A float image in [0, 1] as a PIL image of the bit depth `fmt` stores.

    png16 uses the full 16-bit range; png12 holds 12-bit detector values (0..4095) in a 16-bit
    container, as many modalities export them, so a reader must not assume 65535 is white.
    """
    clipped = np.clip(image, 0.0, 1.0)
    if fmt == "png16":
        return Image.fromarray(np.round(clipped * 65535.0).astype(np.uint16))
    if fmt == "png12":
        return Image.fromarray(np.round(clipped * 4095.0).astype(np.uint16))
    return Image.fromarray(to_uint8(clipped))


def save_bytes(picture: Image.Image, fmt: Format, quality: int = 90, **extra) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        picture.save(buffer, "JPEG", quality=quality, optimize=False, progressive=False, **extra)
    else:
        picture.save(buffer, "PNG", optimize=False, compress_level=6, **extra)
    return buffer.getvalue()


def encode(image: Array, fmt: Format, quality: int = 90) -> bytes:
    """Encode a float image in [0, 1] as JPEG or PNG bytes."""
    return save_bytes(to_pil(image, fmt), fmt, quality)
