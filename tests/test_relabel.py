from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from paths import REPO

from bonexray.data import base_region
from bonexray.data import relabel as R
from bonexray.data.taxonomy import Taxonomy
from bonexray.io.shards import ShardReader, ShardWriter

SIZE = 32
TAXONOMY = {
    "regions": ["hand", "elbow", "shoulder", "hip", "leg"],
    "synonyms": {"hand": ["wrist"], "leg": ["knee"]},
    "ambiguous": ["mixed"],
}
REGIONS = TAXONOMY["regions"]
TINY = base_region.BaseModelConfig(
    epochs=10,
    batch_size=8,
    conv_filters=(8, 16),
    lstm_units=16,
    dropout=0.0,
    learning_rate=0.01,
    input_size=32,
)


def draw(region: str, rng: np.random.Generator) -> np.ndarray:
    """A distinct shape per region, jittered and noisy, so every image is unique."""
    image = rng.integers(0, 40, size=(SIZE, SIZE)).astype(np.float64)
    dy, dx = rng.integers(-3, 4, size=2)
    y, x = np.mgrid[:SIZE, :SIZE] - np.array([SIZE // 2 + dy, SIZE // 2 + dx])[:, None, None]
    shape = {
        "hand": (np.abs(y) < 3) & (np.abs(x) < 12),  # horizontal bar
        "elbow": (np.abs(x) < 3) & (np.abs(y) < 12),  # vertical bar
        "shoulder": x**2 + y**2 < 64,  # disc
        "hip": (np.maximum(np.abs(x), np.abs(y)) // 2) == 4,  # square outline
        "leg": np.abs(x - y) < 3,  # diagonal
    }[region]
    image[shape] += 200
    return np.clip(image, 0, 255).astype(np.uint8)


def raw_label(region: str, k: int, n_labelled: int) -> str | None:
    """Mostly the region itself; a few synonyms; two unlabelled candidates per region."""
    if k == n_labelled:
        return "mixed" if REGIONS.index(region) % 2 else None  # ambiguous or missing
    if k == n_labelled + 1:
        return "skull" if region in ("hip", "leg") else None  # unknown or missing
    return {("hand", 0): "wrist", ("leg", 1): "knee"}.get((region, k), region)


def synthetic(tmp_path: Path, seed: int = 0) -> tuple[pd.DataFrame, ShardReader, np.ndarray]:
    """split.parquet-like table + repair shards; returns the true region of every image too."""
    rng = np.random.default_rng(seed)
    tax = Taxonomy.from_params({"taxonomy": TAXONOMY})
    rows, images, truth = [], [], []
    per_split = {"train": 12, "val": 4, "test": 4}
    for split, n in per_split.items():
        for region in REGIONS:
            for k in range(n + 2):  # the last two of each are unlabelled candidates
                raw = raw_label(region, k, n)
                hint, source = tax.resolve(raw)
                rows.append({"id": f"data/{split}/{region}{k}.png", "split": split,
                             "region_hint": hint, "region_source": source,
                             "fracture": int(k % 2), "hardware": [1, 0, None][k % 3]})  # fmt: skip
                images.append(draw(region, rng))
                truth.append(region)
    split = pd.DataFrame(rows)
    split["fracture"] = split["fracture"].astype("Int8")
    split["hardware"] = split["hardware"].astype("Int8")
    split["region_hint"] = split["region_hint"].astype("string")
    with ShardWriter(tmp_path / "repair", (SIZE, SIZE), np.uint8, shard_size=64) as writer:
        for item_id, image in zip(split["id"], images, strict=True):
            writer.add(item_id, image)
    return split, ShardReader(tmp_path / "repair"), np.array(truth)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One relabel run (threshold 0.5) with a spy on Keras' fit recording what it was given."""
    tmp_path = tmp_path_factory.mktemp("relabel")
    split, images, truth = synthetic(tmp_path)
    fitted: list[np.ndarray] = []
    real_fit = keras.Model.fit

    def spy_fit(self, x=None, *args, **kwargs):
        fitted.append(np.array(x))
        return real_fit(self, x, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "fit", spy_fit)
        result = R.relabel(split, images, REGIONS, TINY, threshold=0.5, seed=1)
    return split, images, truth, result, fitted


def test_predictions_span_several_regions(run):
    split, images, truth, result, _ = run
    proba = base_region.predict(result.model, images.take(range(len(images))), 16)
    assert proba.shape == (len(images), len(REGIONS))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    predicted = proba.argmax(axis=1)
    assert len(set(predicted)) >= 4  # the study's bug made every image "hand"
    assert result.metrics["val_accuracy"] > 0.5  # chance is 0.2
    assert set(result.labels.loc[result.labels["label_source"] == "model", "region"]) != {"hand"}


def test_only_known_train_images_are_fitted(run):
    split, images, _, result, fitted = run
    known_train = split[(split["split"] == "train") & split["region_source"].isin(R.KNOWN_SOURCES)]
    assert sorted(result.train_ids) == sorted(known_train["id"])
    assert len(fitted) == 1
    seen = {row.astype(np.uint8).tobytes() for row in fitted[0][..., 0]}
    allowed = {images.take_ids([i])[0].tobytes() for i in known_train["id"]}
    assert seen == allowed  # all of them, and nothing from val/test or the candidates


def test_known_regions_are_kept_and_synonyms_mapped_without_the_model(run):
    split, _, truth, result, _ = run
    labels = result.labels
    assert labels["id"].tolist() == split["id"].tolist()
    wrist = labels[split["id"].str.endswith("hand0.png")]
    assert (wrist["region"] == "hand").all() and (wrist["label_source"] == "synonym").all()
    knee = labels[split["id"].str.endswith("leg1.png")]
    assert (knee["region"] == "leg").all() and (knee["label_source"] == "synonym").all()
    known = split["region_source"].isin(R.KNOWN_SOURCES)
    assert (labels.loc[known, "region"] == truth[known]).all()
    assert (labels.loc[known, "region_confidence"] == 1.0).all()
    assert labels.loc[known, "label_source"].tolist() == split.loc[known, "region_source"].tolist()
    assert labels["fracture"].tolist() == split["fracture"].tolist()
    assert labels["hardware"].equals(split["hardware"])  # carried for evaluate's breakdown


def test_candidates_are_labelled_or_excluded_with_a_reason(run):
    split, _, _, result, _ = run
    labels, metrics = result.labels, result.metrics
    candidate = ~split["region_source"].isin(R.KNOWN_SOURCES)
    assert set(labels.loc[candidate, "label_source"]) <= {"model", "excluded"}
    assert (
        candidate.sum() == metrics["n_candidates"] == metrics["n_accepted"] + metrics["n_rejected"]
    )
    model = labels["label_source"] == "model"
    assert (labels.loc[model, "region_confidence"] >= 0.5).all()
    excluded = labels[labels["label_source"] == "excluded"]
    assert excluded["region"].isna().all()
    assert (
        excluded["excluded_reason"].str.match(r"low confidence \(0\.\d\d < 0\.50\) for \w+").all()
    )
    assert result.excluded["id"].tolist() == excluded["id"].tolist()
    total = sum(metrics[f"n_{r}_{s}"] for r in REGIONS for s in ("original", "synonym", "model"))
    assert total + metrics["n_rejected"] == len(split)


def test_threshold_one_relabels_nothing(tmp_path):
    split, images, _ = synthetic(tmp_path, seed=2)
    one_epoch = base_region.BaseModelConfig(**{**TINY.__dict__, "epochs": 1})
    result = R.relabel(split, images, REGIONS, one_epoch, threshold=1.0, seed=3)
    candidate = ~split["region_source"].isin(R.KNOWN_SOURCES)
    assert (result.labels.loc[candidate, "label_source"] == "excluded").all()
    assert result.metrics["n_accepted"] == 0 and len(result.excluded) == candidate.sum()
    assert (result.excluded["confidence"] < 1.0).all()
    assert set(result.excluded["best_guess"]) <= set(REGIONS)


def test_decide_takes_the_most_probable_region():
    proba = np.array([[0.1, 0.7, 0.1, 0.05, 0.05], [0.3, 0.2, 0.2, 0.2, 0.1]])
    guesses, confidence, accepted = R.decide(proba, REGIONS, 0.6)
    assert guesses == ["elbow", "hand"]
    np.testing.assert_allclose(confidence, [0.7, 0.3])
    assert accepted.tolist() == [True, False]
    with pytest.raises(ValueError, match="5 regions"):
        R.decide(proba[:, :1], REGIONS, 0.6)  # the study's single column
    assert R.low_confidence_reason(0.7999, 0.8, "elbow") == "low confidence (0.79 < 0.80) for elbow"


def test_model_is_a_real_sequence_model_with_one_output_per_region():
    model = base_region.build(128, len(REGIONS), base_region.BaseModelConfig(
        **{**TINY.__dict__, "input_size": 64}))  # fmt: skip
    assert model.output_shape == (None, len(REGIONS))
    assert model.get_layer("rows_as_sequence").output.shape[1] == 64 // 4  # 16 steps, not 1
    with pytest.raises(ValueError, match="sequence"):
        base_region.build(4, 5, TINY)  # 4 px -> 2 -> 1 row


def test_too_few_known_regions_fail_clearly(tmp_path):
    split, images, _ = synthetic(tmp_path)
    known = split["region_source"].isin(R.KNOWN_SOURCES)
    split.loc[known, "region_hint"] = "hand"
    with pytest.raises(ValueError, match="at least 2 regions"):
        R.relabel(split, images, REGIONS, TINY, threshold=0.5, seed=0)
    split.loc[0, "region_hint"] = "skull"
    with pytest.raises(ValueError, match=r"split\.parquet: region_hint \['skull'\]"):
        R.check_split_table(split, REGIONS, "split.parquet")


def test_stage_script_writes_every_output(tmp_path):
    split, _, _ = synthetic(tmp_path, seed=4)
    split.to_parquet(tmp_path / "split.parquet")
    params = {
        "seed": 0,
        "taxonomy": TAXONOMY,
        "relabel": {"confidence_threshold": 0.8, "base_model": {**TINY.__dict__, "epochs": 1}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(
        [
            sys.executable, str(REPO / "stages" / "relabel.py"),
            "--split", str(tmp_path / "split.parquet"),
            "--repair", str(tmp_path / "repair"),
            "--out", str(tmp_path / "labels.parquet"),
            "--model-dir", str(tmp_path / "relabel"),
            "--metrics", str(tmp_path / "metrics" / "relabel.json"),
            "--params", str(tmp_path / "params.yaml"),
        ],
        check=True,
    )  # fmt: skip
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert list(labels.columns) == [
        "id", "split", "region", "label_source", "region_confidence", "fracture", "hardware",
        "excluded_reason",
    ]  # fmt: skip
    assert len(labels) == len(split)
    assert str(labels["fracture"].dtype) == "Int8" and str(labels["hardware"].dtype) == "Int8"
    model = keras.saving.load_model(tmp_path / "relabel" / R.MODEL_FILE)
    assert model.output_shape == (None, len(REGIONS))
    excluded = pd.read_csv(tmp_path / "relabel" / R.EXCLUDED_FILE)
    assert list(excluded.columns) == [
        "id", "split", "region_source", "reason", "best_guess", "confidence",
    ]  # fmt: skip
    metrics = json.loads((tmp_path / "metrics" / "relabel.json").read_text())
    assert metrics["n_candidates"] == len(excluded) + metrics["n_accepted"]
    assert all(not isinstance(v, dict | list) for v in metrics.values())  # flat
