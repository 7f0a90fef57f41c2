"""What every source adapter yields, and the walk they share.

An adapter lists EVERY file under its root (images, sidecar metadata, junk) with whatever
labels its layout gives; it never decodes. Whether a file is a usable image is census's
business (imaging.decode), so nothing can be dropped here by a wrong guess.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from bonexray.data.datasets import Dataset
from bonexray.data.taxonomy import normalise_token
from bonexray.errors import ConfigError

# Adapters yield "image" or "sidecar"; census adds "unassigned" for files no source claims.
Role = Literal["image", "sidecar", "unassigned"]

# Split folder names found in public exports -> the pipeline's split names.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
# Metadata, documentation and OS junk that sits next to images but is not one.
SIDECAR_SUFFIXES = frozenset(
    {".csv", ".tsv", ".json", ".jsonl", ".txt", ".md", ".rst", ".yaml", ".yml", ".xml", ".pdf"}
    | {".xls", ".xlsx", ".ini", ".log"}
)
SIDECAR_NAMES = frozenset(
    {"readme", "license", "licence", "copying", "citation", "dicomdir", "thumbs.db"}
    | {".ds_store", ".gitignore", ".gitkeep", ".dvcignore", "desktop.ini"}
)


class SourceConfigError(ConfigError):
    """A `sources:` entry in params.yaml is wrong; the message names the source."""


class SourceWarning(UserWarning):
    """A source's files and its metadata disagree (e.g. a CSV row without its image)."""


@dataclass(frozen=True)
class SourceFile:
    """One file found under a source root, with the labels its layout or metadata gives.

    Labels are raw: region_raw is canonicalised later by the taxonomy. fracture, abnormal,
    hardware (an implant or other metal in the image) and multiscan (several radiographs on
    one film) are 1/0/None; view names the projections present, "+"-joined (e.g.
    "frontal+lateral"). `note` is the adapter's remark about this file, if any (it is
    appended to census's reason column), e.g. "listed in dataset.csv but missing on disk".
    """

    path: Path
    source: str
    role: Role
    region_raw: str | None = None
    fracture: int | None = None
    abnormal: int | None = None
    patient_id: str | None = None
    study_id: str | None = None
    split_hint: str | None = None
    view: str | None = None
    hardware: int | None = None
    multiscan: int | None = None
    note: str | None = None


class Adapter(ABC):
    """Lists one source. Subclasses set `kind` and `option_defaults` and implement scan().

    Options are the keys of the source's params.yaml entry other than `kind` and `path`;
    unknown ones are refused so that a typo cannot silently fall back to a default.
    `dataset` is the public dataset of the layout, if there is one (bonexray/datasets.py);
    `patient_ids` says whether the layout gives patient and study ids (split groups by them).
    """

    kind: ClassVar[str]
    option_defaults: ClassVar[Mapping[str, Any]] = {}
    dataset: ClassVar[Dataset | None] = None
    patient_ids: ClassVar[bool] = False

    @classmethod
    def recognise(cls, root: Path) -> Dataset | None:
        """The public dataset under ``root``; None for a user's own data in this layout."""
        return cls.dataset

    def __init__(self, name: str, root: str | Path, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            known = ", ".join(sorted(self.option_defaults)) or "none"
            raise SourceConfigError(
                f"sources.{name}: unknown option(s) {unknown} for kind '{self.kind}' "
                f"(known: {known})"
            )
        self.name = name
        self.root = Path(root)
        self.options: dict[str, Any] = {**self.option_defaults, **options}
        self.problems: list[str] = []

    @abstractmethod
    def scan(self) -> Iterator[SourceFile]:
        """Yield one SourceFile per file under the root (and per file the metadata promises)."""

    def file(self, path: Path, role: Role = "image", **labels: Any) -> SourceFile:
        return SourceFile(path=path, source=self.name, role=role, **labels)

    def report(self, message: str) -> None:
        """Record a disagreement between files and metadata and warn about it."""
        self.problems.append(message)
        warnings.warn(f"source '{self.name}' ({self.root}): {message}", SourceWarning, stacklevel=2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, root={str(self.root)!r})"


def split_name(folder: str) -> str | None:
    """'Valid' -> 'val'; None when the folder is not a split folder."""
    return SPLIT_NAMES.get(normalise_token(folder))


def is_sidecar(path: Path) -> bool:
    return (
        path.suffix.lower() in SIDECAR_SUFFIXES
        or path.name.lower() in SIDECAR_NAMES
        or (path.stem.lower() in SIDECAR_NAMES and path.suffix.lower() in {"", ".md", ".txt"})
    )


def walk_files(root: Path) -> Iterator[Path]:
    """Every non-directory entry under root, in sorted order, without reading any file.

    Symlinked directories are followed, each real directory once, so a directory symlink
    loop ends the descent instead of recursing; census then refuses what they hold when it
    lies outside the source's folder, unless `census.follow_outside_links` (a user may link
    a large download into data/ on purpose).
    Entries that cannot be classified (symlink loops, unreadable directories) are yielded
    as files so that census reports them rather than losing them.
    """
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> Iterator[Path]:
        info = folder.stat()
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            if folder == root:
                raise
            yield folder  # e.g. permission denied: census reports it as unreadable
            return
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                yield from visit(Path(entry.path))
            else:
                yield Path(entry.path)

    yield from visit(root)
