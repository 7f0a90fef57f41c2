"""Grad-CAM on tiny networks: it finds tiny_sample's fracture cue (top half), maps and overlays."""

from __future__ import annotations

import base64
import io
import re

import keras
import numpy as np
import pytest
from PIL import Image
from test_evaluate import MODELS, PARAMS, scored_repo
from tiny_sample import CHANNELS, GRID, REGIONS, TINY_CONV, TINY_RNN, write_sample

from bonexray.explain import gradcam
from bonexray.features.wavelet import FeatureConfig, describe
from bonexray.io.shards import ShardWriter
from bonexray.models.examples import load_examples
from bonexray.models.keras.network import NetworkSpec, build_network
from bonexray.models.keras.training import targets
from bonexray.reporting import report

SHAPE = (GRID, GRID, CHANNELS)


def network(space: dict, rnn: bool, seed: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_network(
        space, NetworkSpec(SHAPE, len(REGIONS), rnn, {"region": 0.2, "fracture": 1.0})
    )


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    paths = write_sample(tmp_path_factory.mktemp("sample"))
    return load_examples(paths["labels"], paths["bands"], REGIONS)


def top_share(heatmaps: np.ndarray) -> np.ndarray:
    """Share of each map's mass in the top half of the grid."""
    return heatmaps[:, : GRID // 2].sum(axis=(1, 2)) / heatmaps.sum(axis=(1, 2))


def test_a_trained_model_looks_where_the_fracture_cue_is(examples):
    fractured = examples.features[examples.fracture == 1]
    untrained = gradcam.explain(network(TINY_CONV, False), fractured)
    model = network(TINY_CONV, False)
    known = (~np.isnan(examples.fracture)).astype(np.float32)
    weights = {"region": np.ones(len(examples), np.float32), "fracture": known}
    model.fit(
        examples.features,
        targets(examples),
        sample_weight=weights,
        epochs=30,
        batch_size=12,
        verbose=0,
    )
    trained = gradcam.explain(model, fractured)
    assert (trained.sum(axis=(1, 2)) > 0).all()
    # tiny_sample shifts channel 1 of the top half only; measured 0.92 vs 0.47 untrained.
    assert top_share(trained).mean() > 0.75
    assert top_share(trained).mean() > top_share(untrained).mean() + 0.2
    assert (top_share(trained) > 0.5).mean() >= 0.8  # most maps: more mass top than bottom


@pytest.mark.parametrize("space, rnn", [(TINY_CONV, False), (TINY_RNN, True)], ids=["cnn", "rnn"])
def test_heatmaps_are_on_the_band_grid_and_in_the_unit_range(examples, space, rnn):
    model = network(space, rnn)
    assert gradcam.cam_layer_name(model) == "relu2"  # TINY_* have two conv blocks
    batch = gradcam.explain(model, examples.features[:5])
    assert batch.shape == (5, GRID, GRID) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 1
    for heatmap in batch:
        assert heatmap.max() in (0.0, 1.0)  # scaled per map; 0 when nothing speaks for it
    single = gradcam.explain(model, examples.features[0])
    np.testing.assert_allclose(single, batch[0], atol=1e-6)
    region = gradcam.explain(model, examples.features[:5], head="region", class_index=1)
    assert region.shape == (5, GRID, GRID) and not np.allclose(region, batch)


def test_bad_inputs_are_named():
    model = network(TINY_CONV, False)
    with pytest.raises(ValueError, match=r"bands of shape \(8, 8, 4\)"):
        gradcam.explain(model, np.zeros((8, 8, 4), np.float32))
    with pytest.raises(ValueError, match="head 'tumour'"):
        gradcam.explain(model, np.zeros(SHAPE, np.float32), head="tumour")


def test_a_band_cell_lands_on_its_two_pixels_of_the_working_image():
    heatmap = np.zeros((GRID, GRID), np.float32)
    heatmap[3, 10] = 1.0
    on_image = gradcam.to_image(heatmap, (2 * GRID, 2 * GRID))
    row, col = np.unravel_index(np.argmax(on_image), on_image.shape)
    assert row in (6, 7) and col in (20, 21)  # band cell k covers pixels 2k and 2k+1
    assert on_image.min() >= 0 and on_image.max() <= 1


@pytest.mark.parametrize("space, rnn", [(TINY_CONV, False), (TINY_RNN, True)], ids=["cnn", "rnn"])
def test_the_coarsest_grid_maps_a_cell_onto_its_block_of_pixels(space, rnn):
    # features.grid coarsest, level 2: 64 px images give a 16 x 16 x 17 grid, 4 px a cell.
    cfg = FeatureConfig.from_params(
        {"wavelet": "haar", "level": 2, "mode": "periodization", "fft": True}
        | {"grid": "coarsest", "rf_approx_size": 4, "entropy_bins": 8, "shard_size": 8}
    )
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    bands = describe(images, cfg)[0]
    assert bands.shape == (3, 16, 16, 17)
    keras.utils.set_random_seed(3)
    spec = NetworkSpec(bands.shape[1:], len(REGIONS), rnn, {"region": 0.2, "fracture": 1.0})
    maps = gradcam.explain(build_network(space, spec), bands)
    assert maps.shape == (3, 16, 16) and maps.min() >= 0 and maps.max() <= 1
    heatmap = np.zeros((16, 16), np.float32)
    heatmap[3, 10] = 1.0
    on_image = gradcam.to_image(heatmap, (64, 64))
    hot = np.argwhere(on_image == on_image.max())
    assert set(hot[:, 0]) <= {13, 14} and set(hot[:, 1]) <= {41, 42}  # inside 12..15, 40..43
    # Centred on the block: its centre of mass is pixel 4k + 1.5 (k = 3 and 10).
    rows, cols = np.indices(on_image.shape)
    centre = [(on_image * axis).sum() / on_image.sum() for axis in (rows, cols)]
    np.testing.assert_allclose(centre, [13.5, 41.5], atol=1e-3)


def test_overlay_is_rgb_at_image_size_and_leaves_cold_pixels_alone(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (2 * GRID, 2 * GRID), dtype=np.uint8)
    cold = gradcam.overlay(image, np.zeros((GRID, GRID)))
    assert cold.shape == (2 * GRID, 2 * GRID, 3) and cold.dtype == np.uint8
    np.testing.assert_array_equal(cold, np.repeat(image[..., None], 3, axis=-1))
    heatmap = np.zeros((GRID, GRID))
    heatmap[: GRID // 2] = 1.0
    hot = gradcam.overlay(image, heatmap)
    assert (hot[: GRID - 2] != cold[: GRID - 2]).any(axis=-1).mean() > 0.9  # coloured top
    np.testing.assert_array_equal(hot[GRID + 2 :], cold[GRID + 2 :])  # untouched bottom
    gradcam.save_overlay(tmp_path / "deep" / "x.png", image, heatmap)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "deep" / "x.png")), hot)


def test_the_report_shows_each_keras_models_gradcam_beside_its_examples(tmp_path):
    scored = scored_repo(tmp_path)  # 32 px repair images: a 16 px band grid
    root, labels, settings, scores = (scored[k] for k in ("root", "labels", "settings", "scores"))
    regions = PARAMS["taxonomy"]["regions"]
    rng = np.random.default_rng(0)
    with ShardWriter(root / "bands", SHAPE, np.float32) as bands:
        for item_id in labels["id"]:
            bands.add(item_id, rng.normal(size=SHAPE).astype(np.float32))
    paths = {}
    for name, (space, rnn) in {"cnn": (TINY_CONV, False), "cnn_rnn_nas": (TINY_RNN, True)}.items():
        paths[name] = root / "models" / name / "model.keras"
        paths[name].parent.mkdir(parents=True)
        keras.utils.set_random_seed(0)
        spec = NetworkSpec(SHAPE, len(regions), rnn, {"region": 1.0, "fracture": 1.0})
        build_network(space, spec).save(paths[name])
    document = report.build(
        scores,
        MODELS,
        regions,
        settings,
        sources=PARAMS["sources"],
        labels=labels,
        train_plots_dir=root / "plots" / "train",
        trials_dir=root / "plots" / "trials",
        repair_dir=root / "artifacts" / "repair",
        gradcam_models=paths,
        bands_dir=root / "bands",
    )
    examples = document.split("<section id=examples>")[1].split("</section>")[0]
    overlays = re.findall(r"Grad-CAM' src='data:image/png;base64,([A-Za-z0-9+/=]+)'", examples)
    assert len(overlays) == 2 * PARAMS["evaluate"]["report_examples"]
    assert (
        examples.count("Grad-CAM (fracture): cnn, cnn_rnn_nas")
        == PARAMS["evaluate"]["report_examples"]
    )
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(overlays[0]))))
    assert picture.shape == (2 * GRID, 2 * GRID, 3) and picture.dtype == np.uint8
