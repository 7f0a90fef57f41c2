"""`bonexray validate`: the trained models scored on an external labelled source, unretrained.

An external source is declared like a params.yaml ``sources:`` entry (kind, path, the
kind's options), under ``validate: <name>:`` or on the command line (--kind, --path). No
pipeline stage reads ``validate:``.

  listing      the source's adapter (data/sources/) lists its files and raw labels; regions
               are mapped through params.yaml's taxonomy (data/taxonomy.py), so a region the
               taxonomy does not know, or an ambiguous one, is not scored for region
  images       every served model (evaluation.serving.available; ``--model`` restricts) runs
               through predict's Predictor: the same decode guards (params.yaml decode),
               working size, features, calibration (the serving record's temperatures) and
               quality gate as `bonexray predict`
  metrics      evaluation.scoring.score_heads, the code that scores evaluate's test split:
               fracture AUROC with its bootstrap CI, sensitivity and specificity at the
               serving record's threshold (chosen on VAL), ECE and reliability bins, region
               accuracy, per-region fracture AUROC; plus Wilson intervals of the proportions

Images the gate withholds keep their probabilities and are scored (``fracture_called``
scores the called ones alone); files that do not decode are counted and listed by status,
never dropped silently.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from bonexray.data.sources import REGISTRY, SourceConfigError, adapters_from_params
from bonexray.data.taxonomy import Taxonomy
from bonexray.errors import ConfigError
from bonexray.evaluation import metrics, scoring, serving
from bonexray.inference.predict import REPRO_HINT, ArtifactsError, Input, Predictor
from bonexray.io import jsonfile
from bonexray.io.labels import FLAG_COLUMNS
from bonexray.io.names import display
from bonexray.io.predictions import region_columns

SECTION = "validate"  # params.yaml section of named external sources


class ValidateError(ConfigError):
    """An external source that cannot be validated on (unknown, unreadable, unlabelled)."""


def source_spec(
    params: Mapping[str, Any], name: str, kind: str | None = None, path: str | Path | None = None
) -> dict[str, Any]:
    """The source entry ``validate.<name>`` of params.yaml, with --kind / --path overriding
    its keys; --kind and --path alone declare a source that params.yaml lacks."""
    declared = params.get(SECTION) or {}
    if not isinstance(declared, Mapping):
        raise ValidateError(f"params.yaml {SECTION}: expected a mapping of source names")
    if name not in declared and (kind is None or path is None):
        known = ", ".join(map(str, declared)) or "none"
        raise ValidateError(
            f"params.yaml {SECTION}.{name}: no such source (declared: {known}); declare it "
            f"there like a sources: entry, or give --kind ({'|'.join(REGISTRY)}) and --path"
        )
    spec = dict(declared.get(name) or {})
    if kind is not None:
        spec["kind"] = kind
    if path is not None:
        spec["path"] = str(path)
    return spec


def external_images(
    spec: Mapping[str, Any],
    name: str,
    taxonomy: Taxonomy,
    base: str | Path = ".",
    limit: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per image file the source's adapter lists (sidecars left out): path, id
    (relative to the source's root), region, label_source, fracture and FLAG_COLUMNS.

    ``limit``: a seeded sample of that many images, stratified on fracture x region (each
    stratum in proportion to its size), for a quick check.
    """
    try:
        (adapter,) = adapters_from_params({"sources": {name: spec}}, base)
        files = [f for f in adapter.scan() if f.role == "image"]
    except SourceConfigError as exc:  # its messages name the entry as sources.<name>
        raise ValidateError(str(exc).replace(f"sources.{name}", f"{SECTION}.{name}", 1)) from None
    rows = []
    for f in files:
        region, how = taxonomy.resolve(f.region_raw)
        rows.append(
            {
                "path": str(f.path),
                "id": display(f.path.relative_to(adapter.root)),
                "region": region,
                "label_source": how,
                "fracture": f.fracture,
                **{flag: getattr(f, flag) for flag in FLAG_COLUMNS},
            }
        )
    columns = ["path", "id", "region", "label_source", "fracture", *FLAG_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("fracture", *FLAG_COLUMNS):
        frame[column] = frame[column].astype("Int8")
    if frame.empty:
        raise ValidateError(f"{SECTION}.{name}: no image files under {adapter.root}")
    if limit is not None and limit < len(frame):
        frame = stratified_sample(frame, limit, seed)
    return frame.reset_index(drop=True)


def stratified_sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows, each fracture x region stratum in proportion to its size (seeded), in
    ``frame``'s order: rows ranked by (random rank within stratum + 0.5) / stratum size."""
    strata = frame["fracture"].astype(str) + "|" + frame["region"].astype(str)
    draw = pd.Series(np.random.default_rng(seed).random(len(frame)), index=frame.index)
    rank = draw.groupby(strata).rank(method="first") - 0.5
    key = rank / strata.map(strata.value_counts())
    chosen = key.sort_values(kind="stable").index[:n]
    return frame.loc[sorted(chosen)]


def predict_all(predictor: Predictor, images: pd.DataFrame) -> pd.DataFrame:
    """predict's rows for every image, in order, with a progress bar."""
    inputs = [Input(path) for path in images["path"]]
    step = predictor.batch_size
    frames = []
    desc = f"validate {predictor.record.model}"
    with tqdm(total=len(inputs), desc=desc, unit="img", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(inputs), step):
            frames.append(predictor.predict_batch(inputs[start : start + step]).rows)
            bar.update(len(frames[-1]))
    return pd.concat(frames, ignore_index=True)


def _counts(values: Sequence[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _with_interval(block: dict[str, Any], key: str, successes: int, n: int) -> None:
    block[f"{key}_ci_low"], block[f"{key}_ci_high"] = metrics.wilson_interval(successes, n)


def score_model(
    predictor: Predictor, images: pd.DataFrame, settings: scoring.Settings
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One model's external metrics and its rows (predict's, joined to the labels)."""
    record = predictor.record
    rows = predict_all(predictor, images)
    regions = list(record.regions)
    columns = region_columns(regions)
    joined = images.drop(columns="path").join(
        rows.drop(columns=["region", "fracture", "path"]).add_prefix("predict_")
    )
    joined = joined.rename(columns={f"predict_{c}": c for c in [*columns, "p_fracture"]})
    scored = joined[joined["predict_decision"] != "failed"].copy()
    scored["predicted_region"] = np.asarray(regions, dtype=object)[
        scored[columns].to_numpy().argmax(axis=1)
    ]
    point = metrics.OperatingPoint(
        record.threshold,
        np.nan if record.val_sensitivity is None else record.val_sensitivity,
        np.nan if record.val_specificity is None else record.val_specificity,
    )
    heads = scoring.score_heads(scored, regions, settings, point, record.temperatures)
    region, fracture = heads.metrics["region"], heads.metrics["fracture"]
    correct = int((heads.region_rows["predicted_region"] == heads.region_rows["region"]).sum())
    _with_interval(region, "accuracy", correct, region["n"])
    y = heads.fracture_rows["fracture"].astype(int).to_numpy()
    positive = heads.fracture_rows["p_fracture"].to_numpy() >= record.threshold
    _with_interval(fracture, "sensitivity", int((positive & (y == 1)).sum()), int(y.sum()))
    _with_interval(fracture, "specificity", int((~positive & (y == 0)).sum()), int((y == 0).sum()))
    called = heads.fracture_rows[heads.fracture_rows["predict_decision"] == "called"]
    failed = joined[joined["predict_decision"] == "failed"]
    withheld = joined[joined["predict_decision"] == "withheld"]
    result = {
        "kind": record.kind,
        "calibration": record.calibration,
        "threshold": record.threshold,
        "operating_point": record.operating_point,
        "tta": predictor.tta,
        "counts": {
            "n": int(len(joined)),
            "scored": int(len(scored)),
            "refused": int(len(failed)),
            "refused_by_status": _counts(failed["predict_status"].tolist()),
            "withheld": int(len(withheld)),
            "withheld_by_check": _counts(
                [flag for q in withheld["predict_quality"] for flag in q.split(";")]
            ),
            "called": int((scored["predict_decision"] == "called").sum()),
        },
        "region": region,
        "fracture": fracture,
        "fracture_called": scoring.auroc_summary(
            called["fracture"].astype(int), called["p_fracture"], settings
        ),
        "reliability": heads.calibration.to_dict(orient="records"),
    }
    return result, joined


def validate(
    params: Mapping[str, Any],
    artifacts_dir: str | Path,
    name: str,
    spec: Mapping[str, Any],
    models: Sequence[str] | None = None,
    base: str | Path = ".",
    limit: int | None = None,
) -> dict[str, Any]:
    """Every served model (or ``models``) scored on the external source ``name``."""
    serving_dir = Path(artifacts_dir) / serving.SERVING_DIR
    served = serving.available(serving_dir)
    if not served:
        raise ArtifactsError(
            f"{serving_dir}: no serving records (evaluate writes them); {REPRO_HINT}"
        )
    unknown = sorted(set(models or ()) - set(served))
    if unknown:
        raise serving.ServingError(
            f"{serving_dir}: no serving record for {unknown}; served: {', '.join(served)}"
        )
    taxonomy = Taxonomy.from_params(params)
    settings = scoring.Settings.from_params(params)
    images = external_images(spec, name, taxonomy, base, limit, settings.seed)
    n_fracture = int(images["fracture"].notna().sum())
    n_region = int(images["label_source"].isin(settings.score_region_sources).sum())
    if not n_fracture and not n_region:
        raise ValidateError(
            f"{SECTION}.{name}: none of its {len(images)} images has a fracture label or a "
            f"region labelled by {list(settings.score_region_sources)}: nothing to score"
        )
    result: dict[str, Any] = {
        "source": {"name": name, **spec},
        "limit": limit,
        "images": {
            "n": int(len(images)),
            "n_fracture_labelled": n_fracture,
            "n_fracture_positive": int(images["fracture"].sum()),
            "n_region_scored": n_region,
            "region_label_sources": _counts(images["label_source"].tolist()),
        },
        "models": {},
        "refused": [],
    }
    refused: dict[str, str] = {}
    for model in models or served:
        predictor = Predictor.load(artifacts_dir, params, model)
        if tuple(predictor.record.regions) != taxonomy.regions:
            raise ArtifactsError(
                f"{serving_dir}/{model}.json: regions {list(predictor.record.regions)}, "
                f"params.yaml taxonomy.regions {list(taxonomy.regions)}; run `dvc repro`"
            )
        result["models"][model], rows = score_model(predictor, images, settings)
        for row in rows[rows["predict_decision"] == "failed"].itertuples():
            refused.setdefault(row.id, f"{row.predict_status}: {row.predict_reason}")
    result["refused"] = [{"id": k, "why": v} for k, v in sorted(refused.items())]
    return scoring.rounded(result)


def write(result: Mapping[str, Any], out_dir: str | Path) -> Path:
    """metrics/external/<name>.json (``out_dir``/<name>.json)."""
    path = Path(out_dir) / f"{result['source']['name']}.json"
    jsonfile.write(path, result)
    return path


def table(result: Mapping[str, Any]) -> pd.DataFrame:
    """The short table the command prints: one row per model."""
    rows = {}
    for model, m in result["models"].items():
        f, r, c = m["fracture"], m["region"], m["counts"]
        rows[model] = {
            "n": c["n"],
            "refused": c["refused"],
            "withheld": c["withheld"],
            "AUROC": f["auroc"],
            "CI low": f["auroc_ci_low"],
            "CI high": f["auroc_ci_high"],
            "sens": f["sensitivity"],
            "spec": f["specificity"],
            "ECE": f["ece"],
            "region acc": r["accuracy"],
            "acc low": r["accuracy_ci_low"],
            "acc high": r["accuracy_ci_high"],
        }
    return pd.DataFrame.from_dict(rows, orient="index").astype(float)
