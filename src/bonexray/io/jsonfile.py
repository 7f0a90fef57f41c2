"""The project's one way to write a JSON file: indented, newline-terminated, parents made.

Metrics, meta files and records are diffed by git and `dvc metrics diff`, so every writer
uses the same layout. ``sort_keys`` stays off where the key order is itself meaningful
(e.g. compare.json's model order, a search space's declaration order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write(path: str | Path, data: Mapping[str, Any], *, sort_keys: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
