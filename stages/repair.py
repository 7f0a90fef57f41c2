"""repair stage: census images -> working-size uint8 shards; unusable files -> quarantine.

Reads params: repair, decode (imaging.Limits: the same guards as census and predict).
"""

from __future__ import annotations

import sys
import time

from bonexray.io import stage


def run(args, params) -> None:
    # Imported here, not at the top: repair's spawned workers re-import this script, and
    # need only bonexray.data.resize (numpy, PIL), not pandas/pyarrow (~0.5 s each to start).
    import pandas as pd

    from bonexray.data.imaging import Limits
    from bonexray.data.repair import repair
    from bonexray.io import jsonfile
    from bonexray.io.params import section

    options = section(params, "repair")
    started = time.perf_counter()
    metrics = repair(
        pd.read_parquet(args.census),
        args.out,
        args.quarantine,
        size=int(options["image_size"]),
        keep_aspect=bool(options["keep_aspect"]),
        limits=Limits.from_params(params),
        shard_size=int(options["shard_size"]),
        workers=int(options["workers"]),
    )
    seconds = time.perf_counter() - started
    jsonfile.write(args.metrics, metrics)
    # Timings are printed, not kept in metrics: they would make `dvc metrics diff` noisy
    # and the stage's outputs differ from run to run.
    print(
        f"repair: {metrics['ok']} ok, {metrics['repaired']} repaired, "
        f"{metrics['quarantined']} quarantined {metrics['quarantined_by_reason']}; "
        f"{seconds:.1f} s, {metrics['images'] / max(seconds, 1e-9):.1f} images/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "repair")
    parser.add_argument("--census", required=True, help="census table (artifacts/census.parquet)")
    parser.add_argument("--out", required=True, help="shard directory to write (artifacts/repair)")
    parser.add_argument(
        "--quarantine",
        required=True,
        help="CSV listing every unusable image and why (artifacts/quarantine.csv)",
    )
    parser.add_argument(
        "--metrics", required=True, help="metrics JSON to write (metrics/repair.json)"
    )
    return stage.run(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
