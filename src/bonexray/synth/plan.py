"""What to render: every unique image of the sample, with its labels and storage format.

Counts follow a realistic, imperfect balance (hands and legs common, hips and shoulders
rarer, about a third fractured). clinic_b is organised as MURA is: patients, studies of one
body part, several views per study, a study positive when its bone is fractured (every view
then shows the same fracture). clinic_a images are single exports from several tools.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bonexray.synth.anatomy import REGIONS
from bonexray.synth.encode import Format
from bonexray.synth.treatment import CASTABLE

TOTAL_IMAGES = 600
MIN_IMAGES = 40  # below this the deliberate mess would not find enough images to damage
SHARE_CLINIC_B = 0.38
FRACTURE_RATE = 0.35
# (fractured?, region takes casts?) -> chances of a cast and of metal fixation on the film
TREATMENT_RATES = {
    (True, True): {"cast": 0.35, "fixation": 0.15},
    (True, False): {"cast": 0.0, "fixation": 0.45},
    (False, True): {"cast": 0.03, "fixation": 0.01},
    (False, False): {"cast": 0.0, "fixation": 0.01},
}
REGION_WEIGHTS = {"hand": 0.28, "leg": 0.26, "elbow": 0.20, "shoulder": 0.14, "hip": 0.12}
VARIANT_WEIGHTS = {
    "hand": {"hand": 0.45, "wrist": 0.35, "forearm": 0.2},
    "elbow": {"elbow": 0.75, "humerus": 0.25},
    "shoulder": {"shoulder": 1.0},
    "hip": {"hip": 0.6, "pelvis": 0.4},
    "leg": {"knee": 0.45, "lower_leg": 0.2, "ankle": 0.35},
}
# clinic_a is a merge of exports: a Roboflow-style split tree, a PACS export, a PNG batch,
# and images somebody never sorted by region ("unsorted") or sorted as "mixed".
BATCH_WEIGHTS = {"roboflow": 0.45, "export": 0.30, "png": 0.12, "unsorted": 0.05, "mixed": 0.08}
PNG_FORMAT_WEIGHTS = {"png8": 0.8, "png16": 0.1, "png12": 0.1}
VIEWS_PER_STUDY = ((1, 2, 3, 4), (0.15, 0.45, 0.30, 0.10))
STUDIES_PER_PATIENT = ((1, 2, 3), (0.7, 0.25, 0.05))
SIZE_RANGE = {"clinic_a": (200, 320), "clinic_b": (160, 240)}


@dataclass(frozen=True)
class Shot:
    """One unique image: what it shows, how it is rendered, how it is stored."""

    key: str
    source: str  # clinic_a | clinic_b
    region: str
    variant: str
    morph_seed: int  # the patient's bones
    render_seed: int  # this exposure's pose, framing, technique, noise
    fracture_seed: int | None  # None: intact
    treatment: str  # '' | cast | fixation
    treatment_seed: int
    width: int
    height: int
    fmt: Format
    quality: int  # JPEG quality (ignored for PNG)
    batch: str | None = None  # clinic_a export batch
    patient: str | None = None  # clinic_b
    study: int | None = None
    view: int | None = None

    @property
    def fractured(self) -> bool:
        return self.fracture_seed is not None


def allocate(total: int, weights: dict[str, float], minimum: int) -> dict[str, int]:
    """Split `total` in proportion to `weights` (largest remainder), at least `minimum` each."""
    keys = list(weights)
    spare = total - minimum * len(keys)
    if spare < 0:
        raise ValueError(f"cannot give {minimum} to each of {len(keys)} groups from {total}")
    w = np.array([weights[k] for k in keys], float)
    exact = spare * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: spare - counts.sum()]:
        counts[i] += 1
    return {k: int(c) + minimum for k, c in zip(keys, counts, strict=True)}


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**62))


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _treatment(rng: np.random.Generator, region: str, fractured: bool) -> dict[str, object]:
    """Shot fields for a cast or plate on the film (always two draws)."""
    rates = TREATMENT_RATES[(fractured, region in CASTABLE)]
    draw = rng.random()
    kind = "cast" if draw < rates["cast"] else ""
    if not kind and draw < rates["cast"] + rates["fixation"]:
        kind = "fixation"
    return {"treatment": kind, "treatment_seed": _seed(rng)}


def _size(rng: np.random.Generator, source: str) -> tuple[int, int]:
    lo, hi = SIZE_RANGE[source]
    w, h = rng.integers(lo, hi + 1, 2)
    return int(w), int(h)


def _fracture_flags(rng: np.random.Generator, n: int) -> list[bool]:
    """About FRACTURE_RATE of n positive, at least one of each where n >= 2, shuffled."""
    positives = min(max(round(FRACTURE_RATE * n), 1), n - 1) if n >= 2 else 0
    flags = np.zeros(n, bool)
    flags[:positives] = True
    return [bool(f) for f in rng.permutation(flags)]


def _shuffled(rng: np.random.Generator, counts: dict[str, int]) -> list[str]:
    return [str(x) for x in rng.permutation([k for k, c in counts.items() for _ in range(c)])]


def plan_clinic_a(rng: np.random.Generator, n: int) -> list[Shot]:
    """Single images; every export batch and PNG bit depth occurs at least once."""
    counts = allocate(n, REGION_WEIGHTS, minimum=3)
    batches = _shuffled(rng, allocate(n, BATCH_WEIGHTS, minimum=1))
    n_png = batches.count("png")
    png_formats = _shuffled(rng, allocate(n_png, PNG_FORMAT_WEIGHTS, int(n_png >= 3)))
    shots = []
    for region in REGIONS:
        for fractured in _fracture_flags(rng, counts[region]):
            batch = batches.pop()
            fmt = png_formats.pop() if batch == "png" else "jpeg"
            variant = _pick(rng, VARIANT_WEIGHTS[region])
            morph, render_seed = _seed(rng), _seed(rng)
            fracture_seed = _seed(rng) if fractured else None
            treatment = _treatment(rng, region, fractured)
            width, height = _size(rng, "clinic_a")
            shots.append(
                Shot(
                    key="",
                    source="clinic_a",
                    region=region,
                    variant=variant,
                    morph_seed=morph,
                    render_seed=render_seed,
                    fracture_seed=fracture_seed,
                    **treatment,
                    width=width,
                    height=height,
                    fmt=fmt,  # type: ignore[arg-type]
                    quality=int(rng.integers(85, 93)),
                    batch=batch,
                )
            )
    order = rng.permutation(len(shots))
    return [replace(shots[i], key=f"a{k:04d}") for k, i in enumerate(order)]


def plan_clinic_b(rng: np.random.Generator, n: int) -> list[Shot]:
    """Patients -> studies -> views until each region has its share of images."""
    counts = allocate(n, REGION_WEIGHTS, minimum=3)
    used_ids: set[int] = set()
    shots: list[Shot] = []
    for region in REGIONS:
        views: list[int] = []
        while sum(views) < counts[region]:
            k = int(rng.choice(VIEWS_PER_STUDY[0], p=VIEWS_PER_STUDY[1]))
            views.append(min(k, counts[region] - sum(views)))
        positive = _fracture_flags(rng, len(views))
        study_index = 0
        while study_index < len(views):
            n_studies = int(rng.choice(STUDIES_PER_PATIENT[0], p=STUDIES_PER_PATIENT[1]))
            n_studies = min(n_studies, len(views) - study_index)
            patient_id = int(rng.integers(1, 100000))
            while patient_id in used_ids:
                patient_id = int(rng.integers(1, 100000))
            used_ids.add(patient_id)
            patient = f"patient{patient_id:05d}"
            variant = _pick(rng, VARIANT_WEIGHTS[region])  # one body part per patient folder
            morph = _seed(rng)
            for study in range(1, n_studies + 1):
                fracture_seed = _seed(rng) if positive[study_index] else None
                treatment = _treatment(rng, region, positive[study_index])
                fmt = str(rng.choice(["png8", "png16", "png12"], p=[0.94, 0.03, 0.03]))
                for view in range(1, views[study_index] + 1):
                    width, height = _size(rng, "clinic_b")
                    shots.append(
                        Shot(
                            key=f"b{patient_id:05d}-{study}-{view}",
                            source="clinic_b",
                            region=region,
                            variant=variant,
                            morph_seed=morph,
                            render_seed=_seed(rng),
                            fracture_seed=fracture_seed,
                            **treatment,
                            width=width,
                            height=height,
                            fmt=fmt,
                            quality=0,  # type: ignore[arg-type]
                            patient=patient,
                            study=study,
                            view=view,
                        )
                    )
                study_index += 1
    return shots


def plan(rng: np.random.Generator, scale: float = 1.0) -> list[Shot]:
    """All unique images for a sample of about TOTAL_IMAGES * scale images."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    total = max(MIN_IMAGES, round(TOTAL_IMAGES * scale))
    n_b = round(total * SHARE_CLINIC_B)
    rng_a, rng_b = rng.spawn(2)
    return plan_clinic_a(rng_a, total - n_b) + plan_clinic_b(rng_b, n_b)
