"""Reading params.yaml, the single source of truth for every stage's settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bonexray.errors import ConfigError

DEFAULT_PATH = Path("params.yaml")


class ParamsError(ConfigError):
    """params.yaml is missing, malformed, or lacks a key a stage needs."""


def load(path: str | Path = DEFAULT_PATH) -> dict[str, Any]:
    """Load params.yaml as a plain dict, with a clear error naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return params


def section(params: Mapping[str, Any], dotted: str) -> Any:
    """Return params[a][b]... for 'a.b...', naming the missing key if absent."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ParamsError(f"params.yaml: missing key '{dotted}' (no '{part}')")
        node = node[part]
    return node
