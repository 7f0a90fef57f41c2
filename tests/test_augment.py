"""Train-only augmentation (features/augment.py) and its place in the train input path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from tiny_sample import AUGMENT, IDENTITY, TINY_CONV, params, write_image_sample

from bonexray.errors import ConfigError
from bonexray.features.augment import AugmentConfig, AugmentedBands, augment, row_key
from bonexray.io.params import ParamsError
from bonexray.io.shards import ShardReader, ShardWriter
from bonexray.models.examples import load_examples
from bonexray.models.interface import TrainOutputs
from bonexray.models.keras.training import prepare, train_keras


def config(**magnitudes) -> AugmentConfig:
    return AugmentConfig.from_params({"enabled": True, **IDENTITY, **magnitudes})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_image_sample(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def train_rows(sample):
    """The train rows (as the train stage selects them), their working images and bands."""
    regions = params()["taxonomy"]["regions"]
    train = load_examples(sample["labels"], sample["bands"], regions).labelled("train")
    return train, ShardReader(sample["images"]).rows(train.ids)


def job_params(**augment) -> dict:
    cfg = params(cnn={"rnn": False, "epochs": 2, "fixed": TINY_CONV})
    cfg["train"]["augment"] = {"enabled": True, **AUGMENT, **augment}
    return cfg


def test_the_identity_gives_the_features_stage_rows(train_rows):
    train, images = train_rows
    rows = np.arange(len(train))
    pixels = images.read(rows)
    assert np.array_equal(augment(pixels, range(len(rows)), 3, 0, config()), pixels)
    bands = AugmentedBands(images, train.ids, train.rows.reader.meta, config(), seed=3)
    np.testing.assert_allclose(bands(rows, 0), train.features, rtol=1e-5, atol=1e-5)


def test_draws_depend_on_seed_epoch_and_image_only(train_rows):
    _, images = train_rows
    pixels = images.read(np.arange(6))
    keys = [row_key(f"img{i}") for i in range(6)]
    cfg = config(**AUGMENT)
    first = augment(pixels, keys, 7, 2, cfg)
    assert np.array_equal(first, augment(pixels, keys, 7, 2, cfg))
    # Image 4 alone, or in another batch, gets the same transform.
    assert np.array_equal(first[4:5], augment(pixels[4:5], keys[4:5], 7, 2, cfg))
    assert np.array_equal(first[[4, 1]], augment(pixels[[4, 1]], [keys[4], keys[1]], 7, 2, cfg))
    for other in (augment(pixels, keys, 7, 3, cfg), augment(pixels, keys, 8, 2, cfg)):
        assert all(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert not np.array_equal(first, pixels)


def test_a_flip_mirrors_the_film_inside_its_letterbox(train_rows):
    _, images = train_rows
    pixels = images.read(np.arange(4))
    flipped = augment(pixels, range(4), 0, 0, config(hflip=1.0))
    cols = np.flatnonzero(pixels[0].any(axis=0))
    box = slice(cols[0], cols[-1] + 1)
    assert cols[0] > 0 and cols[-1] < pixels.shape[2] - 1  # a real letterbox
    assert np.array_equal(flipped[:, :, box], pixels[:, :, box][:, :, ::-1])
    assert (flipped[:, :, : cols[0]] == 0).all() and (flipped[:, :, cols[-1] + 1 :] == 0).all()


def test_the_film_never_leaves_the_canvas():
    """Marks at the four corners of a film filling the canvas survive rotation, zoom and
    shift at their largest: the transform shrinks and shifts it to fit, never crops it."""
    side = 64
    film = np.full((side, side), 100, np.uint8)
    for r in (0, side - 4):
        for c in (0, side - 4):
            film[r : r + 4, c : c + 4] = 255
    cfg = config(rotation_deg=30.0, scale=[1.3, 1.3], translation=0.4, hflip=0.5)
    out = augment(np.repeat(film[None], 8, axis=0), range(8), 0, 0, cfg)
    for image in out:
        _, marks = ndimage.label(image > 170)
        assert marks == 4
        assert (image > 0).sum() < 0.95 * side * side  # it was shrunk, leaving black pad
    # Without the fit the same zoom would have cut the marks off (the test can fail).
    zoomed = ndimage.zoom(film.astype(float), 1.3, order=1)
    crop = zoomed[(len(zoomed) - side) // 2 :][:side, (len(zoomed) - side) // 2 :][:, :side]
    assert ndimage.label(crop > 170)[1] < 4


def test_intensity_saturates_and_the_pad_stays_black():
    side = 32
    film = np.zeros((side, side), np.uint8)
    film[:, 8:24] = 250
    cfg = config(brightness=0.5, noise_std=0.05)
    out = augment(np.repeat(film[None], 40, axis=0), range(40), 0, 0, cfg)
    content = out[:, :, 8:24]
    assert (out[:, :, :8] == 0).all() and (out[:, :, 24:] == 0).all()
    # A brightened 250 saturates at 255 rather than wrapping round to a dark value.
    assert content.max() == 255 and content.min() >= 250 - 0.5 * 255 - 4 * 0.05 * 255
    assert (content == 255).mean() > 0.3


def test_augment_params_are_checked():
    with pytest.raises(ParamsError, match="hflip"):
        config(hflip=1.5)
    with pytest.raises(ParamsError, match="scale"):
        config(scale=[1.1, 0.9])
    with pytest.raises(ParamsError, match="missing"):
        AugmentConfig.from_params({"enabled": True})


def test_images_that_do_not_make_the_bands_are_refused(train_rows, tmp_path):
    train, _ = train_rows
    with ShardWriter(tmp_path / "small", (16, 16), np.uint8) as small:
        for item_id in train.ids:
            small.add(item_id, np.zeros((16, 16), np.uint8))
    rows = ShardReader(tmp_path / "small").rows(train.ids)
    with pytest.raises(ConfigError, match="other images"):
        AugmentedBands(rows, train.ids, train.rows.reader.meta, config(), seed=0)


def matched(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each of ``rows``, the index of the reference row it equals (to float tolerance);
    fails unless every row has one."""
    flat, ref = rows.reshape(len(rows), -1), reference.reshape(len(reference), -1)
    distance = np.abs(flat[:, None, :] - ref[None, :, :]).max(axis=2)
    nearest = distance.argmin(axis=1)
    assert distance[np.arange(len(flat)), nearest].max() < 1e-4
    return nearest


def test_only_train_batches_are_augmented_a_new_draw_each_epoch(sample):
    job = prepare("cnn", job_params(), sample["labels"], sample["bands"], sample["images"])
    train_data, val_data, steps = job.datasets()
    assert steps == -(-len(job.train) // job.batch_size)
    val = np.concatenate([x.numpy() for x, _, _ in val_data])
    assert np.array_equal(val, job.val.features)  # the precomputed bands, exactly
    batches = [x.numpy() for x, _, _ in train_data.take(2 * steps)]
    everyone = np.arange(len(job.train))
    orders = []
    for epoch, seen in enumerate((batches[:steps], batches[steps:])):
        # Every train image once, with that epoch's draws (made here in one batch).
        order = matched(np.concatenate(seen), job.augmented(everyone, epoch))
        assert sorted(order) == list(everyone)
        orders.append(order)
    assert orders[0].tolist() != orders[1].tolist()  # reshuffled
    assert not np.allclose(job.augmented(everyone, 0), job.augmented(everyone, 1))
    assert not np.allclose(job.augmented(everyone, 0), job.train.features)

    plain = job_params(enabled=False)
    job = prepare("cnn", plain, sample["labels"], sample["bands"], sample["images"])
    train_data, _, steps = job.datasets()
    assert steps == -(-len(job.train) // job.batch_size) and job.augmented is None
    rows = np.concatenate([x.numpy() for x, _, _ in train_data.take(steps)])
    assert sorted(matched(rows, job.train.features)) == list(everyone)


def test_enabled_augmentation_needs_the_images(sample):
    with pytest.raises(ConfigError, match="--images"):
        prepare("cnn", job_params(), sample["labels"], sample["bands"])


def test_a_keras_model_fits_on_augmented_images(sample, tmp_path):
    outputs = TrainOutputs(
        model_dir=tmp_path / "models" / "cnn",
        predictions=tmp_path / "cnn.parquet",
        metrics=tmp_path / "cnn.json",
        live_dir=tmp_path / "live",
        trials=tmp_path / "trials.csv",
    )
    cfg = job_params()
    metrics = train_keras("cnn", cfg, sample["labels"], sample["bands"], outputs, sample["images"])
    assert metrics["epochs_run"] == 2 and metrics["n_train"] == 35
    assert json.loads(outputs.metrics.read_text()) == metrics
    frame = pd.read_parquet(outputs.predictions)
    assert set(frame["split"]) == {"val", "test"} and frame["p_fracture"].between(0, 1).all()
