"""Stage evaluate: score every model, their ensemble and the baselines with the same code,
calibrate on val, and write the metrics, the `dvc plots` tables and the serving records
`bonexray predict` reads (with the out-of-distribution reference of the train/val working
images, for its quality gate).

Reads params: taxonomy.regions, models (the model list: its keys plus "rf"), evaluate.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bonexray.data.taxonomy import Taxonomy
from bonexray.evaluation import ood, scoring, serving
from bonexray.io import stage
from bonexray.io.labels import read_labels
from bonexray.io.params import section
from bonexray.io.shards import ShardReader
from bonexray.models.interface import model_names


def run(args, params) -> None:
    regions = list(Taxonomy.from_params(params).regions)
    settings = scoring.Settings.from_params(params)
    trained = model_names(params)
    # ... then their ensemble (evaluate.ensemble), scored as one more model.
    models = scoring.with_ensemble(trained, settings)
    labels = read_labels(args.labels, regions)
    scores = scoring.score_predictions(labels, args.predictions, trained, regions, settings)
    paired = scoring.write_metrics(scores, models, settings, args.metrics)
    scoring.write_plots(scores, models, args.plots)
    best = scoring.best_model(scores, models)
    val_pass = float(section(params, "evaluate.ood_val_pass"))
    floor = float(section(params, "evaluate.ood_min_threshold"))
    reference = ood.fit_on_shards(ShardReader(args.images), labels, val_pass, floor)
    records = scoring.serving_records(scores, models, regions, settings, reference)
    serving.write(records, best, args.serving)
    for name in scores:
        frac, region = scores[name].metrics["fracture"], scores[name].metrics["region"]
        print(
            f"{name:>18}: region accuracy {region['accuracy']:.3f}, "
            f"fracture AUROC {frac['auroc']:.3f}, ECE {frac['ece_uncalibrated']:.3f} -> "
            f"{frac['ece']:.3f} (T {frac['temperature']:.2f})"
        )
    print(
        f"out-of-distribution threshold {reference.threshold:.2f} "
        f"({val_pass:.0%} of {reference.n_val} val images pass)"
    )
    print(f"best model on val: {best} (serving records in {args.serving})")
    findings = scoring.paired_findings(paired)
    print(
        f"paired tests on test (Holm, {scoring.PAIRED_ALPHA}): "
        + ("; ".join(findings) if findings else "no difference between models holds")
    )


def main(argv: list[str] | None = None) -> int:
    parser = stage.parser(__doc__, "evaluate")
    parser.add_argument("--labels", type=Path, required=True, help="labels.parquet (relabel)")
    parser.add_argument(
        "--images", type=Path, required=True, help="the repair stage's working-image shards"
    )
    parser.add_argument(
        "--predictions", type=Path, required=True, help="directory of <model>.parquet"
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        required=True,
        help="directory for <model>.json, compare.json, paired.json",
    )
    parser.add_argument("--plots", type=Path, required=True, help="directory for the plot CSVs")
    parser.add_argument(
        "--serving",
        type=Path,
        required=True,
        help="directory for the serving records <model>.json and best.json (bonexray predict)",
    )
    return stage.run(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
