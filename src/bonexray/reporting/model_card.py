"""One markdown model card per model, written by the evaluate stage (artifacts/cards/).

A card restates, for a reader who has only the model: what it is (family, hyperparameters),
what it learnt from (sources, counts, split), how well it did on TEST (the Scores evaluate
computed, with 95% intervals), where its fracture threshold sits, what it is for and not for,
and the licence and citation of every dataset it saw (bonexray.data.datasets).
Its numbers come from evaluate's Scores and the training stages' metrics/train/<name>.json,
never recomputed here; only the Wilson intervals of proportions are derived from counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bonexray.data.datasets import FRACATLAS, SYNTHETIC_SAMPLE, Dataset
from bonexray.data.sources import REGISTRY, attribution
from bonexray.errors import ConfigError
from bonexray.evaluation import metrics
from bonexray.evaluation.scoring import Scores, Settings
from bonexray.io.params import section
from bonexray.models import family
from bonexray.models.interface import ENSEMBLE, Description, family_of

CARD_SUFFIX = ".md"
BASELINE = "baseline_majority"


def _number(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals, None and NaN as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval_text(low: float, high: float) -> str:
    return "–" if math.isnan(low) or math.isnan(high) else f"{low:.3f} – {high:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells through _number."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_number(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def read_train_metrics(directory: str | Path, name: str) -> dict[str, Any]:
    """metrics/train/<name>.json, written by train@<name> or train_rf."""
    path = Path(directory) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no training metrics (run the {name} stage)") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def datasets_used(
    params: Mapping[str, Any], base: str | Path = "."
) -> list[tuple[str, Any, Dataset | None]]:
    """(source name, its params entry, its dataset or None) for each params.yaml source."""
    return [
        (name, spec, attribution(spec, base)) for name, spec in section(params, "sources").items()
    ]


# ---------------------------------------------------------------- sections


def ensemble_description(result: Scores, settings: Settings) -> Description:
    """The ensemble's Model section: its members and how it combines them (it has no
    training of its own, hence no hyperparameters or training figures)."""
    members = result.metrics["ensemble"]["members"]
    return Description(
        summary=(
            f"An ensemble of {len(members)} trained models: the mean of their calibrated "
            "probabilities (region: the mean of the softmax vectors; "
            f"fracture: the mean of p). Each member is first calibrated ({settings.calibration} "
            "scaling) with its own parameters fitted on val, as its own card says; no "
            "calibration is fitted on top of the mean. Its fracture threshold is chosen on val "
            "like every model's, and `bonexray predict --model ensemble` computes each "
            "member's inputs with that member's preprocessing."
        ),
        header=["member", "family", "input"],
        rows=[[m, family_of(m).name, family_of(m).features] for m in members],
        note="Not trained: no hyperparameters, search or training curves of its own.",
    )


def model_section(
    name: str,
    params: Mapping[str, Any],
    trained: Mapping[str, Any],
    bands_meta: Mapping[str, Any] | None,
    about: Description | None = None,
) -> str:
    """The Model section; ``about`` replaces family.describe's (the ensemble's)."""
    about = about or family.describe(name, params, trained, bands_meta)
    section_text = f"## Model\n\n{about.summary}\n\n" + markdown_table(about.header, about.rows)
    return section_text + (f"\n\n{about.note}" if about.note else "")


def data_section(
    sources: Sequence[tuple[str, Any, Dataset | None]], labels: pd.DataFrame, regions: Sequence[str]
) -> str:
    source_rows = [
        [name, spec.get("kind"), f"`{spec.get('path')}`", dataset.name if dataset else "own data"]
        for name, spec, dataset in sources
    ]
    rows = []
    for split in ("train", "val", "test"):
        part = labels[labels["split"] == split]
        kept = part[part["label_source"] != "excluded"]
        fracture = kept["fracture"]
        rows.append(
            [
                split,
                len(part),
                len(part) - len(kept),
                *((kept["region"] == r).sum() for r in regions),
                int((fracture == 1).sum()),
                int((fracture == 0).sum()),
                int(fracture.isna().sum()),
            ]
        )
    header = [
        "split",
        "images",
        "excluded",
        *regions,
        "fractured",
        "not fractured",
        "fracture unknown",
    ]
    label_sources = labels["label_source"].value_counts().sort_index()
    provenance = ", ".join(f"{k} {v}" for k, v in label_sources.items())
    return (
        "## Data\n\n"
        + markdown_table(["source", "kind", "path", "dataset"], source_rows)
        + "\n\nImages per split, by final region and fracture label (excluded: no usable "
        "region, counted nowhere else):\n\n"
        + markdown_table(header, rows)
        + f"\n\nRegion label sources: {provenance} (`model`: assigned by the relabel stage's "
        "model, not scored)."
    )


def split_section(params: Mapping[str, Any]) -> str:
    split = section(params, "split")
    fractions = ", ".join(f"{k} {v}" for k, v in split["fractions"].items())
    with_ids = [
        name
        for name, spec in section(params, "sources").items()
        if getattr(REGISTRY.get(spec.get("kind")), "patient_ids", False)
    ]
    if not split["group_by_patient"]:
        patient = "patients are NOT grouped (split.group_by_patient is false)"
    elif with_ids:
        patient = (
            f"one patient or study per group in the sources that give them ({', '.join(with_ids)})"
        )
    else:
        patient = "no source gives patient ids, so one patient's images may sit in several splits"
    return (
        "## Split\n\n"
        f"Fractions {fractions} (seed {section(params, 'seed')}), stratified on region x fracture "
        "with scikit-learn's StratifiedGroupKFold over groups that never cross splits: exact "
        "duplicates (same bytes or same working-size pixels), near duplicates (perceptual hashes "
        f"within {split['near_duplicate_distance']} bits, or difference hashes within "
        f"{split['dhash_distance']}) and {patient}. The split stage re-checks this "
        "(metrics/split.json `leakage.total`) and counts the cross-split pairs an independent "
        "pixel correlation still finds (`pixel_leakage`). Hyperparameters and "
        "the fracture threshold are chosen on val; the figures below are on test only."
    )


def metrics_section(result: Scores, baseline: Scores | None, settings: Settings) -> str:
    region, fracture = result.metrics["region"], result.metrics["fracture"]
    n_pos, n = fracture["n_positive"], fracture["n"]

    def proportion(value: float, total: int) -> str:
        if math.isnan(value) or total == 0:
            return "–"
        return interval_text(*metrics.wilson_interval(round(value * total), total))

    base = baseline.metrics if baseline else None
    rows = [
        [
            "region accuracy",
            region["accuracy"],
            proportion(region["accuracy"], region["n"]),
            "Wilson",
        ],
        ["region macro-F1", region["macro_f1"], "–", ""],
        ["region Cohen's kappa", region["kappa"], "–", ""],
        [
            "fracture AUROC",
            fracture["auroc"],
            interval_text(fracture["auroc_ci_low"], fracture["auroc_ci_high"]),
            f"bootstrap, {fracture['auroc_ci_resamples']} resamples",
        ],
        ["fracture average precision", fracture["average_precision"], "–", ""],
        [
            "fracture sensitivity",
            fracture["sensitivity"],
            proportion(fracture["sensitivity"], n_pos),
            "Wilson",
        ],
        [
            "fracture specificity",
            fracture["specificity"],
            proportion(fracture["specificity"], n - n_pos),
            "Wilson",
        ],
        ["fracture Brier score", fracture["brier"], "–", ""],
        [f"fracture ECE ({settings.calibration_bins} bins)", fracture["ece"], "–", ""],
    ]
    keys = [
        "accuracy",
        "macro_f1",
        "kappa",
        "auroc",
        "average_precision",
        "sensitivity",
        "specificity",
        "brier",
        "ece",
    ]
    groups = ["region"] * 3 + ["fracture"] * 6
    for row, group, key in zip(rows, groups, keys, strict=True):
        row.insert(3, base[group][key] if base else None)
    header = ["metric (test)", "value", "95% CI", BASELINE, "interval"]
    by_region = ", ".join(f"{r} {_number(v)}" for r, v in fracture["auroc_by_region"].items())
    calibrated = (
        "\n\nProbabilities are the mean of the members' calibrated probabilities; the mean "
        "is not calibrated again (T 1, bias 0), so the uncalibrated scores equal the others."
        if "ensemble" in result.metrics
        else f"\n\nProbabilities are calibrated ({settings.calibration} scaling) with parameters "
        f"fitted on val (fracture T {_number(fracture['temperature'], 2)}, bias "
        f"{_number(fracture['bias'], 2)}; region T {_number(region['temperature'], 2)}); "
        "the scores above are on that scale, as `bonexray predict` outputs them. Before "
        f"calibration: fracture ECE {_number(fracture['ece_uncalibrated'])}, Brier "
        f"{_number(fracture['brier_uncalibrated'])}."
        if settings.calibration != "none"
        else "\n\nProbabilities are not calibrated (evaluate.calibration: none)."
    )
    return (
        "## Test metrics\n\n"
        f"Region scored on {region['n']} test images (labels from "
        f"{', '.join(settings.score_region_sources)}); fracture on {n} ({n_pos} fractured).\n\n"
        + markdown_table(header, rows)
        + f"\n\nFracture AUROC by region: {by_region}."
        + calibrated
    )


def operating_point_section(result: Scores, settings: Settings) -> str:
    fracture = result.metrics["fracture"]
    method = (
        f"the lowest threshold reaching sensitivity {settings.target_sensitivity} on val"
        if settings.operating_point == "sensitivity"
        else "Youden's J (sensitivity + specificity - 1) maximised on val"
    )
    return (
        "## Operating point\n\n"
        f"An image is called fractured when its fracture probability is at least "
        f"**{_number(fracture['threshold'], 4)}**, chosen by {method} and applied unchanged to "
        f"test. Val: sensitivity {_number(fracture['val_sensitivity'])}, specificity "
        f"{_number(fracture['val_specificity'])}; test: sensitivity "
        f"{_number(fracture['sensitivity'])}, specificity {_number(fracture['specificity'])}. "
        "The region head is read by its argmax."
    )


def limitations_section(
    name: str,
    result: Scores,
    sources: Sequence[tuple[str, Any, Dataset | None]],
    labels: pd.DataFrame,
) -> str:
    fracture = result.metrics["fracture"]
    datasets = {dataset for _, _, dataset in sources}
    items = [
        "**Research software, NOT a medical device.** Not validated for, and must not be used "
        "in, diagnosis, triage or any treatment decision.",
    ]
    if SYNTHETIC_SAMPLE in datasets:
        items.append(
            "Trained and tested on the embedded SYNTHETIC sample (simulated radiographs): its "
            "figures show that the pipeline works and say nothing about real radiographs."
        )
    relabelled = int((labels["label_source"] == "model").sum())
    items.append(
        f"Label noise: {relabelled} region labels were assigned by the relabel stage's model "
        "(not scored, but trained on), source labels carry their annotators' errors, and "
        "fracture labels are per image, with no localisation."
    )
    items.append(
        f"Dataset shift: {len(sources)} source(s) ({', '.join(n for n, _, _ in sources)}), each "
        "from one institution or network, its devices, protocols and population; performance "
        "elsewhere is unknown until measured there."
    )
    if fracture["n"]:
        prevalence = fracture["n_positive"] / fracture["n"]
        items.append(
            f"Fracture prevalence on test is {prevalence:.1%}; predictive values and the chosen "
            "threshold depend on it, and real clinical prevalence differs by setting."
        )
    if FRACATLAS in datasets:
        items.append(
            "FracAtlas has no patient identifiers (images of one patient may sit in several "
            "splits unless near-duplicate grouping catches them), and implants (its `hardware` "
            "flag) correlate with fractures, so part of a fracture score may be hardware."
        )
    if any(spec.get("kind") == "mura" for _, spec, _ in sources):
        items.append(
            "MURA-style `positive` studies are abnormal, not necessarily fractured; fracture "
            "labels follow `positive_is_fracture` of the source."
        )
    if family_of(name).explainable:
        items.append(
            "Grad-CAM maps (report, `bonexray predict --explain`) show what raised the fracture "
            "score, not where a fracture is; behind the BiLSTM they are looser still."
        )
    if family_of(name) is ENSEMBLE:
        items.append(
            "It shares every member's limitations (see their cards); there is no single "
            "feature map, so Grad-CAM (`--explain`) does not apply to it."
        )
    return "## Limitations\n\n" + "\n".join(f"- {item}" for item in items)


def datasets_section(sources: Sequence[tuple[str, Any, Dataset | None]]) -> str:
    parts = []
    seen: set[Dataset] = set()
    for name, _, dataset in sources:
        if dataset is None:
            parts.append(
                f"- **{name}** (your own data): licence and citation as given by its owner; "
                "bonexray does not know them."
            )
        elif dataset not in seen:
            seen.add(dataset)
            links = "".join(f"\n  {link}" for link in dataset.links)
            parts.append(
                f"- **{dataset.name}**: licence: {dataset.licence}.\n  Cite: {dataset.citation}."
                + links
            )
    return "## Datasets: licence and citation\n\n" + "\n".join(parts)


def render_card(
    name: str,
    scores: Mapping[str, Scores],
    settings: Settings,
    params: Mapping[str, Any],
    labels: pd.DataFrame,
    trained: Mapping[str, Any],
    sources: Sequence[tuple[str, Any, Dataset | None]],
    bands_meta: Mapping[str, Any] | None = None,
) -> str:
    """The card of model ``name`` as markdown."""
    result = scores[name]
    regions = list(section(params, "taxonomy.regions"))
    intended = (
        "## Intended use\n\n"
        "Research and teaching: comparing model families for radiograph region and fracture "
        "classification on the same data, split and metrics; a starting point for studies "
        "that validate on their own data. Input: one radiograph, preprocessed exactly as the "
        "pipeline does (repair, features). Output: probabilities over "
        f"{', '.join(regions)} and a fracture probability."
    )
    parts = [
        f"# Model card: {name}",
        "> Research software, not a medical device. Written by the evaluate stage; figures are "
        "on the test split of the data below.",
        model_section(
            name,
            params,
            trained,
            bands_meta,
            ensemble_description(result, settings) if family_of(name) is ENSEMBLE else None,
        ),
        data_section(sources, labels, regions),
        split_section(params),
        metrics_section(result, scores.get(BASELINE), settings),
        operating_point_section(result, settings),
        intended,
        limitations_section(name, result, sources, labels),
        datasets_section(sources),
    ]
    return "\n\n".join(parts) + "\n"


def write_cards(
    scores: Mapping[str, Scores],
    models: Sequence[str],
    settings: Settings,
    params: Mapping[str, Any],
    labels: pd.DataFrame,
    *,
    train_metrics_dir: str | Path,
    out_dir: str | Path,
    bands_meta: Mapping[str, Any] | None = None,
    base: str | Path = ".",
) -> list[Path]:
    """<out_dir>/<model>.md for every model (the ensemble's describes its members and
    reads no training metrics); stale cards of removed models are deleted."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"*{CARD_SUFFIX}"):
        stale.unlink()
    sources = datasets_used(params, base)
    written = []
    for name in models:
        card = render_card(
            name,
            scores,
            settings,
            params,
            labels,
            {} if family_of(name) is ENSEMBLE else read_train_metrics(train_metrics_dir, name),
            sources,
            bands_meta if family_of(name).features == "bands" else None,
        )
        path = out_dir / f"{name}{CARD_SUFFIX}"
        path.write_text(card, encoding="utf-8")
        written.append(path)
    return written
