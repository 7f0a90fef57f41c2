"""End to end: `dvc pull` + `dvc repro` of the whole pipeline on the embedded sample, in a
throw-away copy of this checkout, then the DVC properties users rely on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from dvcrepo import commit, dvc, run
from paths import REPO

from bonexray.evaluation import ensemble, serving
from bonexray.evaluation.metrics import wilson_interval
from bonexray.io.params import load, section

pytestmark = pytest.mark.slow

DATA_STAGES = ("census", "repair", "split")
MODELS = ("cnn_rnn_nas", "cnn_nas", "cnn", "rf")
REGION_MARGIN = 0.15  # region accuracy: Wilson lower bound over the majority baseline


def fresh_clone(dest: Path) -> Path:
    """Copy the checkout as a fresh clone would see it (tracked + unignored files), then pull."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run(dest, "git", "init", "-q")
    commit(dest, "clone")
    dvc(dest, "pull", "--quiet", "data.dvc")
    return dest


def lock_outs(repo: Path) -> dict[str, dict[str, str]]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        name: {out["path"]: out["md5"] for out in stage.get("outs", [])}
        for name, stage in lock["stages"].items()
    }


def changed_stages(repo: Path) -> set[str]:
    return set(json.loads(dvc(repo, "status", "--json")))


def set_param(repo: Path, dotted: str, value: object) -> None:
    path = repo / "params.yaml"
    params = load(path)
    section(params, dotted)  # the key must exist: a typo would test nothing
    parent, _, last = dotted.rpartition(".")
    (section(params, parent) if parent else params)[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    repo = fresh_clone(tmp_path_factory.mktemp("clone_a"))
    dvc(repo, "repro")
    return repo


def test_pipeline_writes_metrics_for_every_stage(reproduced):
    for name in (*DATA_STAGES, "relabel", "features", *MODELS, "compare"):
        assert (reproduced / "metrics" / f"{name}.json").is_file(), name
    assert (reproduced / "plots" / "report.html").stat().st_size > 100_000
    shown = dvc(reproduced, "metrics", "show", "--json")
    assert "metrics/compare.json" in shown


def test_every_model_beats_the_majority_on_region_and_none_is_below_chance_on_fracture(reproduced):
    """Asserted on 95% confidence bounds, not point estimates: a Keras model trained on
    another CPU differs (oneDNN and numpy take other code paths), so a margin that one
    machine's run clears can fail on the next.

    Region: the Wilson lower bound of test accuracy beats the majority baseline by
    REGION_MARGIN (measured 0.62-0.76 on two CPUs against 0.29, lower bounds >= 0.55).
    Fracture: no model is significantly worse than chance (the AUROC CI's upper bound is
    above 0.5): a flipped label or a dead head fails here. The fracture head is weak on the
    sample (AUROC 0.51-0.65 across CPUs, lower bounds 0.44-0.57), so beating chance with
    confidence is not something every CPU's run shows; the models issue is about that."""
    compare = json.loads((reproduced / "metrics" / "compare.json").read_text())
    majority = compare["baseline_majority.region_accuracy"]
    assert compare["baseline_majority.fracture_auroc"] == 0.5
    for model in MODELS:
        region = json.loads((reproduced / "metrics" / f"{model}.json").read_text())["region"]
        low, _ = wilson_interval(round(region["accuracy"] * region["n"]), region["n"])
        assert low >= majority + REGION_MARGIN, (model, region["accuracy"], low)
        assert compare[f"{model}.fracture_auroc_ci_high"] > 0.5, model


def test_census_lists_every_file_and_split_has_no_leakage(reproduced):
    census = json.loads((reproduced / "metrics" / "census.json").read_text())
    n_files = sum(1 for p in (reproduced / "data").rglob("*") if p.is_file() or p.is_symlink())
    assert census["files"] == n_files
    split = json.loads((reproduced / "metrics" / "split.json").read_text())
    assert split["leakage"]["total"] == 0


def test_second_repro_is_a_no_op(reproduced):
    assert changed_stages(reproduced) == set()
    assert "up to date" in dvc(reproduced, "repro")


def test_predict_with_the_best_model_matches_the_pipeline(reproduced, tmp_path):
    """`bonexray predict` on a few embedded-sample test images, default (best) model: exit
    0, and the pipeline's own predictions for them, temperature-scaled as evaluate fitted
    (when the best is the ensemble, its members' predictions combined as evaluate did)."""
    record = serving.read(reproduced / "artifacts" / "serving")  # best.json's model
    labels = pd.read_parquet(reproduced / "artifacts" / "labels.parquet")
    chosen = labels.loc[labels["split"] == "test", "id"].head(4).tolist()
    out = tmp_path / "predict.json"
    command = ["predict", *chosen, "--format", "json", "--out", str(out)]
    run(reproduced, sys.executable, "-m", "bonexray.cli", *command)
    rows = pd.DataFrame(json.loads(out.read_text()))
    assert rows["path"].tolist() == chosen and (rows["error"] == "").all()
    assert (rows["model"] == record.model).all()
    # ~1% of in-distribution images are withheld by the out-of-distribution check (by design).
    called = rows["decision"] == "called"
    assert rows["decision"].isin(["called", "withheld"]).all()
    assert rows.loc[called, "region"].isin(record.regions).all()
    # The stage predictions, calibrated and combined as evaluate did (one model: its own).
    models = record.members or (record.model,)
    tables = {
        m: pd.read_parquet(reproduced / "artifacts" / "predictions" / f"{m}.parquet")
        for m in models
    }
    fitted = {m: serving.read(reproduced / "artifacts" / "serving", m).temperatures for m in models}
    stage = ensemble.member_table(tables, fitted, record.regions).set_index("id")
    expected = stage.loc[chosen, "p_fracture"].to_numpy()
    np.testing.assert_allclose(rows["p_fracture"], expected, atol=2e-6)
    decided = np.asarray(expected >= record.threshold).astype(int)
    assert (rows.loc[called, "fracture"].to_numpy() == decided[called.to_numpy()]).all()


def test_data_stages_are_bit_reproducible_across_clones(reproduced, tmp_path_factory):
    other = fresh_clone(tmp_path_factory.mktemp("clone_b"))
    dvc(other, "repro", "split")
    first, second = lock_outs(reproduced), lock_outs(other)
    for stage in DATA_STAGES:
        assert first[stage] == second[stage], stage


def test_model_stage_is_repeatable(reproduced):
    # The saved .keras file itself differs run to run (Keras stamps date_saved into it), so
    # repeatability is judged on what the model computed: every other output, to the byte.
    model_dir = "artifacts/models/cnn"
    before = lock_outs(reproduced)["train@cnn"]
    metrics_before = (reproduced / "metrics" / "train" / "cnn.json").read_text()
    dvc(reproduced, "repro", "--force", "--single-item", "train@cnn")
    after = lock_outs(reproduced)["train@cnn"]
    assert {k: v for k, v in after.items() if k != model_dir} == {
        k: v for k, v in before.items() if k != model_dir
    }
    assert "artifacts/predictions/cnn.parquet" in after and model_dir in after
    assert (reproduced / "metrics" / "train" / "cnn.json").read_text() == metrics_before


@pytest.mark.parametrize(
    ("key", "value", "expected", "untouched"),
    [
        ("repair.image_size", 64, {"repair"}, {"census"}),
        ("features.wavelet", "db2", {"features"}, {"census", "repair", "split", "relabel"}),
        ("models.cnn.epochs", 2, {"train@cnn"}, {"train@cnn_nas", "train@cnn_rnn_nas", "train_rf"}),
        ("relabel.confidence_threshold", 0.95, {"relabel"}, {"features", "split"}),
    ],
)
def test_a_param_invalidates_only_its_stage(reproduced, key, value, expected, untouched):
    original = (reproduced / "params.yaml").read_text()
    try:
        set_param(reproduced, key, value)
        changed = changed_stages(reproduced)
    finally:
        (reproduced / "params.yaml").write_text(original)
    assert expected <= changed
    assert not (untouched & changed)


def test_exp_run_reruns_only_the_changed_model_evaluate_and_report(reproduced):
    commit(reproduced, "repro")
    out = dvc(reproduced, "exp", "run", "-S", "models.cnn.epochs=2")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"train@cnn", "evaluate", "report"}
