"""Model cards: evaluate's numbers, the training figures and the right dataset citations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_evaluate import MODELS, PARAMS, SCORED, scored_repo

from bonexray.data.datasets import FRACATLAS, SYNTH_README_TITLE
from bonexray.evaluation import metrics
from bonexray.reporting import model_card


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> dict:
    return scored_repo(tmp_path_factory.mktemp("cards"))


def cards(repo: dict, out: Path, sources: dict) -> dict[str, str]:
    """Write the cards with params.yaml sources replaced; return {model: markdown}."""
    params = {**PARAMS, "sources": sources}
    written = model_card.write_cards(
        repo["scores"],
        SCORED,
        repo["settings"],
        params,
        repo["labels"],
        train_metrics_dir=repo["root"] / "metrics" / "train",
        out_dir=out,
        bands_meta={
            "item_shape": [64, 64, 8],
            "wavelet": "haar",
            "level": 2,
            "mode": "periodization",
            "grid": "finest",
            "channels": ["A2", "H2", "V2", "D2", "H1", "V1", "D1", "fft"],
        },
        base=repo["root"],
    )
    assert [p.name for p in written] == [f"{m}.md" for m in SCORED]
    return {p.stem: p.read_text() for p in written}


def row(card: str, metric: str) -> list[str]:
    """The cells of a markdown table row whose first cell is ``metric``."""
    line = next(line for line in card.splitlines() if line.startswith(f"| {metric} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_card_carries_evaluates_test_numbers(repo, tmp_path):
    card = cards(repo, tmp_path, {"clinic_a": {"kind": "folder", "path": "data/clinic_a"}})[
        "cnn_rnn_nas"
    ]
    fracture = repo["scores"]["cnn_rnn_nas"].metrics["fracture"]
    region = repo["scores"]["cnn_rnn_nas"].metrics["region"]
    baseline = repo["scores"]["baseline_majority"].metrics
    auroc = row(card, "fracture AUROC")
    assert auroc[1] == f"{fracture['auroc']:.3f}"
    assert auroc[2] == f"{fracture['auroc_ci_low']:.3f} – {fracture['auroc_ci_high']:.3f}"
    assert auroc[3] == f"{baseline['fracture']['auroc']:.3f}"
    n_pos = fracture["n_positive"]
    low, high = metrics.wilson_interval(round(fracture["sensitivity"] * n_pos), n_pos)
    assert row(card, "fracture sensitivity")[1:3] == [
        f"{fracture['sensitivity']:.3f}",
        f"{low:.3f} – {high:.3f}",
    ]
    assert row(card, "region accuracy")[1] == f"{region['accuracy']:.3f}"
    assert f"at least **{fracture['threshold']:.4f}**" in card
    assert f"Region scored on {region['n']} test images" in card
    assert f"fracture T {fracture['temperature']:.2f}" in card
    assert f"fracture ECE {fracture['ece_uncalibrated']:.3f}" in card
    # Counts per split straight from labels.parquet.
    labels = repo["labels"]
    test = labels[labels["split"] == "test"]
    kept = test[test["label_source"] != "excluded"]
    assert row(card, "test")[:4] == [
        "test",
        str(len(test)),
        str(len(test) - len(kept)),
        str((kept["region"] == "hand").sum()),
    ]
    # Training figures from metrics/train/<model>.json.
    assert row(card, "lstm_units") == ["lstm_units", "32"]
    assert "bidirectional LSTM reading the last feature map's rows" in card
    assert "Keras Tuner (bayesian, 4 completed trials" in card
    assert "Input: 64x64x8 wavelet bands (haar, level 2, periodization, finest grid" in card
    assert "NOT a medical device" in card
    assert "own data" in card and "FracAtlas" not in card  # a folder of one's own


def test_the_forest_card_lists_both_heads_and_skops(repo, tmp_path):
    card = cards(repo, tmp_path, {"clinic_a": {"kind": "folder", "path": "data/clinic_a"}})["rf"]
    assert row(card, "n_estimators") == ["n_estimators", "400", "400"]
    assert row(card, "training images") == ["training images", "240", "228"]
    assert "RandomizedSearchCV` (12 draws, 3-fold" in card and "skops" in card
    assert "Grad-CAM" not in card  # the forest has none


def test_the_ensemble_card_names_its_members_and_how_it_combines_them(repo, tmp_path):
    card = cards(repo, tmp_path, {"clinic_a": {"kind": "folder", "path": "data/clinic_a"}})[
        "ensemble"
    ]
    assert "the mean of their calibrated probabilities" in card
    assert "no calibration is fitted on top of the mean" in card
    assert [row(card, m)[:2] for m in MODELS] == [
        ["cnn_rnn_nas", "keras"],
        ["cnn_nas", "keras"],
        ["cnn", "keras"],
        ["rf", "forest"],
    ]
    fracture = repo["scores"]["ensemble"].metrics["fracture"]
    assert row(card, "fracture AUROC")[1] == f"{fracture['auroc']:.3f}"
    assert f"at least **{fracture['threshold']:.4f}**" in card
    assert "Keras Tuner" not in card and "fracture T" not in card  # nothing trained or fitted


def test_fracatlas_is_cited_with_its_licence_and_caveats(repo, tmp_path):
    (repo["root"] / "fracatlas").mkdir(exist_ok=True)
    card = cards(repo, tmp_path, {"atlas": {"kind": "fracatlas", "path": "fracatlas"}})["cnn"]
    citations = card.split("## Datasets: licence and citation")[1]
    assert "**FracAtlas**: licence: CC BY 4.0" in citations
    assert "Scientific Data 10, 521 (2023). doi:10.1038/s41597-023-02432-4" in citations
    assert "doi.org/10.6084/m9.figshare.22363012" in citations
    assert FRACATLAS.citation in citations
    assert "hardware" in card and "no patient identifiers" in card
    assert "SYNTHETIC" not in card and "MURA" not in card


def test_the_synthetic_sample_is_cited_and_its_figures_disclaimed(repo, tmp_path):
    data = repo["root"] / "synthetic"
    (data / "clinic_b").mkdir(parents=True, exist_ok=True)
    (data / "README.md").write_text(f"{SYNTH_README_TITLE}\n")
    card = cards(repo, tmp_path, {"clinic_b": {"kind": "mura", "path": "synthetic/clinic_b"}})[
        "cnn_nas"
    ]
    assert "bonexray embedded synthetic sample**: licence: this project's licence" in card
    assert "say nothing about real radiographs" in card
    assert "Stanford" not in card  # a MURA-style layout, not MURA


def test_stale_cards_are_removed(repo, tmp_path):
    (tmp_path / "old_model.md").write_text("gone")
    cards(repo, tmp_path, {"clinic_a": {"kind": "folder", "path": "data/clinic_a"}})
    assert not (tmp_path / "old_model.md").exists()
    assert re.search(r"^# Model card: cnn$", (tmp_path / "cnn.md").read_text(), flags=re.M)
