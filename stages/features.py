"""features stage: wavelet (+FFT) band channels and random-forest vectors for every image.

Reads params: features. See src/bonexray/features.py for the definitions.
"""

from __future__ import annotations

import argparse

import pandas as pd

from bonexray import jsonfile
from bonexray import params as P
from bonexray.features import FeatureConfig, build
from bonexray.shards import ShardReader


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", required=True, help="split table (artifacts/split.parquet)")
    parser.add_argument("--repair", required=True, help="repaired image shards (artifacts/repair)")
    parser.add_argument(
        "--out",
        required=True,
        help="output directory; gets bands/ and vectors/ (artifacts/features)",
    )
    parser.add_argument("--metrics", required=True, help="metrics JSON (metrics/features.json)")
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: params.yaml)"
    )
    args = parser.parse_args(argv)

    cfg = FeatureConfig.from_params(P.section(P.load(args.params), "features"))
    metrics = build(pd.read_parquet(args.split), ShardReader(args.repair), args.out, cfg)
    jsonfile.write(args.metrics, metrics, sort_keys=True)


if __name__ == "__main__":
    main()
