"""The spread of every model's test metrics over seeds, through DVC's experiment queue.

In a fresh git clone of the repository (so the user's workspace, its experiments and its
queue are untouched), sharing the repository's DVC cache (nothing is copied; outputs already
built are reused), this queues one experiment per seed, ``dvc exp run --queue -S seed=<s>``
(plus any --params overrides), runs them with ``dvc exp run --run-all --jobs N``, reads each
experiment's metrics/compare.json from its git ref and prints, per model and metric (fracture
AUROC, region accuracy, ...), the mean, standard deviation, min and max over the seeds.
Every model row of compare.json is read, whatever its name (the baselines, an ensemble).

``seed`` is read by split, relabel, the training stages and evaluate (the bootstrap). By
default the split and relabel stages are frozen at the clone's seed (``dvc freeze``, after
one ``dvc repro relabel``), so the spread is that of training alone on one split and one set
of labels. ``--vary-split`` leaves them free: every seed then re-splits the data and refits
relabel's base model, and the spread includes the split's variance (the printout says so).

Only committed work is run (it is a git clone of HEAD): commit first. It trains every model
once per seed; run it where that is affordable, not on a shared 2-core machine:

    .venv/bin/python benchmarks/seeds.py --seeds 1 2 3 --jobs 1 --work /tmp/seeds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import yaml

COMPARE = "metrics/compare.json"
METRICS = ("fracture_auroc", "region_accuracy")  # printed; the CSV holds every metric
FROZEN = ("split", "relabel")  # the stages that read `seed` before the models do


def runs_frame(runs: Mapping[int, Mapping[str, object]]) -> pd.DataFrame:
    """One row per seed, model and metric (long form) from each seed's flat compare.json;
    its ``test_set.*`` counts are not a model's and are left out."""
    rows = []
    for seed, flat in runs.items():
        for key, value in flat.items():
            model, metric = key.split(".", 1)
            if model != "test_set" and isinstance(value, (int, float)):
                rows.append({"seed": seed, "model": model, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=["seed", "model", "metric", "value"])


def summarise(runs: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean, sample standard deviation, min, max and n over the seeds, per model and metric,
    models in the order compare.json lists them."""
    chosen = runs[runs["metric"].isin(metrics)]
    table = chosen.groupby(["model", "metric"], sort=False)["value"].agg(
        mean="mean", std="std", min="min", max="max", n="count"
    )
    return table.reset_index()


def _run(args: Sequence[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    print("$", " ".join(args), flush=True)
    return subprocess.run(args, cwd=cwd, check=check, text=True)


def _output(args: Sequence[str], cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, text=True, capture_output=True).stdout


def prepare(repo: Path, clone: Path, dvc: str, vary_split: bool) -> None:
    """The clone, its cache shared with ``repo``'s, data pulled, split and relabel frozen."""
    if _output(["git", "status", "--porcelain", "--untracked-files=no"], repo).strip():
        print("note: uncommitted changes in the repository are not part of the runs")
    _run(["git", "clone", "--quiet", str(repo), str(clone)], repo)
    cache = repo / ".dvc" / "cache"
    if cache.is_dir():
        _run([dvc, "cache", "dir", "--local", str(cache.resolve())], clone)
    _run([dvc, "pull", "data.dvc"], clone)
    if not vary_split:
        _run([dvc, "repro", *FROZEN], clone)
        _run([dvc, "freeze", *FROZEN], clone)
        identity = ["-c", "user.name=bonexray seeds", "-c", "user.email=seeds@localhost"]
        _run(["git", "add", "dvc.yaml", "dvc.lock"], clone)
        message = f"seeds: {', '.join(FROZEN)} frozen"
        _run(["git", *identity, "commit", "--quiet", "--allow-empty", "-m", message], clone)


def collect(clone: Path) -> dict[int, dict[str, object]]:
    """seed -> compare.json of every experiment in the clone (its git refs under refs/exps)."""
    refs = _output(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], clone).split()
    runs = {}
    for ref in refs:
        parts = ref.split("/")  # an experiment: refs/exps/<sha[:2]>/<sha[2:]>/<name>
        if len(parts) != 5 or len(parts[2]) != 2:
            continue  # DVC's stashes and executor refs
        try:
            params = yaml.safe_load(_output(["git", "show", f"{ref}:params.yaml"], clone))
            runs[int(params["seed"])] = json.loads(
                _output(["git", "show", f"{ref}:{COMPARE}"], clone)
            )
        except (subprocess.CalledProcessError, KeyError, TypeError, ValueError):
            print(f"note: {ref}: no params.yaml seed or {COMPARE}; skipped")
    return runs


def machine_cpu_seconds() -> float | None:
    """User + system CPU seconds of the whole machine since boot (Linux /proc/stat), which
    counts the queue workers DVC detaches; None where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system = (int(v) for v in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes <work>/seeds_runs.csv (every seed, model, metric) and "
        "<work>/seeds_summary.json, and prints the summary.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="default: 1 2 3")
    parser.add_argument("--jobs", type=int, default=1, help="experiments at once (default: 1)")
    parser.add_argument(
        "--work", type=Path, help="folder for the clone and the results (default: a new temp dir)"
    )
    parser.add_argument("--repo", type=Path, default=Path(), help="repository (default: .)")
    parser.add_argument(
        "--params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra `-S` override for every run, e.g. models.cnn.epochs=8 (repeatable)",
    )
    parser.add_argument(
        "--vary-split",
        action="store_true",
        help="let the seed re-split the data and refit relabel too (default: frozen)",
    )
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds: each seed once")
    work = args.work or Path(tempfile.mkdtemp(prefix="bonexray-seeds-"))
    clone = work / "repo"
    if clone.exists():
        parser.error(f"{clone} exists: give an empty or new --work")
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    beside = Path(sys.executable).with_name("dvc")  # the environment's own dvc
    dvc = str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")
    # DVC's queue workers start `dvc` from PATH: the same one, also when not activated.
    os.environ["PATH"] = f"{Path(dvc).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # The clone's code, not an editable install's checkout (which may have moved on).
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(clone / "src"), *([path] if path else [])])
    started, machine = time.monotonic(), machine_cpu_seconds()
    prepare(args.repo.resolve(), clone, dvc, args.vary_split)
    overrides = [item for key in args.params for item in ("-S", key)]
    for seed in args.seeds:
        _run(
            [dvc, "exp", "run", "--queue", "-n", f"seed{seed}", "-S", f"seed={seed}", *overrides],
            clone,
        )
    _run([dvc, "exp", "run", "--run-all", "--jobs", str(args.jobs)], clone, check=False)
    runs = collect(clone)
    missing = sorted(set(args.seeds) - set(runs))
    if missing:
        print(f"no results for seeds {missing} (see `dvc queue logs seed<s>` in {clone})")
    if not runs:
        return 1
    long = runs_frame(runs)
    long.to_csv(work / "seeds_runs.csv", index=False)
    summary = summarise(long)
    (work / "seeds_summary.json").write_text(
        json.dumps(summary.to_dict(orient="records"), indent=2) + "\n"
    )
    now = machine_cpu_seconds()
    cpu = "n/a" if now is None or machine is None else f"{now - machine:.0f} s"
    print(
        f"\n{len(runs)} seeds ({', '.join(map(str, sorted(runs)))}) of {COMPARE}, test split; "
        + (
            "split and relabel re-derived per seed: the spread includes the split's variance"
            if args.vary_split
            else "split and relabel frozen: the spread is training's alone"
        )
    )
    print(summary.to_string(index=False, float_format="{:.3f}".format))
    print(
        f"wall {time.monotonic() - started:.0f} s, CPU {cpu} (the whole machine's, over "
        f"{os.cpu_count()} CPUs: run it on an otherwise idle machine); "
        f"wrote {work / 'seeds_runs.csv'} and {work / 'seeds_summary.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
