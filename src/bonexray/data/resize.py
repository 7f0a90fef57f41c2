"""Decoded grayscale image -> the working-size uint8 image every later stage sees.

:func:`to_working` (array -> working image) and :func:`load_working` (file -> working
image) are used by the ``repair`` stage and (later) by the predict CLI, so a model at
inference time sees exactly the preprocessing it was trained on. repair runs
:func:`load_working` in worker processes: this module imports nothing heavier than numpy,
PIL and the decoder, so that a spawned worker starts quickly.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from bonexray.data import imaging

PAD_VALUE = 0
# LANCZOS: PIL widens the kernel with the downscale factor, so it is a proper anti-aliasing
# filter (no moire from fine trabecular texture) and keeps edges sharper than BOX/area
# averaging. It runs in PIL's C code, deterministic for a PIL version.
RESAMPLE = Image.Resampling.LANCZOS
RESAMPLE_NAME = "lanczos"
# Large downscales (a 3000 px DICOM to 128) first box-reduce by an integer factor, leaving
# at least this factor to LANCZOS, whose kernel otherwise widens with the factor. Pillow
# documents a gap of 3 as indistinguishable from a full LANCZOS in most cases (at 10x:
# <= 3 levels apart, 0.1 on average, 30% faster). Downscales below 6x are untouched.
REDUCING_GAP = 3.0


class Working(NamedTuple):
    """One file at the working size, or why it has none (small and picklable)."""

    status: str  # imaging.STATUSES; pixels are there exactly when it is in imaging.USABLE
    reason: str
    pixels: np.ndarray | None  # (size, size) uint8; None when the file is not usable
    width: int | None  # full-resolution size after EXIF orientation, as imaging.Decoded
    height: int | None
    filled_from_row: int | None  # zero-filled from this full-resolution row on (truncated)
    colourfulness: float | None = None  # imaging.Decoded.colourfulness


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


def content_box(width: int | None, height: int | None, size: int, keep_aspect: bool) -> Letterbox:
    """Where to_working puts a width x height image in the square (all of it when stretched,
    or when the size is unknown)."""
    if not keep_aspect or not width or not height:
        return Letterbox(0, 0, size, size)
    return letterbox_geometry(width, height, size)


def to_working(gray: np.ndarray, size: int, keep_aspect: bool = True) -> np.ndarray:
    """Resize a 2-D grayscale image to a ``(size, size)`` uint8 image.

    ``gray`` is float in [0, 1], or uint8 read as value / 255: what ``imaging.Decoded``
    holds in ``array`` and ``gray``. Intensities map linearly, 0 -> 0 and 1 -> 255, with
    no per-image contrast stretch: the decoder already scaled each file's full bit depth,
    and a per-image stretch would erase real exposure differences and amplify noise in
    flat images. Resampling is done in float before quantising, so 12/16-bit sources keep
    their precision through the downscale (and LANCZOS ringing is not clipped halfway, as
    PIL's 8-bit mode does between its two passes). With ``keep_aspect`` the image is
    letterboxed on a ``PAD_VALUE`` (black) canvas; otherwise it is stretched to the square.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise ValueError(f"expected a non-empty 2-D grayscale array, got shape {gray.shape}")
    height, width = gray.shape
    box = content_box(width, height, size, keep_aspect)
    if gray.dtype == np.uint8:  # PIL widens 8-bit to float in one pass, values 0..255
        as_float, full_scale = Image.fromarray(gray).convert("F"), 255.0
    else:
        as_float, full_scale = Image.fromarray(gray.astype(np.float32, copy=False)), 1.0
    resized = as_float.resize((box.width, box.height), RESAMPLE, reducing_gap=REDUCING_GAP)
    # LANCZOS overshoots slightly at sharp edges; clip before quantising.
    resized = np.clip(np.asarray(resized), 0.0, full_scale)
    pixels = np.rint(resized * (255.0 / full_scale)).astype(np.uint8)
    canvas = np.full((size, size), PAD_VALUE, dtype=np.uint8)
    canvas[box.top : box.top + box.height, box.left : box.left + box.width] = pixels
    return canvas


def load_working(path: str | Path, size: int, keep_aspect: bool, limits: imaging.Limits) -> Working:
    """Decode one file and bring it to the working size; never raises for a bad file.

    JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still covers the
    working size: the scaled inverse DCT keeps only the low frequencies, so it is itself an
    anti-aliased downscale, and LANCZOS then has a quarter (or less) of the pixels to filter.
    """
    decoded = imaging.decode(path, limits=limits, draft=(size, size))
    pixels = to_working(decoded.gray, size, keep_aspect) if decoded.usable else None
    return Working(
        decoded.status,
        decoded.reason,
        pixels,
        decoded.width,
        decoded.height,
        decoded.filled_from_row,
        decoded.colourfulness,
    )
