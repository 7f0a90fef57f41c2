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
    from bonexray.evaluation.scoring import (
        PAIRED_ALPHA,
        compare_frame,
        paired_findings,
        paired_frame,
    )

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
        # Only where some test image has the flag (FracAtlas' hardware).
        "fracture_auroc_with_hardware": "AUROC hw",
        "fracture_auroc_without_hardware": "AUROC no hw",
    }
    print(
        f"test split of {args.metrics} (region n={flat.get('test_set.region_n')}, "
        f"fracture n={flat.get('test_set.fracture_n')}, "
        f"{flat.get('test_set.fracture_positive')} fractured)"
    )
    columns = [c for c in shown if c in table.columns]
    print(table[columns].rename(columns=shown).to_string(float_format="{:.3f}".format))
    paired_path = args.metrics.parent / "paired.json"  # evaluate writes it beside compare.json
    if paired_path.is_file():
        paired = json.loads(paired_path.read_text())
        print(f"\npaired tests on the same test images ({paired_path}; difference = a - b):")
        short = {
            "fracture_auroc_difference": "AUROC diff",
            "fracture_auroc_p": "AUROC p",
            "fracture_auroc_p_holm": "AUROC p Holm",
            "region_accuracy_difference": "acc diff",
            "region_accuracy_p": "acc p",
            "region_accuracy_p_holm": "acc p Holm",
            "n_fracture": "n frac",
            "n_region": "n region",
        }
        table = paired_frame(paired).rename(columns=short)
        print(table.to_string(float_format="{:.3g}".format))
        findings = paired_findings(paired)
        print(
            f"holds after Holm ({PAIRED_ALPHA}): " + ("; ".join(findings) if findings else "none")
        )
    return 0


def _hex(length: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text) != length or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise argparse.ArgumentTypeError(f"expected {length} hex digits, got {text!r}")
        return text.lower()

    return parse


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _configure_fetch(parser: argparse.ArgumentParser) -> None:
    from bonexray.data.fetch import RELEASES, default_cache  # stdlib, yaml and tqdm only

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "The archive is downloaded to a .part file and resumed (HTTP Range) when a run is\n"
        "interrupted: run the same command again. It is kept only once its size and MD5\n"
        "(and SHA-256, when given) match, then extracted safely (no paths outside the\n"
        "output, no links, size limits) and moved into place. The command prints the\n"
        "params.yaml sources entry to add; it never edits params.yaml.\n\n"
        "exit status: 0 fetched; 1 download, checksum or archive failure (the message says\n"
        "which file and why); 2 bad arguments or an existing output without --force.\n\n"
        + "\n".join(
            f"{r.name}: {r.url} ({r.expected.size} bytes, md5 {r.expected.md5}), "
            f"doi:{r.doi}, {r.dataset.licence}"
            for r in RELEASES.values()
        )
    )
    parser.add_argument("dataset", choices=sorted(RELEASES), help="which dataset to fetch")
    parser.add_argument(
        "--out",
        type=Path,
        help="folder to place the dataset in (default: data/<dataset>); must be absent or "
        "empty unless --force",
    )
    parser.add_argument(
        "--archive",
        type=Path,
        help="where the archive is downloaded to and resumed from; an archive already there "
        f"is used if it verifies (default: {default_cache()}/<archive name>)",
    )
    parser.add_argument(
        "--url",
        help="download from this URL instead (e.g. a mirror; the pinned size and MD5 still "
        "apply unless --size/--md5 are given)",
    )
    parser.add_argument(
        "--md5", type=_hex(32), help="expected MD5 of the archive (default: the pinned one)"
    )
    parser.add_argument(
        "--sha256",
        type=_hex(64),
        help="also require this SHA-256 (a first fetch prints the archive's, to pin it)",
    )
    parser.add_argument(
        "--size",
        type=_positive_int,
        help="expected size of the archive in bytes (default: the pinned one)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the output folder if it is not empty"
    )


def _run_fetch(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bonexray.data.archive import ArchiveError
    from bonexray.data.download import DownloadError
    from bonexray.data.fetch import RELEASES, FetchError, fetch, source_entry

    release = RELEASES[args.dataset]
    out = args.out or Path("data") / release.name
    overrides = {"size": args.size, "md5": args.md5, "sha256": args.sha256}
    expected = replace(release.expected, **{k: v for k, v in overrides.items() if v})
    try:
        done = fetch(
            release, out, archive=args.archive, url=args.url, expected=expected, force=args.force
        )
    except FetchError as exc:
        print(f"bonexray fetch: error: {exc}", file=sys.stderr)
        return 2
    except (DownloadError, ArchiveError, OSError) as exc:
        print(f"bonexray fetch: error: {exc}", file=sys.stderr)
        return 1
    checked = "size, md5" + (", sha256" if expected.sha256 else "")
    how = "downloaded" if done.downloaded else "already downloaded"
    print(
        f"{release.name}: {done.files} files in {done.out} "
        f"({how}: {done.archive}; {checked} verified)"
    )
    if not expected.sha256:
        print(f"sha256 of the archive: {done.digests.sha256} (pass --sha256 to require it)")
    print(
        "\nTo use it, add this source to params.yaml (drop the sample's entries under "
        "sources: to train on it alone):\n\n"
        + source_entry(release, out)
        + "\nthen `dvc add data` (README: Real data).\n"
        f"\nLicence {release.dataset.licence} (doi:{release.doi}); "
        f"cite: {release.dataset.citation}"
    )
    return 0


def _add_served_inputs(parser: argparse.ArgumentParser, holding: str = "") -> None:
    """--params and --artifacts, as predict and validate read the served models."""
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
        help=f"the pipeline's artifacts directory{': ' + holding if holding else ' '}"
        "(default: %(default)s)",
    )


def _configure_predict(parser: argparse.ArgumentParser) -> None:
    import textwrap

    # Raw, for the epilog's lines; the description is wrapped here instead.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = textwrap.fill(parser.description or "", 88)
    parser.epilog = (
        "output: one row per image: path, model, p_region__<region> for each region and\n"
        "region (argmax), p_fracture and fracture (0/1 at the operating point chosen on val),\n"
        "error (empty when ok), status, decision (called | withheld | failed), quality (the\n"
        "failed quality checks, or ok), reason, ood_score, colourfulness. A withheld image\n"
        "keeps its probabilities but gets no region/fracture call. Probabilities are\n"
        "calibrated (evaluate.calibration). Rows are written as they are computed.\n"
        "exit status: 0 all predicted (some may be withheld); 1 some inputs failed (their rows\n"
        "say why, the others are predicted); 2 usage error (unknown model, missing or stale\n"
        "artifacts, unwritable --out).\n"
        "settings: params.yaml repair, decode, features (checked against the artifacts) and\n"
        "predict (batch_size, tta, the quality gate's thresholds)."
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
        help="model name (cnn_rnn_nas, cnn_nas, cnn, rf, or ensemble: the mean of their "
        "calibrated probabilities); default: the best on validation, as recorded in "
        "<artifacts>/serving/best.json",
    )
    parser.add_argument(
        "--format",
        choices=("csv", "jsonl", "json"),
        help="output format: csv, jsonl (JSON Lines) or json (one array); default: from the "
        "--out suffix (.jsonl, .json), else csv",
    )
    parser.add_argument(
        "--out", type=Path, help="file to write the table to (default: standard output)"
    )
    _add_served_inputs(parser, "models/, features/, serving/ ")
    parser.add_argument(
        "--explain",
        type=Path,
        metavar="DIR",
        help="also write each image's fracture Grad-CAM overlay (PNG) into DIR and its path "
        "in an explanation column (Keras models only)",
    )


def _run_predict(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bonexray.errors import ConfigError
    from bonexray.inference.predict import Predictor, TableWriter, format_for, overlay_writer
    from bonexray.io.params import load

    try:
        predictor = Predictor.load(args.artifacts, load(args.params), args.model)
        explain = overlay_writer(predictor, args.explain) if args.explain else None
    except ConfigError as exc:  # missing or stale artifacts, a broken record, bad params
        print(f"bonexray predict: error: {exc}", file=sys.stderr)
        return 2
    try:  # opened before the first image, so that a bad --out costs no work
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
        stream = sys.stdout if args.out is None else args.out.open("w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        print(f"bonexray predict: error: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    columns = [*predictor.columns, *(["explanation"] if explain else [])]
    writer = TableWriter(stream, format_for(args.out, args.format), columns)
    total = failed = withheld = 0
    try:
        for batch in predictor.stream(args.paths, on_batch=explain):
            writer.write(batch.rows)
            total += len(batch.rows)
            failed += int((batch.rows["error"] != "").sum())
            withheld += int((batch.rows["decision"] == "withheld").sum())
    finally:  # also after a crash: the rows so far stay a valid table (a JSON array closed)
        writer.close()
        if stream is not sys.stdout:
            stream.close()
    if withheld:
        print(
            f"bonexray predict: {withheld} of {total} inputs withheld by the quality gate "
            "(no call; see their quality and reason columns)",
            file=sys.stderr,
        )
    if failed:
        print(
            f"bonexray predict: {failed} of {total} inputs could not be predicted "
            "(see their error column)",
            file=sys.stderr,
        )
    return 1 if failed else 0


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
        "model). Exit status 1 when a difference exceeds its tolerance (bonexray.inference.export."
        "TOLERANCES, recorded in parity.json), 2 on a missing or unreadable input."
    )


def _run_export(args: argparse.Namespace) -> int:
    from bonexray.inference.export import TOLERANCES, ParityError, export_model
    from bonexray.models.interface import ENSEMBLE, family_of
    from bonexray.models.keras.files import keras_model_path

    out = args.out or args.artifacts / "export" / args.model
    kind = family_of(args.model)
    problem = (
        "--inputs must be at least 1"
        if args.inputs < 1
        else f"{args.model}: the ensemble has no TF graph of its own (it is the mean of its "
        "members' calibrated outputs); export its Keras members one by one"
        if kind is ENSEMBLE
        else f"{args.model}: the random forest has no TF graph to export (it is saved with "
        "skops; load it with bonexray.models.forest.load_forests)"
        if not kind.explainable
        else None
    )
    if problem:
        print(f"bonexray export: error: {problem}", file=sys.stderr)
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


def _configure_review(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "rev",
        nargs="?",
        help="the base to compare against: a branch, tag or commit "
        "(default: the merge base of HEAD with main)",
    )
    parser.add_argument(
        "--exp",
        metavar="NAME",
        help="review this DVC experiment (a name from `dvc exp show`) or commit instead of "
        "the workspace",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write the markdown here (default: stdout); DVC's plots are then rendered "
        "as images into <out name>_plots/ beside it and linked",
    )
    parser.add_argument(
        "--plots",
        choices=("svg", "png", "none"),
        default="svg",
        help="image format of the rendered plots, or none (default: svg; needs --out)",
    )
    parser.add_argument("--repo", type=Path, default=Path(), help="the repository (default: .)")


def _run_review(args: argparse.Namespace) -> int:
    from bonexray.reporting.review import WORKSPACE, ReviewError, review

    plots_dir = None
    if args.out is not None and args.plots != "none":
        plots_dir = args.out.parent / f"{args.out.stem}_plots"
    try:
        text = review(
            args.repo,
            base=args.rev,
            head=args.exp or WORKSPACE,
            plots_dir=plots_dir,
            image_format=args.plots if plots_dir else "svg",
        )
    except ReviewError as exc:
        print(f"bonexray review: error: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}" + (f" and {plots_dir}/" if plots_dir else ""), file=sys.stderr)
    return 0


def _configure_validate(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "The source: params.yaml validate.<NAME> (the same keys as a sources: entry: kind,\n"
        "path relative to the params file, the kind's options), or --kind and --path (which\n"
        "also override a declared entry's). Kinds: folder, fracatlas, mura, dicom, yolo.\n"
        "Regions are mapped through params.yaml taxonomy; images go through `bonexray\n"
        "predict`'s preprocessing, calibration and quality gate; metrics are evaluate's\n"
        "(fracture AUROC with bootstrap CI, sensitivity/specificity at the threshold chosen\n"
        "on val, ECE and reliability bins, region accuracy, AUROC per region). Files that do\n"
        "not decode are counted and listed. Writes <out>/<NAME>.json and prints a table.\n"
        "exit status: 0 done; 2 usage error (unknown source, missing path, no labelled\n"
        "images, missing or stale artifacts, unknown model)."
    )
    parser.add_argument("name", metavar="NAME", help="the external source's name")
    parser.add_argument("--kind", help="source kind (instead of, or over, params.yaml's)")
    parser.add_argument("--path", type=Path, help="source folder (relative to the cwd)")
    parser.add_argument(
        "--model",
        action="append",
        help="score only this served model (repeatable; default: every model with a "
        "serving record, the ensemble included when there is one)",
    )
    parser.add_argument(
        "--limit",
        type=_positive_int,
        help="score a seeded sample of this many images, stratified on fracture x region",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("metrics/external"),
        help="directory for <NAME>.json (default: %(default)s)",
    )
    _add_served_inputs(parser)


def _run_validate(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bonexray.errors import ConfigError
    from bonexray.inference import validate
    from bonexray.io.params import load

    try:
        params = load(args.params)
        spec = validate.source_spec(
            params, args.name, args.kind, None if args.path is None else args.path.resolve()
        )
        result = validate.validate(
            params,
            args.artifacts,
            args.name,
            spec,
            models=args.model,
            base=args.params.resolve().parent,
            limit=args.limit,
        )
    except ConfigError as exc:
        print(f"bonexray validate: error: {exc}", file=sys.stderr)
        return 2
    path = validate.write(result, args.out)
    images = result["images"]
    print(
        f"{args.name}: {images['n']} images, {images['n_fracture_labelled']} with a fracture "
        f"label ({images['n_fracture_positive']} fractured), {images['n_region_scored']} "
        f"scored for region; {len(result['refused'])} refused by the decoder"
    )
    print(validate.table(result).to_string(float_format="{:.3f}".format))
    print(f"wrote {path}")
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
    "fetch": Command(
        "download a public dataset (FracAtlas), verify its checksums, extract it safely "
        "under data/ and print the params.yaml source to add",
        _configure_fetch,
        _run_fetch,
    ),
    "predict": Command(
        "predict region and fracture of image or DICOM files with a trained model "
        "(after `dvc repro`; calibrated probabilities, one row per image)",
        _configure_predict,
        _run_predict,
    ),
    "review": Command(
        "one markdown page for reviewing a change: every model's test metrics before and "
        "after with 95% intervals, changed params, data counts, DVC's plots as images",
        _configure_review,
        _run_review,
    ),
    "synth": Command(
        "write the embedded synthetic sample (simulated radiographs in two "
        "clinics' layouts, with deliberate real-world mess)",
        _configure_synth,
        _run_synth,
    ),
    "validate": Command(
        "score the trained models on an external labelled source without retraining "
        "(fracture AUROC with CI, sensitivity/specificity at the val threshold, calibration, "
        "per region); writes metrics/external/<NAME>.json",
        _configure_validate,
        _run_validate,
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
