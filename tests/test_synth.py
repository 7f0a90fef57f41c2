"""The synthetic sample: deterministic, both layouts, the planted mess, visible fractures."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from paths import REPO
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from bonexray import cli
from bonexray.data.datasets import SYNTHETIC_SAMPLE
from bonexray.data.sources import attribution
from bonexray.data.taxonomy import Taxonomy
from bonexray.io.params import load
from bonexray.synth import SynthError, generate
from bonexray.synth import fracture as fx
from bonexray.synth.anatomy import REGIONS, VARIANTS, build
from bonexray.synth.plan import allocate
from bonexray.synth.radiograph import render

SCALE = 0.07  # about 40 images: the smallest sample that still holds every defect
SPLITS = {"train", "valid", "test"}


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "data"
    return out, generate(out, seed=3, scale=SCALE, progress=False)


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.from_params(load(REPO / "params.yaml"))


def truth(out: Path) -> list[dict[str, str]]:
    with open(out / "ground_truth.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_model_cards_cite_the_sample_as_synthetic(sample):
    out, _ = sample
    for source, kind in (("clinic_a", "folder"), ("clinic_b", "mura")):
        assert attribution({"kind": kind, "path": source}, out) == SYNTHETIC_SAMPLE


def test_same_seed_gives_byte_identical_tree(sample, tmp_path):
    out, summary = sample
    again = generate(tmp_path / "again", seed=3, scale=SCALE, progress=False)
    assert tree_digest(out) == tree_digest(tmp_path / "again")
    assert summary["files"] == again["files"] == len(tree_digest(out)) - 2  # README, truth


def test_other_seed_gives_other_images(sample, tmp_path):
    out, _ = sample
    generate(tmp_path / "other", seed=4, scale=SCALE, progress=False)
    ours, theirs = set(tree_digest(out).values()), set(tree_digest(tmp_path / "other").values())
    assert len(ours & theirs) <= 2  # at most the fixed HTML page and the empty file


def test_counts_and_labels_are_as_summarised(sample):
    out, summary = sample
    rows = truth(out)
    images = [r for r in rows if r["kind"] == "image"]
    assert len(images) == summary["images_unique"] >= 40
    assert set(summary["by_region"]) == set(REGIONS)
    assert 0.25 <= summary["fracture_rate"] <= 0.45
    assert summary["bytes"] == sum((out / r["path"]).stat().st_size for r in rows)
    class_names = load(REPO / "params.yaml")["sources"]["clinic_a"]["class_names"]
    for row in rows:
        if row["source"] == "clinic_a":  # class folders are those params.yaml declares
            assert class_names[row["path"].split("/")[-2]] == int(row["fracture"]), row["path"]


def test_clinic_b_is_mura_and_covers_every_region(sample, taxonomy):
    out, _ = sample
    rows = [r for r in truth(out) if r["source"] == "clinic_b"]
    seen = set()
    for row in rows:
        folder, patient, study, name = row["path"].split("/")[1:]
        assert folder.startswith("XR_") and patient.startswith("patient") and len(patient) == 12
        number, outcome = study.split("_")
        assert number.startswith("study") and outcome in ("positive", "negative")
        assert name.startswith("image") and name.endswith(".png")
        region, how = taxonomy.resolve(folder)
        assert region == row["region"], (row["path"], region)
        seen.add(region)
        assert (outcome == "positive") == (row["fracture"] == "1")
    assert seen == set(REGIONS)


def test_clinic_a_has_canonical_synonym_missing_and_ambiguous_regions(sample, taxonomy):
    out, _ = sample
    how_seen, regions = set(), set()
    for row in truth(out):
        if row["source"] != "clinic_a" or row["kind"] not in ("image", "exact_duplicate"):
            continue
        folders = row["path"].split("/")[1:-2]  # [split/][region/]
        if folders and folders[0] in SPLITS:
            folders = folders[1:]
        region, how = taxonomy.resolve(folders[0] if folders else None)
        how_seen.add(how)
        if region is not None:
            assert region == row["region"], row["path"]
            regions.add(region)
    assert how_seen == {"original", "synonym", "missing", "ambiguous"}
    assert regions == set(REGIONS)
    assert any(p.name in SPLITS for p in (out / "clinic_a").iterdir())


def test_planted_defects_behave_as_in_the_wild(sample):
    out, summary = sample
    kinds: dict[str, list[str]] = {}
    for item in summary["mess"]:
        kinds.setdefault(item["kind"], []).append(item["path"])
    assert len(kinds["truncated_jpeg"]) >= 3 and len(kinds["truncated_png"]) >= 1
    for path in kinds["truncated_jpeg"] + kinds["truncated_png"]:
        with Image.open(out / path) as im, pytest.raises(OSError):
            im.load()
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what a repair step does to salvage the top rows
    try:
        with Image.open(out / kinds["truncated_jpeg"][0]) as im:
            im.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert (out / kinds["zero_byte"][0]).stat().st_size == 0
    for path in kinds["not_an_image"] + kinds["html_error"]:
        assert path.endswith((".png", ".jpg"))
        with pytest.raises(UnidentifiedImageError):
            Image.open(out / path)
    assert (out / kinds["html_error"][0]).read_bytes().startswith(b"<!DOCTYPE html>")
    with Image.open(out / kinds["exif_rotated"][0]) as im:
        assert im.getexif()[0x0112] == 6
        assert ImageOps.exif_transpose(im).size == im.size[::-1]
    with Image.open(out / kinds["rgb"][0]) as im:
        assert im.mode == "RGB"
    with Image.open(out / kinds["palette"][0]) as im:
        assert im.mode == "P"
    modes = set()
    for png in (out / "clinic_a").rglob("*.png"):
        try:
            with Image.open(png) as im:
                modes.add(im.mode)
        except UnidentifiedImageError:
            continue
    assert {"L", "I;16"} <= modes


def test_duplicates_match_their_originals(sample):
    out, _ = sample
    rows = truth(out)
    exact = [r for r in rows if r["kind"] == "exact_duplicate"]
    near = [r for r in rows if r["kind"] == "near_duplicate"]
    assert len(exact) >= 4 and len(near) >= 3
    assert any(r["source"] != r["duplicate_of"].split("/")[0] for r in exact)
    assert any(r["source"] != r["duplicate_of"].split("/")[0] for r in near)
    for row in exact:
        assert row["path"] != row["duplicate_of"]
        assert (out / row["path"]).read_bytes() == (out / row["duplicate_of"]).read_bytes()

    def thumb(path: str) -> np.ndarray:
        with Image.open(out / path) as im:
            return np.asarray(im.convert("L").resize((32, 32)), np.float32)

    others = [r["path"] for r in rows if r["kind"] == "image" and not r["defect"]]
    for row in near:
        assert (out / row["path"]).read_bytes() != (out / row["duplicate_of"]).read_bytes()
        same = np.abs(thumb(row["path"]) - thumb(row["duplicate_of"])).mean()
        different = np.mean([np.abs(thumb(row["path"]) - thumb(p)).mean() for p in others[:5]])
        assert same < 0.5 * different


def test_refuses_non_empty_directory_and_force_keeps_foreign_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        generate(tmp_path, scale=SCALE, progress=False)
    assert not (tmp_path / "clinic_a").exists()
    (tmp_path / "clinic_b").mkdir()
    (tmp_path / "clinic_b" / "stale.png").write_bytes(b"old")
    generate(tmp_path, scale=SCALE, force=True, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "clinic_b" / "stale.png").exists()
    assert (tmp_path / "README.md").exists()


def test_cli_synth_writes_then_refuses(tmp_path, capsys):
    out = tmp_path / "data"
    assert cli.main(["synth", "--out", str(out), "--seed", "1", "--scale", str(SCALE)]) == 0
    assert "unique images" in capsys.readouterr().out
    assert cli.main(["synth", "--out", str(out), "--scale", str(SCALE)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["synth", "--out", str(tmp_path / "x"), "--scale", "0"]) == 2


@pytest.mark.parametrize("region", REGIONS)
def test_fracture_is_a_visible_gap_in_the_cortex(region):
    """Same exposure with and without the fracture: bone is missing along the fracture line,
    the picture is darker there, and the difference survives downsizing to 128 px."""
    rng = np.random.default_rng(REGIONS.index(region))
    variant = VARIANTS[region][0]
    found = 0
    for _ in range(4):
        seeds = [int(s) for s in rng.integers(2**62, size=3)]
        pair = [
            render(
                region,
                variant,
                seeds[0],
                256,
                224,
                np.random.default_rng(seeds[1]),
                seeds[2],
                show_fracture=show,
            )
            for show in (False, True)
        ]
        intact, broken = pair
        assert intact.fracture_line is None and broken.fracture_line is not None
        if broken.fracture.subtle:
            continue
        found += 1
        gap = (intact.bone > 0.25) & (broken.bone < 0.02)  # bone here before, none now
        assert gap.sum() >= 3, "no bone missing at the fracture"
        assert intact.image[gap].mean() - broken.image[gap].mean() > 0.05

        def small(image: np.ndarray) -> np.ndarray:
            picture = Image.fromarray(np.round(image * 255).astype(np.uint8))
            return np.asarray(picture.resize((128, 112), Image.Resampling.BILINEAR), np.float32)

        diff = np.abs(small(intact.image) - small(broken.image))
        (x0, y0), (x1, y1) = broken.fracture_line
        cy, cx = round((y0 + y1) / 4), round((x0 + x1) / 4)  # the line's middle at 128 px
        assert diff[max(cy - 6, 0) : cy + 7, max(cx - 6, 0) : cx + 7].max() > 25
    assert found >= 2


def test_every_fracture_site_is_a_shaft_of_its_anatomy():
    rng = np.random.default_rng(0)
    for region in REGIONS:
        for variant in VARIANTS[region]:
            anatomy = build(region, variant, rng, rng)
            assert anatomy.sites, (region, variant)
            for site in anatomy.sites:
                assert 0.0 <= site.lo < site.hi <= 1.0
                assert fx.shaft_of(anatomy, site.bone).length > 0


def test_allocate_is_proportional_with_a_floor():
    counts = allocate(100, {"a": 0.7, "b": 0.2, "c": 0.1}, minimum=5)
    assert sum(counts.values()) == 100 and min(counts.values()) >= 5
    assert counts["a"] > counts["b"] > counts["c"]
    with pytest.raises(ValueError):
        allocate(2, {"a": 1.0, "b": 1.0, "c": 1.0}, minimum=1)


@pytest.mark.parametrize("kind", ["cast", "fixation"])
def test_treatment_adds_attenuation_over_the_bone(kind):
    args = ("leg", "lower_leg", 11, 200, 240)
    plain = render(*args, np.random.default_rng(5), 21)
    treated = render(*args, np.random.default_rng(5), 21, treatment=kind, treatment_seed=8)
    assert treated.treatment == kind and plain.treatment == ""
    brighter = treated.image - plain.image
    assert brighter.max() > 0.2 and (brighter > 0.05).mean() > 0.005


# Decoded pixels of an image that synth writes again may differ from the tracked copy by
# floating-point rounding: numpy picks SIMD kernels by CPU (AVX-512 or AVX2), a value lands
# on the other side of a rounding step, and JPEG/PNG bytes follow. In 8-bit levels (16-bit
# images scaled down by 257): at most PIXEL_MAX_DIFF anywhere, PIXEL_MEAN_DIFF on average.
PIXEL_MAX_DIFF = 16
PIXEL_MEAN_DIFF = 0.5
TRUNCATED_LENGTH_RATIO = 0.1  # a cut at the same fraction of a slightly different encoding


def decoded(path: Path) -> tuple[str, tuple[int, int], np.ndarray]:
    with Image.open(path) as im:
        mode, size = im.mode, im.size
        pixels = np.asarray(im, dtype=np.float64)
    return mode, size, pixels / 257.0 if mode.startswith("I") else pixels


def assert_same_sample(tracked: Path, written: Path) -> None:
    """What holds on every CPU: the file list, ground truth and README exactly; planted
    defects exactly in kind (a truncated file stays truncated at about the same point, a
    zero-byte or non-image file is byte-identical); image pixels within the tolerances."""
    ours, theirs = tree_digest(tracked), tree_digest(written)
    assert sorted(ours) == sorted(theirs)
    for fixed in ("ground_truth.csv", "README.md"):
        assert ours[fixed] == theirs[fixed], fixed
    defects = {r["path"]: r["defect"] for r in truth(tracked)}
    for rel in sorted(ours):
        if ours[rel] == theirs[rel]:
            continue
        a, b = tracked / rel, written / rel
        if defects.get(rel, "").startswith("truncated"):
            for path in (a, b):
                with Image.open(path) as im, pytest.raises(OSError):
                    im.load()
            ratio = abs(a.stat().st_size - b.stat().st_size) / a.stat().st_size
            assert ratio <= TRUNCATED_LENGTH_RATIO, rel
            continue
        try:  # only decodable images may differ; anything else must be byte-identical
            (mode_a, size_a, pa), (mode_b, size_b, pb) = decoded(a), decoded(b)
        except OSError:  # UnidentifiedImageError is one
            pytest.fail(f"{rel}: bytes differ and it is not a decodable image")
        assert (mode_a, size_a) == (mode_b, size_b), rel
        diff = np.abs(pa - pb)
        assert diff.max() <= PIXEL_MAX_DIFF and diff.mean() <= PIXEL_MEAN_DIFF, (
            rel,
            float(diff.max()),
            float(diff.mean()),
        )


def test_sample_comparison_fails_on_a_changed_image(sample, tmp_path):
    """The tolerant comparison still catches a real change of an image or a lost file."""
    out, _ = sample
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert_same_sample(out, copy)
    image = next(r["path"] for r in truth(out) if r["kind"] == "image" and not r["defect"])
    with Image.open(copy / image) as im:
        changed = ImageOps.invert(im.convert("L"))
    changed.save(copy / image, format=im.format)
    with pytest.raises(AssertionError):
        assert_same_sample(out, copy)
    (copy / image).unlink()
    with pytest.raises(AssertionError):
        assert_same_sample(out, copy)


@pytest.mark.skipif(
    not (REPO / "data" / "ground_truth.csv").is_file(), reason="data/ not pulled (make data)"
)
def test_the_tracked_sample_is_what_synth_writes(tmp_path):
    """data/ (data.dvc, pulled from remote/) is `bonexray synth --seed 0` of this code: a
    change to the generator must come with a regenerated sample (README, The embedded sample).
    Compared as assert_same_sample does, since the bytes differ between CPUs."""
    generate(tmp_path / "data", seed=0, progress=False)
    assert_same_sample(REPO / "data", tmp_path / "data")
