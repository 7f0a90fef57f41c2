"""Solids an anatomy is built from, each able to say its projected attenuation.

Bones are hollow: a cortical shell (dense) around a medullary cavity (fatty marrow in the
diaphysis, trabecular bone towards the ends). A bone part returns its attenuation in excess
of the soft tissue it displaces, so the renderer can add it on top of the soft-tissue map.
Linear attenuation coefficients are per cm at an effective energy of about 50 keV.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bonexray.synth.geometry import (
    Array,
    Frame,
    apply,
    chord,
    ellipsoid_chord,
    segment_distance,
    smoothstep,
)

MU_SOFT = 0.21
MU_CORTEX = 0.80
MU_TRABECULAR = 0.30
MU_MARROW = 0.19

BBox = tuple[float, float, float, float]  # xmin, xmax, ymin, ymax in world cm


def _box(frame: Frame, corners_local: list[tuple[float, float]]) -> BBox:
    pts = np.array([frame.point(u, v) for u, v in corners_local])
    return pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()


def _shell(outer: Array, inner: Array, mu_inner: Array | float) -> Array:
    return (MU_CORTEX - MU_SOFT) * (outer - inner) + (mu_inner - MU_SOFT) * inner


@dataclass(frozen=True)
class LongBone:
    """A tubular bone along u in [0, length] with flared metaphyses and rounded ends.

    `flare0`/`flare1` widen the radius towards the start/end by that fraction over
    `flare_len` cm; the cortex (a fraction of the radius) thins there and the cavity turns
    from marrow into trabecular bone, as in a real diaphysis-metaphysis transition.
    `cap0`/`cap1` shape the ends: 1 is a hemisphere, smaller is a flatter articular surface.
    """

    frame: Frame
    length: float
    radius: float
    flare0: float = 0.0
    flare1: float = 0.0
    flare_len: float = 1.0
    cortex: float = 0.35
    cortex_end: float = 0.12
    cap0: float = 1.0
    cap1: float = 1.0

    def endness(self, uc: Array) -> Array:
        near0 = 1.0 - smoothstep(0.0, self.flare_len, uc)
        near1 = smoothstep(self.length - self.flare_len, self.length, uc)
        return np.maximum(near0, near1)

    def outer_radius(self, uc: Array) -> Array:
        grow0 = self.flare0 * (1.0 - smoothstep(0.0, self.flare_len, uc))
        grow1 = self.flare1 * smoothstep(self.length - self.flare_len, self.length, uc)
        return self.radius * (1.0 + grow0 + grow1)

    def local(self, u: Array, v: Array) -> Array:
        uc = np.clip(u, 0.0, self.length)
        overhang = u - uc
        overhang = np.where(overhang < 0.0, overhang / self.cap0, overhang / self.cap1)
        dist = np.hypot(overhang, v)
        ends = self.endness(uc)
        outer_r = self.outer_radius(uc)
        inner_r = outer_r * (1.0 - (self.cortex + (self.cortex_end - self.cortex) * ends))
        mu_inner = MU_MARROW + (MU_TRABECULAR - MU_MARROW) * ends
        return _shell(chord(outer_r, dist), chord(inner_r, dist), mu_inner)

    def excess(self, x: Array, y: Array) -> Array:
        u, v = apply(self.frame.world_to_local(), x, y)
        return self.local(u, v)

    def bbox(self) -> BBox:
        r = self.radius * (1.0 + max(self.flare0, self.flare1))
        return _box(self.frame, [(-r, -r), (-r, r), (self.length + r, -r), (self.length + r, r)])


@dataclass(frozen=True)
class Knob:
    """An ellipsoidal bone (carpal, epiphysis, condyle, femoral or humeral head).

    Semi-axes a (along u), b (along v), depth c; `shell` is the cortical fraction.
    """

    frame: Frame
    a: float
    b: float
    c: float
    shell: float = 0.12

    def excess(self, x: Array, y: Array) -> Array:
        u, v = apply(self.frame.world_to_local(), x, y)
        k = 1.0 - self.shell
        outer = ellipsoid_chord(u, v, self.a, self.b, self.c)
        inner = ellipsoid_chord(u, v, self.a * k, self.b * k, self.c * k)
        return _shell(outer, inner, MU_TRABECULAR)

    def bbox(self) -> BBox:
        a, b = self.a, self.b
        return _box(self.frame, [(-a, -b), (-a, b), (a, -b), (a, b)])


@dataclass(frozen=True)
class Arc:
    """A tubular bone bent along part of an ellipse (pelvic ring, rib, acetabular roof).

    Centre-line: (A cos t, B sin t) for t from `start` over `span` radians; tube radius
    `radius`, tapering to nothing over the last `taper` radians at open ends.
    """

    frame: Frame
    semi_a: float
    semi_b: float
    radius: float
    start: float = 0.0
    span: float = 2.0 * np.pi
    cortex: float = 0.3
    taper: float = 0.25

    def excess(self, x: Array, y: Array) -> Array:
        u, v = apply(self.frame.world_to_local(), x, y)
        t = np.arctan2(v / self.semi_b, u / self.semi_a)
        on_curve = np.hypot(self.semi_a * np.cos(t), self.semi_b * np.sin(t))
        dist = np.abs(np.hypot(u, v) - on_curve)
        radius = np.full_like(dist, self.radius)
        if self.span < 2.0 * np.pi:
            rel = np.mod(t - self.start, 2.0 * np.pi)
            inside = rel <= self.span
            rel = np.where(inside, rel, 0.0)
            taper = smoothstep(0.0, self.taper, rel) * smoothstep(0.0, self.taper, self.span - rel)
            radius = np.where(inside, radius * np.sqrt(taper), 0.0)
        inner = chord(radius * (1.0 - self.cortex), dist)
        return _shell(chord(radius, dist), inner, MU_TRABECULAR)

    def bbox(self) -> BBox:
        a, b = self.semi_a + self.radius, self.semi_b + self.radius
        return _box(self.frame, [(-a, -b), (-a, b), (a, -b), (a, b)])


BonePart = LongBone | Knob | Arc


@dataclass(frozen=True)
class Bone:
    """One anatomical bone: parts united (max of their attenuation where they overlap).

    `shaft` indexes the LongBone a fracture may cross; parts in `distal` move with the
    distal fragment (the rest stay with the proximal one).
    """

    name: str
    parts: tuple[BonePart, ...]
    shaft: int | None = None
    distal: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class SoftCapsule:
    """Soft tissue around a segment: radius r0 -> r1 along u, depth/width ratio `depth`."""

    frame: Frame
    length: float
    r0: float
    r1: float
    depth: float = 1.0

    def thickness(self, x: Array, y: Array) -> Array:
        u, v = apply(self.frame.world_to_local(), x, y)
        dist, uc = segment_distance(u, v, self.length)
        radius = self.r0 + (self.r1 - self.r0) * (uc / self.length)
        return self.depth * chord(radius, dist)

    def bbox(self) -> BBox:
        r = max(self.r0, self.r1)
        return _box(self.frame, [(-r, -r), (-r, r), (self.length + r, -r), (self.length + r, r)])


@dataclass(frozen=True)
class SoftBlob:
    """An ellipsoid of soft tissue (palm, thorax, buttock), or of gas when used as air."""

    frame: Frame
    a: float
    b: float
    c: float

    def thickness(self, x: Array, y: Array) -> Array:
        u, v = apply(self.frame.world_to_local(), x, y)
        return ellipsoid_chord(u, v, self.a, self.b, self.c)

    def bbox(self) -> BBox:
        return _box(
            self.frame, [(-self.a, -self.b), (-self.a, self.b), (self.a, -self.b), (self.a, self.b)]
        )


SoftPart = SoftCapsule | SoftBlob
