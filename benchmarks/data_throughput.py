"""Throughput of the data stages against the cheapest possible decode.

Measures, in one run over the same source:
  (a) decode-only: PIL open + load of every image, one process, no hashing, no grayscale,
      no output. The floor any pipeline over these files pays.
  (b) census: list every file (sidecars too), sha256, full decode (JPEG draft scale),
      perceptual hash, table; with params-like settings and `--workers` processes.
  (c) repair: census images -> working-size uint8 shards (bonexray.data.repair).
  (d) features: repaired shards -> wavelet/FFT band shards and forest vectors
      (bonexray.features.wavelet.build, params features.*; one process, as the stage). Its train
      statistics come from a seeded 60/20/20 assignment of the repaired images: the split
      stage's grouping changes which images are "train", not how long a DWT takes.
and prints images/s and CPU ms/image for each, the ratio (census + repair) / decode-only
(target >= 0.5): as measured, and as estimated from CPU time for an otherwise idle machine,
and the images/s of the three data stages one after the other (and as a share of (a)).

    .venv/bin/python benchmarks/data_throughput.py                       # FracAtlas
    .venv/bin/python benchmarks/data_throughput.py --path data/clinic_a --kind folder

FracAtlas is read from ../shared/data/fracatlas (or $BONEXRAY_FRACATLAS), never copied.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from bonexray.io import jsonfile

DEFAULT_PATH = os.environ.get("BONEXRAY_FRACATLAS", "../shared/data/fracatlas")


class Stopwatch:
    """Wall time and CPU time (this process plus reaped child processes) of a block.

    The CPU figure does not depend on what else the machine is doing, which matters on a
    shared box: wall-clock rates of a 2-process pool drop as soon as anything else runs.
    """

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = _cpu_seconds() - self.cpu


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def decode_only(paths: list[str]) -> None:
    """PIL open + load every path once, in this process."""
    for path in paths:
        with Image.open(path) as image:
            image.load()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", default=DEFAULT_PATH, help="source root (default: %(default)s)")
    parser.add_argument("--kind", default="fracatlas", help="adapter kind (default: %(default)s)")
    parser.add_argument("--params", default="params.yaml", help="census/repair settings from here")
    parser.add_argument("--workers", type=int, help="processes (default: params census.workers)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not Path(args.path).is_dir():
        print(f"no data at {args.path} (set --path or BONEXRAY_FRACATLAS)", file=sys.stderr)
        return 2
    # Imported here, not at the top: repair's spawned workers re-import this script, and
    # should import what they would under stages/repair.py, not census and pandas.
    import numpy as np
    import pandas as pd

    from bonexray.data import census, imaging
    from bonexray.data.repair import repair
    from bonexray.features.wavelet import FeatureConfig, build
    from bonexray.io.params import load, section
    from bonexray.io.shards import ShardReader

    params = load(args.params)
    settings = census.Settings.from_params(params)
    workers = args.workers or settings.workers
    settings = census.Settings(**{**settings.__dict__, "workers": workers})
    repair_params = params["repair"]
    sources = {"bench": {"kind": args.kind, "path": args.path}}

    with Stopwatch() as census_time:
        files = census.list_files(census.adapters_from_params({"sources": sources}), None)
        table = census.build_table(files, settings, progress=False)
    images = table[(table["role"] == "image") & (table["status"] != "missing")]
    paths = images["path"].tolist()

    with tempfile.TemporaryDirectory() as out:
        with Stopwatch() as repair_time:
            repair(
                table,
                Path(out) / "repair",
                Path(out) / "quarantine.csv",
                size=int(repair_params["image_size"]),
                keep_aspect=bool(repair_params["keep_aspect"]),
                limits=imaging.Limits.from_params(params),
                shard_size=int(repair_params["shard_size"]),
                workers=workers,
            )
        repaired = ShardReader(Path(out) / "repair")
        rng = np.random.default_rng(int(section(params, "seed")))
        split = pd.DataFrame(
            {
                "id": repaired.index["id"],
                "split": rng.choice(["train", "val", "test"], len(repaired), p=[0.6, 0.2, 0.2]),
            }
        )
        feature_cfg = FeatureConfig.from_params(section(params, "features"))
        with Stopwatch() as features_time:
            build(split, repaired, Path(out) / "features", feature_cfg)
    with Stopwatch() as decode_time:
        decode_only(paths)

    n = len(paths)
    pipeline_wall = census_time.wall + repair_time.wall
    pipeline_cpu = census_time.cpu + repair_time.cpu
    figures = {
        "images": n,
        "files": len(table),
        "workers": workers,
        "cpus": os.cpu_count(),
        "decode_only_images_per_s": n / decode_time.wall,
        "census_images_per_s": n / census_time.wall,
        "repair_images_per_s": n / repair_time.wall,
        "repaired_images": len(repaired),
        "features_images_per_s": len(repaired) / features_time.wall,
        "census_plus_repair_images_per_s": n / pipeline_wall,
        "data_stages_images_per_s": n / (pipeline_wall + features_time.wall),
        "decode_only_cpu_ms_per_image": 1000 * decode_time.cpu / n,
        "census_cpu_ms_per_image": 1000 * census_time.cpu / n,
        "repair_cpu_ms_per_image": 1000 * repair_time.cpu / n,
        "features_cpu_ms_per_image": 1000 * features_time.cpu / len(repaired),
        "ratio": decode_time.wall / pipeline_wall,
        "ratio_data_stages": decode_time.wall / (pipeline_wall + features_time.wall),
        # What the ratio would be with `workers` idle cores and perfect scaling.
        "ratio_idle_estimate": workers * decode_time.cpu / pipeline_cpu,
    }
    print(
        f"{n} images ({len(table)} files incl. sidecars), "
        f"{workers} worker(s), {os.cpu_count()} CPUs"
    )
    print(f"  {'':32s} {'images/s':>9s} {'CPU ms/image':>13s}")
    for label, rate, cpu in (
        ("(a) decode-only, 1 process", "decode_only_images_per_s", "decode_only_cpu_ms_per_image"),
        ("(b) census", "census_images_per_s", "census_cpu_ms_per_image"),
        ("(c) repair", "repair_images_per_s", "repair_cpu_ms_per_image"),
        ("(d) features, 1 process", "features_images_per_s", "features_cpu_ms_per_image"),
    ):
        print(f"  {label:32s} {figures[rate]:9.1f} {figures[cpu]:13.2f}")
    print(f"  {'(b)+(c) census + repair':32s} {figures['census_plus_repair_images_per_s']:9.1f}")
    print(
        f"  ratio (census + repair) / decode-only: {figures['ratio']:.2f} measured, "
        f"{figures['ratio_idle_estimate']:.2f} from CPU time with {workers} idle cores "
        "(target >= 0.5)"
    )
    print(
        f"  census + repair + features, one after the other: "
        f"{figures['data_stages_images_per_s']:.1f} images/s, "
        f"{figures['ratio_data_stages']:.2f} of decode-only"
    )
    if args.json:
        jsonfile.write(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
