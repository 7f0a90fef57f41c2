"""Decoded grayscale image -> the working-size uint8 image every later stage sees.

One function, :func:`to_working`, used by the ``repair`` stage and (later) by the predict
CLI, so a model at inference time sees exactly the preprocessing it was trained on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

PAD_VALUE = 0
# LANCZOS on the float image: PIL widens the kernel with the downscale factor, so it is a
# proper anti-aliasing filter (no moire from fine trabecular texture) and keeps edges
# sharper than BOX/area averaging. It runs in PIL's C code, deterministic for a PIL version.
RESAMPLE = Image.Resampling.LANCZOS
RESAMPLE_NAME = "lanczos"


class Letterbox(NamedTuple):
    """Where the resized image lies inside the square canvas (pixels)."""

    left: int
    top: int
    width: int
    height: int


def letterbox_geometry(width: int, height: int, size: int) -> Letterbox:
    """Scale the long side to ``size``, keep the aspect ratio, centre the result."""
    if width < 1 or height < 1 or size < 1:
        raise ValueError(f"letterbox of a {width}x{height} image to {size}: sizes must be >= 1")
    scale = size / max(width, height)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    return Letterbox((size - new_w) // 2, (size - new_h) // 2, new_w, new_h)


def to_working(gray: np.ndarray, size: int, keep_aspect: bool = True) -> np.ndarray:
    """Resize a 2-D float image in [0, 1] to a ``(size, size)`` uint8 image.

    Intensities map linearly, 0 -> 0 and 1 -> 255, with no per-image contrast stretch:
    the decoder already scaled each file's full bit depth to [0, 1], and a per-image
    stretch would erase real exposure differences and amplify noise in flat images.
    Resampling is done in float before quantising, so 12/16-bit sources keep their
    precision through the downscale. With ``keep_aspect`` the image is letterboxed on a
    ``PAD_VALUE`` (black) canvas; otherwise it is stretched to the square.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise ValueError(f"expected a non-empty 2-D grayscale array, got shape {gray.shape}")
    height, width = gray.shape
    box = letterbox_geometry(width, height, size) if keep_aspect else Letterbox(0, 0, size, size)
    as_float_image = Image.fromarray(gray)  # float32 2-D -> PIL mode "F"
    resized = as_float_image.resize((box.width, box.height), RESAMPLE)
    # LANCZOS overshoots slightly at sharp edges; clip before quantising.
    pixels = np.rint(np.clip(np.asarray(resized), 0.0, 1.0) * 255.0).astype(np.uint8)
    canvas = np.full((size, size), PAD_VALUE, dtype=np.uint8)
    canvas[box.top : box.top + box.height, box.left : box.left + box.width] = pixels
    return canvas
