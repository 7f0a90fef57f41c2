"""One synthetic exposure, end to end: anatomy -> projection -> detector -> picture."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bonexray.synth import fracture as fx
from bonexray.synth import treatment as tx
from bonexray.synth.anatomy import build
from bonexray.synth.geometry import Array
from bonexray.synth.physics import detect, process, sample_exposure
from bonexray.synth.render import project, sample_view

THICK_REGIONS = frozenset({"shoulder", "hip"})


@dataclass(frozen=True)
class Radiograph:
    image: Array  # float32 (H, W) in [0, 1], bone bright
    region: str
    variant: str
    fracture: fx.Fracture | None
    fracture_line: tuple[tuple[float, float], tuple[float, float]] | None  # pixel (x, y) ends
    bone: Array  # bone attenuation before the detector: ground truth for tests
    treatment: str  # '' | cast | fixation


def render(
    region: str,
    variant: str,
    morph_seed: int,
    width: int,
    height: int,
    rng: np.random.Generator,
    fracture_seed: int | None = None,
    show_fracture: bool = True,
    treatment: str = "",
    treatment_seed: int = 0,
) -> Radiograph:
    """Render one radiograph.

    `morph_seed` fixes the patient's bones (shared by the views of a study); `fracture_seed`
    (None: intact) fixes the fracture, so every view of a positive study shows the same one;
    `rng` draws this exposure's pose, framing, technique and noise from separate child
    generators. `show_fracture=False` renders the same exposure with the bone intact (the
    framing still centres on the fracture site): the counterfactual for tests.
    `treatment` ('cast', 'fixation' or '') puts a cast or a plate with screws over the
    fracture (a fixed fracture is reduced: little displacement left), or over an intact bone.
    """
    pose_rng, view_rng, exposure_rng, noise_rng = rng.spawn(4)
    anatomy = build(region, variant, np.random.default_rng(morph_seed), pose_rng)
    fracture = keep = None
    if fracture_seed is not None:
        fracture = fx.sample(np.random.default_rng(fracture_seed), anatomy)
        keep = fx.site_point(fx.shaft_of(anatomy, fracture.bone), fracture)
    view = sample_view(view_rng, anatomy, width, height, keep)
    treated = None
    if treatment:
        treatment_rng = np.random.default_rng(treatment_seed)
        where = fracture or fx.sample(treatment_rng, anatomy)
        treated = tx.sample(treatment_rng, treatment, where.bone, where.at)
        if fracture is not None and treatment == "fixation":
            fracture = replace(
                fracture,
                shift=0.2 * fracture.shift,
                angulation=0.2 * fracture.angulation,
                gap=0.6 * fracture.gap,
            )
    projection = project(anatomy, view, fracture if show_fracture else None, treated)
    exposure = sample_exposure(exposure_rng, thick=region in THICK_REGIONS)
    signal, open_beam, inside = detect(projection.total, projection.soft_cm, exposure, noise_rng)
    image = process(signal, open_beam, inside, exposure)
    line = projection.fracture_line if show_fracture else None
    return Radiograph(
        image,
        region,
        variant,
        fracture if show_fracture else None,
        line,
        projection.bone,
        treatment,
    )
