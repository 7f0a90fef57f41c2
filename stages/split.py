"""split stage: train/val/test, stratified on region x fracture, grouped against leakage.

Reads params: seed, taxonomy, split. Exit status 1 when the split would leak (the metrics
are written for diagnosis, the table is not). The independent pixel check on the repair
shards only warns, naming the pairs it finds (bonexray.data.split.make_split says why).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from bonexray.data.split import (
    LeakageError,
    Settings,
    check_no_leakage,
    make_split,
    pixel_thumbnails,
)
from bonexray.data.taxonomy import Taxonomy
from bonexray.io import jsonfile, stage
from bonexray.io.shards import ShardReader


def run(args, params) -> int:
    settings = Settings.from_params(params)
    started = time.perf_counter()
    repair = ShardReader(args.repair)
    table, metrics = make_split(
        pd.read_parquet(args.census),
        repair.index,
        Taxonomy.from_params(params),
        settings,
        pixel_thumbnails(repair, settings.pixel_check.thumb_side),
    )
    jsonfile.write(args.metrics, metrics)
    try:
        check_no_leakage(metrics["leakage"])
    except LeakageError as exc:
        # Metrics are kept for diagnosis; the leaky table is never written.
        print(f"split: FAILED: {exc}; see {args.metrics}", file=sys.stderr)
        return 1
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    groups = metrics["groups"]
    print(
        f"split: {metrics['counts']} from {groups['count']} groups (largest {groups['largest']}), "
        f"leakage 0, pixel check {metrics['pixel_leakage']['cross_split_pairs']} cross-split "
        f"pairs, {time.perf_counter() - started:.1f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "split")
    parser.add_argument("--census", required=True, help="census table (artifacts/census.parquet)")
    parser.add_argument(
        "--repair",
        required=True,
        help="repair shard directory; only its images are split (artifacts/repair)",
    )
    parser.add_argument(
        "--out", required=True, help="split table to write (artifacts/split.parquet)"
    )
    parser.add_argument(
        "--metrics", required=True, help="metrics JSON to write (metrics/split.json)"
    )
    return stage.run(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
