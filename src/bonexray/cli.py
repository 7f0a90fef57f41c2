"""`bonexray` command line: one subcommand per job, heavy imports only when a command runs.

To add a command: write `_configure_<name>(parser)` (arguments only, no heavy imports) and
`_run_<name>(args) -> int` (imports what it needs inside), and add one line to COMMANDS.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _configure_synth(parser: argparse.ArgumentParser) -> None:
    from bonexray.synth.sample import DEFAULT_SCALE  # numpy only

    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data"),
        help="output directory (default: data); must be empty unless --force",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the one random generator everything derives from "
        "(default: 0); same seed and scale -> byte-identical files",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=DEFAULT_SCALE,
        help="size factor: about 600*scale unique images (default: "
        f"{DEFAULT_SCALE}, the embedded sample; at least 40 images)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty directory, replacing the sample's own "
        "outputs there (clinic_a/, clinic_b/, README.md, "
        "ground_truth.csv) and leaving other files alone",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the full summary (including the planted defects) as JSON",
    )


def _run_synth(args: argparse.Namespace) -> int:
    from bonexray.synth import SynthError, generate

    try:
        summary = generate(args.out, seed=args.seed, scale=args.scale, force=args.force)
    except (SynthError, ValueError) as exc:
        print(f"bonexray synth: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {summary['files']} files ({summary['bytes'] / 1e6:.1f} MB) under "
            f"{summary['out_dir']} in {summary['seconds']:.1f} s: "
            f"{summary['images_unique']} unique images, {summary['fractured']} fractured; "
            f"{len(summary['mess'])} planted defects listed in "
            f"{Path(summary['out_dir']) / 'README.md'}"
        )
    return 0


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("metrics/compare.json"),
        help="the evaluate stage's flat metrics (default: metrics/compare.json)",
    )


def _run_compare(args: argparse.Namespace) -> int:
    from bonexray.evaluate import compare_frame

    try:
        flat = json.loads(args.metrics.read_text())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"not valid JSON ({exc})"
        print(f"bonexray compare: error: {args.metrics}: {reason}", file=sys.stderr)
        return 2
    table = compare_frame(flat)
    shown = {
        "region_accuracy": "region acc",
        "region_macro_f1": "macro-F1",
        "region_kappa": "kappa",
        "fracture_auroc": "AUROC",
        "fracture_auroc_ci_low": "CI low",
        "fracture_auroc_ci_high": "CI high",
        "fracture_sensitivity": "sens",
        "fracture_specificity": "spec",
        "fracture_ece": "ECE",
        "fracture_ece_uncalibrated": "raw ECE",
    }
    print(
        f"test split of {args.metrics} (region n={flat.get('test_set.region_n')}, "
        f"fracture n={flat.get('test_set.fracture_n')}, "
        f"{flat.get('test_set.fracture_positive')} fractured)"
    )
    print(table[list(shown)].rename(columns=shown).to_string(float_format="{:.3f}".format))
    return 0


def _configure_predict(parser: argparse.ArgumentParser) -> None:
    import textwrap

    # Raw, for the epilog's lines; the description is wrapped here instead.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = textwrap.fill(parser.description or "", 88)
    parser.epilog = (
        "output: one row per image: path, model, p_region__<region> for each region and\n"
        "region (argmax), p_fracture and fracture (0/1 at the operating point chosen on val),\n"
        "error (empty when ok). Probabilities are calibrated (evaluate.calibration).\n"
        "exit status: 0 all predicted; 1 some inputs failed (their rows say why, the others\n"
        "are predicted); 2 usage error (unknown model, missing or stale artifacts).\n"
        "settings: params.yaml repair, decode, features (checked against the artifacts) and\n"
        "predict (batch_size, tta)."
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="image or DICOM files, or folders (searched recursively; each single-frame "
        "file of a DICOM series is one image; sidecar files such as .json/.csv/DICOMDIR "
        "are skipped)",
    )
    parser.add_argument(
        "--model",
        help="model name (cnn_rnn_nas, cnn_nas, cnn, rf); default: the best on validation, "
        "as recorded in <artifacts>/serving/best.json",
    )
    parser.add_argument(
        "--format", choices=("csv", "json"), default="csv", help="output format (default: csv)"
    )
    parser.add_argument(
        "--out", type=Path, help="file to write the table to (default: standard output)"
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default: %(default)s)",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts"),
        help="the pipeline's artifacts directory: models/, features/, serving/ "
        "(default: %(default)s)",
    )


def _run_predict(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bonexray.params import ParamsError, load
    from bonexray.predict import ArtifactsError, Predictor, format_output
    from bonexray.serving import ServingError

    try:
        predictor = Predictor.load(args.artifacts, load(args.params), args.model)
    except (ArtifactsError, ServingError, ParamsError) as exc:
        print(f"bonexray predict: error: {exc}", file=sys.stderr)
        return 2
    table = predictor.run(args.paths)
    text = format_output(table, args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        except OSError as exc:
            print(f"bonexray predict: error: {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    failed = int((table["error"] != "").sum())
    if failed:
        print(
            f"bonexray predict: {failed} of {len(table)} inputs could not be predicted "
            "(see their error column)",
            file=sys.stderr,
        )
    return 1 if failed else 0


COMMANDS: dict[str, Command] = {
    "compare": Command(
        "print the test metrics of every model and baseline side by side "
        "(after `dvc repro`; the HTML report is plots/report.html)",
        _configure_compare,
        _run_compare,
    ),
    "predict": Command(
        "predict region and fracture of image or DICOM files with a trained model "
        "(after `dvc repro`; calibrated probabilities, one row per image)",
        _configure_predict,
        _run_predict,
    ),
    "synth": Command(
        "write the embedded synthetic sample (simulated radiographs in two "
        "clinics' layouts, with deliberate real-world mess)",
        _configure_synth,
        _run_synth,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bonexray",
        description="Bone radiograph region and fracture classification as a DVC pipeline.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(child)
        child.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args._run(args)


if __name__ == "__main__":
    sys.exit(main())
