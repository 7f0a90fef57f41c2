"""Stage train@<model>: search (or fix) a Keras network, refit it, predict val and test.

    python stages/train_keras.py cnn_rnn_nas --labels artifacts/labels.parquet \
        --bands artifacts/features/bands --out artifacts/models/cnn_rnn_nas ...

The model's settings are models.<model> in params.yaml; train holds those shared by all.
With models.<model>.search.workers > 1 the search runs in a chief and worker processes
(bonexray.distributed); the refit and predictions still happen here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bonexray import params as params_module  # noqa: E402
from bonexray.training import KerasOutputs, train_keras  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a key of models in params.yaml, e.g. cnn_rnn_nas")
    parser.add_argument("--labels", type=Path, required=True, help="labels.parquet (relabel)")
    parser.add_argument("--bands", type=Path, required=True, help="band features shard dir")
    parser.add_argument("--out", type=Path, required=True, help="model directory to (re)write")
    parser.add_argument("--predictions", type=Path, required=True, help="predictions .parquet")
    parser.add_argument("--metrics", type=Path, required=True, help="training metrics .json")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive directory")
    parser.add_argument("--trials", type=Path, required=True, help="trials table .csv")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    outputs = KerasOutputs(
        model_dir=args.out,
        predictions=args.predictions,
        metrics=args.metrics,
        live_dir=args.live,
        trials=args.trials,
    )
    metrics = train_keras(
        args.model, params_module.load(args.params), args.labels, args.bands, outputs
    )
    best = f"best val_loss {metrics['best_val_loss']:.4f} at epoch {metrics['best_epoch']}"
    print(f"{args.model}: {best}")


if __name__ == "__main__":
    main()
