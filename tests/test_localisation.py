"""Fracture boxes through the letterbox, and the pointing game's scoring, on synthetic boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bonexray.data.resize import to_working
from bonexray.explain import localisation as loc


def test_yolo_files_are_read_and_checked(tmp_path: Path):
    path = tmp_path / "IMG1.txt"
    path.write_text("0 0.5 0.25 0.2 0.1\n\n3 0.1 0.9 0.05 0.05\n")
    np.testing.assert_allclose(
        loc.read_yolo_boxes(path), [[0.5, 0.25, 0.2, 0.1], [0.1, 0.9, 0.05, 0.05]]
    )
    path.write_text("")
    assert loc.read_yolo_boxes(path).shape == (0, 4)
    path.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(ValueError, match=r"IMG1.txt:1: expected 'class cx cy w h'"):
        loc.read_yolo_boxes(path)
    path.write_text("0 0.5 0.5 0.2 0.1\n0 1.5 0.5 0.2 0.1\n")
    with pytest.raises(ValueError, match=r"IMG1.txt:2: coordinates outside \[0, 1\]"):
        loc.read_yolo_boxes(path)


def test_boxes_follow_the_letterbox_by_hand():
    # 200x100 into 128: scaled to 128x64, 32 px of padding above and below.
    box = loc.boxes_on_working_image(np.array([[0.5, 0.5, 0.5, 0.5]]), 200, 100, 128)
    np.testing.assert_allclose(box, [[32, 48, 96, 80]])
    # 100x200 (portrait): 64x128, 32 px of padding left and right.
    box = loc.boxes_on_working_image(np.array([[0.25, 0.75, 0.5, 0.5]]), 100, 200, 128)
    np.testing.assert_allclose(box, [[32, 64, 64, 128]])


@pytest.mark.parametrize("width, height", [(300, 170), (173, 411), (256, 256)])
def test_a_box_lands_where_repair_puts_its_pixels(width, height):
    """A bright rectangle drawn in the original image ends up inside its mapped box."""
    cx, cy, w, h = 0.3, 0.6, 0.2, 0.15
    original = np.zeros((height, width), np.uint8)
    x0, x1 = round((cx - w / 2) * width), round((cx + w / 2) * width)
    y0, y1 = round((cy - h / 2) * height), round((cy + h / 2) * height)
    original[y0:y1, x0:x1] = 255
    working = to_working(original, 128)
    mapped = loc.boxes_on_working_image(np.array([[cx, cy, w, h]]), width, height, 128)
    inside = loc.box_mask(mapped, 128)
    bright = working > 128
    assert bright.any() and (bright <= loc.box_mask(mapped, 128, margin=1)).all()
    assert bright[inside].mean() > 0.8  # and the box is mostly bright, not shifted


def test_masks_count_pixel_centres_and_margins():
    mask = loc.box_mask(np.array([[2.0, 1.0, 4.0, 3.0]]), 8)
    assert mask.sum() == 4 and mask[1:3, 2:4].all()
    assert loc.box_mask(np.array([[2.0, 1.0, 4.0, 3.0]]), 8, margin=1).sum() == 16
    both = loc.box_mask(np.array([[0, 0, 2, 2], [1, 1, 3, 3]], dtype=float), 8)
    assert both.sum() == 7  # a union: the overlapping pixel counts once


def test_pointing_hits_only_when_the_peak_is_in_a_box():
    mask = loc.box_mask(np.array([[4.0, 4.0, 8.0, 8.0]]), 16)
    heatmap = np.zeros((16, 16))
    heatmap[5, 6] = 1.0
    assert loc.pointing_hit(heatmap, mask)
    heatmap[12, 1] = 2.0
    assert not loc.pointing_hit(heatmap, mask)
    with pytest.raises(ValueError, match="differ"):
        loc.pointing_hit(np.zeros((8, 8)), mask)


def test_the_random_baseline_hits_at_the_box_share():
    size = 32
    masks = [
        loc.box_mask(np.array([[0.0, 0.0, 16.0, 16.0]]), size),  # a quarter of the canvas
        loc.box_mask(np.array([[0.0, 0.0, 32.0, 8.0]]), size),  # another quarter
        loc.box_mask(np.array([[0.0, 0.0, 8.0, 8.0]]), size),  # a sixteenth
    ]
    expected = loc.expected_random_hit_rate(masks)
    assert expected == pytest.approx((0.25 + 0.25 + 1 / 16) / 3)
    simulated = loc.random_hit_rate(masks, 20000, np.random.default_rng(0))
    assert simulated == pytest.approx(expected, abs=0.01)
    # Drawn from the image only (a 32x16 landscape letterboxed: rows 8..24 hold it).
    content = [loc.content_mask(64, 32, size)] * 3
    assert content[0].sum() == 32 * 16 and content[0][8:24].all()
    within = loc.expected_random_hit_rate(masks, within=content)
    assert within == pytest.approx((128 / 512 + 0 / 512 + 0 / 512) / 3)
    simulated = loc.random_hit_rate(masks, 20000, np.random.default_rng(1), within=content)
    assert simulated == pytest.approx(within, abs=0.01)
    assert np.isnan(loc.expected_random_hit_rate([]))
