"""relabel stage: final region label per image (kept, synonym-mapped, or base-model assigned).

Reads params: seed, taxonomy.regions, relabel. See src/bonexray/data/relabel.py for the rules.
"""

from __future__ import annotations

import sys

import pandas as pd

from bonexray.data.base_region import BaseModelConfig
from bonexray.data.relabel import check_split_table, relabel, write_outputs
from bonexray.io import stage
from bonexray.io.params import section
from bonexray.io.shards import ShardReader


def run(args, params) -> None:
    regions = list(section(params, "taxonomy.regions"))
    split = pd.read_parquet(args.split)
    check_split_table(split, regions, args.split)
    result = relabel(
        split,
        ShardReader(args.repair),
        regions,
        BaseModelConfig.from_params(section(params, "relabel.base_model")),
        float(section(params, "relabel.confidence_threshold")),
        int(section(params, "seed")),
    )
    write_outputs(result, args.out, args.model_dir, args.metrics)
    m = result.metrics
    print(
        f"relabel: base model val accuracy {m['val_accuracy']} on {m['n_val']} images; "
        f"{m['n_candidates']} candidates, {m['n_accepted']} accepted, {m['n_rejected']} excluded"
    )


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "relabel")
    parser.add_argument("--split", required=True, help="split table (artifacts/split.parquet)")
    parser.add_argument("--repair", required=True, help="repaired image shards (artifacts/repair)")
    parser.add_argument(
        "--out", required=True, help="labels table to write (artifacts/labels.parquet)"
    )
    parser.add_argument(
        "--model-dir",
        required=True,
        help="directory for the base model (.keras) and excluded.csv (artifacts/relabel)",
    )
    parser.add_argument("--metrics", required=True, help="metrics JSON (metrics/relabel.json)")
    return stage.run(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
