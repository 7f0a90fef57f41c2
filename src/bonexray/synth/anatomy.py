"""Five distinct anatomies (hand, elbow, shoulder, hip, leg) built from analytic solids.

Coordinates are centimetres in the detector plane, x to the patient's lateral side of the
picture, y down (fingers, shoulder girdle, pelvis and knee at the top of their pictures, as
radiographs are hung). A builder draws the patient's morphology from `morph` (the same
generator state gives the same bones in every view of a study) and the pose of this
exposure from `pose`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from bonexray.synth.geometry import Frame
from bonexray.synth.parts import (
    Arc,
    Bone,
    BonePart,
    Knob,
    LongBone,
    SoftBlob,
    SoftCapsule,
    SoftPart,
)

REGIONS = ("hand", "elbow", "shoulder", "hip", "leg")

# Variants: what the exposure centres on. Each maps to the region it belongs to; the layout
# writers use the variant to pick folder names (a "wrist" study is filed under XR_WRIST).
VARIANTS = {
    "hand": ("hand", "wrist", "forearm"),
    "elbow": ("elbow", "humerus"),
    "shoulder": ("shoulder",),
    "hip": ("hip", "pelvis"),
    "leg": ("knee", "lower_leg", "ankle"),
}


@dataclass(frozen=True)
class FractureSite:
    """Where a fracture may be drawn: a bone's shaft between fractions lo..hi of its length."""

    bone: str
    lo: float
    hi: float
    weight: float
    oblique: tuple[float, float] = (0.0, 0.8)  # radians range of the fracture line obliquity


@dataclass(frozen=True)
class Anatomy:
    region: str
    variant: str
    soft: tuple[SoftPart, ...]
    air: tuple[SoftPart, ...]  # gas (lungs, bowel) removing soft tissue along the ray
    bones: tuple[Bone, ...]
    field: tuple[float, float, float, float]  # centre x, centre y, width, height (cm)
    sites: tuple[FractureSite, ...]

    def bone(self, name: str) -> Bone:
        for bone in self.bones:
            if bone.name == name:
                return bone
        raise KeyError(f"anatomy {self.region}/{self.variant} has no bone '{name}'")


# ---- small constructors -------------------------------------------------------------------

Point = tuple[float, float]


def _long(start: Point, end: Point, radius: float, **kw: float) -> LongBone:
    frame, length = Frame.between(start, end)
    return LongBone(frame, length, radius, **kw)


def _knob(
    centre: Point, a: float, b: float, c: float, angle: float = 0.0, shell: float = 0.12
) -> Knob:
    return Knob(Frame(centre[0], centre[1], angle), a, b, c, shell)


def _capsule(
    start: Point, end: Point, r0: float, r1: float | None = None, depth: float = 1.0
) -> SoftCapsule:
    frame, length = Frame.between(start, end)
    return SoftCapsule(frame, length, r0, r0 if r1 is None else r1, depth)


def _blob(centre: Point, a: float, b: float, c: float, angle: float = 0.0) -> SoftBlob:
    return SoftBlob(Frame(centre[0], centre[1], angle), a, b, c)


def _along(origin: Point, angle: float, dist: float, side: float = 0.0) -> Point:
    """The point `dist` along direction `angle` from `origin`, `side` to its right."""
    c, s = np.cos(angle), np.sin(angle)
    return origin[0] + dist * c - side * s, origin[1] + dist * s + side * c


def _mirror_part(part, axis_x: float):
    """Reflect a part about the vertical line x = axis_x (parts are symmetric in v, except
    open arcs whose parameter range flips)."""
    f = part.frame
    frame = Frame(2.0 * axis_x - f.x, f.y, np.pi - f.angle)
    if isinstance(part, Arc):
        return replace(part, frame=frame, start=-(part.start + part.span))
    return replace(part, frame=frame)


def _mirror_bone(bone: Bone, axis_x: float, suffix: str) -> Bone:
    parts = tuple(_mirror_part(p, axis_x) for p in bone.parts)
    return replace(bone, name=bone.name + suffix, parts=parts)


class _Morph:
    """Draws a patient's proportions; jitter(x, sd) = x scaled by a normal factor."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.size = float(np.clip(rng.normal(1.0, 0.07), 0.82, 1.18))
        self.robust = float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.25))  # bone thickness
        self.cortex = float(np.clip(rng.normal(1.0, 0.12), 0.65, 1.3))  # cortical fraction
        self.soft = float(np.clip(rng.normal(1.0, 0.15), 0.7, 1.5))  # soft tissue bulk

    def jitter(self, x: float, sd: float = 0.05) -> float:
        return float(x * (1.0 + sd * np.clip(self.rng.normal(), -2.5, 2.5)))

    def r(self, radius: float) -> float:
        return self.jitter(radius * self.size * self.robust, 0.04)

    def cx(self, fraction: float) -> float:
        return min(0.6, fraction * self.cortex)


# ---- hand ------------------------------------------------------------------------------

_CARPALS = (  # name, x, y, a, b, angle(deg)
    ("scaphoid", -1.35, 4.55, 0.95, 0.48, -50),
    ("lunate", -0.1, 4.75, 0.68, 0.6, 0),
    ("triquetrum", 0.95, 4.4, 0.6, 0.5, 20),
    ("pisiform", 1.2, 4.1, 0.4, 0.38, 0),
    ("trapezium", -1.95, 3.15, 0.66, 0.55, -30),
    ("trapezoid", -0.95, 2.95, 0.5, 0.45, 0),
    ("capitate", 0.1, 3.2, 0.55, 0.85, 0),
    ("hamate", 1.1, 3.25, 0.6, 0.72, 10),
)
# digit: base x, base y, metacarpal length, tilt (deg from straight up), phalanx lengths
_DIGITS = (
    ("d2", -1.0, 2.3, 6.6, -8.0, (4.0, 2.3, 1.6)),
    ("d3", -0.05, 2.35, 6.3, -2.0, (4.5, 2.8, 1.8)),
    ("d4", 0.85, 2.45, 5.7, 4.0, (4.1, 2.6, 1.7)),
    ("d5", 1.6, 2.6, 5.2, 10.0, (3.3, 1.8, 1.5)),
)


def build_hand(morph: np.random.Generator, pose: np.random.Generator, variant: str) -> Anatomy:
    m = _Morph(morph)
    s = m.size
    bones: list[Bone] = []
    soft: list[SoftPart] = []

    radius_end = (-1.05 * s, 5.6 * s)
    bones.append(
        Bone(
            "radius",
            (
                _long(
                    (-1.0 * s, 26.0 * s),
                    radius_end,
                    m.r(0.78),
                    flare1=0.85,
                    flare_len=3.2 * s,
                    cortex=m.cx(0.32),
                    cap1=0.3,
                ),
                _knob((radius_end[0], radius_end[1] - 0.05), m.r(1.45), m.r(0.5), m.r(0.6)),
                _knob(
                    (radius_end[0] - 1.25 * s, radius_end[1] - 0.25 * s),
                    m.r(0.35),
                    m.r(0.45),
                    m.r(0.6),
                ),
            ),
            shaft=0,
            distal=frozenset({1, 2}),
        )
    )
    ulna_end = (1.3 * s, 6.15 * s)
    bones.append(
        Bone(
            "ulna",
            (
                _long(
                    (1.35 * s, 26.0 * s),
                    ulna_end,
                    m.r(0.58),
                    flare1=0.35,
                    flare_len=2.0 * s,
                    cortex=m.cx(0.34),
                ),
                _knob(ulna_end, m.r(0.72), m.r(0.5), m.r(0.75)),
                _knob(
                    (ulna_end[0] + 0.45 * s, ulna_end[1] - 0.35 * s), m.r(0.2), m.r(0.35), m.r(0.4)
                ),
            ),
            shaft=0,
            distal=frozenset({1, 2}),
        )
    )
    for name, x, y, a, b, ang in _CARPALS:
        centre = (
            m.jitter(x * s, 0.03) + pose.normal(0, 0.04),
            m.jitter(y * s, 0.02) + pose.normal(0, 0.04),
        )
        bones.append(
            Bone(
                name,
                (_knob(centre, m.r(a), m.r(b), m.r(0.45 * (a + b)), np.deg2rad(ang), shell=0.15),),
            )
        )

    spread = pose.normal(0.0, 0.35)  # fingers fanned more or less (in units of base tilt)
    soft.append(_blob((0.1 * s, 0.4 * s), 4.4 * s * m.soft**0.3, 4.1 * s, 1.5 * s * m.soft))
    soft.append(
        _capsule(
            (0.0, 2.0 * s),
            (0.2 * s, 28.0 * s),
            3.0 * s * m.soft**0.5,
            3.9 * s * m.soft**0.5,
            depth=0.62,
        )
    )
    for name, bx, by, length, tilt, phalanges in _DIGITS:
        angle = -np.pi / 2 + np.deg2rad(tilt * (1.0 + spread)) + pose.normal(0, 0.03)
        base = (m.jitter(bx * s, 0.02), m.jitter(by * s, 0.02))
        tip = _digit(
            bones,
            m,
            pose,
            name,
            base,
            angle,
            m.jitter(length * s, 0.04),
            phalanges,
            (0.42, 0.36, 0.3, 0.25),
        )
        soft.append(
            _capsule(
                _along(base, angle, 4.0 * s), tip, 0.95 * s * m.soft**0.4, 0.75 * s * m.soft**0.4
            )
        )
    thumb_angle = -np.pi / 2 + np.deg2rad(-40.0 + 8.0 * spread) + pose.normal(0, 0.05)
    thumb_base = (-2.35 * s, 2.95 * s)
    tip = _digit(
        bones,
        m,
        pose,
        "d1",
        thumb_base,
        thumb_angle,
        m.jitter(4.4 * s, 0.04),
        (3.1, 2.3),
        (0.45, 0.4, 0.3),
    )
    soft.append(
        _capsule(
            _along(thumb_base, thumb_angle, 1.0 * s),
            tip,
            1.5 * s * m.soft**0.4,
            0.85 * s * m.soft**0.4,
        )
    )

    fields = {
        "hand": (0.0, 0.6, 15.0, 20.0),
        "wrist": (0.0, 4.6, 10.0, 12.0),
        "forearm": (0.2, 11.5, 13.0, 26.0),
    }
    cx, cy, w, h = fields[variant]
    sites = [
        FractureSite("radius", 0.8, 0.93, 3.0, (0.0, 0.5)),
        FractureSite("ulna", 0.45, 0.85, 0.7 if variant != "hand" else 0.3),
    ]
    if variant != "forearm":
        sites += [FractureSite(f"{d}_mc", 0.35, 0.85, 1.0) for d in ("d2", "d3", "d4", "d5")]
        sites += [FractureSite("d1_mc", 0.3, 0.7, 0.5)]
    if variant == "hand":
        sites += [FractureSite(f"{d}_p1", 0.3, 0.7, 0.6) for d in ("d1", "d2", "d3", "d4", "d5")]
    if variant == "forearm":
        sites = [FractureSite("radius", 0.35, 0.9, 2.0), FractureSite("ulna", 0.3, 0.85, 1.5)]
    return Anatomy(
        "hand", variant, tuple(soft), (), tuple(bones), (cx * s, cy * s, w * s, h * s), tuple(sites)
    )


def _digit(
    bones: list[Bone],
    m: _Morph,
    pose: np.random.Generator,
    name: str,
    base: Point,
    angle: float,
    mc_length: float,
    phalanges: Iterable[float],
    radii: tuple[float, ...],
) -> Point:
    """Append a metacarpal and its phalanges as separate bones; return the fingertip."""
    s = m.size
    lengths = (mc_length, *(m.jitter(p * s, 0.04) for p in phalanges))
    start = base
    for k, length in enumerate(lengths):
        end = _along(start, angle, length)
        r = m.r(radii[min(k, len(radii) - 1)])
        is_tip = k == len(lengths) - 1
        parts: list[BonePart] = [
            _long(
                start,
                end,
                r,
                flare0=0.45,
                flare1=0.3,
                flare_len=min(1.2, 0.3 * length),
                cortex=m.cx(0.36),
            ),
            _knob(_along(start, angle, 0.25 * r), 0.35 * r, 1.35 * r, 1.2 * r, angle),
        ]
        if is_tip:  # the tuft of a distal phalanx
            parts.append(_knob(_along(end, angle, -0.2 * r), 0.5 * r, 1.25 * r, 0.9 * r, angle))
        else:
            parts.append(_knob(_along(end, angle, -0.45 * r), 0.75 * r, 1.25 * r, 1.2 * r, angle))
        label = f"{name}_mc" if k == 0 else f"{name}_p{k}"
        bones.append(Bone(label, tuple(parts), shaft=0, distal=frozenset({2})))
        start = _along(end, angle, 0.22 * s + pose.uniform(0.0, 0.06))  # joint space
        angle += pose.normal(0.0, 0.05)
    return _along(start, angle, 0.3 * s)


# ---- elbow -----------------------------------------------------------------------------


def build_elbow(morph: np.random.Generator, pose: np.random.Generator, variant: str) -> Anatomy:
    m = _Morph(morph)
    s = m.size
    lateral = pose.random() < 0.45
    flex = np.deg2rad(pose.uniform(60, 105) if lateral else pose.uniform(5, 16))
    fore = np.pi / 2 - flex  # forearm direction: straight down, bent towards +x by `flex`
    joint = (0.0, 0.0)
    humerus_end = (0.0, -1.9 * s)
    bones = [
        Bone(
            "humerus",
            (
                _long(
                    (0.3 * s, -32.0 * s),
                    humerus_end,
                    m.r(1.05),
                    flare1=1.25,
                    flare_len=4.5 * s,
                    cortex=m.cx(0.33),
                    cap1=0.35,
                ),
                _knob((-0.75 * s, -0.95 * s), m.r(0.9), m.r(0.78), m.r(0.9)),
                _knob((0.95 * s, -1.05 * s), m.r(0.78), m.r(0.72), m.r(0.85)),
                _knob((-2.3 * s, -2.0 * s), m.r(0.55), m.r(0.45), m.r(0.8)),
                _knob((2.05 * s, -2.0 * s), m.r(0.42), m.r(0.38), m.r(0.7)),
            ),
            shaft=0,
            distal=frozenset({1, 2, 3, 4}),
        ),
    ]
    rad_start = _along(joint, fore, 0.45 * s, side=-0.95 * s)
    rad_end = _along(rad_start, fore + np.deg2rad(4.5), 24.0 * s)
    bones.append(
        Bone(
            "radius",
            (
                _long(
                    rad_start, rad_end, m.r(0.62), flare0=0.55, flare_len=1.6 * s, cortex=m.cx(0.33)
                ),
                _knob(_along(rad_start, fore, 0.05), m.r(0.38), m.r(1.05), m.r(1.05), fore),
            ),
            shaft=0,
        )
    )
    uln_start = _along(joint, fore, -0.35 * s, side=0.55 * s)
    uln_end = _along(uln_start, fore - np.deg2rad(3.0), 25.0 * s)
    bones.append(
        Bone(
            "ulna",
            (
                _long(
                    uln_start, uln_end, m.r(0.68), flare0=0.8, flare_len=3.0 * s, cortex=m.cx(0.33)
                ),
                _knob(
                    _along(joint, fore, -1.3 * s, side=0.75 * s),
                    m.r(1.25),
                    m.r(0.9),
                    m.r(1.1),
                    fore,
                ),
                _knob(
                    _along(joint, fore, 0.6 * s, side=0.2 * s), m.r(0.45), m.r(0.4), m.r(0.6), fore
                ),
            ),
            shaft=0,
        )
    )
    soft = (
        _capsule((0.3 * s, -34.0 * s), joint, 4.2 * s * m.soft**0.5, 3.7 * s * m.soft**0.5),
        _capsule(
            joint,
            _along(joint, fore, 27.0 * s),
            3.6 * s * m.soft**0.5,
            2.9 * s * m.soft**0.5,
            depth=0.85,
        ),
        _blob(joint, 4.3 * s, 4.3 * s, 3.9 * s * m.soft**0.5),
    )
    if variant == "humerus":
        field = (0.2 * s, -12.0 * s, 15.0 * s, 30.0 * s)
        sites = (FractureSite("humerus", 0.3, 0.75, 2.0), FractureSite("humerus", 0.8, 0.9, 1.0))
    else:
        far = _along(joint, fore, 7.0 * s)
        cx, cy = 0.5 * (0.0 + far[0]), 0.5 * (-6.0 * s + far[1])
        size = 21.0 * s + 0.5 * abs(far[0])
        field = (cx, cy, size, size)
        sites = (
            FractureSite("humerus", 0.84, 0.92, 2.0, (0.0, 0.5)),
            FractureSite("radius", 0.03, 0.09, 1.0, (0.0, 0.4)),
            FractureSite("radius", 0.1, 0.3, 0.7),
            FractureSite("ulna", 0.1, 0.3, 0.7),
        )
    return Anatomy("elbow", variant, soft, (), tuple(bones), field, sites)


# ---- shoulder --------------------------------------------------------------------------


def build_shoulder(morph: np.random.Generator, pose: np.random.Generator, variant: str) -> Anatomy:
    m = _Morph(morph)
    s = m.size
    abduct = np.deg2rad(pose.uniform(-6, 18))  # arm swung out from the body
    arm = np.pi / 2 - abduct
    head = (1.3 * s, 0.2 * s)
    neck = _along(head, arm, 1.0 * s, side=-0.9 * s)
    bones = [
        Bone(
            "humerus",
            (
                _long(
                    neck,
                    _along(neck, arm, 30.0 * s),
                    m.r(1.2),
                    flare0=0.75,
                    flare_len=4.5 * s,
                    cortex=m.cx(0.32),
                ),
                _knob(head, m.r(2.4), m.r(2.5), m.r(2.4), shell=0.08),
                _knob(_along(head, arm, 0.3 * s, side=-2.0 * s), m.r(1.0), m.r(1.35), m.r(1.6)),
            ),
            shaft=0,
        ),
        Bone("glenoid", (_knob((-1.6 * s, 0.45 * s), m.r(0.6), m.r(1.95), m.r(1.5)),)),
        Bone(
            "scapula",
            (
                _knob((-5.6 * s, 5.2 * s), m.r(4.4), m.r(7.0), 0.35, np.deg2rad(18), shell=0.4),
                _long((-2.2 * s, 1.8 * s), (-5.2 * s, 13.0 * s), m.r(0.5), cortex=m.cx(0.4)),
                _knob((-2.6 * s, 0.9 * s), m.r(1.2), m.r(1.7), m.r(0.8)),
                _long((-10.5 * s, -1.4 * s), (1.2 * s, -3.1 * s), m.r(0.55), cortex=m.cx(0.4)),
                _knob((1.4 * s, -3.1 * s), m.r(1.7), m.r(0.75), m.r(0.7), np.deg2rad(-5)),
                _long((-2.6 * s, -1.0 * s), (-0.5 * s, -2.3 * s), m.r(0.45), flare1=0.3),
            ),
        ),
    ]
    mid = (-6.0 * s, (-4.7 + pose.normal(0, 0.2)) * s)
    lateral_end = (0.9 * s, -4.0 * s)
    bones.append(
        Bone(
            "clavicle",
            (
                _long(
                    (-15.0 * s, -6.8 * s),
                    mid,
                    m.r(0.62),
                    flare0=0.5,
                    flare_len=2.0,
                    cortex=m.cx(0.3),
                ),
                _long(mid, lateral_end, m.r(0.58), flare1=0.6, flare_len=2.0, cortex=m.cx(0.3)),
                _knob(lateral_end, m.r(0.7), m.r(0.55), m.r(0.6)),
            ),
            shaft=1,
            distal=frozenset({2}),
        )
    )
    for k in range(6):
        y0 = (-3.0 + 2.8 * k) * s
        bones.append(
            Bone(
                f"rib{k}",
                (
                    Arc(
                        Frame(-15.0 * s, y0, np.deg2rad(8 + 3 * k)),
                        10.5 * s,
                        4.2 * s,
                        m.r(0.36),
                        start=np.deg2rad(-120),
                        span=np.deg2rad(150),
                        cortex=m.cx(0.35),
                    ),
                ),
            )
        )
    soft = (
        _blob((-14.0 * s, 8.0 * s), 13.5 * s, 17.0 * s, 11.0 * s * m.soft**0.5),
        _blob((1.8 * s, 1.2 * s), 5.6 * s * m.soft**0.3, 6.6 * s, 5.6 * s * m.soft**0.5),
        _capsule(
            (2.2 * s, 2.0 * s),
            _along((2.2 * s, 2.0 * s), arm, 30.0 * s),
            5.0 * s * m.soft**0.5,
            4.2 * s * m.soft**0.5,
        ),
        _capsule((-13.0 * s, -6.5 * s), (1.0 * s, -1.5 * s), 4.5 * s, 4.5 * s, depth=1.2),
    )
    air = (_blob((-12.5 * s, 7.5 * s), 8.0 * s, 11.5 * s, 7.5 * s),)
    sites = (
        FractureSite("humerus", 0.02, 0.1, 2.0, (0.0, 0.6)),
        FractureSite("clavicle", 0.05, 0.45, 1.8),
        FractureSite("humerus", 0.15, 0.35, 0.5),
    )
    return Anatomy(
        "shoulder", variant, soft, air, tuple(bones), (-2.5 * s, 2.5 * s, 24.0 * s, 24.0 * s), sites
    )


# ---- hip -------------------------------------------------------------------------------

_MIDLINE = -10.5


def _hemipelvis(m: _Morph) -> list[Bone]:
    """Right hemipelvis and proximal femur; the femoral head centre sits at the origin."""
    s = m.size
    head = (0.0, 0.0)
    neck_base = (4.3 * s, 3.7 * s)
    return [
        Bone(
            "femoral_neck",
            (
                _long(neck_base, head, m.r(1.35), flare0=0.8, flare_len=2.2 * s, cortex=m.cx(0.22)),
                _knob(head, m.r(2.4), m.r(2.4), m.r(2.4), shell=0.08),
            ),
            shaft=0,
            distal=frozenset({1}),
        ),
        Bone(
            "femur",
            (
                _long(
                    (5.0 * s, 2.4 * s),
                    (5.5 * s, 40.0 * s),
                    m.r(1.5),
                    flare0=0.2,
                    flare_len=6.0 * s,
                    cortex=m.cx(0.35),
                    cap0=0.5,
                ),
                _knob((5.9 * s, 2.0 * s), m.r(0.9), m.r(1.4), m.r(1.0), np.deg2rad(15), shell=0.1),
                _knob((3.2 * s, 6.6 * s), m.r(0.7), m.r(0.55), m.r(0.8)),
            ),
            shaft=0,
        ),
        Bone(
            "acetabulum",
            (
                Arc(
                    Frame(0.0, 0.0, 0.0),
                    2.75 * s,
                    2.75 * s,
                    m.r(0.5),
                    start=np.deg2rad(185),
                    span=np.deg2rad(165),
                    cortex=0.5,
                ),
            ),
        ),
        Bone(
            "ilium",
            (
                _knob((-2.5 * s, -8.5 * s), m.r(5.8), m.r(5.4), 0.9, np.deg2rad(-25), shell=0.35),
                Arc(
                    Frame(-2.7 * s, -8.2 * s, np.deg2rad(-20)),
                    6.1 * s,
                    5.7 * s,
                    m.r(0.5),
                    start=np.deg2rad(190),
                    span=np.deg2rad(150),
                    cortex=0.4,
                ),
                _knob(
                    (-2.0 * s, -4.0 * s), m.r(3.2), m.r(4.2), m.r(1.1), np.deg2rad(-20), shell=0.15
                ),
            ),
        ),
        Bone(
            "pubis_ischium",
            (
                Arc(
                    Frame(-5.6 * s, 4.7 * s, np.deg2rad(-6)),
                    4.2 * s,
                    2.3 * s,
                    m.r(0.6),
                    cortex=0.35,
                ),
                _knob((-3.6 * s, 7.0 * s), m.r(1.6), m.r(0.8), m.r(1.0), np.deg2rad(-20)),
                _knob(((_MIDLINE + 0.8) * s, 4.3 * s), m.r(0.6), m.r(1.8), m.r(1.2)),
            ),
        ),
    ]


def build_hip(morph: np.random.Generator, pose: np.random.Generator, variant: str) -> Anatomy:
    m = _Morph(morph)
    s = m.size
    bones = _hemipelvis(m)
    axis = _MIDLINE * s
    soft: list[SoftPart] = [
        _blob((axis, -2.0 * s), 17.0 * s * m.soft**0.3, 15.0 * s, 11.0 * s * m.soft**0.5),
        _blob((3.5 * s, 4.0 * s), 8.0 * s * m.soft**0.4, 9.0 * s, 8.0 * s * m.soft**0.5),
        _capsule(
            (4.5 * s, 4.0 * s), (5.8 * s, 44.0 * s), 8.0 * s * m.soft**0.5, 6.5 * s * m.soft**0.5
        ),
    ]
    sacrum = Bone("sacrum", (_knob((axis, -6.5 * s), m.r(3.3), m.r(5.0), m.r(1.1), shell=0.2),))
    sites = [
        FractureSite("femoral_neck", 0.3, 0.8, 2.5, (0.0, 0.6)),
        FractureSite("femur", 0.02, 0.1, 1.5, (0.5, 0.9)),
        FractureSite("femur", 0.15, 0.3, 0.6),
    ]
    if variant == "pelvis":
        left = [_mirror_bone(b, axis, "_l") for b in bones]
        bones = [replace(b, name=b.name + "_r") for b in bones] + left
        soft += [_mirror_part(p, axis) for p in soft[1:]]
        sites = [replace(f, bone=f.bone + side) for f in sites for side in ("_r", "_l")]
        field = (axis, 2.0 * s, 42.0 * s, 32.0 * s)
    else:
        field = (-2.0 * s, 2.5 * s, 21.0 * s, 24.0 * s)
    gas = tuple(
        _blob(
            (axis + pose.uniform(-7, 7) * s, pose.uniform(-12, -1) * s),
            pose.uniform(0.6, 2.0),
            pose.uniform(0.5, 1.6),
            pose.uniform(0.5, 1.5),
            pose.uniform(0, np.pi),
        )
        for _ in range(int(pose.integers(2, 8)))
    )
    return Anatomy("hip", variant, tuple(soft), gas, (sacrum, *bones), field, tuple(sites))


# ---- leg -------------------------------------------------------------------------------


def build_leg(morph: np.random.Generator, pose: np.random.Generator, variant: str) -> Anatomy:
    m = _Morph(morph)
    s = m.size
    bones = [
        Bone(
            "tibia",
            (
                _long(
                    (0.0, 0.6 * s),
                    (0.3 * s, 35.8 * s),
                    m.r(1.25),
                    flare0=1.0,
                    flare1=0.55,
                    flare_len=4.5 * s,
                    cortex=m.cx(0.34),
                    cap0=0.25,
                    cap1=0.3,
                ),
                _knob((0.0, 0.25 * s), m.r(3.7), m.r(1.0), m.r(1.6)),
                _knob((0.3 * s, 35.9 * s), m.r(2.0), m.r(0.8), m.r(1.8)),
                _knob((-1.6 * s, 36.6 * s), m.r(0.45), m.r(0.9), m.r(0.9)),
            ),
            shaft=0,
            distal=frozenset({2, 3}),
        ),
        Bone(
            "fibula",
            (
                _long(
                    (3.05 * s, 2.3 * s),
                    (3.0 * s, 36.9 * s),
                    m.r(0.55),
                    flare0=0.45,
                    flare1=0.6,
                    flare_len=3.0 * s,
                    cortex=m.cx(0.36),
                ),
                _knob((3.15 * s, 1.9 * s), m.r(0.9), m.r(0.8), m.r(1.0)),
                _knob((3.0 * s, 37.3 * s), m.r(0.55), m.r(1.1), m.r(1.0)),
            ),
            shaft=0,
            distal=frozenset({2}),
        ),
    ]
    knee_bend = np.deg2rad(pose.normal(0, 3))
    femur_start = _along((0.0, -1.7 * s), -np.pi / 2 + knee_bend, 38.0 * s)
    bones += [
        Bone(
            "femur",
            (
                _long(
                    femur_start,
                    (0.0, -1.7 * s),
                    m.r(1.45),
                    flare1=1.15,
                    flare_len=6.0 * s,
                    cortex=m.cx(0.35),
                    cap1=0.3,
                ),
                _knob((-1.85 * s, -1.0 * s), m.r(1.9), m.r(1.5), m.r(1.8)),
                _knob((1.85 * s, -1.05 * s), m.r(1.8), m.r(1.5), m.r(1.8)),
            ),
            shaft=0,
            distal=frozenset({1, 2}),
        ),
        Bone("patella", (_knob((0.2 * s, -2.7 * s), m.r(2.1), m.r(2.5), m.r(0.8)),)),
        Bone("talus", (_knob((0.3 * s, 37.9 * s), m.r(2.0), m.r(1.05), m.r(1.3)),)),
        Bone(
            "calcaneus",
            (_knob((0.9 * s, 40.0 * s), m.r(3.0), m.r(1.3), m.r(1.2), np.deg2rad(-20)),),
        ),
    ]
    k = m.soft**0.5
    soft = (
        _blob((0.0, -1.0 * s), 6.0 * s * k, 6.0 * s, 5.5 * s * k),
        _capsule((-0.8 * s, -44.0 * s), (0.0, -2.0 * s), 7.5 * s * k, 6.0 * s * k),
        _capsule((0.8 * s, 0.0), (1.0 * s, 37.0 * s), 5.3 * s * k, 3.2 * s * k),
        _blob((0.2 * s, 11.0 * s), 5.8 * s * k, 10.0 * s, 5.2 * s * k),
        _blob((0.5 * s, 37.8 * s), 3.7 * s * k, 3.0 * s, 3.5 * s * k),
        _blob((0.6 * s, 41.0 * s), 4.0 * s * k, 3.4 * s, 4.0 * s * k),
    )
    fields = {
        "knee": (0.5, -0.5, 16.0, 20.0),
        "lower_leg": (1.2, 18.0, 15.0, 40.0),
        "ankle": (0.7, 35.5, 14.0, 17.0),
    }
    cx, cy, w, h = fields[variant]
    if variant == "knee":
        sites = (
            FractureSite("tibia", 0.03, 0.15, 1.5, (0.0, 0.5)),
            FractureSite("fibula", 0.03, 0.12, 0.7),
            FractureSite("femur", 0.86, 0.93, 1.0),
        )
    elif variant == "ankle":
        sites = (
            FractureSite("fibula", 0.86, 0.95, 2.0, (0.4, 0.9)),
            FractureSite("tibia", 0.85, 0.93, 1.0),
        )
    else:
        sites = (FractureSite("tibia", 0.25, 0.8, 2.0), FractureSite("fibula", 0.25, 0.8, 1.0))
    return Anatomy("leg", variant, soft, (), tuple(bones), (cx * s, cy * s, w * s, h * s), sites)


BUILDERS: dict[str, Callable[[np.random.Generator, np.random.Generator, str], Anatomy]] = {
    "hand": build_hand,
    "elbow": build_elbow,
    "shoulder": build_shoulder,
    "hip": build_hip,
    "leg": build_leg,
}


def build(
    region: str, variant: str, morph: np.random.Generator, pose: np.random.Generator
) -> Anatomy:
    """Build one exposure's anatomy; `morph` draws the patient, `pose` this exposure."""
    if region not in BUILDERS:
        raise ValueError(f"unknown region '{region}'; expected one of {REGIONS}")
    if variant not in VARIANTS[region]:
        raise ValueError(
            f"region '{region}' has no variant '{variant}'; expected one of {VARIANTS[region]}"
        )
    return BUILDERS[region](morph, pose, variant)
