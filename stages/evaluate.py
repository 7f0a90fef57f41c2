"""Stage evaluate: score every model and the baselines on test; write metrics, plots, report,
and the serving records that `bonexray predict` reads.

Reads params: seed, taxonomy.regions, sources (report provenance), models (the model
list: its keys plus "rf"), evaluate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bonexray import evaluate, predictions, report, serving
from bonexray.params import load
from bonexray.taxonomy import Taxonomy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument("--labels", required=True, help="labels.parquet written by relabel")
    parser.add_argument(
        "--predictions", required=True, help="directory holding <model>.parquet for every model"
    )
    parser.add_argument("--repair", required=True, help="repair shard directory (report images)")
    parser.add_argument(
        "--train-plots", required=True, help="directory of DVCLive dirs, one per Keras model"
    )
    parser.add_argument("--trials", required=True, help="directory of <model>.csv search trials")
    parser.add_argument(
        "--metrics", required=True, help="directory for <model>.json and compare.json"
    )
    parser.add_argument("--plots", required=True, help="directory for the dvc plots CSVs")
    parser.add_argument("--report", required=True, help="path of the HTML report to write")
    parser.add_argument(
        "--serving",
        required=True,
        help="directory for the serving records <model>.json and best.json (bonexray predict)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    params = load(args.params)
    regions = list(Taxonomy.from_params(params).regions)
    settings = evaluate.Settings.from_params(params)
    models = evaluate.model_names(params)

    labels = evaluate.read_labels(args.labels, regions)
    tables = {m: predictions.read(Path(args.predictions) / f"{m}.parquet", regions) for m in models}
    scores = evaluate.evaluate_all(labels, tables, regions, settings)
    evaluate.write_metrics(scores, models, args.metrics)
    evaluate.write_plots(scores, models, args.plots)
    best = evaluate.best_model(scores, models)
    serving.write(evaluate.serving_records(scores, models, regions, settings), best, args.serving)
    document = report.build(
        scores,
        models,
        regions,
        settings,
        sources=params.get("sources", {}),
        labels=labels,
        train_plots_dir=args.train_plots,
        trials_dir=args.trials,
        repair_dir=args.repair,
    )
    report.write(args.report, document)
    for name in scores:
        frac, region = scores[name].metrics["fracture"], scores[name].metrics["region"]
        print(
            f"{name:>18}: region accuracy {region['accuracy']:.3f}, "
            f"fracture AUROC {frac['auroc']:.3f}, ECE {frac['ece_uncalibrated']:.3f} -> "
            f"{frac['ece']:.3f} (T {frac['temperature']:.2f})"
        )
    print(f"best model on val: {best} (serving records in {args.serving})")


if __name__ == "__main__":
    main()
