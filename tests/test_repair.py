"""The repair stage: working-size images, letterbox geometry, truncated files zero-filled,
bad files quarantined with a reason, every input accounted for, bit-reproducible output."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paths import FRACATLAS
from PIL import Image

from bonexray.data import imaging
from bonexray.data import repair as repair_module
from bonexray.data.repair import load_working, repair
from bonexray.data.resize import letterbox_geometry, to_working
from bonexray.io.shards import ShardReader

SIZE = 64

# ---------------------------------------------------------------------------- to_working


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (300, 150, (0, 16, 64, 32)),
        (120, 240, (16, 0, 32, 64)),
        (64, 64, (0, 0, 64, 64)),
        (1000, 3, (0, 31, 64, 1)),
        (200, 199, (0, 0, 64, 64)),
    ],
)
def test_letterbox_geometry(width, height, expected):
    assert tuple(letterbox_geometry(width, height, SIZE)) == expected


def test_to_working_letterboxes_on_black_without_contrast_stretch():
    gray = np.full((150, 300), 0.5, dtype=np.float32)  # wide: bands above and below
    out = to_working(gray, SIZE)
    assert out.shape == (SIZE, SIZE) and out.dtype == np.uint8
    assert (out[:16] == 0).all() and (out[48:] == 0).all()
    assert (out[16:48] == 128).all()  # 0.5 -> 128 exactly: no per-image stretch


def test_to_working_maps_the_full_range_and_can_stretch():
    gray = np.zeros((40, 80), dtype=np.float32)
    gray[:, 40:] = 1.0
    out = to_working(gray, SIZE, keep_aspect=False)
    assert out.shape == (SIZE, SIZE)
    assert out[:, :24].max() == 0 and out[:, 40:].min() == 255


def test_to_working_reads_uint8_as_value_over_255():
    rng = np.random.default_rng(0)
    eight_bit = rng.integers(0, 256, (90, 70), dtype=np.uint8)
    as_float = eight_bit.astype(np.float32) / 255
    from_uint8, from_float = to_working(eight_bit, SIZE), to_working(as_float, SIZE)
    # Same resampling either way; float rounding may differ at exact half levels only.
    assert np.abs(from_uint8.astype(int) - from_float).max() <= 1
    assert (from_uint8 != from_float).mean() < 0.001


def test_to_working_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        to_working(np.zeros((4, 4, 3), np.float32), SIZE)


# ---------------------------------------------------------------------------- the stage


def gradient(width: int, height: int) -> np.ndarray:
    """A bright, textured 8-bit image (no black pixels, so padding is recognisable)."""
    y, x = np.mgrid[0:height, 0:width]
    return (60 + (x * 7 + y * 3) % 180).astype(np.uint8)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> pd.DataFrame:
    """A census of real files: good, truncated and broken, plus a sidecar."""
    root = tmp_path_factory.mktemp("raw")
    Image.fromarray(gradient(300, 150)).save(root / "wide.png")
    rgb = np.stack([gradient(120, 240)] * 3, axis=2)
    Image.fromarray(rgb).save(root / "tall_rgb.jpg", quality=95)
    half16 = np.zeros((80, 80), dtype=np.uint16)
    half16[:, 40:] = 65535  # black | white: a blank (constant) image would be refused
    Image.fromarray(half16).save(root / "half16.png")
    for name, progressive in (("full.jpg", False), ("progressive.jpg", True)):
        Image.fromarray(gradient(256, 256)).save(root / name, quality=95, progressive=progressive)
    for name, cut in (("full.jpg", "truncated.jpg"), ("progressive.jpg", "progressive_cut.jpg")):
        data = (root / name).read_bytes()
        (root / cut).write_bytes(data[: len(data) * 6 // 10])
    (root / "not_an_image.jpg").write_text("this is not a JPEG\n")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("sidecar\n")
    images = [
        "wide.png",
        "tall_rgb.jpg",
        "half16.png",
        "full.jpg",
        "truncated.jpg",
        "progressive_cut.jpg",
        "not_an_image.jpg",
        "empty.png",
        "vanished.png",
    ]
    roles = {**dict.fromkeys(images, "image"), "notes.txt": "sidecar"}
    return pd.DataFrame(
        {
            "id": [f"raw/{name}" for name in roles],
            "source": "clinic",
            "path": [str(root / name) for name in roles],
            "role": list(roles.values()),
        }
    )


def run_repair(census: pd.DataFrame, out: Path, workers: int = 1, **overrides):
    options = {
        "size": SIZE,
        "keep_aspect": True,
        "limits": imaging.Limits(),
        "shard_size": 3,
        "workers": workers,
        **overrides,
    }
    metrics = repair(census, out / "repair", out / "quarantine.csv", **options)
    return metrics, ShardReader(out / "repair"), pd.read_csv(out / "quarantine.csv")


@pytest.fixture(scope="module")
def repaired(sample, tmp_path_factory):
    return run_repair(sample, tmp_path_factory.mktemp("out"))


def test_every_image_is_kept_or_quarantined_once(sample, repaired):
    metrics, reader, quarantine = repaired
    images = set(sample.loc[sample["role"] == "image", "id"])
    kept, dropped = set(reader.index["id"]), set(quarantine["id"])
    assert kept | dropped == images and not kept & dropped
    assert len(reader) + len(quarantine) == len(images) == metrics["images"]
    assert kept == {
        "raw/wide.png",
        "raw/tall_rgb.jpg",
        "raw/half16.png",
        "raw/full.jpg",
        "raw/truncated.jpg",
        "raw/progressive_cut.jpg",
    }


def test_outputs_are_working_size_uint8(repaired):
    _, reader, _ = repaired
    assert reader.item_shape == (SIZE, SIZE)
    assert reader.meta["dtype"] == "|u1" and reader.meta["size"] == SIZE
    stack = reader[:]
    assert stack.shape == (len(reader), SIZE, SIZE) and stack.dtype == np.uint8
    index = reader.index.set_index("id")
    assert list(reader.index.columns) == [
        "id",
        "shard",
        "row",
        "source",
        "status",
        "filled_from_row",
        "orig_width",
        "orig_height",
        "pixel_sha256",
    ]
    assert (index.loc["raw/wide.png", ["orig_width", "orig_height"]] == [300, 150]).all()
    for item_id in index.index:
        pixels = reader[reader.position(item_id)]
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == index.loc[item_id, "pixel_sha256"]


def test_letterbox_bands_are_black_and_content_is_not(repaired):
    _, reader, _ = repaired
    wide = reader[reader.position("raw/wide.png")]  # 300x150 -> content rows 16..47
    assert (wide[:16] == 0).all() and (wide[48:] == 0).all()
    assert wide[16:48].min() > 30
    tall = reader[reader.position("raw/tall_rgb.jpg")]  # 120x240 -> content columns 16..47
    assert (tall[:, :16] == 0).all() and (tall[:, 48:] == 0).all()
    assert tall[:, 16:48].min() > 30
    half = reader[reader.position("raw/half16.png")]  # 16-bit full range -> 0 | 255
    assert (half[:, : SIZE // 4] == 0).all() and (half[:, -SIZE // 4 :] == 255).all()


def test_truncated_jpeg_is_repaired_with_zero_filled_rows(repaired):
    metrics, reader, _ = repaired
    row = reader.index.set_index("id").loc["raw/truncated.jpg"]
    assert row["status"] == "repaired"
    filled = int(row["filled_from_row"])
    assert 0 < filled < 256  # original coordinates
    pixels = reader[reader.position("raw/truncated.jpg")]
    # LANCZOS-3 reaches 3 output rows either side of the boundary (its ringing is faint).
    boundary = filled * SIZE / 256
    assert (pixels[int(np.ceil(boundary)) + 3 :] == 0).all()
    assert pixels[: int(boundary) - 3].min() > 30
    assert pixels[int(np.ceil(boundary)) + 1 :].max() < 8
    intact = reader.index.set_index("id").loc["raw/full.jpg"]
    assert intact["status"] == "ok" and pd.isna(intact["filled_from_row"])
    assert metrics["repaired"] == 2 and metrics["zero_filled_rows"] == 256 - filled


def test_cut_progressive_jpeg_is_repaired_without_filled_rows(repaired):
    _, reader, _ = repaired
    row = reader.index.set_index("id").loc["raw/progressive_cut.jpg"]
    assert row["status"] == "repaired" and pd.isna(row["filled_from_row"])
    assert reader[reader.position("raw/progressive_cut.jpg")].min() > 30  # every row present


def test_bad_files_are_quarantined_with_reasons(repaired):
    metrics, _, quarantine = repaired
    quarantine = quarantine.set_index("id")
    assert set(quarantine.index) == {"raw/not_an_image.jpg", "raw/empty.png", "raw/vanished.png"}
    assert list(quarantine.columns) == ["path", "source", "status", "reason"]
    assert not quarantine["status"].isin(imaging.USABLE).any()
    assert quarantine["status"].isin(imaging.STATUSES).all()
    assert quarantine["reason"].str.len().min() > 0
    assert metrics["quarantined"] == 3 and sum(metrics["quarantined_by_reason"].values()) == 3


def test_decompression_bomb_guard_quarantines_large_images(sample, tmp_path):
    census = sample.assign(status="ok")  # as if census had found every file usable
    metrics, reader, quarantine = run_repair(
        census, tmp_path, limits=imaging.Limits(max_image_pixels=100 * 100)
    )
    bombs = quarantine.set_index("id")["status"]
    assert bombs["raw/full.jpg"] == "bomb"  # 256x256 > the limit
    assert "raw/half16.png" in set(reader.index["id"])  # 80x80 is under it
    assert metrics["quarantined_by_reason"]["bomb"] == 5
    assert metrics["usability_changed_since_census"] == metrics["quarantined"] == 8


def test_output_is_bit_reproducible_whatever_the_worker_count(
    sample, repaired, tmp_path, monkeypatch
):
    monkeypatch.setattr(repair_module, "MIN_IMAGES_FOR_POOL", 0)  # a real pool, even for 9
    first = tmp_path / "one"
    second = tmp_path / "two"
    metrics_one = run_repair(sample, first, workers=1)[0]
    metrics_two = run_repair(sample, second, workers=2)[0]
    assert metrics_one == metrics_two == repaired[0]

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    assert digests(first) == digests(second)
    assert len(digests(first)) == 5  # two shards of 3 + index + meta + quarantine


def test_load_working_is_the_shared_preprocessing(sample):
    path = sample.set_index("id").loc["raw/wide.png", "path"]
    working = load_working(path, SIZE, True, imaging.Limits())
    assert working.status == "ok" and working.pixels.shape == (SIZE, SIZE)
    assert load_working(path + ".missing", SIZE, True, imaging.Limits()).pixels is None


@pytest.mark.fracatlas
@pytest.mark.skipif(not (FRACATLAS / "images").is_dir(), reason="FracAtlas not available")
def test_real_fracatlas_images_repair_cleanly(tmp_path):
    paths = sorted((FRACATLAS / "images").rglob("*.jpg"))[:12]
    census = pd.DataFrame(
        {
            "id": [p.name for p in paths],
            "source": "fracatlas",
            "path": [str(p) for p in paths],
            "role": "image",
        }
    )
    metrics, reader, quarantine = run_repair(census, tmp_path, workers=2)
    assert metrics["ok"] == 12 and quarantine.empty
    assert (reader.index["orig_width"] >= SIZE).all()
    assert reader[:].max(axis=(1, 2)).min() > 100  # real radiographs, not blank canvases
