"""Roboflow's YOLO export: data.yaml + <split>/images/<stem>.<ext> + <split>/labels/<stem>.txt.

- data.yaml names the classes (`names`: a list, or a {class id: name} mapping; `nc`, when
  given, must match). Its train/val/test paths are not read: Roboflow writes them relative to
  a folder that is rarely the one the export sits in, so the split folder (train, valid, ...)
  sets split_hint instead, as in the folder adapter.
- A label file is found the way Ultralytics finds it: the image's path with its last
  `images` folder replaced by `labels` and its suffix by `.txt`. Each line is a box,
  `class_id cx cy w h`, or a polygon, `class_id x1 y1 x2 y2 x3 y3 ...`.
- fracture: 1 when any box's class maps to 1 (params `class_fracture`, regular expressions
  searched in the class name, case-insensitive, first match wins), 0 when every box maps
  to 0 or there is no box (an empty or absent label file). A class that no pattern matches
  leaves the image's fracture NA (unless another box is a fracture), with a note and a
  report naming the class: one unexpected class does not stop the census.
- region_raw: from the class name without its label words ("elbow positive" -> "elbow",
  "humerus fracture" -> "humerus"; "fracture" -> none), kept raw for the taxonomy
  (humerus -> elbow); `class_region` patterns override it. Boxes naming different regions
  leave region NA, with a note. The comparison is of raw names, since census does not read
  the taxonomy: "forearm" and "wrist" on one image count as two.
- Label files and data.yaml are sidecars. A label file without an image and an image whose
  label file is malformed (class id not in data.yaml, wrong field count, not a number) are
  still listed, with a note, and reported; the malformed one's labels are NA.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from bonexray.data.sources.base import (
    Adapter,
    SourceConfigError,
    SourceFile,
    is_sidecar,
    split_name,
    walk_files,
)
from bonexray.data.taxonomy import normalise_token

# Negatives first: "not fractured" contains "fracture". The lookbehinds keep "abnormal" (an
# unknown: MURA's sense, not a fracture) and "snow" out.
DEFAULT_CLASS_FRACTURE = {
    r"(?<![a-z])(no|not|non)[^a-z]*fractur": 0,
    r"negative|(?<![a-z])normal|healthy": 0,
    r"fractur|positive|broken": 1,
}
# Words of a class name that say what was found, not where: the rest is the region.
LABEL_WORDS = frozenset(
    {"fracture", "fractures", "fractured", "positive", "negative", "broken", "normal"}
    | {"abnormal", "healthy", "no", "not", "non", "bone", "bones"}
)
EXAMPLES = 5  # file names quoted in a report


class YoloAdapter(Adapter):
    kind = "yolo"
    option_defaults = {
        "data_yaml": "data.yaml",
        "class_fracture": DEFAULT_CLASS_FRACTURE,
        "class_region": {},
    }

    def __init__(self, name: str, root: str | Path, **options: Any) -> None:
        super().__init__(name, root, **options)
        self.fracture_patterns = self.patterns(
            "class_fracture",
            lambda value: value in (0, 1) and not isinstance(value, bool),
            "0 or 1",
        )
        self.region_patterns = self.patterns(
            "class_region",
            lambda value: value is None or isinstance(value, str),
            "a region or null",
        )

    def patterns(self, option: str, valid: Any, expected: str) -> list[tuple[re.Pattern, Any]]:
        """An option's {regular expression: value} mapping, compiled, in order."""
        where = f"sources.{self.name}.{option}"
        mapping = self.options[option]
        if not isinstance(mapping, Mapping):
            raise SourceConfigError(f"{where}: expected a mapping class-name pattern -> {expected}")
        compiled = []
        for pattern, value in mapping.items():
            if not valid(value):
                raise SourceConfigError(f"{where}: '{pattern}' maps to {value!r}, not {expected}")
            try:
                compiled.append((re.compile(str(pattern), re.IGNORECASE), value))
            except re.error as exc:
                raise SourceConfigError(
                    f"{where}: '{pattern}' is not a regular expression ({exc})"
                ) from None
        return compiled

    def scan(self) -> Iterator[SourceFile]:
        names = self.read_data_yaml()
        fracture = {i: self.first_match(self.fracture_patterns, n) for i, n in names.items()}
        region = {i: self.region_of(n) for i, n in names.items()}
        paths = list(walk_files(self.root))
        label_of = {
            p: self.root / label_path(p.relative_to(self.root)) for p in paths if not is_sidecar(p)
        }
        wanted = set(label_of.values())
        parsed: dict[Path, list[int] | str] = {}
        unknown: Counter[str] = Counter()
        malformed: list[str] = []
        orphans: list[str] = []
        mixed: list[str] = []
        for path in paths:
            rel = path.relative_to(self.root)
            if path not in label_of:
                orphan = path.suffix.lower() == ".txt" and "labels" in rel.parts[:-1]
                if orphan and path not in wanted:
                    orphans.append(rel.as_posix())
                    yield self.file(path, "sidecar", note="label file without an image")
                else:
                    yield self.file(path, "sidecar")
                continue
            split = next(filter(None, map(split_name, rel.parts[:-1])), None)
            label = label_of[path]
            label_rel = label.relative_to(self.root).as_posix()
            if not label.is_file():
                yield self.file(
                    path, split_hint=split, fracture=0, note=f"no {label_rel}: read as no box"
                )
                continue
            if label not in parsed:
                parsed[label] = self.read_labels(label, names)
            boxes = parsed[label]
            if isinstance(boxes, str):
                malformed.append(boxes)
                yield self.file(path, split_hint=split, note=boxes)
                continue
            notes = []
            found = {fracture[i] for i in boxes}
            strange = sorted({names[i] for i in boxes if fracture[i] is None})
            unknown.update(names[i] for i in boxes if fracture[i] is None)
            verdict = 1 if 1 in found else None if None in found else 0
            if verdict is None:
                notes.append(
                    f"class {', '.join(map(repr, strange))} matches no class_fracture pattern"
                )
            places = {normalise_token(region[i]): region[i] for i in boxes if region[i]}
            if len(places) > 1:
                mixed.append(rel.as_posix())
                notes.append(f"boxes name several regions ({', '.join(sorted(places))})")
            yield self.file(
                path,
                split_hint=split,
                fracture=verdict,
                region_raw=next(iter(places.values())) if len(places) == 1 else None,
                note="; ".join(notes) or None,
            )
        if unknown:
            listed = ", ".join(f"'{name}' ({n} boxes)" for name, n in sorted(unknown.items()))
            self.report(f"classes matching no class_fracture pattern, fracture left NA: {listed}")
        for what, items in (
            ("malformed label file(s), labels left NA", malformed),
            ("label file(s) without an image", orphans),
            ("image(s) whose boxes name several regions, region left NA", mixed),
        ):
            if items:
                self.report(f"{len(items)} {what}, e.g. {'; '.join(items[:EXAMPLES])}")

    def read_data_yaml(self) -> dict[int, str]:
        """class id -> class name, from data.yaml; SourceConfigError when it is unusable."""
        path = self.root / self.options["data_yaml"]
        where = f"sources.{self.name}: {path}"
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceConfigError(f"{where}: cannot read it ({exc})") from None
        except yaml.YAMLError as exc:
            raise SourceConfigError(f"{where}: not valid YAML ({exc})") from None
        if not isinstance(spec, Mapping) or "names" not in spec:
            raise SourceConfigError(f"{where}: no 'names' key (the export's class names)")
        names = spec["names"]
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not isinstance(names, Mapping) or not names:
            raise SourceConfigError(
                f"{where}: 'names' must be a list or a {{class id: name}} mapping, got {names!r}"
            )
        for key, value in names.items():
            if isinstance(key, bool) or not isinstance(key, int) or key < 0:
                raise SourceConfigError(f"{where}: class id {key!r} in 'names' is not an integer")
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise SourceConfigError(f"{where}: class {key} has no usable name ({value!r})")
        count = spec.get("nc", len(names))
        if count != len(names):
            raise SourceConfigError(f"{where}: nc is {count!r} but 'names' has {len(names)}")
        return {key: str(value) for key, value in names.items()}

    def read_labels(self, path: Path, names: Mapping[int, str]) -> list[int] | str:
        """The class ids of a label file's boxes, or what is wrong with it."""
        where = path.relative_to(self.root).as_posix()
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            return f"{where}: unreadable ({exc})"
        classes = []
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                values = [float(field) for field in fields]
            except ValueError:
                return f"{where} line {number}: not all numbers"
            coordinates = len(values) - 1
            if coordinates != 4 and (coordinates < 6 or coordinates % 2):
                return (
                    f"{where} line {number}: {len(values)} fields, expected 5 (box) "
                    "or an odd number of at least 7 (polygon)"
                )
            if not all(map(math.isfinite, values)):
                return f"{where} line {number}: a value is not finite"
            if not values[0].is_integer() or int(values[0]) not in names:
                return (
                    f"{where} line {number}: class id {fields[0]} not in "
                    f"{self.options['data_yaml']} names ({', '.join(map(str, sorted(names)))})"
                )
            classes.append(int(values[0]))
        return classes

    def region_of(self, name: str) -> str | None:
        """The raw region a class name carries: class_region, else the name's other words."""
        for pattern, region in self.region_patterns:
            if pattern.search(name):
                return region
        words = normalise_token(name).split("_")
        return "_".join(w for w in words if w not in LABEL_WORDS and not w.isdigit()) or None

    @staticmethod
    def first_match(patterns: list[tuple[re.Pattern, Any]], name: str) -> Any:
        return next((value for pattern, value in patterns if pattern.search(name)), None)


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder becomes `labels`, the suffix `.txt`.

    `image` is relative to the source root, so that a folder above it is never renamed.
    """
    parts = list(image.parts[:-1])
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return Path(*parts, image.stem + ".txt")
