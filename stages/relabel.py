"""relabel stage: final region label per image (kept, synonym-mapped, or base-model assigned).

Reads params: seed, taxonomy.regions, relabel. See src/bonexray/relabel.py for the rules.
"""

from __future__ import annotations

import argparse

import pandas as pd

from bonexray import params as P
from bonexray.models.base_region import BaseModelConfig
from bonexray.relabel import check_split_table, relabel, write_outputs
from bonexray.shards import ShardReader


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
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
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: params.yaml)"
    )
    args = parser.parse_args(argv)

    params = P.load(args.params)
    regions = list(P.section(params, "taxonomy.regions"))
    split = pd.read_parquet(args.split)
    check_split_table(split, regions, args.split)
    result = relabel(
        split,
        ShardReader(args.repair),
        regions,
        BaseModelConfig.from_params(P.section(params, "relabel.base_model")),
        float(P.section(params, "relabel.confidence_threshold")),
        int(P.section(params, "seed")),
    )
    write_outputs(result, args.out, args.model_dir, args.metrics)
    m = result.metrics
    print(
        f"relabel: base model val accuracy {m['val_accuracy']} on {m['n_val']} images; "
        f"{m['n_candidates']} candidates, {m['n_accepted']} accepted, {m['n_rejected']} excluded"
    )


if __name__ == "__main__":
    main()
