"""Stage report: the HTML report comparing every model, and one model card per model.

The scores are recomputed with evaluate's own code (evaluation/scoring.py, a pure function
of the labels and predictions), so they are the numbers evaluate wrote. With --models and
--bands the report shows each Keras model's fracture Grad-CAM beside the example images.
Reads params: taxonomy.regions, sources (provenance, citations), models, split (cards),
evaluate.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bonexray.data.taxonomy import Taxonomy
from bonexray.evaluation import scoring
from bonexray.io import stage
from bonexray.io.labels import read_labels
from bonexray.io.shards import ShardReader
from bonexray.models.interface import family_of, model_names
from bonexray.models.keras.files import keras_model_path
from bonexray.reporting import model_card, report


def run(args, params) -> None:
    regions = list(Taxonomy.from_params(params).regions)
    settings = scoring.Settings.from_params(params)
    trained = model_names(params)
    models = scoring.with_ensemble(trained, settings)  # the ensemble is shown as a model
    labels = read_labels(args.labels, regions)
    scores = scoring.score_predictions(labels, args.predictions, trained, regions, settings)
    explained = [m for m in models if family_of(m).explainable]
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
            {m: keras_model_path(args.models, m) for m in explained} if args.models else None
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
    print(f"report: {args.report}; model cards in {args.cards}")


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "report")
    parser.add_argument("--labels", type=Path, required=True, help="labels.parquet (relabel)")
    parser.add_argument(
        "--predictions", type=Path, required=True, help="directory of <model>.parquet"
    )
    parser.add_argument("--repair", type=Path, required=True, help="repair shards (images)")
    parser.add_argument(
        "--train-plots", type=Path, required=True, help="DVCLive dirs, one per Keras model"
    )
    parser.add_argument("--trials", type=Path, required=True, help="<model>.csv search trials")
    parser.add_argument(
        "--train-metrics", type=Path, required=True, help="the training stages' <model>.json"
    )
    parser.add_argument("--report", type=Path, required=True, help="HTML report to write")
    parser.add_argument("--cards", type=Path, required=True, help="directory for <model>.md")
    parser.add_argument(
        "--bands", type=Path, help="band shards: the cards describe the networks' input with it"
    )
    parser.add_argument(
        "--models",
        type=Path,
        help="directory of <model>/model.keras; with --bands, Grad-CAM overlays in the report",
    )

    def checked(args, params) -> None:
        if args.models and not args.bands:
            parser.error("--models needs --bands (the Grad-CAM inputs)")
        run(args, params)

    return stage.run(parser, checked, argv)


if __name__ == "__main__":
    sys.exit(main())
