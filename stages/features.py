"""features stage: wavelet (+FFT) band channels and random-forest vectors for every image.

Reads params: features. See src/bonexray/features/wavelet.py for the definitions.
"""

from __future__ import annotations

import sys

import pandas as pd

from bonexray.features.wavelet import FeatureConfig, build
from bonexray.io import jsonfile, stage
from bonexray.io.params import section
from bonexray.io.shards import ShardReader


def run(args, params) -> None:
    cfg = FeatureConfig.from_params(section(params, "features"))
    metrics = build(pd.read_parquet(args.split), ShardReader(args.repair), args.out, cfg)
    jsonfile.write(args.metrics, metrics, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "features")
    parser.add_argument("--split", required=True, help="split table (artifacts/split.parquet)")
    parser.add_argument("--repair", required=True, help="repaired image shards (artifacts/repair)")
    parser.add_argument(
        "--out",
        required=True,
        help="output directory; gets bands/ and vectors/ (artifacts/features)",
    )
    parser.add_argument("--metrics", required=True, help="metrics JSON (metrics/features.json)")
    return stage.run(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
