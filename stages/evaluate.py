"""Stage evaluate: score every model and the baselines on test; write metrics, plots, report,
and the serving records that `bonexray predict` reads.

Also one model card per model (--cards) and, with --models and --bands, the report's
Grad-CAM overlays of the Keras models. Reads params: seed, taxonomy.regions, sources (report
provenance, card citations), models (the model list: its keys plus "rf"), split (cards),
evaluate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bonexray import evaluate, model_card, predictions, report, serving
from bonexray.models.files import keras_model_path
from bonexray.params import load
from bonexray.shards import ShardReader
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
    parser.add_argument(
        "--train-metrics", required=True, help="directory of the training stages' <model>.json"
    )
    parser.add_argument("--cards", required=True, help="directory for the <model>.md cards")
    parser.add_argument(
        "--bands", help="band shard directory: the cards describe the networks' input with it"
    )
    parser.add_argument(
        "--models",
        help="directory of <model>/model.keras; with --bands the report shows each Keras "
        "model's fracture Grad-CAM beside the example images (default: no Grad-CAM)",
    )
    args = parser.parse_args()
    if args.models and not args.bands:
        parser.error("--models needs --bands (the Grad-CAM inputs)")
    return args


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
    keras_models = [m for m in models if m != evaluate.FOREST_MODEL]
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
        gradcam_models=(
            {m: keras_model_path(args.models, m) for m in keras_models} if args.models else None
        ),
        bands_dir=args.bands,
    )
    report.write(args.report, document)
    model_card.write_cards(
        scores,
        models,
        settings,
        params,
        labels,
        train_metrics_dir=args.train_metrics,
        out_dir=args.cards,
        bands_meta=ShardReader(args.bands).meta if args.bands else None,
    )
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
