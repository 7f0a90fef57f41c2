"""Stage train@<model>: search (or fix) a Keras network, refit it, predict val and test.

The model's settings are models.<model> in params.yaml; train holds those shared by all.
With models.<model>.search.workers > 1 the search runs in a chief and worker processes
(bonexray.models.keras.distributed); the refit and predictions still happen here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from bonexray.io import stage  # noqa: E402
from bonexray.models.interface import TrainOutputs  # noqa: E402
from bonexray.models.keras.training import train_keras  # noqa: E402


def run(args, params) -> None:
    outputs = TrainOutputs(
        model_dir=args.out,
        predictions=args.predictions,
        metrics=args.metrics,
        trials=args.trials,
        live_dir=args.live,
    )
    metrics = train_keras(args.model, params, args.labels, args.bands, outputs, args.images)
    best = f"best val_loss {metrics['best_val_loss']:.4f} at epoch {metrics['best_epoch']}"
    print(f"{args.model}: {best}")


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "train_keras")
    parser.add_argument("model", help="a key of models in params.yaml, e.g. cnn_rnn_nas")
    parser.add_argument("--labels", type=Path, required=True, help="labels.parquet (relabel)")
    parser.add_argument("--bands", type=Path, required=True, help="band features shard dir")
    parser.add_argument(
        "--images",
        type=Path,
        help="working images (artifacts/repair); needed when train.augment.enabled",
    )
    parser.add_argument("--out", type=Path, required=True, help="model directory to (re)write")
    parser.add_argument("--predictions", type=Path, required=True, help="predictions .parquet")
    parser.add_argument("--metrics", type=Path, required=True, help="training metrics .json")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive directory")
    parser.add_argument("--trials", type=Path, required=True, help="trials table .csv")
    return stage.run(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
