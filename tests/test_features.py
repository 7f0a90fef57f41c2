from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import pywt
import yaml
from paths import REPO

from bonexray.features import wavelet as F
from bonexray.io.shards import ShardReader, ShardWriter

SIZE = 64


def config(**changes) -> F.FeatureConfig:
    base = dict(
        wavelet="haar",
        level=2,
        mode="periodization",
        fft=True,
        grid="finest",
        rf_approx_size=4,
        entropy_bins=32,
        shard_size=5,
    )
    return F.FeatureConfig.from_params(base | changes)


def fake_split_and_repair(tmp_path, images: np.ndarray, splits: list[str]):
    """A repair shard dir holding ``images`` and a split table listing them in reverse order."""
    ids = [f"data/x/img{i:02d}.png" for i in range(len(images))]
    with ShardWriter(tmp_path / "repair", images.shape[1:], np.uint8, shard_size=4) as writer:
        for item_id, image in zip(ids, images, strict=True):
            writer.add(item_id, image, source="x", status="ok")
    split = pd.DataFrame({"id": ids, "split": splits}).iloc[::-1].reset_index(drop=True)
    return split, ShardReader(tmp_path / "repair")


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, SIZE, SIZE), dtype=np.uint8)


SPLITS = ["train"] * 6 + ["val"] * 3 + ["test"] * 3


@pytest.mark.parametrize("wavelet", ["haar", "db2", "bior2.2"])
def test_stored_bands_invert_to_the_image(tmp_path, wavelet):
    images = random_images(len(SPLITS))
    split, reader = fake_split_and_repair(tmp_path, images, SPLITS)
    cfg = config(wavelet=wavelet)
    F.build(split, reader, tmp_path / "features", cfg)

    bands = ShardReader(tmp_path / "features" / F.BANDS_DIR)
    mean, std = np.array(bands.meta["mean"]), np.array(bands.meta["std"])
    for pos in (0, 7):
        item_id = split["id"][pos]
        raw = bands.take_ids([item_id])[0].astype(np.float64) * std + mean
        coeffs = F.coefficients_from_channels(raw, cfg)
        restored = pywt.waverec2(coeffs, wavelet, mode="periodization")
        original = reader.take_ids([item_id])[0] / 255.0
        np.testing.assert_allclose(restored, original, atol=2e-5)


def test_coarse_bands_on_the_grid_equal_their_coefficients():
    # db2 + symmetric padding: native sizes 18 (level 2) and 33 (level 1), a non-integer ratio.
    image = random_images(1, seed=3)
    cfg = config(wavelet="db2", mode="symmetric", fft=False)
    coeffs = F.wavelet_coefficients(image / 255.0, cfg)
    np.testing.assert_allclose(
        pywt.waverec2(coeffs, "db2", mode="symmetric", axes=(-2, -1)), image / 255.0, atol=1e-12
    )
    channels, _ = F.describe(image, cfg)
    assert channels.shape == (1, 33, 33, 7)
    for c, (name, band) in enumerate(F.named_bands(coeffs)):
        plane = channels[0, ..., c]
        # Nearest upsampling: every native coefficient appears, and nothing else does.
        assert set(np.unique(plane)) == set(np.unique(band[0].astype(np.float32))), name
        rows = np.arange(33) * band.shape[-2] // 33
        np.testing.assert_array_equal(plane, band[0][np.ix_(rows, rows)].astype(np.float32))


@pytest.mark.parametrize("k", [3, 8])
def test_fft_of_periodic_pattern_peaks_off_centre_along_its_axis(k):
    n = 64
    x = np.arange(n)
    horizontal = np.tile(np.cos(2 * np.pi * k * x / n), (n, 1))  # varies along columns
    spectrum = F.fft_log_magnitude(horizontal)
    top_two = np.argsort(spectrum, axis=None)[-2:]
    peaks = {tuple(int(v) for v in np.unravel_index(i, spectrum.shape)) for i in top_two}
    assert peaks == {(n // 2, n // 2 - k), (n // 2, n // 2 + k)}
    # The transposed pattern peaks on the column through the centre: the axes are spatial.
    spectrum_t = F.fft_log_magnitude(horizontal.T)
    np.testing.assert_allclose(spectrum_t, spectrum.T, atol=1e-9)


def test_fft_channel_on_the_grid_keeps_the_peaks_at_half_distance():
    k, n = 8, SIZE
    pattern = 127.5 + 127.0 * np.cos(2 * np.pi * k * np.arange(n) / n)
    image = np.tile(np.round(pattern), (n, 1)).astype(np.uint8)[None]
    channels, _ = F.describe(image, config())
    fft = channels[0, ..., -1].copy()
    g = fft.shape[0]
    fft[g // 2, g // 2] = -np.inf  # the mean brightness (DC) is the largest term; set it aside
    top_two = np.argsort(fft, axis=None)[-2:]
    peaks = {tuple(int(v) for v in np.unravel_index(i, fft.shape)) for i in top_two}
    assert peaks == {(g // 2, g // 2 - k // 2), (g // 2, g // 2 + k // 2)}


def test_normalisation_uses_train_images_only(tmp_path):
    images = random_images(len(SPLITS), seed=1)
    first_split, reader = fake_split_and_repair(tmp_path / "a", images, SPLITS)
    F.build(first_split, reader, tmp_path / "a" / "features", config())

    changed = images.copy()
    held_out = np.array([s != "train" for s in SPLITS])
    changed[held_out] = 255 - changed[held_out] // 3
    split, reader = fake_split_and_repair(tmp_path / "b", changed, SPLITS)
    F.build(split, reader, tmp_path / "b" / "features", config())

    a = ShardReader(tmp_path / "a" / "features" / F.BANDS_DIR)
    b = ShardReader(tmp_path / "b" / "features" / F.BANDS_DIR)
    assert a.meta["mean"] == b.meta["mean"] and a.meta["std"] == b.meta["std"]
    is_train = (split["split"] == "train").to_numpy()
    np.testing.assert_array_equal(
        a.take(np.flatnonzero(is_train)), b.take(np.flatnonzero(is_train))
    )
    assert not np.allclose(a.take(np.flatnonzero(~is_train)), b.take(np.flatnonzero(~is_train)))
    # Train channels are standardised: mean 0 and std 1 per channel over train pixels.
    train = a.take(np.flatnonzero(is_train)).astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=(0, 1, 2)), 1.0, atol=1e-4)


def test_outputs_follow_split_order_and_name_every_column(tmp_path):
    images = random_images(len(SPLITS), seed=2)
    split, reader = fake_split_and_repair(tmp_path, images, SPLITS)
    cfg = config()
    metrics = F.build(split, reader, tmp_path / "features", cfg)
    bands = ShardReader(tmp_path / "features" / F.BANDS_DIR)
    vectors = ShardReader(tmp_path / "features" / F.VECTORS_DIR)
    assert bands.index["id"].tolist() == split["id"].tolist() == vectors.index["id"].tolist()
    assert bands.index["split"].tolist() == split["split"].tolist()
    assert bands.meta["channels"] == ["A2", "H2", "V2", "D2", "H1", "V1", "D1", "fft"]
    assert bands.item_shape == (SIZE // 2, SIZE // 2, 8)
    assert vectors.item_shape == (8 * 4 + 4 * 4,)
    assert len(vectors.meta["feature_names"]) == vectors.item_shape[0]
    assert metrics["n_channels"] == 8 and metrics["vector_dim"] == 48
    assert np.isfinite(vectors.take(range(len(vectors)))).all()


def test_a_change_of_wavelet_changes_channels_as_expected():
    image = random_images(1, seed=4)
    haar, _ = F.describe(image, config())
    db2, _ = F.describe(image, config(wavelet="db2"))
    deeper, deeper_vectors = F.describe(image, config(level=3))
    plain, _ = F.describe(image, config(fft=False))
    assert haar.shape == db2.shape == (1, 32, 32, 8)  # same layout, other filters
    assert not np.allclose(haar[..., :-1], db2[..., :-1])
    np.testing.assert_array_equal(haar[..., -1], db2[..., -1])  # the FFT does not depend on it
    assert deeper.shape == (1, 32, 32, 11)
    assert F.channel_names(config(level=3))[:4] == ["A3", "H3", "V3", "D3"]
    assert deeper_vectors.shape == (1, 11 * 4 + 16)
    assert plain.shape == (1, 32, 32, 7)
    np.testing.assert_array_equal(plain, haar[..., :-1])
    # haar level 2: the approximation is the 4x4 block mean times 4 (two orthonormal steps).
    block_mean = (image[0] / 255.0).reshape(16, 4, 16, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(haar[0, ::2, ::2, 0], 4 * block_mean, atol=1e-5)


def test_band_statistics_definitions():
    constant = np.full((1, 8, 8), 3.0)
    halves = np.concatenate([np.zeros((1, 8, 4)), np.ones((1, 8, 4))], axis=2)
    uniform = np.arange(64, dtype=np.float64).reshape(1, 8, 8)  # 2 values in each of 32 bins
    stats = F.band_statistics(np.concatenate([constant, halves, uniform]), bins=32)
    np.testing.assert_allclose(stats[0], [9.0, 3.0, 0.0, 0.0])
    np.testing.assert_allclose(stats[1], [0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(stats[2, 3], 5.0)


def test_area_resize_is_a_box_mean():
    rng = np.random.default_rng(5)
    a = rng.random((2, 12, 12))
    np.testing.assert_allclose(
        F.area_resize(a, (4, 4)), a.reshape(2, 4, 3, 4, 3).mean(axis=(2, 4)), atol=1e-12
    )
    assert F.area_resize(a, (5, 7)).mean() == pytest.approx(a.mean())


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="features.wavelet"):
        config(wavelet="nope")
    with pytest.raises(ValueError, match="features.level"):
        F.describe(random_images(1), config(level=9))
    split, reader = fake_split_and_repair(tmp_path, random_images(3), ["train"] * 3)
    split.loc[1, "id"] = "data/x/missing.png"
    with pytest.raises(ValueError, match="have no item"):
        F.build(split, reader, tmp_path / "features", config())


def test_stage_script_writes_outputs_and_metrics(tmp_path):
    split, _ = fake_split_and_repair(tmp_path, random_images(len(SPLITS), seed=6), SPLITS)
    split.to_parquet(tmp_path / "split.parquet")
    params = {"features": {**dataclasses.asdict(config()), "rf_approx_size": 8}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(
        [
            sys.executable, str(REPO / "stages" / "features.py"),
            "--split", str(tmp_path / "split.parquet"),
            "--repair", str(tmp_path / "repair"),
            "--out", str(tmp_path / "features"),
            "--metrics", str(tmp_path / "metrics" / "features.json"),
            "--params", str(tmp_path / "params.yaml"),
        ],
        check=True,
    )  # fmt: skip
    metrics = json.loads((tmp_path / "metrics" / "features.json").read_text())
    assert metrics["vector_dim"] == 8 * 4 + 64
    assert metrics["channels"] == "A2,H2,V2,D2,H1,V1,D1,fft"
    assert ShardReader(tmp_path / "features" / F.VECTORS_DIR).meta["rf_approx_size"] == 8


def images_of(side: int, n: int = 2, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, side, side), dtype=np.uint8)


@pytest.mark.parametrize("grid", F.GRIDS)
@pytest.mark.parametrize("wavelet", ["haar", "db2"])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_either_layout_reconstructs_the_image(grid, wavelet, level):
    images = images_of(64)
    cfg = config(wavelet=wavelet, level=level, grid=grid)
    channels, _ = F.describe(images, cfg)
    assert channels.shape[-1] == len(F.channel_names(cfg))
    coeffs = F.coefficients_from_channels(channels.astype(np.float64), cfg)
    restored = pywt.waverec2(coeffs, wavelet, mode="periodization", axes=(-2, -1))
    # float32 storage: 1e-6 relative to the brightest pixel
    np.testing.assert_allclose(restored, images / 255.0, rtol=0, atol=1e-6)


def test_the_finest_inverse_holds_for_a_padding_mode_too():
    images = images_of(64, seed=8)
    cfg = config(wavelet="db2", mode="symmetric", level=2, fft=False)
    coeffs = F.coefficients_from_channels(F.describe(images, cfg)[0].astype(np.float64), cfg)
    restored = pywt.waverec2(coeffs, "db2", mode="symmetric", axes=(-2, -1))
    np.testing.assert_allclose(restored, images / 255.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("side", "level", "shape"),
    [(256, 2, (64, 64, 16)), (512, 3, (64, 64, 64)), (64, 1, (32, 32, 4))],
)
def test_coarsest_grid_shapes(side, level, shape):
    cfg = config(level=level, grid="coarsest", fft=False)
    channels, _ = F.describe(images_of(side, n=1), cfg)
    assert channels.shape == (1, *shape)
    assert len(F.channel_names(cfg)) == shape[-1] == 4**level
    with_fft, _ = F.describe(images_of(side, n=1), config(level=level, grid="coarsest"))
    assert with_fft.shape == (1, *shape[:2], shape[-1] + 1)


def test_coarsest_channels_are_named_sub_positions_of_their_bands():
    image = images_of(64, n=1, seed=9)
    cfg = config(level=3, grid="coarsest")
    names = F.channel_names(cfg)
    assert names[:4] == ["A3", "H3", "V3", "D3"]
    assert names[4:8] == ["H2.r0c0", "H2.r0c1", "H2.r1c0", "H2.r1c1"]
    assert names[16:18] == ["H1.r0c0", "H1.r0c1"] and names[-2:] == ["D1.r3c3", "fft"]
    assert len(names) == len(set(names)) == 65
    channels, _ = F.describe(image, cfg)
    bands = dict(F.named_bands(F.wavelet_coefficients(image / 255.0, cfg)))
    plane = {name: channels[0, ..., c] for c, name in enumerate(names)}
    np.testing.assert_array_equal(plane["A3"], bands["A3"][0].astype(np.float32))
    # "H1.r1c2" at grid cell (i, j) is H1[4 i + 1, 4 j + 2]
    np.testing.assert_array_equal(plane["H1.r1c2"], bands["H1"][0, 1::4, 2::4].astype(np.float32))
    np.testing.assert_array_equal(plane["V2.r1c0"], bands["V2"][0, 1::2, 0::2].astype(np.float32))
    # The FFT channel is the same area average as on the finest grid, onto 8 x 8.
    finest, _ = F.describe(image, config(level=3))
    np.testing.assert_allclose(
        plane["fft"], F.area_resize(finest[0, ..., -1].astype(np.float64), (8, 8)), atol=1e-5
    )


def test_space_to_depth_matches_tensorflow_order():
    import tensorflow as tf

    band = np.random.default_rng(10).random((3, 8, 8)).astype(np.float32)
    ours = F.space_to_depth(band, 4)
    theirs = tf.nn.space_to_depth(band[..., None], 4).numpy()
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(F.depth_to_space(ours, 4), band)


def test_forest_vectors_do_not_depend_on_the_grid():
    images = images_of(64, n=3, seed=11)
    finest = F.describe(images, config(level=3))[1]
    coarsest = F.describe(images, config(level=3, grid="coarsest"))[1]
    np.testing.assert_array_equal(finest, coarsest)
    assert F.feature_names(config(grid="coarsest")) == F.feature_names(config())


def test_coarsest_build_records_its_layout(tmp_path):
    split, reader = fake_split_and_repair(tmp_path, random_images(len(SPLITS), seed=12), SPLITS)
    cfg = config(grid="coarsest")
    metrics = F.build(split, reader, tmp_path / "features", cfg)
    bands = ShardReader(tmp_path / "features" / F.BANDS_DIR)
    assert bands.item_shape == (SIZE // 4, SIZE // 4, 17)
    assert bands.meta["grid"] == "coarsest" and "space-to-depth" in bands.meta["resampling"]
    assert bands.meta["channels"] == F.channel_names(cfg)
    assert metrics["grid"] == "coarsest" and metrics["grid_height"] == SIZE // 4
    assert metrics["n_channels"] == 17
    # Standardised channels un-standardise and invert to the repaired image.
    mean, std = np.array(bands.meta["mean"]), np.array(bands.meta["std"])
    raw = bands.take_ids([split["id"][3]])[0].astype(np.float64) * std + mean
    restored = pywt.waverec2(F.coefficients_from_channels(raw, cfg), "haar", mode="periodization")
    np.testing.assert_allclose(restored, reader.take_ids([split["id"][3]])[0] / 255.0, atol=2e-5)


def test_coarsest_refuses_what_it_cannot_pack():
    with pytest.raises(ValueError, match="features.grid"):
        config(grid="diagonal")
    with pytest.raises(ValueError, match="features.grid: coarsest needs features.mode"):
        config(grid="coarsest", mode="symmetric")
    with pytest.raises(ValueError, match="features.grid: coarsest needs an image side"):
        F.describe(images_of(36, n=1), config(level=3, grid="coarsest"))
    assert F.describe(images_of(36, n=1), config(level=3))[0].shape == (1, 18, 18, 11)
