"""The frame every stage script runs in: arguments, params.yaml, and exit status 2 on a
ConfigError (the message names the file or key; no traceback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bonexray.errors import ConfigError
from bonexray.io.params import load

Body = Callable[[argparse.Namespace, Mapping[str, Any]], "int | None"]


def parser(doc: str, prog: str) -> argparse.ArgumentParser:
    """A stage's parser: the docstring's first paragraph as description, the rest as epilog.

    Adds --params; each stage adds its own paths (dvc.yaml passes them).
    """
    description, _, epilog = doc.strip().partition("\n\n")
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default: %(default)s)",
    )
    return parser


def run(parser: argparse.ArgumentParser, body: Body, argv: Sequence[str] | None = None) -> int:
    """Parse, load params, run ``body(args, params)``; its return value (default 0) is the
    exit status, and a ConfigError exits 2 with ``<stage>: error: <message>``."""
    args = parser.parse_args(argv)
    try:
        status = body(args, load(args.params))
    except ConfigError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0 if status is None else status
