"""Stage train_rf: random forests (region, fracture) on the feature vectors, RandomizedSearchCV.

Settings: rf and seed in params.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bonexray.io import stage
from bonexray.models.forest import train_rf
from bonexray.models.interface import TrainOutputs


def run(args, params) -> None:
    outputs = TrainOutputs(
        model_dir=args.out, predictions=args.predictions, metrics=args.metrics, trials=args.trials
    )
    metrics = train_rf(params, args.labels, args.vectors, outputs)
    print(f"rf: {metrics}")


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "train_rf")
    parser.add_argument("--labels", type=Path, required=True, help="labels.parquet (relabel)")
    parser.add_argument("--vectors", type=Path, required=True, help="feature vector shard dir")
    parser.add_argument("--out", type=Path, required=True, help="directory for the forests")
    parser.add_argument("--predictions", type=Path, required=True, help="predictions .parquet")
    parser.add_argument("--metrics", type=Path, required=True, help="training metrics .json")
    parser.add_argument("--trials", type=Path, required=True, help="CV results table .csv")
    return stage.run(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
