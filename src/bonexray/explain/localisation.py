"""Fracture boxes on the working image, and the pointing game that scores saliency against them.

Boxes come in YOLO's text format (one ``class cx cy w h`` line per box, coordinates
normalised by the ORIGINAL image's width and height, as FracAtlas's annotations/yolo/ has
them). repair letterboxes every image into a square working canvas (resize.letterbox_geometry):
a normalised x lands at ``left + x * width`` of the letterbox, a y at ``top + y * height``.

Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", 2016): a
map scores a hit when its maximum lies inside a box (optionally within ``margin`` pixels of
one). Its chance level is a uniformly random pixel of the canvas: it hits with probability
equal to the share of the canvas's pixels inside the boxes. A stricter chance level draws
only from the image itself (not the letterbox padding, where no box can be).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bonexray.data.resize import letterbox_geometry
from bonexray.errors import ConfigError


def read_yolo_boxes(path: str | Path) -> np.ndarray:
    """(K, 4) normalised cx, cy, w, h of a YOLO label file; (0, 4) when it lists none."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ConfigError(f"{path}:{number}: expected 'class cx cy w h', got {line!r}")
        try:
            box = [float(v) for v in fields[1:]]
        except ValueError:
            raise ConfigError(f"{path}:{number}: not numbers: {line!r}") from None
        if not all(0.0 <= v <= 1.0 for v in box):
            raise ConfigError(f"{path}:{number}: coordinates outside [0, 1]: {line!r}")
        rows.append(box)
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def boxes_on_working_image(boxes: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """(K, 4) x0, y0, x1, y1 in working-image pixels (continuous: pixel i spans [i, i+1))."""
    box = letterbox_geometry(width, height, size)
    cx, cy, w, h = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).T
    x0, x1 = box.left + (cx - w / 2) * box.width, box.left + (cx + w / 2) * box.width
    y0, y1 = box.top + (cy - h / 2) * box.height, box.top + (cy + h / 2) * box.height
    return np.clip(np.stack([x0, y0, x1, y1], axis=1), 0.0, size)


def box_mask(boxes: np.ndarray, size: int, margin: float = 0.0) -> np.ndarray:
    """(size, size) bool: pixels whose centre lies in a box grown by ``margin`` pixels."""
    centres = np.arange(size) + 0.5
    mask = np.zeros((size, size), dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4):
        rows = (centres >= y0 - margin) & (centres <= y1 + margin)
        cols = (centres >= x0 - margin) & (centres <= x1 + margin)
        mask |= rows[:, None] & cols[None, :]
    return mask


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the heatmap's maximum (first in row-major order on ties) is inside the mask."""
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and box mask {mask.shape} differ")
    return bool(mask.flat[int(np.argmax(heatmap))])


def content_mask(width: int, height: int, size: int) -> np.ndarray:
    """(size, size) bool: the pixels of the working canvas that hold the image, not padding."""
    box = letterbox_geometry(width, height, size)
    mask = np.zeros((size, size), dtype=bool)
    mask[box.top : box.top + box.height, box.left : box.left + box.width] = True
    return mask


def random_hit_rate(
    masks: Sequence[np.ndarray],
    draws: int,
    rng: np.random.Generator,
    within: Sequence[np.ndarray] | None = None,
) -> float:
    """Hit rate of ``draws`` uniformly random pixels per image, averaged over the images.

    Pixels are drawn from the whole canvas, or from each image's ``within`` mask (e.g.
    `content_mask`: a baseline that never points at the letterbox padding).
    """
    if not masks:
        return float("nan")
    rates = []
    for k, mask in enumerate(masks):
        allowed = np.flatnonzero(within[k]) if within is not None else np.arange(mask.size)
        rates.append(mask.flat[allowed[rng.integers(0, len(allowed), draws)]].mean())
    return float(np.mean(rates))


def expected_random_hit_rate(
    masks: Sequence[np.ndarray], within: Sequence[np.ndarray] | None = None
) -> float:
    """The random pixel's expected hit rate: the mean share of the canvas (or of ``within``)
    that lies inside the boxes."""
    if not masks:
        return float("nan")
    if within is None:
        return float(np.mean([mask.mean() for mask in masks]))
    return float(np.mean([(m & w).sum() / w.sum() for m, w in zip(masks, within, strict=True)]))
