"""The offline HTML report: one self-contained file comparing every model and baseline.

plotly.js is embedded once (the first figure carries it, the others reuse it), images are
inline base64 PNGs, and nothing is fetched from the network, so the file opens on an
offline machine. Figure ids are fixed and no timestamp is written, so the same inputs give
the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from bonexray.errors import ConfigError
from bonexray.evaluation.scoring import (
    COMPARE_KEYS,
    PAIRED_ALPHA,
    Scores,
    Settings,
    best_model,
    paired_findings,
    paired_frame,
    paired_tests,
)
from bonexray.io.labels import FLAG_COLUMNS
from bonexray.io.shards import ShardReader
from bonexray.models.interface import ENSEMBLE, family_of

BASELINE_COLOUR = "#9e9e9e"
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
LOWER_IS_BETTER = {"fracture_brier", "fracture_ece"}
# Not bolded: a threshold has no "better", and sensitivity trades off against specificity.
NOT_RANKED = {
    "fracture_threshold",
    "fracture_auroc_ci_low",
    "fracture_auroc_ci_high",
    "fracture_sensitivity",
    "fracture_specificity",
}
BASELINE_PATTERNS = ("/", ".", "x", "+")
MAX_TRIAL_ROWS = 50

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.notice { background: #fff4e5; border-left: 4px solid #ff9800; padding: 0.6em 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e8f5e9; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
.card { width: 150px; font-size: 0.75em; border: 3px solid; padding: 4px; }
.card.right { border-color: #2e7d32; } .card.wrong { border-color: #c62828; }
.card img { width: 142px; height: 142px; image-rendering: pixelated; display: block; }
.card .images { display: flex; gap: 4px; }
.muted { color: #777; }
"""


# ---------------------------------------------------------------- inputs


def read_training_curves(directory: str | Path) -> pd.DataFrame:
    """DVCLive's per-metric TSVs under ``directory`` as rows (split, metric, step, value).

    DVCLive 3 writes ``<dir>/plots/metrics/<split>/<metric>.tsv`` (split "train" or "eval"
    for Keras) with a ``step`` column and one named after the metric. Empty when absent.
    """
    root = Path(directory) / "plots" / "metrics"
    frames = []
    for path in sorted(root.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        if "step" not in table.columns or path.stem not in table.columns:
            raise ConfigError(f"{path}: expected columns step and {path.stem} (a DVCLive TSV)")
        parent = path.parent.relative_to(root).as_posix()
        frames.append(
            pd.DataFrame(
                {
                    "split": "train" if parent == "." else parent,
                    "metric": path.stem,
                    "step": table["step"],
                    "value": table[path.stem],
                }
            )
        )
    columns = ["split", "metric", "step", "value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def read_trials(path: str | Path) -> pd.DataFrame | None:
    """A search's trials table (CSV), or None when the model has no search."""
    path = Path(path)
    return pd.read_csv(path) if path.is_file() else None


@dataclass(frozen=True)
class Example:
    id: str
    png_base64: str
    truth: str
    prediction: str
    correct: bool
    # (Keras model, PNG base64 of its fracture Grad-CAM overlay on this image)
    overlays: tuple[tuple[str, str], ...] = ()


def _png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pick_examples(scores: Scores, reader: ShardReader, count: int, seed: int) -> list[Example]:
    """A seeded sample of ``count`` test images with their labels and ``scores``'s predictions."""
    test = scores.test[scores.test["id"].isin(reader.index["id"])]
    rng = np.random.default_rng(seed)
    chosen = test.iloc[np.sort(rng.permutation(len(test))[:count])]
    examples = []
    for row in chosen.itertuples(index=False):
        region_known = isinstance(row.region, str)
        fracture_known = not pd.isna(row.fracture)
        truth_region = f"{row.region} ({row.label_source})" if region_known else "region unknown"
        truth_fracture = ("fracture" if row.fracture else "no fracture") if fracture_known else "?"
        p_region = getattr(row, f"p_region__{row.predicted_region}")
        said_fracture = "fracture" if row.predicted_fracture else "no fracture"
        correct = (not region_known or row.region == row.predicted_region) and (
            not fracture_known or int(row.fracture) == row.predicted_fracture
        )
        examples.append(
            Example(
                id=row.id,
                png_base64=_png_base64(reader[reader.position(row.id)]),
                truth=f"{truth_region}; {truth_fracture}",
                prediction=(
                    f"{row.predicted_region} ({p_region:.2f}); {said_fracture} "
                    f"(p={row.p_fracture:.2f})"
                ),
                correct=bool(correct),
            )
        )
    return examples


def with_gradcam(
    examples: Sequence[Example],
    images: ShardReader,
    bands: ShardReader,
    model_paths: Mapping[str, Path],
) -> list[Example]:
    """The examples with each model's fracture Grad-CAM overlaid on the working image.

    One batch per model (the whole grid costs about a second per model on a CPU, most of it
    loading the model); TensorFlow is imported only when there is something to explain.
    """
    if not examples or not model_paths:
        return list(examples)
    from bonexray.explain import gradcam
    from bonexray.models.keras.files import load_keras_model

    ids = [e.id for e in examples]
    bands.require(ids, "the report's example images")
    inputs, pictures = bands.take_ids(ids), images.take_ids(ids)
    overlays: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for name, path in model_paths.items():
        heatmaps = gradcam.explain(load_keras_model(path), inputs)
        for item_id, picture, heatmap in zip(ids, pictures, heatmaps, strict=True):
            overlays[item_id].append((name, _png_base64(gradcam.overlay(picture, heatmap))))
    return [replace(e, overlays=tuple(overlays[e.id])) for e in examples]


# ---------------------------------------------------------------- figures


def _colours(names: Sequence[str], models: Sequence[str]) -> dict[str, str]:
    return {
        name: MODEL_COLOURS[models.index(name) % len(MODEL_COLOURS)]
        if name in models
        else BASELINE_COLOUR
        for name in names
    }


def region_figure(
    scores: Mapping[str, Scores], models: Sequence[str], regions: Sequence[str]
) -> go.Figure:
    """Per-region accuracy (recall) of models and baselines, and per-region fracture AUROC
    of the models (the baselines' is 0.5 by construction)."""
    colours = _colours(list(scores), models)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Region accuracy by true region (recall)", "Fracture AUROC by region"),
    )
    baselines = [name for name in scores if name not in models]
    for name, result in scores.items():
        style = {"marker_color": colours[name], "legendgroup": name, "name": name}
        if name in baselines:
            pattern = BASELINE_PATTERNS[baselines.index(name) % len(BASELINE_PATTERNS)]
            style["marker_pattern_shape"] = pattern
        recall = result.metrics["region"]["recall"]
        fig.add_trace(go.Bar(x=list(regions), y=[recall[r] for r in regions], **style), 1, 1)
        if name in models:
            by_region = result.metrics["fracture"]["auroc_by_region"]
            fig.add_trace(
                go.Bar(
                    x=list(regions), y=[by_region[r] for r in regions], showlegend=False, **style
                ),
                1,
                2,
            )
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(barmode="group", height=420)
    return fig


def _diagonal(name: str) -> go.Scatter:
    """The dotted y = x reference line: chance on a ROC, perfect calibration on a reliability
    diagram."""
    return go.Scatter(
        x=[0, 1], y=[0, 1], mode="lines", name=name, line={"dash": "dot", "color": BASELINE_COLOUR}
    )


def fracture_curves_figure(scores: Mapping[str, Scores], models: Sequence[str]) -> go.Figure:
    """ROC and precision-recall curves of the models, with the chance line."""
    colours = _colours(models, models)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ROC (test)", "Precision-recall (test)"))
    fig.add_trace(_diagonal("chance"), 1, 1)
    for name in models:
        result = scores[name]
        frac = result.metrics["fracture"]
        ci = f"[{frac['auroc_ci_low']:.3f}, {frac['auroc_ci_high']:.3f}]"
        label = f"{name} AUROC {frac['auroc']:.3f} {ci}"
        line = {"color": colours[name]}
        fig.add_trace(
            go.Scatter(
                x=result.roc["fpr"],
                y=result.roc["tpr"],
                name=label,
                line=line,
                mode="lines",
                legendgroup=name,
                line_shape="hv",
            ),
            1,
            1,
        )
        fig.add_trace(
            go.Scatter(
                x=result.pr["recall"],
                y=result.pr["precision"],
                name=name,
                line=line,
                mode="lines",
                legendgroup=name,
                showlegend=False,
                line_shape="hv",
            ),
            1,
            2,
        )
    prevalence = next(iter(scores.values())).metrics["fracture"]
    if prevalence["n"]:
        fig.add_hline(
            y=prevalence["n_positive"] / prevalence["n"],
            line_dash="dot",
            line_color=BASELINE_COLOUR,
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="false positive rate", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="true positive rate", range=[0, 1.02], row=1, col=1)
    fig.update_xaxes(title_text="recall", range=[0, 1], row=1, col=2)
    fig.update_yaxes(title_text="precision", range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=450)
    return fig


def confusion_figure(
    scores: Mapping[str, Scores], models: Sequence[str], regions: Sequence[str]
) -> go.Figure:
    """Region confusion matrices, one panel per model; colour is the row share."""
    fig = make_subplots(
        rows=1,
        cols=len(models),
        subplot_titles=list(models),
        shared_yaxes=True,
        horizontal_spacing=0.03,
    )
    for col, name in enumerate(models, start=1):
        confusion = scores[name].metrics["region"]["confusion"]
        counts = np.array([[confusion[a][p] for p in regions] for a in regions], dtype=float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        fig.add_trace(
            go.Heatmap(
                z=share,
                x=list(regions),
                y=list(regions),
                text=counts.astype(int),
                texttemplate="%{text}",
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=col == 1,
                hovertemplate="actual %{y}<br>predicted %{x}<br>%{text} images<extra></extra>",
            ),
            1,
            col,
        )
        fig.update_xaxes(title_text="predicted", row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="actual", row=1, col=1)
    fig.update_layout(height=380)
    return fig


def calibration_figure(scores: Mapping[str, Scores], models: Sequence[str]) -> go.Figure:
    """Reliability diagram: mean predicted probability vs observed fracture rate per bin."""
    colours = _colours(models, models)
    fig = go.Figure(_diagonal("perfectly calibrated"))
    for name in models:
        table = scores[name].calibration
        frac = scores[name].metrics["fracture"]
        fig.add_trace(
            go.Scatter(
                x=table["mean_predicted"],
                y=table["fraction_positive"],
                mode="lines+markers",
                name=f"{name} ECE {frac['ece']:.3f} (raw {frac['ece_uncalibrated']:.3f})",
                line={"color": colours[name]},
                customdata=table["count"],
                hovertemplate="%{customdata} images<extra></extra>",
                # marker area grows with the number of images in the bin
                marker={"size": 6 + 14 * np.sqrt(table["count"] / table["count"].max())},
            )
        )
    fig.update_xaxes(title_text="mean predicted probability of fracture", range=[-0.03, 1.03])
    fig.update_yaxes(title_text="observed fraction fractured", range=[-0.03, 1.03])
    fig.update_layout(height=450)
    return fig


def training_figure(curves: Mapping[str, pd.DataFrame]) -> go.Figure | None:
    """Training curves per model (rows): losses left, other metrics right; eval dashed."""
    curves = {name: table for name, table in curves.items() if len(table)}
    if not curves:
        return None
    titles = [f"{name}: {kind}" for name in curves for kind in ("losses", "other metrics")]
    fig = make_subplots(
        rows=len(curves), cols=2, subplot_titles=titles, vertical_spacing=0.3 / len(curves)
    )
    for row, (name, table) in enumerate(curves.items(), start=1):
        for (split, metric), series in table.groupby(["split", "metric"], sort=True):
            col = 1 if "loss" in metric else 2
            fig.add_trace(
                go.Scatter(
                    x=series["step"],
                    y=series["value"],
                    mode="lines",
                    name=f"{split}/{metric}",
                    legendgroup=f"{name}",
                    legendgrouptitle_text=name,
                    line={"dash": "dash" if split == "eval" else "solid"},
                ),
                row,
                col,
            )
    fig.update_xaxes(title_text="epoch", tickformat="d")
    fig.update_layout(height=340 * len(curves))
    return fig


# ---------------------------------------------------------------- text


def provenance(sources: Mapping[str, Mapping[str, object]], labels: pd.DataFrame) -> list[str]:
    """Where the images came from (params.yaml sources) and how they were labelled."""
    lines = [
        f"Source {name}: {spec.get('kind', '?')} layout at {spec.get('path', '?')}"
        for name, spec in sources.items()
    ]
    lines.append(
        "The default params.yaml reads the small synthetic sample shipped under data/; "
        "figures computed on it exercise the pipeline and say nothing about clinical "
        "performance."
    )
    splits = labels["split"].value_counts()
    lines.append(
        "Images per split: "
        + ", ".join(f"{s} {splits.get(s, 0)}" for s in ("train", "val", "test"))
    )
    label_sources = labels["label_source"].value_counts().sort_index()
    lines.append("Region label sources: " + ", ".join(f"{k} {v}" for k, v in label_sources.items()))
    return lines


def settings_note(settings: Settings) -> str:
    return (
        f"Region scored on test images labelled by: {', '.join(settings.score_region_sources)}. "
        f"Fracture threshold chosen on validation ({settings.operating_point}"
        + (
            f", target sensitivity {settings.target_sensitivity}"
            if settings.operating_point == "sensitivity"
            else ""
        )
        + f") and applied to test. AUROC 95% CI: percentile bootstrap, {settings.bootstrap} "
        f"resamples. ECE over {settings.calibration_bins} equal-width bins. "
        + (
            f"Model probabilities are calibrated per head ({settings.calibration} scaling), "
            "fitted on validation; every score and the threshold use the calibrated "
            "probabilities (the legend's raw ECE is before calibration). "
            if settings.calibration != "none"
            else "Probabilities are not calibrated (evaluate.calibration: none). "
        )
        + "Baselines (never calibrated): majority (most frequent train class, probability 1) "
        "and chance (train class priors as probabilities)."
    )


# ---------------------------------------------------------------- html


def _figure_html(fig: go.Figure, div_id: str, with_library: bool) -> str:
    fig.update_layout(template="plotly_white", margin={"t": 60, "b": 50})
    return fig.to_html(
        full_html=False,
        include_plotlyjs=with_library,
        div_id=div_id,  # fixed ids: plotly otherwise draws random ones, breaking reproducibility
        default_height=f"{fig.layout.height or 450}px",
        config={"displaylogo": False},
    )


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def _table(frame: pd.DataFrame, best: pd.DataFrame | None = None) -> str:
    head = "".join(
        f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or "", *frame.columns]
    )
    rows = []
    for key, row in frame.astype(object).iterrows():  # object: ints stay ints
        cells = [f"<td>{html.escape(str(key))}</td>"]
        for column, value in row.items():
            marked = best is not None and bool(best.at[key, column])
            cells.append(f"<td{' class=best' if marked else ''}>{_cell(value)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def summary_table(scores: Mapping[str, Scores], models: Sequence[str]) -> str:
    """Metric rows x model/baseline columns; the best model per metric in bold."""
    frame = pd.DataFrame(
        {
            name: {key: result.metrics[g][m] for key, (g, m) in COMPARE_KEYS.items()}
            for name, result in scores.items()
        }
    )
    frame.index.name = "metric (test)"
    best = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for key in frame.index.difference(list(NOT_RANKED)):
        values = frame.loc[key, list(models)].astype(float)
        if values.notna().any():
            winner = values.idxmin() if key in LOWER_IS_BETTER else values.idxmax()
            best.at[key, winner] = True
    return _table(frame, best)


def flag_tables(scores: Mapping[str, Scores]) -> str:
    """Per flag (hardware), fracture AUROC [95% CI] on test images with and without it;
    nothing where no test image has the flag."""
    parts = []
    for flag in FLAG_COLUMNS:
        key = f"auroc_by_{flag}"
        held = {
            name: r.metrics["fracture"][key]
            for name, r in scores.items()
            if key in r.metrics["fracture"]
        }
        if not held:
            continue
        columns = {}
        for side in (f"with_{flag}", f"without_{flag}"):
            first = next(iter(held.values()))[side]
            title = f"{side.replace('_', ' ')} (n {first['n']}, {first['n_positive']} fractured)"
            columns[title] = {
                name: f"{_cell(g[side]['auroc'])} [{_cell(g[side]['auroc_ci_low'])}, "
                f"{_cell(g[side]['auroc_ci_high'])}]"
                for name, g in held.items()
            }
        frame = pd.DataFrame(columns)
        frame.index.name = "fracture AUROC [95% CI]"
        parts.append(
            f"<h3>Fracture AUROC with and without {html.escape(flag)}</h3>"
            f"<p>Where the {html.escape(flag)} flag is known. In FracAtlas implants go with "
            "fractures, so a model can score by spotting metal: the AUROC without it is free "
            "of that shortcut; with it, the AUROC is undefined (–) when every such test image "
            f"is fractured.</p>{_table(frame)}"
        )
    return "".join(parts)


def paired_section(scores: Mapping[str, Scores], models: Sequence[str], settings: Settings) -> str:
    """The paired tests between models on the same test images (scoring.paired_tests): a
    row per pair, and in words the differences that hold after Holm's adjustment."""
    paired = paired_tests(scores, models, settings)
    if not paired:
        return ""
    frame = paired_frame(paired)
    for column in [c for c in frame.columns if c.endswith(("_p", "_p_holm"))]:
        # 3 significant digits: a fixed 3 decimals would show p = 1e-7 as 0.000.
        frame[column] = [_cell(None) if np.isnan(v) else f"{v:.3g}" for v in frame[column]]
    findings = paired_findings(paired)
    words = (
        "Differences that hold: " + "; ".join(findings) + "."
        if findings
        else "No difference between two models holds at this level: the table gives no order."
    )
    return (
        "<h3>Paired tests between models (same test images)</h3>"
        "<p>Difference = first model minus second. Fracture AUROC: DeLong's test (Sun &amp; Xu's "
        "fast algorithm); region accuracy: McNemar's test on the images one model got right "
        "and the other wrong (exact binomial under 25 such images). p_holm: Holm-adjusted over "
        f"the {len(paired)} pairs, per test; a model is ranked above another only where "
        f"p_holm &lt; {PAIRED_ALPHA}. {html.escape(words)}</p>{_table(frame)}"
    )


def _examples_html(examples: Sequence[Example], model: str) -> str:
    if not examples:
        return "<p class=muted>No test images available.</p>"
    cards = []
    for e in examples:
        pictures = [f"<img alt='{html.escape(e.id)}' src='data:image/png;base64,{e.png_base64}'>"]
        pictures += [
            f"<img alt='{html.escape(name)} Grad-CAM' title='{html.escape(name)} Grad-CAM' "
            f"src='data:image/png;base64,{png}'>"
            for name, png in e.overlays
        ]
        width = 150 + 146 * len(e.overlays)
        explained = (
            f"<br><span class=muted>Grad-CAM (fracture): "
            f"{html.escape(', '.join(name for name, _ in e.overlays))}</span>"
            if e.overlays
            else ""
        )
        cards.append(
            f"<div class='card {'right' if e.correct else 'wrong'}' style='width:{width}px'>"
            f"<div class=images>{''.join(pictures)}</div>"
            f"<b>true</b> {html.escape(e.truth)}<br><b>{html.escape(model)}</b> "
            f"{html.escape(e.prediction)}<br>"
            f"<span class=muted>{html.escape(Path(e.id).name)}</span>{explained}</div>"
        )
    return f"<div class=grid>{''.join(cards)}</div>"


def render(
    scores: Mapping[str, Scores],
    models: Sequence[str],
    regions: Sequence[str],
    *,
    provenance: Sequence[str],
    training_curves: Mapping[str, pd.DataFrame],
    trials: Mapping[str, pd.DataFrame | None],
    examples: Sequence[Example],
    best: str,
    settings: Settings,
) -> str:
    """The whole report as one HTML string."""
    figures = [
        ("region", "Region: per-region accuracy", region_figure(scores, models, regions)),
        ("roc", "Fracture: ROC and precision-recall", fracture_curves_figure(scores, models)),
        ("confusion", "Region: confusion matrices", confusion_figure(scores, models, regions)),
        ("calibration", "Fracture: calibration", calibration_figure(scores, models)),
        ("training", "Training curves (DVCLive)", training_figure(training_curves)),
    ]
    sections = []
    library_embedded = False
    for slug, title, fig in figures:
        if fig is None:
            body = "<p class=muted>No DVCLive training curves found.</p>"
        else:
            body = _figure_html(fig, f"fig-{slug}", with_library=not library_embedded)
            library_embedded = True
        sections.append(f"<section id={slug}><h2>{html.escape(title)}</h2>{body}</section>")

    trial_parts = []
    for name, table in trials.items():
        if table is None:
            trial_parts.append(f"<h3>{html.escape(name)}</h3><p class=muted>No search trials.</p>")
            continue
        shown = table.head(MAX_TRIAL_ROWS).set_index(table.columns[0])
        more = (
            f"<p class=muted>first {MAX_TRIAL_ROWS} of {len(table)}</p>"
            if len(table) > MAX_TRIAL_ROWS
            else ""
        )
        trial_parts.append(f"<h3>{html.escape(name)}</h3>{_table(shown)}{more}")
    sections.append(
        f"<section id=trials><h2>Hyperparameter search trials</h2>{''.join(trial_parts)}</section>"
    )
    sections.append(
        f"<section id=examples><h2>Test images: {html.escape(best)}</h2>"
        f"<p>{html.escape(best)} has the best validation score (mean of region macro-F1 and "
        "fracture AUROC on VAL). Green: every known label right; red: some label wrong. "
        "Beside each image, where present: each Keras model's Grad-CAM of its fracture score "
        "(bright: raised it most), which shows what the model used, not where a fracture is.</p>"
        f"{_examples_html(examples, best)}</section>"
    )
    provenance_items = "".join(f"<li>{html.escape(line)}</li>" for line in provenance)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>bonexray: model comparison</title>"
        f"<style>{CSS}</style></head><body>"
        "<h1>bonexray: region and fracture model comparison</h1>"
        "<p class=notice><b>Research software, not a medical device.</b> These results must not "
        "be used for diagnosis or treatment decisions.</p>"
        f"<h2>Data provenance</h2><ul>{provenance_items}</ul>"
        "<section id=summary><h2>Summary (test set)</h2>"
        f"<p>{html.escape(settings_note(settings))}</p>"
        f"{summary_table(scores, models)}{flag_tables(scores)}"
        f"{paired_section(scores, models, settings)}</section>"
        f"{''.join(sections)}</body></html>\n"
    )


def write(path: str | Path, document: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")


def build(
    scores: Mapping[str, Scores],
    models: Sequence[str],
    regions: Sequence[str],
    settings: Settings,
    *,
    sources: Mapping[str, Mapping[str, object]],
    labels: pd.DataFrame,
    train_plots_dir: str | Path,
    trials_dir: str | Path,
    repair_dir: str | Path,
    gradcam_models: Mapping[str, Path] | None = None,
    bands_dir: str | Path | None = None,
) -> str:
    """Read the report's other inputs (DVCLive curves, trials, images) and render it.

    Training curves and trials are optional (the random forest has no curves, the fixed
    CNN no search) and the ensemble, not trained, has neither; the test images come from
    the repair shards. With ``gradcam_models``
    (Keras model name -> model.keras) and ``bands_dir``, each example shows those models'
    fracture Grad-CAM.
    """
    best = best_model(scores, models)
    trained = [m for m in models if family_of(m) is not ENSEMBLE]
    images = ShardReader(repair_dir)
    examples = pick_examples(scores[best], images, settings.report_examples, settings.seed)
    if gradcam_models and bands_dir is not None:
        examples = with_gradcam(examples, images, ShardReader(bands_dir), gradcam_models)
    return render(
        scores,
        models,
        regions,
        provenance=provenance(sources, labels),
        training_curves={m: read_training_curves(Path(train_plots_dir) / m) for m in trained},
        trials={m: read_trials(Path(trials_dir) / f"{m}.csv") for m in trained},
        examples=examples,
        best=best,
        settings=settings,
    )
