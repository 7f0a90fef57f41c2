"""`bonexray synth`: write the embedded synthetic sample (two clinics, deliberate mess).

Everything derives from one numpy Generator seeded by `seed`: the same seed and scale give
byte-identical files. Besides the two sources the output holds README.md (what is there and
which defects were planted) and ground_truth.csv (true region and fracture of every file,
for checking census, relabel and split; no stage reads it as a label source).
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bonexray.data.datasets import SYNTH_README_TITLE
from bonexray.errors import ConfigError
from bonexray.synth import mess
from bonexray.synth.encode import SUFFIX, encode
from bonexray.synth.geometry import Array
from bonexray.synth.layout import Namer
from bonexray.synth.plan import Shot, plan
from bonexray.synth.radiograph import render

OUTPUTS = ("clinic_a", "clinic_b", "README.md", "ground_truth.csv")
# The embedded sample (data.dvc): about 1,200 images, the fewest tried at which every model
# family beat the baselines on both heads; at 600 the fracture heads stayed at AUROC 0.49-0.59.
DEFAULT_SCALE = 2.0
# Defects applied to an image's only copy: (name, how many, eligible?)
DEFECTS = (
    (
        "truncated_jpeg",
        3,
        lambda s: s.source == "clinic_a" and s.fmt == "jpeg" and s.batch in ("roboflow", "export"),
    ),
    ("truncated_png", 1, lambda s: s.source == "clinic_b" and s.fmt == "png8"),
    ("exif_rotated", 1, lambda s: s.source == "clinic_a" and s.fmt == "jpeg"),
    ("rgb", 1, lambda s: s.source == "clinic_a" and s.fmt == "jpeg"),
    ("palette", 1, lambda s: s.source == "clinic_a" and s.fmt == "png8"),
)
# Extra copies of intact images: (name, how many, eligible?)
COPIES = (
    ("exact_within_a", 3, lambda s: s.source == "clinic_a" and s.fmt == "jpeg"),
    ("exact_b_to_a", 2, lambda s: s.source == "clinic_b" and s.fmt == "png8"),
    ("near_b_to_a", 2, lambda s: s.source == "clinic_b"),
    ("near_within_a", 2, lambda s: s.source == "clinic_a" and s.fmt == "jpeg"),
)


class SynthError(ConfigError, RuntimeError):
    """The output directory cannot be written as asked."""


@dataclass(frozen=True)
class Record:
    """One file written, with the truth about it."""

    path: str  # relative to the output directory
    source: str
    kind: str  # image | exact_duplicate | near_duplicate | empty | not_an_image
    defect: str  # '' or truncated | exif_rotated | rgb | palette
    region: str
    variant: str
    fracture: int
    treatment: str  # '' | cast | fixation
    patient: str
    study: str
    view: str
    duplicate_of: str
    key: str


def _record(
    path: str, shot: Shot, kind: str = "image", defect: str = "", duplicate_of: str = ""
) -> Record:
    return Record(
        path,
        path.split("/")[0],
        kind,
        defect,
        shot.region,
        shot.variant,
        int(shot.fractured),
        shot.treatment,
        shot.patient or "",
        str(shot.study or ""),
        str(shot.view or ""),
        duplicate_of,
        shot.key,
    )


def _choose(
    rng: np.random.Generator, shots: list[Shot], wanted, taken: set[str]
) -> dict[str, list[Shot]]:
    """Pick distinct shots for each treatment among the eligible ones not yet taken."""
    chosen: dict[str, list[Shot]] = {}
    for name, count, eligible in wanted:
        pool = [s for s in shots if eligible(s) and s.key not in taken]
        if len(pool) < count:
            raise SynthError(f"too few images for '{name}' ({len(pool)} < {count}); raise --scale")
        picks = [pool[int(i)] for i in rng.choice(len(pool), count, replace=False)]
        taken.update(s.key for s in picks)
        chosen[name] = picks
    return chosen


def prepare_output(out_dir: Path, force: bool) -> None:
    """Refuse a non-empty directory unless `force`; then replace only our own outputs."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthError(f"{out_dir}: exists and is not a directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise SynthError(
                f"{out_dir}: directory is not empty; refusing to write into it "
                "(use --force to replace the sample's own files there)"
            )
        for name in OUTPUTS:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _encode_shot(
    shot: Shot, image: Array, defect: str, rng: np.random.Generator
) -> tuple[bytes, str]:
    """The stored bytes of a shot and their suffix, with its defect (if any) applied."""
    if defect == "exif_rotated":
        return mess.exif_rotated(image, shot.quality), ".jpg"
    if defect == "rgb":
        return mess.rgb_tinted(image, rng, shot.quality), ".jpg"
    if defect == "palette":
        return mess.palette(image), ".png"
    data = encode(image, shot.fmt, shot.quality)
    if defect == "truncated_jpeg":
        data = mess.truncate_jpeg(data, rng)
    elif defect == "truncated_png":
        data = mess.truncate_png(data, rng)
    return data, SUFFIX[shot.fmt]


class _Writer:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.records: list[Record] = []
        self.mess: list[dict[str, str]] = []
        self.bytes = 0

    def write(self, record: Record, data: bytes, mess_kind: str = "", detail: str = "") -> None:
        target = self.out_dir / record.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.bytes += len(data)
        self.records.append(record)
        if mess_kind:
            self.mess.append({"kind": mess_kind, "path": record.path, "detail": detail})


def generate(
    out_dir: str | Path,
    seed: int = 0,
    scale: float = DEFAULT_SCALE,
    force: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write the synthetic sample under `out_dir`; return a summary (counts, bytes, mess).

    `progress`: show a tqdm bar (None: only on a terminal).
    """
    started = time.perf_counter()
    if not scale > 0:
        raise SynthError(f"scale must be positive, got {scale}")
    out_dir = Path(out_dir)
    prepare_output(out_dir, force)
    plan_rng, pick_rng, name_rng, mess_rng = np.random.default_rng(seed).spawn(4)
    shots = plan(plan_rng, scale)
    taken: set[str] = set()
    defects = {
        s.key: name
        for name, picks in _choose(pick_rng, shots, DEFECTS, taken).items()
        for s in picks
    }
    copies = _choose(pick_rng, shots, COPIES, taken)
    keep_pixels = {s.key for picks in copies.values() for s in picks}
    namer = Namer(name_rng)
    writer = _Writer(out_dir)
    pixels: dict[str, Array] = {}
    paths: dict[str, str] = {}

    for shot in tqdm(
        shots, desc="synth", unit="img", disable=None if progress is None else not progress
    ):
        radiograph = render(
            shot.region,
            shot.variant,
            shot.morph_seed,
            shot.width,
            shot.height,
            np.random.default_rng(shot.render_seed),
            shot.fracture_seed,
            treatment=shot.treatment,
            treatment_seed=shot.treatment_seed,
        )
        defect = defects.get(shot.key, "")
        data, suffix = _encode_shot(shot, radiograph.image, defect, mess_rng)
        path = namer.clinic_b(shot) if shot.source == "clinic_b" else namer.clinic_a(shot, suffix)
        paths[shot.key] = path
        label = {"truncated_jpeg": "truncated", "truncated_png": "truncated"}.get(defect, defect)
        writer.write(_record(path, shot, defect=label), data, defect, _DETAILS.get(defect, ""))
        if shot.key in keep_pixels:
            pixels[shot.key] = radiograph.image

    _write_copies(writer, namer, copies, paths, pixels, mess_rng)
    _write_non_images(writer, namer, shots, mess_rng)
    _write_truth(out_dir, writer.records)
    summary = _summary(out_dir, seed, scale, shots, writer)
    (out_dir / "README.md").write_text(_readme(summary))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


_DETAILS = {
    "truncated_jpeg": "JPEG cut inside its scan data; a full decode fails",
    "truncated_png": "PNG cut inside its IDAT data; a full decode fails",
    "exif_rotated": "pixels stored sideways with EXIF Orientation=6; upright after "
    "PIL.ImageOps.exif_transpose",
    "rgb": "colour (RGB) JPEG of a grey radiograph",
    "palette": "palette ('P' mode) PNG with 64 grey levels",
}


def _write_copies(
    writer: _Writer,
    namer: Namer,
    copies: dict[str, list[Shot]],
    paths: dict[str, str],
    pixels: dict[str, Array],
    rng: np.random.Generator,
) -> None:
    for shot in copies["exact_within_a"]:
        original = paths[shot.key]
        if shot.batch == "roboflow":  # the same export in another split: leakage
            split = original.split("/")[1]
            stem = original.rsplit("/", 1)[1].split("_jpg.rf.")[0]
            path = namer.clinic_a(shot, ".jpg", "roboflow", namer.split(avoid=split), stem)
        else:
            path = namer.copy_name(original)
        writer.write(
            _record(path, shot, "exact_duplicate", duplicate_of=original),
            (writer.out_dir / original).read_bytes(),
            "exact_duplicate",
            f"byte-identical to {original}",
        )
    for shot in copies["exact_b_to_a"]:
        original = paths[shot.key]
        path = namer.clinic_a(shot, ".png", "png")
        writer.write(
            _record(path, shot, "exact_duplicate", duplicate_of=original),
            (writer.out_dir / original).read_bytes(),
            "exact_duplicate",
            f"byte-identical to {original} (across sources)",
        )
    for name, batch in (("near_b_to_a", "export"), ("near_within_a", "roboflow")):
        for shot in copies[name]:
            original = paths[shot.key]
            path = namer.clinic_a(shot, ".jpg", batch)
            writer.write(
                _record(path, shot, "near_duplicate", duplicate_of=original),
                mess.near_duplicate(pixels[shot.key], rng),
                "near_duplicate",
                f"{original} cropped, resized and re-saved as JPEG",
            )


def _write_non_images(
    writer: _Writer, namer: Namer, shots: list[Shot], rng: np.random.Generator
) -> None:
    """Files with image names that hold no image: empty, a Git LFS pointer, an HTML page."""
    clinic_a = [s for s in shots if s.source == "clinic_a"]
    clinic_b = [s for s in shots if s.source == "clinic_b"]
    donor = clinic_a[int(rng.integers(len(clinic_a)))]
    path = namer.clinic_a(donor, ".jpg", "roboflow")
    writer.write(_record(path, donor, "empty"), b"", "zero_byte", "empty file (0 bytes)")
    donor = clinic_b[int(rng.integers(len(clinic_b)))]
    last_view = max(
        s.view or 0 for s in clinic_b if (s.patient, s.study) == (donor.patient, donor.study)
    )
    path = namer.clinic_b(donor, view=last_view + 1)
    writer.write(
        _record(path, donor, "not_an_image"),
        mess.lfs_pointer(rng),
        "not_an_image",
        "Git LFS pointer text under an image name",
    )
    donor = clinic_a[int(rng.integers(len(clinic_a)))]
    path = namer.clinic_a(donor, ".png", "export")
    writer.write(
        _record(path, donor, "not_an_image"),
        mess.html_error_page(),
        "html_error",
        "HTTP 403 error page saved as .png",
    )


def _write_truth(out_dir: Path, records: list[Record]) -> None:
    buffer = io.StringIO()
    fields = list(Record.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in sorted(records, key=lambda r: r.path):
        writer.writerow(asdict(record))
    (out_dir / "ground_truth.csv").write_text(buffer.getvalue())


def _summary(
    out_dir: Path, seed: int, scale: float, shots: list[Shot], writer: _Writer
) -> dict[str, Any]:
    fractured = sum(s.fractured for s in shots)
    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "scale": scale,
        "images_unique": len(shots),
        "files": len(writer.records),
        "bytes": writer.bytes,
        "by_source": dict(sorted(Counter(r.source for r in writer.records).items())),
        "by_region": dict(sorted(Counter(s.region for s in shots).items())),
        "fractured": fractured,
        "fracture_rate": round(fractured / len(shots), 3),
        "treatment": {
            f"{kind}_{state}": sum(s.treatment == kind and s.fractured == broken for s in shots)
            for kind in ("cast", "fixation")
            for state, broken in (("fractured", True), ("intact", False))
        },
        "formats": dict(sorted(Counter(s.fmt for s in shots).items())),
        "patients_clinic_b": len({s.patient for s in shots if s.patient}),
        "studies_clinic_b": len({(s.patient, s.study) for s in shots if s.patient}),
        "mess": sorted(writer.mess, key=lambda m: (m["kind"], m["path"])),
    }


def _readme(summary: dict[str, Any]) -> str:
    t = summary["treatment"]
    mess_lines = "\n".join(
        f"- `{m['kind']}`: `{m['path']}`: {m['detail']}" for m in summary["mess"]
    )
    regions = ", ".join(f"{k} {v}" for k, v in summary["by_region"].items())
    return f"""{SYNTH_README_TITLE}

Written by `bonexray synth --seed {summary["seed"]} --scale {summary["scale"]}`. The same seed
and scale give byte-identical files.

The images are simulated radiographs: soft tissue and hollow bones (cortical shell,
medullary cavity) as analytic solids, projected as I = I0 exp(-sum mu t) with scatter,
Poisson and read noise, detector blur, collimation, side markers, log transform and
windowing. Fractures are cortical discontinuities with a gap, displacement and angulation.
No real patient data.

- {summary["images_unique"]} unique images, {summary["fractured"]} fractured \
({summary["fracture_rate"]:.0%}); by region: {regions}
- {summary["files"]} files in all (duplicates and broken files included)
- `clinic_a/`: generic tree `[split/][region/]class/file` merged from several exports:
  Roboflow-style `train|valid|test/<region>/<fractured|not_fractured>/*.rf.*.jpg`,
  `<Region>/<fracture|normal>/IMG_*.jpg`, `<region>/<broken|non_fractured>/*.png`
  (8-bit, 16-bit, and 12-bit values in 16-bit PNGs); region folders canonical, synonyms
  (wrist, forearm, humerus, pelvis, knee, ankle, foot...) or capitalised; some with no
  region (`unsorted/`, a class folder at the top, `train/<class>/`) or an ambiguous one
  (`mixed/`, `other/`, `multiple/`).
- `clinic_b/`: MURA-style `XR_<REGION>/patient<id>/study<n>_<positive|negative>/image<k>.png`,
  {summary["patients_clinic_b"]} patients, {summary["studies_clinic_b"]} studies;
  positive studies contain a fracture by construction.
- `ground_truth.csv`: the true region, variant and fracture of every file, and what was
  planted (`kind`, `defect`, `duplicate_of`). For checking the pipeline, not a label source.

## Planted defects

{mess_lines}

Treatment on the film (column `treatment` of ground_truth.csv), as in real collections:

- casts: {t["cast_fractured"]} fractured, {t["cast_intact"]} intact images
- plates and screws: {t["fixation_fractured"]} fractured (reduced: little displacement
  left), {t["fixation_intact"]} intact

They correlate with the label: a model may learn the treatment instead of the fracture,
which saliency maps reveal.

Besides these: region folders that are synonyms, missing or ambiguous (above); the same
patient in several clinic_b studies; Roboflow-style duplicates placed in another split.
"""
