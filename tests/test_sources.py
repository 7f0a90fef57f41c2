"""Source adapters on tiny layouts built here, and on the real FracAtlas folder (adapter only)."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import badfiles
import pytest
from paths import FRACATLAS

from bonexray.data import census
from bonexray.data.datasets import FRACATLAS as FRACATLAS_DATASET
from bonexray.data.datasets import MURA, SYNTH_README_TITLE, SYNTHETIC_SAMPLE
from bonexray.data.sources import (
    REGISTRY,
    SourceConfigError,
    SourceWarning,
    adapters_from_params,
    attribution,
    walk_files,
)

CLASS_NAMES = {"fractured": 1, "not_fractured": 0, "normal": 0}


def scan(root: Path, kind: str, **options):
    """Run one adapter; return ({relative path: SourceFile}, adapter)."""
    (adapter,) = adapters_from_params(
        {"sources": {"s": {"kind": kind, "path": str(root), **options}}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SourceWarning)
        found = {f.path.relative_to(root).as_posix(): f for f in adapter.scan()}
    return found, adapter


def test_folder_with_split_region_and_class(tmp_path):
    for rel in (
        "export/train/hand/fractured/a.png",
        "export/Valid/Wrist/Not Fractured/b.png",
        "export/test/leg/normal/c.png",
        "export/train/leg/maybe/d.png",  # unknown class folder at the class level
        "export/train/hand/e.png",  # no class folder: region only
    ):
        badfiles.tiny_png(tmp_path / rel)
    (tmp_path / "export" / "README.dataset.txt").write_text("exported by roboflow\n")
    found, adapter = scan(tmp_path, "folder", class_names=CLASS_NAMES)

    def labels(rel):
        f = found[rel]
        return f.role, f.split_hint, f.region_raw, f.fracture

    assert labels("export/train/hand/fractured/a.png") == ("image", "train", "hand", 1)
    assert labels("export/Valid/Wrist/Not Fractured/b.png") == ("image", "val", "Wrist", 0)
    assert labels("export/test/leg/normal/c.png") == ("image", "test", "leg", 0)
    assert labels("export/train/leg/maybe/d.png") == ("image", "train", "leg", None)
    assert labels("export/train/hand/e.png") == ("image", "train", "hand", None)
    assert found["export/README.dataset.txt"].role == "sidecar"
    assert len(found) == 6
    assert any("maybe" in p for p in adapter.problems)


def test_folder_without_split_or_region(tmp_path):
    for rel in ("fractured/a.png", "NORMAL/b.png", "odd/c.png", "d.png"):
        badfiles.tiny_png(tmp_path / rel)
    found, _ = scan(tmp_path, "folder", class_names=CLASS_NAMES)
    assert {r: (f.split_hint, f.region_raw, f.fracture) for r, f in found.items()} == {
        "fractured/a.png": (None, None, 1),
        "NORMAL/b.png": (None, None, 0),
        "odd/c.png": (None, None, None),  # at the class level, unknown: no region either
        "d.png": (None, None, None),
    }


def test_folder_region_only_tree(tmp_path):
    for rel in ("hand/a.png", "XR_KNEE/b.png"):
        badfiles.tiny_png(tmp_path / rel)
    found, _ = scan(tmp_path, "folder", class_names=CLASS_NAMES)
    assert {r: (f.region_raw, f.fracture) for r, f in found.items()} == {
        "hand/a.png": ("hand", None),
        "XR_KNEE/b.png": ("XR_KNEE", None),
    }


def build_mura(root: Path) -> None:
    for rel in (
        "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png",
        "MURA-v1.1/train/XR_WRIST/patient00001/study2_negative/image1.png",
        "MURA-v1.1/valid/XR_ELBOW/patient11185/study1_negative/image2.png",
        "MURA-v1.1/stray.png",
    ):
        badfiles.tiny_png(root / rel)
    (root / "MURA-v1.1" / "train_labeled_studies.csv").write_text("path,label\n")


@pytest.mark.parametrize("positive_is_fracture", [False, True])
def test_mura(tmp_path, positive_is_fracture):
    build_mura(tmp_path)
    found, adapter = scan(tmp_path, "mura", positive_is_fracture=positive_is_fracture)
    first = found["MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png"]
    second = found["MURA-v1.1/train/XR_WRIST/patient00001/study2_negative/image1.png"]
    valid = found["MURA-v1.1/valid/XR_ELBOW/patient11185/study1_negative/image2.png"]
    assert (first.region_raw, first.patient_id, first.study_id) == (
        "XR_WRIST",
        "patient00001",
        "patient00001/study1",
    )
    assert second.study_id == "patient00001/study2" and second.patient_id == first.patient_id
    assert (first.abnormal, second.abnormal, valid.abnormal) == (1, 0, 0)
    assert (first.split_hint, valid.split_hint) == ("train", "val")
    expected = (1, 0) if positive_is_fracture else (None, None)
    assert (first.fracture, second.fracture) == expected
    stray = found["MURA-v1.1/stray.png"]
    assert stray.role == "image" and stray.abnormal is None
    assert found["MURA-v1.1/train_labeled_studies.csv"].role == "sidecar"
    assert any("outside" in p for p in adapter.problems)


def test_fracatlas_reports_missing_and_unlisted(tmp_path):
    badfiles.build_fracatlas(tmp_path)
    (adapter,) = adapters_from_params(
        {"sources": {"fa": {"kind": "fracatlas", "path": str(tmp_path)}}}
    )
    with pytest.warns(SourceWarning) as caught:
        found = {f.path.relative_to(tmp_path).as_posix(): f for f in adapter.scan()}
    messages = " ".join(str(w.message) for w in caught)
    assert "IMG04.jpg" in messages and "IMG99.jpg" in messages

    def labels(rel):
        f = found[rel]
        return f.region_raw, f.fracture, f.view

    assert labels("images/Fractured/IMG01.jpg") == ("hand", 1, "frontal")
    assert labels("images/Non_fractured/IMG02.jpg") == ("mixed", 0, "frontal+lateral")
    assert labels("images/Non_fractured/IMG03.jpg") == ("mixed", 0, "oblique")
    missing = found["images/Fractured/IMG04.jpg"]  # listed at the path it should have
    assert not missing.path.exists() and missing.role == "image"
    assert labels("images/Fractured/IMG04.jpg") == ("leg", 1, "lateral")
    assert "missing on disk" in missing.note
    extra = found["images/Non_fractured/IMG99.jpg"]
    assert (extra.role, extra.fracture, extra.region_raw) == ("image", 0, None)
    assert "not listed" in extra.note
    sidecars = {r for r, f in found.items() if f.role == "sidecar"}
    assert sidecars == {"dataset.csv", "annotations/yolo/IMG01.txt", "fracture_split/train.csv"}
    assert len(adapter.problems) == 2


def test_fracatlas_hardware_multiscan_and_views(tmp_path):
    """The hardware and multiscan flags reach SourceFile and the census table (Int8), a
    CSV without those columns reads them as unknown, and view joins the set view flags."""
    rows = [  # hand leg hip shoulder mixed hardware multiscan fractured count F L O
        "IMG01.jpg,1,0,0,0,0,1,0,1,1,1,0,0",  # implant, fractured, frontal
        "IMG02.jpg,0,1,0,0,0,0,1,0,0,1,1,0",  # two films on one: frontal+lateral
        "IMG03.jpg,0,1,0,0,0,0,0,0,0,1,0,1",
    ]
    (tmp_path / "dataset.csv").write_text(badfiles.CSV_HEADER + "\n".join(rows) + "\n")
    for name, folder in (("IMG01", "Fractured"), ("IMG02", "Non_fractured")):
        badfiles.tiny_png(tmp_path / "images" / folder / f"{name}.jpg")
    badfiles.tiny_png(tmp_path / "images" / "Non_fractured" / "IMG03.jpg")
    found, adapter = scan(tmp_path, "fracatlas")

    def flags(name, folder):
        f = found[f"images/{folder}/{name}.jpg"]
        return f.hardware, f.multiscan, f.view

    assert flags("IMG01", "Fractured") == (1, 0, "frontal")
    assert flags("IMG02", "Non_fractured") == (0, 1, "frontal+lateral")
    assert flags("IMG03", "Non_fractured") == (0, 0, "frontal+oblique")
    assert adapter.problems == []

    table = census.build_table(census.list_files([adapter], None), census.Settings())
    assert str(table["hardware"].dtype) == "Int8" and str(table["multiscan"].dtype) == "Int8"
    images = table[table["role"] == "image"].set_index("id")
    assert images["hardware"].tolist() == [1, 0, 0]
    assert images["multiscan"].tolist() == [0, 1, 0]
    assert table.loc[table["role"] == "sidecar", "hardware"].isna().all()

    # A trimmed CSV without the two columns: unknown, not 0, and no complaint.
    (tmp_path / "dataset.csv").write_text(
        "image_id,hand,leg,hip,shoulder,mixed,fractured,frontal,lateral,oblique\n"
        "IMG01.jpg,1,0,0,0,0,1,1,0,0\n"
    )
    found, adapter = scan(tmp_path, "fracatlas")
    assert flags("IMG01", "Fractured") == (None, None, "frontal")
    assert found["images/Non_fractured/IMG02.jpg"].hardware is None  # not in the CSV


def test_fracatlas_csv_without_required_columns(tmp_path):
    (tmp_path / "dataset.csv").write_text("image_id,hand\nIMG01.jpg,1\n")
    (adapter,) = adapters_from_params(
        {"sources": {"fa": {"kind": "fracatlas", "path": str(tmp_path)}}}
    )
    with pytest.raises(SourceConfigError, match="sources.fa: .*lacks columns"):
        list(adapter.scan())


def test_dicom_headers(tmp_path):
    ramp = badfiles.dicom_ramp()
    badfiles.write_dicom(tmp_path / "a" / "1.dcm", ramp, BodyPartExamined="HAND", ViewPosition="PA")
    badfiles.write_dicom(tmp_path / "a" / "2", ramp, StudyDescription="XR KNEE 2 VIEWS")
    (tmp_path / "a" / "2").rename(tmp_path / "a" / "no_extension")
    # Headers only: a file cut inside its pixel data still gives its labels.
    whole = (tmp_path / "a" / "1.dcm").read_bytes()
    (tmp_path / "a" / "cut.dcm").write_bytes(whole[: len(whole) - 1000])
    badfiles.tiny_png(tmp_path / "a" / "photo.png")
    (tmp_path / "a" / "notes.txt").write_text("sidecar\n")
    found, adapter = scan(tmp_path, "dicom")
    first = found["a/1.dcm"]
    assert (first.region_raw, first.patient_id, first.view) == ("HAND", "P0001", "PA")
    assert first.study_id and first.study_id.startswith("1.2.826.0.1.3680043")
    assert found["a/no_extension"].region_raw == "XR KNEE 2 VIEWS"
    assert found["a/cut.dcm"].region_raw == "HAND"
    assert found["a/photo.png"].role == "image" and found["a/photo.png"].patient_id is None
    assert found["a/notes.txt"].role == "sidecar"
    assert any("without a readable DICOM header" in p for p in adapter.problems)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "zip", "path": "."}, "sources.bad: unknown kind 'zip'"),
        ({"kind": "folder"}, "sources.bad: no 'path'"),
        ({"kind": "folder", "path": "does/not/exist"}, "sources.bad: path 'does/not/exist'"),
        ({"kind": "mura", "path": ".", "positve_is_fracture": True}, "sources.bad: unknown option"),
        ({"kind": "folder", "path": ".", "class_names": {"a": 2}}, "sources.bad.class_names"),
    ],
)
def test_bad_source_config_names_the_source(spec, message):
    with pytest.raises(SourceConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        adapters_from_params({"sources": {"bad": spec}})


def test_registry_kinds():
    assert set(REGISTRY) == {"folder", "mura", "fracatlas", "dicom", "yolo"}
    assert all(cls.kind == kind for kind, cls in REGISTRY.items())


def test_walk_follows_directory_links_once_and_lists_odd_entries(tmp_path):
    badfiles.tiny_png(tmp_path / "real" / "a.png")
    (tmp_path / "linked").symlink_to("real")  # a linked download: followed
    (tmp_path / "real" / "up").symlink_to("..")  # a directory loop: not followed forever
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "gone.png").symlink_to("nowhere.png")
    listed = [p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path)]
    # "linked" sorts before "real": the real folder is listed once, under that name.
    assert listed == ["gone.png", "linked/a.png", "loop.png"]


@pytest.mark.fracatlas
def test_real_fracatlas_counts():
    if not (FRACATLAS / "dataset.csv").is_file():
        pytest.skip(f"FracAtlas not found at {FRACATLAS} (set BONEXRAY_FRACATLAS)")
    found, adapter = scan(FRACATLAS, "fracatlas")
    images = [f for f in found.values() if f.role == "image"]
    assert len(images) == 4024 and all(f.path.is_file() for f in images)
    assert sum(f.fracture == 1 for f in images) == 717
    counts = Counter((f.region_raw, f.fracture) for f in images)
    for region, (healthy, fractured) in {
        "hand": (877, 379),
        "leg": (1885, 212),
        "hip": (169, 10),
        "shoulder": (88, 10),
    }.items():
        assert (counts[(region, 0)], counts[(region, 1)]) == (healthy, fractured), region
    assert counts[("mixed", 0)] + counts[("mixed", 1)] == 394
    hardware = Counter((f.hardware, f.fracture) for f in images)
    assert (hardware[(1, 1)], hardware[(1, 0)]) == (97, 2)  # implants go with fractures
    assert sum(f.multiscan == 1 for f in images) == 396
    assert adapter.problems == []
    assert found["dataset.csv"].role == "sidecar"


def test_attribution_names_the_public_dataset_a_source_holds(tmp_path):
    for folder in ("atlas", "MURA-v1.1/train/XR_HAND", "own_mura", "sample/clinic_b"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "MURA-v1.1" / "train_labeled_studies.csv").write_text("path,label\n")
    (tmp_path / "sample" / "README.md").write_text(f"{SYNTH_README_TITLE}\n\nWritten by ...\n")
    cases = {
        ("fracatlas", "atlas"): FRACATLAS_DATASET,
        ("mura", "MURA-v1.1"): MURA,  # the study lists sit at the root
        ("mura", "MURA-v1.1/train"): MURA,  # ... or just above it
        ("mura", "own_mura"): None,  # a MURA-style tree of one's own
        ("mura", "sample/clinic_b"): SYNTHETIC_SAMPLE,  # bonexray synth's README next to it
        ("folder", "atlas"): None,
        ("dicom", "atlas"): None,
    }
    for (kind, path), dataset in cases.items():
        assert attribution({"kind": kind, "path": path}, tmp_path) == dataset, (kind, path)
    assert "CC BY 4.0" in FRACATLAS_DATASET.licence and "arXiv:1712.06957" in MURA.citation
