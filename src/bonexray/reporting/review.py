"""`bonexray review [REV]`: one markdown page for reviewing a change (a pull request, an
experiment) against a base revision.

What changed, in the order a reviewer asks: every model's headline test metrics before and
after, with the after run's 95% interval and a mark where the before value lies inside it
(a change the test set cannot tell from noise); the params that changed (what `dvc params
diff` reports); the data (census and split counts, leakage); and DVC's plots of both
revisions as static images (Vega-Lite specs from `dvc plots diff --json`, rendered offline by
vl-convert), written next to the report and linked from it.

Metrics are read from git (`git show REV:metrics/compare.json`, the declared headline) and
from the workspace or an experiment's commit; nothing is recomputed and the pipeline is not
run. Proportions' intervals are Wilson intervals from compare.json's test-set counts, as in
the model cards; the AUROC's is evaluate's bootstrap interval.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonexray.errors import ConfigError
from bonexray.evaluation.metrics import wilson_interval
from bonexray.reporting.model_card import interval_text, markdown_table

COMPARE_FILE = "metrics/compare.json"
CENSUS_FILE = "metrics/census.json"
SPLIT_FILE = "metrics/split.json"
WORKSPACE = "workspace"
TEST_SET = "test_set"  # compare.json's counts, not a model
BASES = ("main", "origin/main")  # the default base: the merge base with the first found
NOISE_MARK = "≈"
IMAGE_FORMATS = ("svg", "png")


@dataclass(frozen=True)
class Headline:
    """One headline metric: its compare.json suffix, its label, and how its interval is had:
    a (low, high) pair of compare.json suffixes, or the test-set count a Wilson interval of
    the proportion is over; neither when it has none."""

    key: str
    label: str
    bounds: tuple[str, str] | None = None
    count: str | None = None


HEADLINES = (
    Headline("region_accuracy", "region accuracy", count="region_n"),
    Headline("region_macro_f1", "region macro-F1"),
    Headline(
        "fracture_auroc",
        "fracture AUROC",
        bounds=("fracture_auroc_ci_low", "fracture_auroc_ci_high"),
    ),
    Headline("fracture_sensitivity", "fracture sensitivity", count="fracture_positive"),
    Headline("fracture_specificity", "fracture specificity", count="fracture_negative"),
    Headline("fracture_ece", "fracture ECE (calibrated)"),
)
# census.json and split.json keys (flattened, dotted) a reviewer sees; a prefix ending in
# "." stands for every key under it.
DATA_KEYS = {
    CENSUS_FILE: ("files", "images", "usable_images", "truncated_images", "unassigned"),
    SPLIT_FILE: ("images", "counts.", "groups.count", "leakage."),
}


class ReviewError(ConfigError):
    """A revision, file or tool the review needs is missing; the message says which."""


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise ReviewError(f"git {' '.join(args)} (in {root}): {proc.stderr.strip()}")
    return proc.stdout


def default_base(root: Path) -> str:
    """The merge base of HEAD with main (or origin/main): what a pull request is against."""
    for branch in BASES:
        try:
            return git(root, "merge-base", "HEAD", branch).strip()
        except ReviewError:
            continue
    raise ReviewError(f"{root}: no branch {' or '.join(BASES)} to review against; name a REV")


def resolve(root: Path, rev: str) -> str:
    """A commit id for a branch, tag, commit or DVC experiment name (`dvc exp show`)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.scm import resolve_rev

    try:
        with Repo(str(root)) as repo:
            return resolve_rev(repo.scm, rev)
    except DvcException as exc:
        raise ReviewError(f"{root}: unknown revision or experiment {rev!r} ({exc})") from None


def read_json(root: Path, rev: str, path: str) -> dict[str, Any] | None:
    """A JSON file at a commit (git show) or in the workspace; None where it is absent."""
    if rev == WORKSPACE:
        file = root / path
        text = file.read_text() if file.is_file() else None
    else:
        proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True)
        text = proc.stdout.decode() if proc.returncode == 0 else None
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ReviewError(f"{path} at {rev}: not valid JSON ({exc})") from None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys, as `dvc metrics` shows them."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _models(*tables: Mapping[str, Any] | None) -> list[str]:
    names: dict[str, None] = {}
    for table in tables:
        names |= dict.fromkeys(key.split(".", 1)[0] for key in table or {})
    names.pop(TEST_SET, None)
    return list(names)


def _interval(table: Mapping[str, Any], model: str, headline: Headline) -> tuple[float, float]:
    nan = (math.nan, math.nan)
    if headline.bounds:
        low, high = (table.get(f"{model}.{key}") for key in headline.bounds)
        return nan if low is None or high is None else (low, high)
    value = table.get(f"{model}.{headline.key}")
    if headline.count is None or value is None or math.isnan(value):
        return nan
    positive, total = table.get("test_set.fracture_positive"), table.get("test_set.fracture_n")
    n = {
        "region_n": table.get("test_set.region_n"),
        "fracture_positive": positive,
        "fracture_negative": None if positive is None or total is None else total - positive,
    }[headline.count]
    return nan if not n else wilson_interval(round(value * n), n)


def metric_rows(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[list[Any]]:
    """[model, metric, before, after, change, after's interval, mark] per model and headline.
    A baseline (a name starting "baseline_") is listed only where a value of it changed."""
    before, after = before or {}, after or {}
    rows = []
    for model in _models(after, before):
        block = []
        for headline in HEADLINES:
            key = f"{model}.{headline.key}"
            old, new = before.get(key), after.get(key)
            if old is None and new is None:
                continue
            change = None if old is None or new is None else new - old
            low, high = _interval(after, model, headline) if new is not None else (math.nan,) * 2
            inside = old is not None and not math.isnan(low) and low <= old <= high
            mark = NOISE_MARK if inside and change else ""
            row = [model, headline.label, old, new, _signed(change), interval_text(low, high)]
            block.append([*row, mark])
        if model.startswith("baseline_") and all(row[4] in ("0", "–") for row in block):
            continue
        rows += block
    return rows


def _signed(change: float | None) -> str:
    if change is None or math.isnan(change):  # NaN: a metric undefined on one side
        return "–"
    if change == 0:
        return "0"
    return f"{change:+d}" if isinstance(change, int) else f"{change:+.3f}"


def data_rows(root: Path, base: str, head: str) -> list[list[Any]]:
    """[file, count, before, after, change] for DATA_KEYS of census.json and split.json."""
    rows = []
    for path, wanted in DATA_KEYS.items():
        old = flatten(read_json(root, base, path) or {})
        new = flatten(read_json(root, head, path) or {})
        for key in dict.fromkeys([*new, *old]):
            if not any(key == w or (w.endswith(".") and key.startswith(w)) for w in wanted):
                continue
            a, b = old.get(key), new.get(key)
            numeric = all(isinstance(v, int | float) for v in (a, b))
            rows.append([path, key, a, b, _signed(b - a) if numeric else "–"])
    return rows


def params_rows(root: Path, base: str, head: str) -> list[list[Any]]:
    """[file, param, before, after] of every param that differs (`dvc params diff`)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        changes = repo.params.diff(a_rev=base, b_rev=head).get("diff", {})
    return [
        [path, name, _param(change.get("old")), _param(change.get("new"))]
        for path, params in sorted(changes.items())
        for name, change in sorted(params.items())
    ]


def _param(value: Any) -> str:
    # DVC gives lists as their text already; numbers and booleans as JSON writes them.
    if value is None:
        return "–"
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def plots_specs(root: Path, base: str, head: str) -> dict[str, dict[str, Any]]:
    """Plot id -> the Vega-Lite spec `dvc plots diff --json` gives for the two revisions."""
    revs = [base] if head == WORKSPACE else [base, head]
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "diff", *revs, "--json"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise ReviewError(f"dvc plots diff {' '.join(revs)}: {proc.stderr.strip()[-2000:]}")
    specs = {}
    for plot_id, renders in json.loads(proc.stdout).get("data", {}).items():
        for render in renders:
            if render.get("type") == "vega":
                specs[plot_id] = render["content"]
    return specs


def render_plots(
    specs: Mapping[str, Mapping[str, Any]], out_dir: Path, image_format: str
) -> list[tuple[str, Path]]:
    """Each spec as a static image under out_dir (vl-convert, offline); [(plot id, file)]."""
    import vl_convert

    convert = {"svg": vl_convert.vegalite_to_svg, "png": vl_convert.vegalite_to_png}[image_format]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for plot_id, spec in specs.items():
        file = out_dir / f"{plot_id.replace('/', '__')}.{image_format}"
        image = convert(dict(spec))
        if isinstance(image, str):
            file.write_text(image)
        else:
            file.write_bytes(image)
        written.append((plot_id, file))
    return written


def _label(root: Path, rev: str) -> str:
    if rev == WORKSPACE:
        return "the workspace"
    return f"`{git(root, 'rev-parse', '--short', rev).strip()}`"


def review(
    root: str | Path,
    base: str | None = None,
    head: str = WORKSPACE,
    plots_dir: str | Path | None = None,
    image_format: str = "svg",
) -> str:
    """The markdown report of ``head`` (a commit, experiment name or the workspace) against
    ``base`` (default: the merge base with main). With ``plots_dir``, DVC's plots of both
    are rendered into that folder, linked as ``<its name>/<file>``: a folder beside the
    report."""
    root = Path(root).resolve()
    base_rev = resolve(root, base) if base else default_base(root)
    head_rev = head if head == WORKSPACE else resolve(root, head)
    before = read_json(root, base_rev, COMPARE_FILE)
    after = read_json(root, head_rev, COMPARE_FILE)
    if before is None and after is None:
        raise ReviewError(f"{root}: {COMPARE_FILE} exists neither at {base_rev} nor at {head}")

    based = "" if base else " (the merge base with main)"
    title = f"{_label(root, head_rev)} against {_label(root, base_rev)}{based}"
    parts = [f"# Review: {title}", "", "## Test metrics", ""]
    rows = metric_rows(before, after)
    if rows:
        header = ["model", "metric", "before", "after", "change", "after 95% CI", ""]
        parts += [
            markdown_table(header, rows),
            "",
            f"{NOISE_MARK}: the change is inside the after run's 95% interval (the before value "
            "lies in it): the test set does not tell the two apart. Intervals: Wilson for "
            "proportions, bootstrap for AUROC. Every headline metric: `dvc metrics diff "
            f"{base or 'main'} --md`; every table: add `--targets metrics -R`.",
        ]
    else:
        parts.append(f"No headline metrics in {COMPARE_FILE}.")
    parts += ["", "## Params changed", ""]
    params = params_rows(root, base_rev, head_rev)
    parts.append(
        markdown_table(["file", "param", "before", "after"], params) if params else "None."
    )
    parts += ["", "## Data", ""]
    data = data_rows(root, base_rev, head_rev)
    parts.append(
        markdown_table(["file", "count", "before", "after", "change"], data)
        if data
        else f"Neither {CENSUS_FILE} nor {SPLIT_FILE} found."
    )
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        images = render_plots(plots_specs(root, base_rev, head_rev), plots_dir, image_format)
        parts += ["", "## Plots", ""]
        if images:
            # Folded: a pipeline has dozens (one per model and kind, per training curve).
            parts += [f"<details><summary>{len(images)} plots, both revisions</summary>", ""]
            parts += [f"- [{plot_id}]({plots_dir.name}/{file.name})" for plot_id, file in images]
            parts += ["", "</details>"]
        else:
            parts.append("No plots.")
    return "\n".join(parts) + "\n"
