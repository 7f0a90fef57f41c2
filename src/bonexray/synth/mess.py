"""Deliberate real-world damage: the defects a pipeline meets in collected radiographs.

Each function returns the bytes of one damaged or odd file. None of them uses global state;
randomness comes from the generator passed in.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from bonexray.synth.encode import save_bytes, to_pil, to_uint8
from bonexray.synth.geometry import Array

JPEG_START_OF_SCAN = b"\xff\xda"
PNG_IDAT = b"IDAT"


def truncate_jpeg(data: bytes, rng: np.random.Generator) -> bytes:
    """Cut a JPEG inside its entropy-coded scan (an interrupted download or copy)."""
    scan = data.find(JPEG_START_OF_SCAN)
    if scan < 0:
        raise ValueError("not a baseline JPEG: no start-of-scan marker")
    return data[: scan + int((len(data) - scan) * rng.uniform(0.35, 0.8))]


def truncate_png(data: bytes, rng: np.random.Generator) -> bytes:
    """Cut a PNG inside its image data."""
    start = data.find(PNG_IDAT)
    if start < 0:
        raise ValueError("not a PNG: no IDAT chunk")
    return data[: start + 8 + int((len(data) - start - 8) * rng.uniform(0.3, 0.7))]


def exif_rotated(image: Array, quality: int) -> bytes:
    """A JPEG stored sideways with EXIF Orientation 6: upright only after exif_transpose."""
    picture = Image.fromarray(to_uint8(image)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return save_bytes(picture, "jpeg", quality, exif=exif.tobytes())


def rgb_tinted(image: Array, rng: np.random.Generator, quality: int) -> bytes:
    """A colour JPEG of a grey picture (a photo of a light box, a screenshot)."""
    grey = to_uint8(image).astype(np.float32)
    tint = rng.uniform(0.85, 1.0, 3)
    rgb = np.clip(grey[..., None] * tint + rng.uniform(0, 12, 3), 0, 255).astype(np.uint8)
    return save_bytes(Image.fromarray(rgb), "jpeg", quality)


def palette(image: Array) -> bytes:
    """A palette ('P' mode) PNG with 64 grey levels."""
    picture = Image.fromarray(to_uint8(image)).quantize(64, method=Image.Quantize.MEDIANCUT)
    return save_bytes(picture, "png8")


def near_duplicate(image: Array, rng: np.random.Generator) -> bytes:
    """The same picture cropped by a few pixels, resized by 80-95 %, re-saved as JPEG 70-82."""
    h, w = image.shape
    top, left, bottom, right = (int(x) for x in rng.integers(1, 7, 4))
    crop = image[top : h - bottom, left : w - right]
    picture = to_pil(crop, "png8")
    factor = rng.uniform(0.8, 0.95)
    size = (round(picture.width * factor), round(picture.height * factor))
    picture = picture.resize(size, Image.Resampling.BILINEAR)
    return save_bytes(picture, "jpeg", int(rng.integers(70, 83)))


def lfs_pointer(rng: np.random.Generator) -> bytes:
    """A Git LFS pointer where an image should be (repository cloned without LFS)."""
    oid = hashlib.sha256(rng.bytes(32)).hexdigest()
    size = int(rng.integers(20_000, 90_000))
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def html_error_page() -> bytes:
    """An HTTP error page saved under an image name by a scraping script."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>\n"
        b"<body><h1>Forbidden</h1><p>You don't have permission to access this resource.</p>"
        b"<hr><address>Apache Server</address></body></html>\n"
    )
