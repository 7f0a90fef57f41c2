"""The HTML report: self-contained, offline, reproducible, one figure per section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_evaluate import MODELS, PARAMS, REGIONS, SCORED, SKILL, fabricate_predictions, scored_repo

from bonexray.evaluation import scoring as evaluate
from bonexray.reporting import report


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    return scored_repo(tmp_path_factory.mktemp("report"))


def build(inputs: dict, train_plots: str = "plots/train", trials: str = "plots/trials") -> str:
    root = inputs["root"]
    return report.build(
        inputs["scores"],
        SCORED,
        REGIONS,
        inputs["settings"],
        sources=PARAMS["sources"],
        labels=inputs["labels"],
        train_plots_dir=root / train_plots,
        trials_dir=root / trials,
        repair_dir=root / "artifacts" / "repair",
    )


@pytest.fixture(scope="module")
def document(inputs: dict) -> str:
    return build(inputs)


def sections(document: str) -> dict[str, str]:
    return dict(re.findall(r"<section id=(\w+)>(.*?)</section>", document, flags=re.S))


def test_plotly_js_is_embedded_exactly_once_and_nothing_is_fetched(document: str):
    assert document.count("* plotly.js v") == 1  # the library's licence header
    assert not re.search(r"<script[^>]*\bsrc=", document)
    assert not re.search(r"<link[^>]*href=[\"']?https?://", document)
    assert "cdn.plot.ly/plotly" not in document.split("* plotly.js v")[0]


def test_one_figure_per_figure_section(document: str):
    parts = sections(document)
    for slug in ("region", "roc", "confusion", "calibration", "training"):
        assert parts[slug].count('class="plotly-graph-div"') == 1, slug
    assert document.count('class="plotly-graph-div"') == 5


def test_summary_lists_every_model_and_baseline(document: str):
    summary = sections(document)["summary"]
    for name in [*SCORED, "baseline_majority", "baseline_chance"]:
        assert f"<th>{name}</th>" in summary
    for key in evaluate.COMPARE_KEYS:
        assert f"<td>{key}</td>" in summary


def test_examples_are_inline_images_with_true_and_predicted_labels(document: str, inputs: dict):
    examples = sections(document)["examples"]
    images = re.findall(r"<img [^>]*src='data:image/png;base64,[A-Za-z0-9+/=]+'>", examples)
    assert len(images) == PARAMS["evaluate"]["report_examples"]
    best = evaluate.best_model(inputs["scores"], SCORED)
    assert best == "ensemble"  # the mean of the fabricated models beats each of them on val
    assert examples.count("<b>true</b>") == len(images)
    assert examples.count(f"<b>{best}</b>") == len(images)


def test_provenance_disclaimer_trials_and_training_curves(document: str):
    head = document.split("<section id=summary>")[0]
    assert "not a medical device" in head
    assert "clinic_a: folder layout at data/clinic_a" in head
    trials = sections(document)["trials"]
    assert "<th>filters</th>" in trials and "<td>16</td>" in trials
    assert trials.count("No search trials.") == len(MODELS) - 1
    assert "region_accuracy" in sections(document)["training"]  # a DVCLive metric


def test_report_is_reproducible_and_has_no_timestamp(document: str, inputs: dict):
    assert build(inputs) == document
    assert not re.search(r"\b20\d\d-\d\d-\d\d", document.split("* plotly.js v")[0])


def test_missing_training_curves_and_trials_are_reported_not_fatal(inputs: dict):
    document = build(inputs, train_plots="absent", trials="absent")
    parts = sections(document)
    assert "No DVCLive training curves found." in parts["training"]
    assert parts["trials"].count("No search trials.") == len(MODELS)
    assert document.count("* plotly.js v") == 1


def test_dvclive_tsvs_are_read_by_split_and_metric(inputs: dict):
    curves = report.read_training_curves(Path(inputs["root"]) / "plots" / "train" / "cnn")
    assert set(zip(curves["split"], curves["metric"], strict=True)) == {
        ("train", "loss"),
        ("eval", "loss"),
        ("train", "region_accuracy"),
    }
    loss = curves[(curves["split"] == "train") & (curves["metric"] == "loss")]
    assert loss["step"].tolist() == [0, 1, 2]
    assert loss["value"].tolist() == pytest.approx([1, 1 / 2, 1 / 3])


def test_examples_skip_images_absent_from_the_shards(inputs: dict, tmp_path: Path):
    labels = inputs["labels"]
    preds = fabricate_predictions(labels, SKILL["cnn"], seed=0)
    scores = evaluate.evaluate_all(labels, {"cnn": preds}, REGIONS, inputs["settings"])
    from bonexray.io.shards import ShardReader, ShardWriter

    reader = ShardReader(Path(inputs["root"]) / "artifacts" / "repair")
    kept = scores["cnn"].test["id"].iloc[:3].tolist()
    with ShardWriter(tmp_path / "few", reader.item_shape, "uint8") as writer:
        for item_id in kept:
            writer.add(item_id, reader[reader.position(item_id)])
    examples = report.pick_examples(scores["cnn"], ShardReader(tmp_path / "few"), 10, seed=0)
    assert sorted(e.id for e in examples) == sorted(kept)
