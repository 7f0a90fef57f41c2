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
    }
    print(
        f"test split of {args.metrics} (region n={flat.get('test_set.region_n')}, "
        f"fracture n={flat.get('test_set.fracture_n')}, "
        f"{flat.get('test_set.fracture_positive')} fractured)"
    )
    print(table[list(shown)].rename(columns=shown).to_string(float_format="{:.3f}".format))
    return 0


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a Keras model of params.yaml models (cnn_rnn_nas, cnn_nas, cnn); "
        "the random forest (rf) is not exported",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts"),
        help="the pipeline's artifacts directory, holding models/<MODEL>/model.keras and "
        "features/bands (default: artifacts)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: <artifacts>/export/<MODEL>)",
    )
    parser.add_argument(
        "--inputs",
        type=int,
        default=64,
        help="test images the exports are compared on (default: 64)",
    )
    parser.epilog = (
        "Writes <out>/saved_model/, <out>/model.tflite (builtin ops, one image per call) and "
        "<out>/parity.json (largest |difference| of each head's probabilities from the Keras "
        "model). Exit status 1 when a difference exceeds its tolerance (bonexray.export."
        "TOLERANCES, recorded in parity.json), 2 on a missing or unreadable input."
    )


def _run_export(args: argparse.Namespace) -> int:
    from bonexray.export import TOLERANCES, ParityError, export_model
    from bonexray.models.files import keras_model_path

    out = args.out or args.artifacts / "export" / args.model
    if args.inputs < 1:
        print("bonexray export: error: --inputs must be at least 1", file=sys.stderr)
        return 2
    try:
        model_path = keras_model_path(args.artifacts / "models", args.model)
        parity = export_model(model_path, args.artifacts / "features" / "bands", out, args.inputs)
    except ParityError as exc:
        print(f"bonexray export: parity check failed: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"bonexray export: error: {exc}", file=sys.stderr)
        return 2
    for variant, tolerance in TOLERANCES.items():
        diffs = ", ".join(
            f"{head} {parity[variant][f'{head}_max_abs_diff']:.2g}"
            for head in ("region", "fracture")
        )
        print(f"{variant}: max |difference| from Keras {diffs} (tolerance {tolerance:g})")
    print(
        f"wrote {out}/saved_model, {out}/model.tflite and {out}/parity.json "
        f"({parity['inputs']['count']} test images)"
    )
    return 0


COMMANDS: dict[str, Command] = {
    "compare": Command(
        "print the test metrics of every model and baseline side by side "
        "(after `dvc repro`; the HTML report is plots/report.html)",
        _configure_compare,
        _run_compare,
    ),
    "export": Command(
        "export a trained Keras model as a TF SavedModel and a TFLite flatbuffer, and check "
        "that both give the Keras model's probabilities on test images",
        _configure_export,
        _run_export,
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
