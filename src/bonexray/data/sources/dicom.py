"""Any folder of DICOM files: labels from the header, read without the pixel data.

region_raw from BodyPartExamined, else StudyDescription; patient_id from PatientID;
study_id from StudyInstanceUID; view from ViewPosition (AP, PA, LAT...). DICOM says nothing
about fractures, so fracture stays NA for the relabel/labels stages to handle. Files that
are not DICOM are still listed (census decodes them like any other file).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom

from bonexray.data.imaging import dicom_reading
from bonexray.data.sources.base import Adapter, SourceFile, is_sidecar, walk_files

HEADER_TAGS = [
    "BodyPartExamined",
    "StudyDescription",
    "PatientID",
    "StudyInstanceUID",
    "ViewPosition",
]
# DICOM files written without the 128-byte preamble are only recognisable by their name.
PREAMBLE_FREE_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})


class DicomAdapter(Adapter):
    kind = "dicom"
    patient_ids = True

    def scan(self) -> Iterator[SourceFile]:
        not_dicom = 0
        for path in walk_files(self.root):
            if is_sidecar(path):
                yield self.file(path, "sidecar")
                continue
            labels = read_labels(path)
            not_dicom += labels is None
            yield self.file(path, **(labels or {}))
        if not_dicom:
            self.report(f"{not_dicom} file(s) without a readable DICOM header (listed unlabelled)")


def read_labels(path: Path) -> dict[str, Any] | None:
    """Labels from one file's DICOM header, or None when it has none we can read."""
    if not path.is_file():  # a FIFO would block, a dangling link has nothing to read
        return None
    force = path.suffix.lower() in PREAMBLE_FREE_SUFFIXES
    try:
        with dicom_reading():
            ds = pydicom.dcmread(
                path, stop_before_pixels=True, force=force, specific_tags=HEADER_TAGS
            )
    except Exception:  # not DICOM, or a header too broken to label from
        return None
    if force and not any(tag in ds for tag in HEADER_TAGS):
        return None  # forced parsing "succeeds" on almost anything: demand a real tag

    def text(keyword: str) -> str | None:
        value = str(ds.get(keyword, "") or "").strip()
        return value or None

    return {
        "region_raw": text("BodyPartExamined") or text("StudyDescription"),
        "patient_id": text("PatientID"),
        "study_id": text("StudyInstanceUID"),
        "view": text("ViewPosition"),
    }
