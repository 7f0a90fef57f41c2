"""census stage: list every file of every source (and every stray file under data/), hash
and decode each one, and write the census table, its metrics and a count plot.

Reads params.yaml `sources` (what to list), `census` (workers, phash_size, dhash_size,
draft_size, follow_outside_links) and `decode` (imaging.Limits). One row per file:
unreadable, truncated or non-image files are rows with a status and a reason, never skipped.
"""

from __future__ import annotations

import json
import sys

from bonexray.data import census
from bonexray.io import stage


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "census")
    parser.add_argument("--out", required=True, help="census table to write (.parquet)")
    parser.add_argument("--metrics", required=True, help="summary counts to write (.json)")
    parser.add_argument("--plot", required=True, help="group,count table for `dvc plots` (.csv)")
    parser.add_argument(
        "--data",
        default="data",
        help="files here that no source claims are listed as 'unassigned' (default: %(default)s)",
    )

    def run(args, params) -> None:
        table = census.run(params, data_root=args.data)
        census.write_outputs(table, args.out, args.metrics, args.plot)
        summary = census.summarise(table)
        status = {k: v for k, v in summary["image_status"].items() if v}
        print(
            f"census: {summary['files']} files, {summary['images']} images "
            f"({summary['usable_images']} usable), {summary['unassigned']} unassigned; "
            f"status {json.dumps(status)}",
            file=sys.stderr,
        )

    return stage.run(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
