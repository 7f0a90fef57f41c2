"""Treatment seen on films: casts and metal fixation (plates and screws).

Real collections are full of them: follow-up films of a treated fracture are taken through
the cast or show the plate, and a sprain may be immobilised without a fracture. They
correlate with the fracture label, a real shortcut a model can learn instead of the
fracture itself: saliency maps should tell.

A cast is a hollow cylinder around the limb, so its projected path length is
chord(outer) - chord(inner): a grey sleeve with brighter edges (fibreglass shows its knit).
A plate lies on the bone's side, screws cross the bone; both are metal (very dense).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bonexray.synth.geometry import Array, apply, chord, smoothstep
from bonexray.synth.parts import LongBone

CASTABLE = frozenset({"hand", "elbow", "leg"})  # shoulders get slings, hips get surgery
MU_PLASTER = 0.9
MU_FIBREGLASS = 0.35
MU_METAL = 3.0  # titanium/steel mix at ~50 keV, per cm
KINDS = ("cast", "fixation")


@dataclass(frozen=True)
class Treatment:
    kind: str  # cast | fixation
    bone: str  # the shaft it is centred on
    at: float  # centre, fraction of the shaft's length
    length: float  # cm (cast or plate)
    wall: float  # cm: cast wall, or plate thickness
    padding: float  # cm: padding under a cast, or plate width
    mu: float
    mesh: float  # period of a fibreglass knit in cm (0: smooth plaster)
    screws: int
    side: float  # +1/-1: which side of the bone a plate lies on


def sample(rng: np.random.Generator, kind: str, bone: str, at: float) -> Treatment:
    """A cast or a plate over `bone` at fraction `at` (usually the fracture)."""
    if kind not in KINDS:
        raise ValueError(f"unknown treatment '{kind}'; expected one of {KINDS}")
    if kind == "cast":
        plaster = rng.random() < 0.5
        return Treatment(
            "cast",
            bone,
            at,
            float(rng.uniform(12.0, 24.0)),
            float(rng.uniform(0.3, 0.7)),
            float(rng.uniform(0.2, 0.5)),
            MU_PLASTER if plaster else MU_FIBREGLASS,
            0.0 if plaster else float(rng.uniform(0.25, 0.45)),
            0,
            1.0,
        )
    return Treatment(
        "fixation",
        bone,
        at,
        float(rng.uniform(6.0, 12.0)),
        float(rng.uniform(0.25, 0.4)),
        float(rng.uniform(0.9, 1.4)),
        MU_METAL,
        0.0,
        int(rng.integers(4, 9)),
        float(rng.choice([-1.0, 1.0])),
    )


def attenuation(t: Treatment, shaft: LongBone, limb_radius: float, x: Array, y: Array) -> Array:
    """Projected attenuation of the treatment around a limb of `limb_radius` cm."""
    u, v = apply(shaft.frame.world_to_local(), x, y)
    u = u - t.at * shaft.length
    half = t.length / 2.0
    along = smoothstep(half, half - 0.3, np.abs(u))
    if t.kind == "cast":
        inner = limb_radius + t.padding
        texture = 1.0
        if t.mesh > 0:
            k = 2.0 * np.pi / t.mesh
            texture = 1.0 + 0.25 * np.sin(k * (u + v)) * np.sin(k * (u - v))
        return t.mu * (chord(inner + t.wall, v) - chord(inner, v)) * along * texture
    # Plate: a flat band on one side of the bone; screws: thin rods across the bone.
    r = shaft.radius
    w = t.side * v  # towards the plate
    plate = (
        t.wall
        * along
        * smoothstep(r - 0.05, r + 0.05, w)
        * smoothstep(r + t.padding + 0.05, r + t.padding - 0.05, w)
    )
    pitch = t.length / t.screws
    nearest = (np.floor(u / pitch) + 0.5) * pitch
    across = smoothstep(-r - 0.3, -r - 0.1, w) * smoothstep(r + t.padding, r + t.padding - 0.2, w)
    gap = np.abs(u) < 0.6  # no screw through the fracture itself
    screws = np.where(gap, 0.0, chord(0.22, u - nearest) * across * along)
    return t.mu * (plate + screws)


def bbox(t: Treatment, shaft: LongBone, limb_radius: float) -> tuple[float, float, float, float]:
    reach = limb_radius + t.padding + t.wall if t.kind == "cast" else 2 * shaft.radius + t.padding
    u0 = t.at * shaft.length
    pts = np.array(
        [
            shaft.frame.point(u0 + du, dv)
            for du in (-t.length / 2, t.length / 2)
            for dv in (-reach, reach)
        ]
    )
    return pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()
