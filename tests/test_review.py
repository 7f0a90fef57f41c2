"""`bonexray review` in a real temporary git + DVC repository: two commits of small metrics,
params and plot files (no pipeline run), the report read back as markdown."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from dvcrepo import commit, dvc, env, init, run
from paths import REPO

from bonexray import cli
from bonexray.reporting import review

DVC_YAML = {
    "stages": {
        "evaluate": {
            "cmd": "python evaluate.py",
            "deps": ["evaluate.py"],
            "params": ["models"],
            "metrics": [{"metrics/compare.json": {"cache": False}}],
            "plots": [{"plots/roc.csv": {"cache": False, "x": "fpr", "y": "tpr"}}],
        }
    }
}


def compare(auroc: float, accuracy: float) -> dict[str, float]:
    return {
        "cnn.region_accuracy": accuracy,
        "cnn.region_macro_f1": 0.65,
        "cnn.fracture_auroc": auroc,
        "cnn.fracture_auroc_ci_low": auroc - 0.04,
        "cnn.fracture_auroc_ci_high": auroc + 0.04,
        "cnn.fracture_sensitivity": 0.5,
        "cnn.fracture_specificity": 0.6,
        "cnn.fracture_ece": 0.05,
        "baseline_majority.region_accuracy": 0.29,
        "test_set.region_n": 200,
        "test_set.fracture_n": 220,
        "test_set.fracture_positive": 80,
    }


def write_state(repo: Path, auroc: float, accuracy: float, epochs: int, leakage: int) -> None:
    files = {
        "metrics/compare.json": compare(auroc, accuracy),
        "metrics/census.json": {"files": 1214, "images": 1212, "image_status": {"ok": 1200}},
        "metrics/split.json": {
            "images": 1209,
            "counts": {"train": 725, "val": 242, "test": 242},
            "leakage": {"sha256": leakage, "total": leakage},
        },
    }
    for path, data in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(json.dumps(data, indent=2))
    (repo / "params.yaml").write_text(yaml.safe_dump({"models": {"cnn": {"epochs": epochs}}}))
    (repo / "plots").mkdir(exist_ok=True)
    rows = ["fpr,tpr", "0,0", f"0.5,{auroc}", "1,1"]
    (repo / "plots" / "roc.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = init(tmp_path / "repo")
    run(repo, "git", "branch", "-M", "main")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (repo / "evaluate.py").write_text("")
    write_state(repo, auroc=0.60, accuracy=0.700, epochs=4, leakage=0)
    commit(repo, "before")
    run(repo, "git", "checkout", "-q", "-b", "change")
    write_state(repo, auroc=0.70, accuracy=0.702, epochs=8, leakage=3)
    commit(repo, "after")
    return repo


def rows_of(report: str, start: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in report.splitlines()
        if line.startswith(f"| {start}")
    ]


def test_review_names_the_changed_metric_param_and_data_with_plots(repo, capsys):
    out = repo / "review" / "report.md"
    assert cli.main(["review", "--repo", str(repo), "--out", str(out)]) == 0
    report = out.read_text()
    base = run(repo, "git", "rev-parse", "--short", "main").strip()
    assert report.startswith(f"# Review: the workspace against `{base}` (the merge base")

    metrics = {row[1]: row for row in rows_of(report, "cnn ")}
    # A change well outside the after run's interval: no mark.
    assert metrics["fracture AUROC"][2:] == ["0.600", "0.700", "+0.100", "0.660 – 0.740", ""]
    # +0.002 in region accuracy on 200 images: inside the Wilson interval, marked.
    low, high = (float(x) for x in metrics["region accuracy"][5].split(" – "))
    assert low < 0.700 < high
    assert metrics["region accuracy"][2:5] == ["0.700", "0.702", "+0.002"]
    assert metrics["region accuracy"][6] == "≈"
    assert metrics["fracture ECE (calibrated)"][4] == "0"
    assert rows_of(report, "baseline_majority") == []  # unchanged baselines are left out

    assert rows_of(report, "params.yaml") == [["params.yaml", "models.cnn.epochs", "`4`", "`8`"]]
    data = {row[1]: row for row in rows_of(report, "metrics/")}
    assert data["leakage.total"][2:] == ["0", "3", "+3"]
    assert data["counts.test"][2:] == ["242", "242", "0"]
    assert "image_status.ok" not in data

    links = [line for line in report.splitlines() if line.startswith("- [plots/roc.csv]")]
    assert links == ["- [plots/roc.csv](report_plots/plots__roc.csv.svg)"]
    svg = (out.parent / "report_plots" / "plots__roc.csv.svg").read_text()
    assert svg.lstrip().startswith("<svg") and "workspace" in svg  # the legend: both revisions
    assert "wrote" in capsys.readouterr().err


def test_review_of_an_experiment_against_a_named_rev(repo, capsys):
    """--exp reads a DVC experiment's commit (saved with `dvc exp save`), not the workspace."""
    write_state(repo, auroc=0.80, accuracy=0.702, epochs=16, leakage=3)
    dvc(repo, "exp", "save", "-q", "-n", "longer")
    run(repo, "git", "checkout", "-q", "--", ".")  # the workspace back at the commit
    out = repo / "exp.md"
    command = ["review", "main", "--exp", "longer", "--repo", str(repo), "--out", str(out)]
    assert cli.main([*command, "--plots", "png"]) == 0
    report = out.read_text()
    auroc = next(row for row in rows_of(report, "cnn ") if row[1] == "fracture AUROC")
    assert auroc[2:5] == ["0.600", "0.800", "+0.200"]
    assert rows_of(report, "params.yaml") == [["params.yaml", "models.cnn.epochs", "`4`", "`16`"]]
    image = repo / "exp_plots" / "plots__roc.csv.png"
    assert image.read_bytes().startswith(b"\x89PNG")
    assert cli.main(["review", "main", "--repo", str(repo)]) == 0  # to stdout: no images
    assert "## Plots" not in capsys.readouterr().out


def test_review_errors_name_the_revision(repo, capsys):
    assert cli.main(["review", "no-such-rev", "--repo", str(repo)]) == 2
    assert "no-such-rev" in capsys.readouterr().err


WORKFLOW = REPO / ".github" / "workflows" / "review.yml"


def test_the_ci_workflows_review_step_runs_and_posts_the_file_it_writes(repo):
    """.github/workflows/review.yml, as far as it runs offline: its review command line, run
    as written in a clone-like repository (origin/main, as actions/checkout leaves it)."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["review"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # the merge base needs the history
    runs = {s["name"]: s["run"] for s in steps if "run" in s}
    assert runs["Install (pinned, requirements.lock)"] == "make install"
    assert "\ninstall:" in (REPO / "Makefile").read_text()

    review_line = runs["Review against the merge base with main"]
    run(repo, "git", "update-ref", "refs/remotes/origin/main", "main")
    command = shlex.split(review_line.replace("${{ github.base_ref }}", "main"))
    assert command[:2] == [".venv/bin/bonexray", "review"]
    run(repo, sys.executable, "-m", "bonexray.cli", *command[1:], environ=env())
    report = (repo / "review" / "report.md").read_text()
    assert "| cnn | fracture AUROC | 0.600 | 0.700 | +0.100 |" in report

    posted = shlex.split(runs["Post the review on the pull request"])
    assert posted[:3] == ["gh", "pr", "comment"]
    assert posted[posted.index("--body-file") + 1] == command[command.index("--out") + 1]


def test_metric_rows_undefined_values_and_new_models():
    """A NaN (an AUROC with one class in the test set) and a model only on one side give a
    dash, not a number."""
    before = {"cnn.fracture_auroc": float("nan"), "test_set.region_n": 10}
    after = {"cnn.fracture_auroc": 0.7, "rf.region_accuracy": 0.5, "test_set.region_n": 10}
    rows = {(row[0], row[1]): row for row in review.metric_rows(before, after)}
    assert rows["cnn", "fracture AUROC"][4:] == ["–", "–", ""]
    assert rows["rf", "region accuracy"][2] is None and rows["rf", "region accuracy"][4] == "–"
    assert rows["rf", "region accuracy"][5] != "–"  # Wilson over the 10 test images
