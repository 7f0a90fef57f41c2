"""The yolo source adapter on a tiny Roboflow YOLO export written here, and through census."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bonexray.data import census
from bonexray.data.sources import SourceConfigError, SourceWarning, adapters_from_params
from bonexray.data.sources.yolo import label_path

NAMES = [
    "elbow positive",
    "fingers positive",
    "fracture",
    "humerus fracture",
    "normal",
    "abnormal",
]
BOX = "0.5 0.5 0.2 0.25"
POLYGON = "0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4"
# image -> label file text (None: no label file at all)
EXPORT = {
    "train/images/elbow.jpg": f"0 {BOX}\n",
    "train/images/empty.png": "",
    "train/images/unlabelled.png": None,
    "valid/images/two_regions.jpg": f"1 {BOX}\n3 {BOX}\n",
    "valid/images/polygon.png": f"2 {POLYGON}\n\n",
    "valid/images/normal_box.png": f"4 {BOX}\n",
    "valid/images/unknown_class.png": f"5 {BOX}\n",
    "test/images/bad_id.png": f"0 {BOX}\n9 {BOX}\n",
    "test/images/short_line.png": "3 0.5 0.5\n",
    "test/images/not_numbers.png": "2 a b c d\n",
    "test/images/same_region.jpg": f"0 {BOX}\n0 {POLYGON}\n",
}


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)  # min_side: a plausible film
    Image.fromarray(pixels, mode="L").save(path)


def write_export(root: Path, names: list | dict = NAMES, **extra) -> None:
    for image, labels in EXPORT.items():
        write_image(root / image)
        if labels is not None:
            label = root / image.replace("/images/", "/labels/")
            label = label.with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(labels)
    (root / "test" / "labels" / "orphan.txt").write_text(f"0 {BOX}\n")
    (root / "README.roboflow.txt").write_text("exported from roboflow.com\n")
    spec = {"train": "../train/images", "val": "../valid/images", "test": "../test/images"}
    spec |= {"nc": len(names), "names": names, **extra}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))


def scan(root: Path, **options):
    """({relative path: SourceFile}, adapter) for a yolo source at root."""
    (adapter,) = adapters_from_params(
        {"sources": {"rf": {"kind": "yolo", "path": str(root), **options}}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SourceWarning)
        found = {f.path.relative_to(root).as_posix(): f for f in adapter.scan()}
    return found, adapter


def labels(found, rel):
    f = found[rel]
    return f.role, f.split_hint, f.region_raw, f.fracture


def test_yolo_export_labels_splits_and_sidecars(tmp_path):
    write_export(tmp_path)
    found, adapter = scan(tmp_path)
    assert labels(found, "train/images/elbow.jpg") == ("image", "train", "elbow", 1)
    assert labels(found, "train/images/empty.png") == ("image", "train", None, 0)
    unlabelled = found["train/images/unlabelled.png"]
    assert (unlabelled.fracture, unlabelled.note) == (
        0,
        "no train/labels/unlabelled.txt: read as no box",
    )
    # fingers + humerus: a fracture, but no single region
    assert labels(found, "valid/images/two_regions.jpg") == ("image", "val", None, 1)
    assert "several regions (fingers, humerus)" in found["valid/images/two_regions.jpg"].note
    assert labels(found, "valid/images/polygon.png") == ("image", "val", None, 1)
    assert labels(found, "valid/images/normal_box.png") == ("image", "val", None, 0)
    assert labels(found, "valid/images/unknown_class.png") == ("image", "val", None, None)
    assert (
        "class 'abnormal' matches no class_fracture" in found["valid/images/unknown_class.png"].note
    )
    assert labels(found, "test/images/same_region.jpg") == ("image", "test", "elbow", 1)
    assert found["test/images/same_region.jpg"].note is None
    for rel, reason in {
        "test/images/bad_id.png": "test/labels/bad_id.txt line 2: class id 9 not in data.yaml",
        "test/images/short_line.png": "test/labels/short_line.txt line 1: 3 fields",
        "test/images/not_numbers.png": "test/labels/not_numbers.txt line 1: not all numbers",
    }.items():
        assert labels(found, rel) == ("image", "test", None, None), rel
        assert found[rel].note.startswith(reason), found[rel].note
    sidecars = {rel: f.note for rel, f in found.items() if f.role == "sidecar"}
    assert sidecars.pop("test/labels/orphan.txt") == "label file without an image"
    assert set(sidecars.values()) == {None}
    labelled = {r.replace("/images/", "/labels/")[: r.rindex(".")] + ".txt" for r in EXPORT}
    assert set(sidecars) == {"data.yaml", "README.roboflow.txt"} | (
        labelled - {"train/labels/unlabelled.txt"}
    )
    assert len(found) == sum(1 for p in tmp_path.rglob("*") if p.is_file())
    problems = "\n".join(adapter.problems)
    assert "'abnormal' (1 boxes)" in problems
    assert "3 malformed label file(s)" in problems
    assert "1 label file(s) without an image, e.g. test/labels/orphan.txt" in problems
    assert "1 image(s) whose boxes name several regions" in problems


def test_dict_names_and_mapping_params(tmp_path):
    names = {0: "Hairline", 1: "Wrist normal", 2: "elbow positive", 3: "x", 4: "y", 5: "z"}
    write_export(tmp_path, names)
    found, _ = scan(
        tmp_path,
        class_fracture={"hairline": 1, "normal": 0, "positive": 1, "^[xyz]$": 0},
        class_region={"^hairline$": "hand", "elbow": None, "^[xyz]$": None},
    )
    assert labels(found, "train/images/elbow.jpg") == ("image", "train", "hand", 1)
    # Wrist normal (1) + x (3): one region, no fracture
    assert labels(found, "valid/images/two_regions.jpg") == ("image", "val", "wrist", 0)
    assert labels(found, "valid/images/polygon.png") == ("image", "val", None, 1)  # override
    assert labels(found, "valid/images/unknown_class.png") == ("image", "val", None, 0)


def test_census_lists_every_file_of_the_export(tmp_path):
    write_export(tmp_path / "export")
    params = {"sources": {"rf": {"kind": "yolo", "path": "export"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SourceWarning)
        files = census.list_files(adapters_from_params(params, base=tmp_path), None)
    table = census.build_table(files, census.Settings(), progress=False).set_index("id")
    on_disk = sorted(p for p in (tmp_path / "export").rglob("*") if p.is_file())
    assert sorted(table.index) == sorted(census.file_id(p) for p in on_disk)
    images = table[table["role"] == "image"]
    assert len(images) == len(EXPORT) and set(images["status"]) == {"ok"}
    assert (table["role"] == "sidecar").sum() == len(on_disk) - len(EXPORT)
    elbow = table.loc[census.file_id(tmp_path / "export/train/images/elbow.jpg")]
    assert (elbow["region_raw"], elbow["fracture"], elbow["split_hint"]) == ("elbow", 1, "train")
    orphan = table.loc[census.file_id(tmp_path / "export/test/labels/orphan.txt")]
    assert "label file without an image" in orphan["reason"]


@pytest.mark.parametrize(
    ("data_yaml", "message"),
    [
        (None, "cannot read it"),
        ("names: [a, b\n", "not valid YAML"),
        ("nc: 2\n", "no 'names' key"),
        ("names: fracture\n", "'names' must be a list or"),
        ("names: {zero: a}\n", "class id 'zero' in 'names' is not an integer"),
        ("names: [a, [b]]\n", "class 1 has no usable name"),
        ("nc: 3\nnames: [a, b]\n", "nc is 3 but 'names' has 2"),
    ],
)
def test_malformed_data_yaml_names_the_file(tmp_path, data_yaml, message):
    write_image(tmp_path / "train" / "images" / "a.png")
    if data_yaml is not None:
        (tmp_path / "data.yaml").write_text(data_yaml)
    (adapter,) = adapters_from_params({"sources": {"rf": {"kind": "yolo", "path": str(tmp_path)}}})
    with pytest.raises(SourceConfigError, match="sources.rf: .*data.yaml: ") as caught:
        list(adapter.scan())
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"class_fracture": {"fracture": 2}}, "'fracture' maps to 2, not 0 or 1"),
        ({"class_fracture": ["fracture"]}, "expected a mapping"),
        ({"class_fracture": {"(fracture": 1}}, "'(fracture' is not a regular expression"),
        ({"class_region": {"elbow": 3}}, "'elbow' maps to 3, not a region or null"),
        ({"class_names": {"a": 1}}, "unknown option"),
    ],
)
def test_bad_options_name_the_source(options, message):
    spec = {"kind": "yolo", "path": ".", **options}
    with pytest.raises(SourceConfigError, match="sources.rf") as caught:
        adapters_from_params({"sources": {"rf": spec}})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("image", "label"),
    [
        ("train/images/a.jpg", "train/labels/a.txt"),
        ("images/train/a.b.png", "labels/train/a.b.txt"),  # Ultralytics' own layout
        ("images/x/images/a.png", "images/x/labels/a.txt"),  # only the last one
        ("flat/a.png", "flat/a.txt"),  # no images folder: the label sits beside the image
    ],
)
def test_label_path_follows_ultralytics(image, label):
    assert label_path(Path(image)) == Path(label)


@pytest.mark.parametrize(
    ("name", "fracture", "region"),
    [
        ("elbow positive", 1, "elbow"),
        ("fingers positive", 1, "fingers"),
        ("forearm fracture", 1, "forearm"),
        ("Shoulder Fracture", 1, "shoulder"),
        ("fracture", 1, None),
        # a fracture all the same; "displaced" is no region: the taxonomy reads it as unknown
        # and relabel labels the image, as for any name it does not know
        ("Non-displaced fracture", 1, "displaced"),
        ("Not Fractured", 0, None),
        ("wrist_negative", 0, "wrist"),
        ("no-fracture", 0, None),
        ("abnormal", None, None),  # MURA's sense: not necessarily a fracture
    ],
)
def test_default_class_mapping(name, fracture, region):
    (adapter,) = adapters_from_params({"sources": {"rf": {"kind": "yolo", "path": "."}}})
    assert adapter.first_match(adapter.fracture_patterns, name) == fracture
    assert adapter.region_of(name) == region
