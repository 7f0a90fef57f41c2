"""Generic folder trees: [wrapper/][split/][region/]class/file (Kaggle and Roboflow exports).

- A split folder (train, val, valid, validation, test, ...) sets split_hint; anything above
  it is a wrapper and ignored.
- Class folders are recognised by params `class_names` (ignoring case and separators:
  "Not Fractured" == "not_fractured"). The depth at which known class folders sit is the
  tree's class level; a folder at that level that is not in class_names is an unknown
  class: fracture NA, reported, the file still listed.
- The folder just above the class level is the region, kept raw for the taxonomy. In a
  tree without class folders (hand/x.png) the innermost folder is the region.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bonexray.data.sources.base import (
    Adapter,
    SourceConfigError,
    SourceFile,
    is_sidecar,
    split_name,
    walk_files,
)
from bonexray.data.taxonomy import normalise_token


class FolderAdapter(Adapter):
    kind = "folder"
    option_defaults = {"class_names": {}}

    def __init__(self, name: str, root: str | Path, **options: Any) -> None:
        super().__init__(name, root, **options)
        classes = self.options["class_names"]
        if not isinstance(classes, Mapping) or any(v not in (0, 1) for v in classes.values()):
            raise SourceConfigError(
                f"sources.{name}.class_names: expected a mapping folder name -> 0 or 1, "
                f"got {classes!r}"
            )
        self.classes = {normalise_token(str(k)): int(v) for k, v in classes.items()}

    def scan(self) -> Iterator[SourceFile]:
        paths = list(walk_files(self.root))
        layout = {p: self.split_folders(p) for p in paths if not is_sidecar(p)}
        class_depth = self.class_depth([folders for _, folders in layout.values()])
        unknown: Counter[str] = Counter()
        for path in paths:
            if path not in layout:
                yield self.file(path, "sidecar")
                continue
            split, folders = layout[path]
            labels = self.labels(folders, class_depth)
            if labels["fracture"] is None and len(folders) == class_depth:
                unknown[folders[-1]] += 1
            yield self.file(path, split_hint=split, **labels)
        if unknown:
            listed = ", ".join(f"{name} ({n})" for name, n in sorted(unknown.items()))
            self.report(f"class folders not in class_names, fracture left NA: {listed}")

    def split_folders(self, path: Path) -> tuple[str | None, tuple[str, ...]]:
        """(split_hint, folders below the split folder) for one file."""
        folders = path.relative_to(self.root).parts[:-1]
        for i, folder in enumerate(folders):
            if split_name(folder):
                return split_name(folder), folders[i + 1 :]
        return None, folders

    def class_depth(self, trees: list[tuple[str, ...]]) -> int | None:
        """How many folders deep the known class folders sit (the most common depth)."""
        depths = Counter(len(f) for f in trees if f and normalise_token(f[-1]) in self.classes)
        return min(depths, key=lambda d: (-depths[d], d)) if depths else None

    def labels(self, folders: tuple[str, ...], class_depth: int | None) -> dict[str, Any]:
        """region_raw and fracture from the folders below the split folder."""
        token = normalise_token(folders[-1]) if folders else None
        if folders and (token in self.classes or len(folders) == class_depth):
            region = folders[-2] if len(folders) > 1 else None
            return {"region_raw": region, "fracture": self.classes.get(token)}
        return {"region_raw": folders[-1] if folders else None, "fracture": None}
