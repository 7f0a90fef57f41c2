"""Stage train_rf: random forests (region, fracture) on the feature vectors, RandomizedSearchCV.

    python stages/train_rf.py --labels artifacts/labels.parquet \
        --vectors artifacts/features/vectors --out artifacts/models/rf ...

Settings: rf and seed in params.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bonexray import params as params_module
from bonexray.forest import train_rf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True, help="labels.parquet (relabel)")
    parser.add_argument("--vectors", type=Path, required=True, help="feature vector shard dir")
    parser.add_argument("--out", type=Path, required=True, help="directory for the forests")
    parser.add_argument("--predictions", type=Path, required=True, help="predictions .parquet")
    parser.add_argument("--metrics", type=Path, required=True, help="training metrics .json")
    parser.add_argument("--trials", type=Path, required=True, help="CV results table .csv")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    metrics = train_rf(
        params_module.load(args.params),
        args.labels,
        args.vectors,
        args.out,
        args.predictions,
        args.metrics,
        args.trials,
    )
    print(f"rf: {metrics}")


if __name__ == "__main__":
    main()
