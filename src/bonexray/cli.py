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


COMMANDS: dict[str, Command] = {
    "compare": Command(
        "print the test metrics of every model and baseline side by side "
        "(after `dvc repro`; the HTML report is plots/report.html)",
        _configure_compare,
        _run_compare,
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
