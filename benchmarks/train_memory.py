"""Peak memory of the train@<model> stage with 1x and 4x the data.

Writes a synthetic labels.parquet + band-feature shard set of N images (the default
profile's band shape, 64x64x8 float32: 128 KiB an image) and one of 4N, runs
stages/train_keras.py on each in a fresh process (a small fixed CNN, one epoch), and
prints each run's peak resident memory and the ratio 4x / 1x (target <= 1.3).

Two figures per run, both from the kernel:
  peak RSS     ru_maxrss of the stage process (os.wait4): everything resident, including
               file pages of memory-mapped shards, which are clean and reclaimable;
  peak anon    the highest RssAnon sampled from /proc/<pid>/status every 20 ms: the
               process's own heap (arrays, tensors), which no page cache can hand back.

    .venv/bin/python benchmarks/train_memory.py            # N = 1200, about 2 min on 2 cores
    .venv/bin/python benchmarks/train_memory.py --images 600 --json out.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import synthetic_bands
import yaml

from bonexray.io import jsonfile

REPO = Path(__file__).resolve().parents[1]
MODEL = {  # small enough that the data, not the network, sets the memory
    "rnn": False,
    "epochs": 1,
    "fixed": {
        "conv_blocks": 2,
        "filters": 8,
        "kernel_size": 3,
        "residual": False,
        "pool_every_block": True,
        "batchnorm": False,
        "dropout": 0.1,
        "pooling": "max",
        "dense_units": 16,
        "learning_rate": 0.001,
    },
}


class AnonSampler(threading.Thread):
    """The highest RssAnon of one process, sampled until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.status = Path(f"/proc/{pid}/status")
        self.peak_kib = 0

    def run(self) -> None:
        while True:
            try:
                text = self.status.read_text()
            except (FileNotFoundError, ProcessLookupError):
                return
            for line in text.splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            time.sleep(0.02)


def run_stage(work: Path, sample: Path) -> dict[str, float]:
    """Run train@bench on ``sample``; its peak RSS, peak anonymous RSS and wall time."""
    out = work / f"out-{sample.name}"
    command = [
        sys.executable,
        str(REPO / "stages" / "train_keras.py"),
        "bench",
        "--labels", str(sample / "labels.parquet"),
        "--bands", str(sample / "bands"),
        "--out", str(out / "model"),
        "--predictions", str(out / "predictions.parquet"),
        "--metrics", str(out / "metrics.json"),
        "--live", str(out / "live"),
        "--trials", str(out / "trials.csv"),
        "--params", str(work / "params.yaml"),
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "DVC_NO_ANALYTICS": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = AnonSampler(proc.pid)
    sampler.start()
    log = proc.stdout.read().decode()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"stage failed ({proc.returncode}):\n{log[-3000:]}")
    return {
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "peak_anon_mib": sampler.peak_kib / 1024,
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1200, help="N (default: %(default)s)")
    parser.add_argument("--factor", type=int, default=4, help="the larger set is N x this")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    from bonexray.io.params import load

    params = load(REPO / "params.yaml")
    params["models"] = {"bench": MODEL}
    params["train"]["augment"]["enabled"] = False  # the bands alone: no working images here
    regions = list(params["taxonomy"]["regions"])
    item_mib = np.prod(synthetic_bands.SHAPE) * 4 / 2**20
    with tempfile.TemporaryDirectory(prefix="bonexray-mem-") as tmp:
        work = Path(tmp)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        figures = {"images": args.images, "factor": args.factor, "cpus": os.cpu_count()}
        for label, n in (("1x", args.images), (f"{args.factor}x", args.images * args.factor)):
            sample = work / f"sample-{label}"
            synthetic_bands.write(sample, n, regions)
            run = run_stage(work, sample)
            figures[label] = {"images": n, "features_mib": n * item_mib, **run}
            print(
                f"{label:>3s}: {n:5d} images, {n * item_mib:6.0f} MiB of features; "
                f"peak RSS {run['peak_rss_mib']:6.0f} MiB, peak anon {run['peak_anon_mib']:6.0f}"
                f" MiB, {run['wall_s']:.0f} s"
            )
    big = figures[f"{args.factor}x"]
    for key in ("peak_rss_mib", "peak_anon_mib"):
        figures[f"ratio_{key}"] = big[key] / figures["1x"][key]
    print(
        f"ratio {args.factor}x / 1x: peak RSS {figures['ratio_peak_rss_mib']:.2f}, "
        f"peak anon {figures['ratio_peak_anon_mib']:.2f} (target <= 1.3)"
    )
    if args.json:
        jsonfile.write(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
