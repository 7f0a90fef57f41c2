"""FracAtlas: dataset.csv (one row of 0/1 flags per image) + images/{Fractured,Non_fractured}/.

- region_raw: the one of hand/leg/hip/shoulder that is set; "mixed" when the `mixed` flag is
  set or when several or none are (the taxonomy treats "mixed" as ambiguous).
- fracture from `fractured`; view from frontal/lateral/oblique, the set flags "+"-joined in
  that order ("frontal+lateral" when the image holds several views; None when none is set).
- hardware (an implant or other metal in the image) and multiscan (several radiographs on
  one film) from their flags, None when a trimmed CSV lacks the column. Implants go with
  fractures (97 of the 99 images with hardware are fractured), which is why evaluate
  breaks the fracture AUROC down by hardware.
- A CSV row whose image is missing is still yielded (at the path it should have) with a
  note, and an image without a CSV row is yielded with its folder's fracture label and a
  note: both are also reported as warnings. Nothing is dropped silently.
- fracture_split/ holds the authors' lists for fracture LOCALISATION (fractured images
  only), not a classification split, so it does not set split_hint.
- Top-level metadata folders are sidecars whatever their case: the official zip's
  Annotations/ (COCO, YOLO, VOC, VGG) and Utilities/ (with "Fracture Split"), and the
  lower-case annotations/ and fracture_split/ of trimmed copies.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bonexray.data.datasets import FRACATLAS
from bonexray.data.sources.base import (
    Adapter,
    SourceConfigError,
    SourceFile,
    is_sidecar,
    walk_files,
)
from bonexray.data.taxonomy import normalise_token

REGION_FLAGS = ("hand", "leg", "hip", "shoulder")
VIEW_FLAGS = ("frontal", "lateral", "oblique")
REQUIRED = ("image_id", "mixed", "fractured", *REGION_FLAGS, *VIEW_FLAGS)
OPTIONAL = ("hardware", "multiscan")  # read as unknown (None) when the CSV lacks them
FOLDER_FRACTURE = {"fractured": 1, "non_fractured": 0}
# normalised names (taxonomy.normalise_token): "Fracture Split" -> fracture_split
METADATA_FOLDERS = frozenset({"annotations", "utilities", "fracture_split"})


class FracAtlasAdapter(Adapter):
    kind = "fracatlas"
    option_defaults = {"csv": "dataset.csv", "images": "images"}
    dataset = FRACATLAS

    def scan(self) -> Iterator[SourceFile]:
        rows = self.read_csv()
        images = self.root / self.options["images"]
        found: set[str] = set()
        unlisted: list[str] = []
        for path in walk_files(self.root):
            rel = path.relative_to(self.root)
            if is_sidecar(path) or normalise_token(rel.parts[0]) in METADATA_FOLDERS:
                yield self.file(path, "sidecar")
            elif not path.is_relative_to(images):
                yield self.file(path)  # unexpected place: listed, no labels
            elif path.name in rows:
                found.add(path.name)
                yield self.file(path, **self.labels(rows[path.name], path))
            else:
                unlisted.append(path.name)
                fracture = FOLDER_FRACTURE.get(path.parent.name.lower())
                yield self.file(
                    path, fracture=fracture, note=f"not listed in {self.options['csv']}"
                )
        missing = sorted(set(rows) - found)
        for image_id in missing:
            folder = "Fractured" if rows[image_id]["fractured"] == 1 else "Non_fractured"
            yield self.file(
                images / folder / image_id,
                **self.labels(rows[image_id]),
                note=f"listed in {self.options['csv']} but missing on disk",
            )
        for what, names in (
            ("images not in the CSV", unlisted),
            ("CSV rows without an image", missing),
        ):
            if names:
                self.report(f"{len(names)} {what}, e.g. {', '.join(names[:5])}")

    def read_csv(self) -> dict[str, dict[str, int | None]]:
        """image_id -> {flag: 0/1/None}; a malformed flag is reported and read as None."""
        path = self.root / self.options["csv"]
        try:
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle)
                columns = reader.fieldnames or []
                absent = [c for c in REQUIRED if c not in columns]
                if absent:
                    raise SourceConfigError(f"sources.{self.name}: {path} lacks columns {absent}")
                present = [c for c in OPTIONAL if c in columns]
                table = list(reader)
        except OSError as exc:
            raise SourceConfigError(f"sources.{self.name}: cannot read {path}: {exc}") from None
        rows: dict[str, dict[str, int | None]] = {}
        for line, row in enumerate(table, start=2):
            image_id = row["image_id"].strip()
            if image_id in rows:
                self.report(f"{path.name} line {line}: duplicate image_id {image_id}, first kept")
                continue
            rows[image_id] = {flag: None for flag in OPTIONAL} | {
                flag: self.flag(row[flag], path.name, line) for flag in (*REQUIRED[1:], *present)
            }
        return rows

    def flag(self, value: str | None, csv_name: str, line: int) -> int | None:
        text = (value or "").strip()
        if text in {"0", "1", "0.0", "1.0"}:
            return int(float(text))
        self.report(f"{csv_name} line {line}: flag value {value!r} is not 0/1, read as unknown")
        return None

    def labels(self, row: dict[str, int | None], path: Path | None = None) -> dict[str, Any]:
        regions = [flag for flag in REGION_FLAGS if row[flag] == 1]
        views = [flag for flag in VIEW_FLAGS if row[flag] == 1]
        folder = FOLDER_FRACTURE.get(path.parent.name.lower()) if path else None
        if folder is not None and row["fractured"] is not None and folder != row["fractured"]:
            self.report(
                f"{path.name}: in folder {path.parent.name} but fractured={row['fractured']}"
                " in the CSV (the CSV wins)"
            )
        return {
            "region_raw": regions[0] if len(regions) == 1 and row["mixed"] != 1 else "mixed",
            "fracture": row["fractured"],
            "view": "+".join(views) or None,
            "hardware": row["hardware"],
            "multiscan": row["multiscan"],
        }
