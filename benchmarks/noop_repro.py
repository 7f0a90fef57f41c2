"""How long `dvc repro` takes when there is nothing to do, against cheaper commands.

Copies a checkout whose pipeline has run (default: this one; its .venv left out, never
written to) into a temporary directory, optionally checks out there the revision its
artifacts were built at (--rev: for a checkout whose code moved on since its last run),
checks that `dvc status` reports the pipeline up to date, then times, alternating over
rounds:
  python -c pass           the floor of any command here: one interpreter start
  dvc --version            DVC's start-up alone (imports, no repository read)
  dvc status               DVC's own check of every stage against dvc.lock
  dvc repro                the no-op rebuild (must run no stage and leave dvc.lock as is)
and prints the median seconds of each and the ratios dvc repro / dvc status and
dvc repro / python start. The first `dvc status` in the copy is timed apart: files copied
have new inodes and mtimes, so DVC hashes every tracked file once.

    .venv/bin/python benchmarks/noop_repro.py                  # copies this checkout
    .venv/bin/python benchmarks/noop_repro.py --repo ../main --rev 6907e68
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bonexray.io import jsonfile

REPO = Path(__file__).resolve().parents[1]
LEFT_OUT = shutil.ignore_patterns(".venv", "__pycache__", ".pytest_cache", ".ruff_cache")
UP_TO_DATE = "Data and pipelines are up to date."


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to copy")
    parser.add_argument("--rev", help="git revision to check out in the copy")
    parser.add_argument("--rounds", type=int, default=5, help="(default: %(default)s)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "dvc --version": [dvc, "--version"],
        "dvc status": [dvc, "status"],
        "dvc repro": [dvc, "repro"],
    }
    with tempfile.TemporaryDirectory(prefix="bonexray-noop-") as tmp:
        copy = Path(tmp) / "repo"
        started = time.perf_counter()
        shutil.copytree(args.repo, copy, symlinks=True, ignore=LEFT_OUT)
        copy_s = time.perf_counter() - started
        if args.rev:
            timed(["git", "checkout", "--quiet", "--force", args.rev], copy)
        first_status_s, out = timed(commands["dvc status"], copy)
        if UP_TO_DATE not in out:
            sys.exit(f"{args.repo}: the pipeline is not up to date; `dvc status` says:\n{out}")
        lock = (copy / "dvc.lock").read_bytes()
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                elapsed, out = timed(command, copy)
                if name == "dvc repro" and (UP_TO_DATE not in out or "Running stage" in out):
                    sys.exit(f"`dvc repro` was not a no-op:\n{out}")
                seconds[name].append(elapsed)
        if (copy / "dvc.lock").read_bytes() != lock:
            sys.exit("`dvc repro` rewrote dvc.lock")
        stages = (copy / "dvc.lock").read_text().count("\n    cmd:")

    median = {name: statistics.median(times) for name, times in seconds.items()}
    figures = {
        "repo": str(args.repo),
        "rev": args.rev,
        "stages": stages,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "copy_s": copy_s,
        "first_status_s": first_status_s,
        "median_s": median,
        "seconds": seconds,
        "ratio_repro_to_status": median["dvc repro"] / median["dvc status"],
        "ratio_repro_to_python": median["dvc repro"] / median["python -c pass"],
        "ratio_repro_to_dvc_start": median["dvc repro"] / median["dvc --version"],
    }
    where = f"{args.repo}" + (f" at {args.rev}" if args.rev else "")
    print(f"{where}: {stages} stages, {args.rounds} rounds, {os.cpu_count()} CPUs")
    print(f"  copy {copy_s:.1f} s; first dvc status there (hashes all) {first_status_s:.1f} s")
    for name, value in median.items():
        print(f"  {name:16s} {value:6.2f} s median ({min(seconds[name]):.2f} fastest)")
    print(
        f"  ratio dvc repro / dvc status {figures['ratio_repro_to_status']:.2f}, "
        f"dvc repro / dvc start-up {figures['ratio_repro_to_dvc_start']:.2f}, "
        f"dvc repro / python start {figures['ratio_repro_to_python']:.0f}"
    )
    if args.json:
        jsonfile.write(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
