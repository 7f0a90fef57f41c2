"""Where the tests find the repository and the shared FracAtlas copy (never copied in)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRACATLAS = Path(os.environ.get("BONEXRAY_FRACATLAS", REPO / ".." / "shared/data/fracatlas"))
