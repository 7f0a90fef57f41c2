"""Fractures as cortical discontinuities of a long bone's shaft.

A fracture plane crosses the shaft at a fraction `at` of its length, transverse or oblique,
with a jagged edge. The distal fragment (and every part of the bone attached distally) is
rotated about the fracture point (angulation), then moved along the shaft (a gap: a dark
line where bone is missing) and across it (displacement: a step in both cortices).
Fragments that come to overlap add up (overriding fragments look denser, as in life).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bonexray.synth.anatomy import Anatomy, FractureSite
from bonexray.synth.geometry import Array, apply, rotation, translation
from bonexray.synth.parts import LongBone


@dataclass(frozen=True)
class Fracture:
    bone: str
    at: float  # position along the shaft, fraction of its length
    obliquity: float  # radians between the fracture line and the shaft's cross-section
    gap: float  # cm the distal fragment is pulled away along the shaft
    shift: float  # cm the distal fragment is displaced across the shaft
    angulation: float  # radians the distal fragment is tilted about the fracture point
    jag: float  # cm amplitude of the jagged fracture edge
    phase: float
    subtle: bool
    swelling: float  # half-width of the soft-tissue swelling, in shaft radii


def sample(rng: np.random.Generator, anatomy: Anatomy) -> Fracture:
    """Draw a fracture at one of the anatomy's sites (always the same number of draws)."""
    weights = np.array([site.weight for site in anatomy.sites])
    site: FractureSite = anatomy.sites[int(rng.choice(len(weights), p=weights / weights.sum()))]
    shaft = shaft_of(anatomy, site.bone)
    u = rng.uniform(site.lo, site.hi)
    transverse = rng.random() < 0.4
    obliquity = rng.uniform(0.0, 0.2) if transverse else rng.uniform(*site.oblique)
    obliquity *= rng.choice([-1.0, 1.0])
    subtle = bool(rng.random() < 0.15)
    field = min(anatomy.field[2], anatomy.field[3])
    # Gap 1.5-4 % of the bone's length, never narrower than ~2.5 px at a 128 px working size.
    gap = max(rng.uniform(0.015, 0.04) * shaft.length, rng.uniform(0.02, 0.03) * field)
    diameter = 2.0 * shaft.radius
    shift = rng.uniform(0.5, 1.5) * diameter * rng.choice([-1.0, 1.0])
    angulation = np.deg2rad(rng.uniform(10.0, 35.0)) * rng.choice([-1.0, 1.0])
    swelling = rng.uniform(3.0, 4.5)
    if subtle:  # hairline: a narrow gap, hardly displaced
        gap = max(0.5 * gap, 0.012 * field)
        shift *= 0.15
        angulation *= 0.15
        swelling *= 0.8
    return Fracture(
        site.bone,
        float(u),
        float(obliquity),
        float(gap),
        float(shift),
        float(angulation),
        float(rng.uniform(0.05, 0.15) * diameter),
        float(rng.uniform(0, 2 * np.pi)),
        subtle,
        float(swelling),
    )


def shaft_of(anatomy: Anatomy, bone_name: str) -> LongBone:
    bone = anatomy.bone(bone_name)
    if bone.shaft is None:
        raise ValueError(f"bone '{bone_name}' has no shaft to fracture")
    shaft = bone.parts[bone.shaft]
    assert isinstance(shaft, LongBone)
    return shaft


def distal_motion(shaft: LongBone, fracture: Fracture) -> Array:
    """World->world 3x3 affine moving the distal fragment into its displaced position."""
    pivot = fracture.at * shaft.length
    in_local = (
        translation(pivot + fracture.gap, fracture.shift)
        @ rotation(fracture.angulation)
        @ translation(-pivot, 0.0)
    )
    return shaft.frame.local_to_world() @ in_local @ shaft.frame.world_to_local()


def distal_side(shaft: LongBone, fracture: Fracture, x: Array, y: Array) -> Array:
    """True where a world point (in the bone's unmoved position) lies beyond the fracture."""
    u, v = apply(shaft.frame.world_to_local(), x, y)
    k = 2.0 * np.pi / max(shaft.radius, 1e-3)
    edge = fracture.jag * (np.sin(k * v + fracture.phase) + 0.5 * np.sin(2.3 * k * v))
    return u > fracture.at * shaft.length + np.tan(fracture.obliquity) * v + edge


def line(shaft: LongBone, fracture: Fracture) -> tuple[tuple[float, float], tuple[float, float]]:
    """End points (world) of the fracture line across the shaft, before displacement."""
    half = 1.3 * shaft.radius
    u0 = fracture.at * shaft.length
    du = np.tan(fracture.obliquity) * half
    return shaft.frame.point(u0 - du, -half), shaft.frame.point(u0 + du, half)


def site_point(shaft: LongBone, fracture: Fracture) -> tuple[float, float]:
    return shaft.frame.point(fracture.at * shaft.length)
