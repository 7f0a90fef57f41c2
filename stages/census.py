"""census stage: list every file of every source (and every stray file under data/),
hash and decode each one, and write the census table, its metrics and a count plot.

Run from the repository root (dvc.yaml does):
    python stages/census.py --out artifacts/census.parquet --metrics metrics/census.json \
        --plot plots/census/counts.csv
"""

from __future__ import annotations

import argparse
import json
import sys

from bonexray import census
from bonexray.params import ParamsError, load
from bonexray.sources import SourceConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Reads params.yaml `sources` (what to list), `census` (workers, phash_size,\n"
            "draft_size) and `decode.max_image_pixels`. One row per file: unreadable,\n"
            "truncated or non-image files are rows with a status and a reason, never skipped."
        ),
    )
    parser.add_argument("--out", required=True, help="census table to write (.parquet)")
    parser.add_argument("--metrics", required=True, help="summary counts to write (.json)")
    parser.add_argument("--plot", required=True, help="group,count table for `dvc plots` (.csv)")
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument(
        "--data",
        default="data",
        help="files here that no source claims are listed as 'unassigned' (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    try:
        table = census.run(load(args.params), data_root=args.data)
    except (ParamsError, SourceConfigError) as exc:  # a config mistake: no traceback needed
        parser.exit(2, f"census: {exc}\n")
    census.write_outputs(table, args.out, args.metrics, args.plot)
    summary = census.summarise(table)
    status = {k: v for k, v in summary["image_status"].items() if v}
    print(
        f"census: {summary['files']} files, {summary['images']} images "
        f"({summary['usable_images']} usable), {summary['unassigned']} unassigned; "
        f"status {json.dumps(status)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
