"""MURA-style studies: [train|valid/]XR_<REGION>/patient<id>/study<n>_<positive|negative>/file.

"positive" means an abnormal study, which is not always a fracture (MURA also marks
hardware, arthritis, lesions...). So `abnormal` is always set, and `fracture` copies it only
when the source's params say `positive_is_fracture: true`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bonexray.data.datasets import MURA, Dataset
from bonexray.data.sources.base import (
    Adapter,
    SourceConfigError,
    SourceFile,
    is_sidecar,
    split_name,
    walk_files,
)

# Real MURA ships these next to train/ and valid/; a MURA-style tree of one's own has none.
MURA_FILES = ("train_labeled_studies.csv", "valid_labeled_studies.csv")
REGION = re.compile(r"^xr_.+$", re.IGNORECASE)
PATIENT = re.compile(r"^patient\w+$", re.IGNORECASE)
STUDY = re.compile(r"^(study\w*?)_(positive|negative)$", re.IGNORECASE)


class MuraAdapter(Adapter):
    kind = "mura"
    option_defaults = {"positive_is_fracture": False}
    dataset = MURA
    patient_ids = True

    @classmethod
    def recognise(cls, root: Path) -> Dataset | None:
        """MURA itself when its study lists sit at the root (or above train/, valid/)."""
        folders = (Path(root), Path(root).parent)
        return cls.dataset if any((f / n).is_file() for f in folders for n in MURA_FILES) else None

    def __init__(self, name: str, root: str | Path, **options: Any) -> None:
        super().__init__(name, root, **options)
        if not isinstance(self.options["positive_is_fracture"], bool):
            raise SourceConfigError(f"sources.{name}.positive_is_fracture: expected true or false")

    def scan(self) -> Iterator[SourceFile]:
        outside = 0
        for path in walk_files(self.root):
            if is_sidecar(path):
                yield self.file(path, "sidecar")
                continue
            labels = self.labels(path.relative_to(self.root).parts[:-1])
            outside += labels["abnormal"] is None
            yield self.file(path, **labels)
        if outside:
            self.report(f"{outside} image(s) outside the XR_*/patient*/study*_<label>/ layout")

    def labels(self, folders: tuple[str, ...]) -> dict[str, Any]:
        labels: dict[str, Any] = {}
        patient = None
        for folder in folders:
            if split_name(folder) and "split_hint" not in labels:
                labels["split_hint"] = split_name(folder)
            elif REGION.match(folder):
                labels["region_raw"] = folder
            elif PATIENT.match(folder):
                patient = labels["patient_id"] = folder
            elif study := STUDY.match(folder):
                # study numbers restart for every patient: qualify them with the patient
                labels["study_id"] = f"{patient}/{study[1]}" if patient else study[1]
                labels["abnormal"] = int(study[2].lower() == "positive")
        if self.options["positive_is_fracture"] and "abnormal" in labels:
            labels["fracture"] = labels["abnormal"]
        return {"abnormal": None, **labels}
