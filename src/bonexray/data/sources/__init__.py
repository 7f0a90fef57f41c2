"""Source adapters: one per raw-data layout, all yielding SourceFile records.

Adding a layout = one module with an Adapter subclass + one line in REGISTRY.
params.yaml `sources:` maps a source name to {kind, path, ...kind-specific options}.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bonexray.data.datasets import SYNTHETIC_SAMPLE, Dataset, is_synthetic_sample
from bonexray.data.sources.base import (
    Adapter,
    SourceConfigError,
    SourceFile,
    SourceWarning,
    is_sidecar,
    walk_files,
)
from bonexray.data.sources.dicom import DicomAdapter
from bonexray.data.sources.folder import FolderAdapter
from bonexray.data.sources.fracatlas import FracAtlasAdapter
from bonexray.data.sources.mura import MuraAdapter
from bonexray.data.sources.yolo import YoloAdapter

REGISTRY: dict[str, type[Adapter]] = {
    "folder": FolderAdapter,
    "mura": MuraAdapter,
    "fracatlas": FracAtlasAdapter,
    "dicom": DicomAdapter,
    "yolo": YoloAdapter,
}

__all__ = [
    "REGISTRY",
    "Adapter",
    "SourceConfigError",
    "SourceFile",
    "SourceWarning",
    "adapters_from_params",
    "attribution",
    "is_sidecar",
    "walk_files",
]


def adapters_from_params(params: Mapping[str, Any], base: str | Path = ".") -> list[Adapter]:
    """One adapter per entry of params['sources'], in file order.

    Relative source paths are taken from `base` (the repository root when stages run).
    Raises SourceConfigError naming the source for an unknown kind, a missing or
    non-directory path, or an unknown option.
    """
    sources = params.get("sources")
    if not isinstance(sources, Mapping) or not sources:
        raise SourceConfigError("params.yaml: 'sources' must map source names to {kind, path}")
    adapters = []
    for name, spec in sources.items():
        if not isinstance(spec, Mapping):
            raise SourceConfigError(f"sources.{name}: expected a mapping with kind and path")
        kind = spec.get("kind")
        if kind not in REGISTRY:
            raise SourceConfigError(
                f"sources.{name}: unknown kind {kind!r} (known: {', '.join(sorted(REGISTRY))})"
            )
        if not spec.get("path"):
            raise SourceConfigError(f"sources.{name}: no 'path' given")
        root = Path(base) / spec["path"]
        if not root.is_dir():
            raise SourceConfigError(
                f"sources.{name}: path '{root}' is not a directory "
                f"(relative paths start at {Path(base).resolve()})"
            )
        options = {k: v for k, v in spec.items() if k not in ("kind", "path")}
        adapters.append(REGISTRY[kind](str(name), root, **options))
    return adapters


def attribution(spec: Mapping[str, Any], base: str | Path = ".") -> Dataset | None:
    """The dataset a params.yaml source entry reads, for citing it; None for one's own data.

    The embedded synthetic sample comes first: it uses the folder and mura layouts.
    """
    root = Path(base) / str(spec.get("path", ""))
    if is_synthetic_sample(root):
        return SYNTHETIC_SAMPLE
    adapter = REGISTRY.get(str(spec.get("kind")))
    return adapter.recognise(root) if adapter else None
