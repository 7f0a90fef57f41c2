"""Projection: the line integral of attenuation over the detector, sum(mu_i * t_i).

Soft tissue is one body (the union of its parts: the thickest part along a ray wins) minus
gas; each bone adds its attenuation in excess of the soft tissue it displaces. Separate bones
overlapping in projection add up, as they lie at different depths. Each part is evaluated
only inside its bounding box, which keeps a 40-part hand at a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bonexray.synth import fracture as fx
from bonexray.synth import treatment as tx
from bonexray.synth.anatomy import Anatomy
from bonexray.synth.geometry import Array, Frame, apply, rotation, scaling, translation
from bonexray.synth.parts import MU_SOFT, BBox, Bone, LongBone, SoftBlob

Slices = tuple[slice, slice]


@dataclass(frozen=True)
class View:
    """Detector geometry: image size (px), magnification (px per cm), in-plane rotation,
    left/right flip and the world point at the image centre."""

    width: int
    height: int
    px_per_cm: float
    angle: float
    flip: bool
    cx: float
    cy: float

    def pixel_to_world(self) -> Array:
        s = 1.0 / self.px_per_cm
        return (
            translation(self.cx, self.cy)
            @ rotation(self.angle)
            @ scaling(-s if self.flip else s, s)
            @ translation(-self.width / 2.0, -self.height / 2.0)
        )

    def world_to_pixel(self) -> Array:
        return np.linalg.inv(self.pixel_to_world())

    def grid(self) -> tuple[Array, Array]:
        """World coordinates of every pixel centre, float32 arrays (H, W)."""
        cols, rows = np.meshgrid(
            np.arange(self.width, dtype=np.float32) + 0.5,
            np.arange(self.height, dtype=np.float32) + 0.5,
        )
        x, y = apply(self.pixel_to_world().astype(np.float32), cols, rows)
        return x.astype(np.float32), y.astype(np.float32)

    def to_pixel(self, point: tuple[float, float]) -> tuple[float, float]:
        px, py = apply(self.world_to_pixel(), np.float64(point[0]), np.float64(point[1]))
        return float(px), float(py)


def sample_view(
    rng: np.random.Generator,
    anatomy: Anatomy,
    width: int,
    height: int,
    keep: tuple[float, float] | None = None,
) -> View:
    """Frame the anatomy's field with random zoom, offset, rotation and side.

    `keep` is a world point (a fracture) the framing must show well inside the image.
    """
    cx, cy, fw, fh = anatomy.field
    scale = min(width / fw, height / fh) * rng.uniform(0.9, 1.2)
    angle = rng.normal(0.0, np.deg2rad(7.0))
    if rng.random() < 0.08:  # a few come rotated by a quarter turn, as exported
        angle += rng.choice([-np.pi / 2, np.pi / 2])
    view = View(
        width,
        height,
        float(scale),
        float(angle),
        bool(rng.random() < 0.5),
        float(cx + rng.normal(0.0, 0.06) * fw),
        float(cy + rng.normal(0.0, 0.06) * fh),
    )
    if keep is None:
        return view
    px, py = view.to_pixel(keep)
    inside_x = np.clip(px, 0.15 * width, 0.85 * width)
    inside_y = np.clip(py, 0.15 * height, 0.85 * height)
    # Recentre on the pixel that is as far from the centre as the point is from the box.
    cx, cy = apply(
        view.pixel_to_world(),
        np.float64(width / 2 + px - inside_x),
        np.float64(height / 2 + py - inside_y),
    )
    return replace(view, cx=float(cx), cy=float(cy))


@dataclass
class Projection:
    """Attenuation maps (H, W) of one exposure, with where the fracture is, if any."""

    total: Array  # sum of mu * t along each ray (1/cm * cm = unitless)
    bone: Array  # the bone part of it
    soft_cm: Array  # soft-tissue path length (cm)
    fracture_line: tuple[tuple[float, float], tuple[float, float]] | None  # pixel end points


class _Canvas:
    """Pixel grid in world coordinates and bounding-box slicing."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.x, self.y = view.grid()
        self.to_pixel = view.world_to_pixel()

    def window(self, bbox: BBox, motion: Array | None = None) -> Slices | None:
        xmin, xmax, ymin, ymax = bbox
        xs = np.array([xmin, xmax, xmin, xmax])
        ys = np.array([ymin, ymin, ymax, ymax])
        if motion is not None:
            xs, ys = apply(motion, xs, ys)
        cols, rows = apply(self.to_pixel, xs, ys)
        c0, c1 = (
            max(int(np.floor(cols.min())) - 1, 0),
            min(int(np.ceil(cols.max())) + 1, self.view.width),
        )
        r0, r1 = (
            max(int(np.floor(rows.min())) - 1, 0),
            min(int(np.ceil(rows.max())) + 1, self.view.height),
        )
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def coords(self, window: Slices, motion_inverse: Array | None = None) -> tuple[Array, Array]:
        x, y = self.x[window], self.y[window]
        if motion_inverse is not None:
            x, y = apply(motion_inverse.astype(np.float32), x, y)
        return x, y


def _soft_tissue(anatomy: Anatomy, canvas: _Canvas, swelling: list[SoftBlob]) -> Array:
    """Union of the soft parts (swelling included) minus gas (path lengths in cm)."""
    shape = (canvas.view.height, canvas.view.width)
    thickness, gas = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for parts, out, combine in (
        ((*anatomy.soft, *swelling), thickness, np.maximum),
        (anatomy.air, gas, np.add),
    ):
        for part in parts:
            win = canvas.window(part.bbox())
            if win is not None:
                combine(out[win], part.thickness(*canvas.coords(win)), out=out[win])
    return np.maximum(thickness - gas, 0.0)


def _bone_union(
    bone: Bone, canvas: _Canvas, out: Array, indices, motion: Array | None, clip=None
) -> None:
    """Max-unite the bone's parts `indices` into `out`; `motion` moves them (a fragment);
    `clip(x, y)` keeps only part of the shaft (evaluated in unmoved coordinates)."""
    inverse = None if motion is None else np.linalg.inv(motion)
    buffer = np.zeros_like(out)
    for i in indices:
        part = bone.parts[i]
        win = canvas.window(part.bbox(), motion)
        if win is None:
            continue
        x, y = canvas.coords(win, inverse)
        values = part.excess(x, y)
        if clip is not None and i == bone.shaft:
            values = np.where(clip(x, y), values, 0.0)
        np.maximum(buffer[win], values, out=buffer[win])
    out += buffer


def project(
    anatomy: Anatomy,
    view: View,
    fracture: fx.Fracture | None = None,
    treatment: tx.Treatment | None = None,
) -> Projection:
    """Attenuation line integrals of `anatomy` seen through `view`, with an optional fracture
    and an optional treatment (cast or plate)."""
    canvas = _Canvas(view)
    bone_map = np.zeros((view.height, view.width), np.float32)
    swelling: list[SoftBlob] = []
    line_px = None
    for bone in anatomy.bones:
        every = range(len(bone.parts))
        if fracture is None or bone.name != fracture.bone:
            _bone_union(bone, canvas, bone_map, every, None)
            continue
        shaft = fx.shaft_of(anatomy, bone.name)
        motion = fx.distal_motion(shaft, fracture)
        proximal = [i for i in every if i not in bone.distal]
        distal = [i for i in every if i in bone.distal or i == bone.shaft]
        _bone_union(
            bone,
            canvas,
            bone_map,
            proximal,
            None,
            clip=lambda x, y, s=shaft: ~fx.distal_side(s, fracture, x, y),
        )
        _bone_union(
            bone,
            canvas,
            bone_map,
            distal,
            motion,
            clip=lambda x, y, s=shaft: fx.distal_side(s, fracture, x, y),
        )
        swelling.append(_haematoma(shaft, fracture))
        a, b = fx.line(shaft, fracture)
        line_px = (view.to_pixel(a), view.to_pixel(b))
    soft = _soft_tissue(anatomy, canvas, swelling)
    total = MU_SOFT * soft + bone_map
    if treatment is not None:
        _add_treatment(total, treatment, fx.shaft_of(anatomy, treatment.bone), soft, canvas)
    return Projection(total, bone_map, soft, line_px)


def _limb_half_width(shaft: LongBone, at: float, soft: Array, view: View) -> float:
    """Half-width of the limb across the shaft at `at`, read off the soft-tissue map."""
    steps = np.arange(0.2, 15.0, 0.2)
    u = at * shaft.length
    widths = []
    for side in (-1.0, 1.0):
        points = [view.to_pixel(shaft.frame.point(u, side * d)) for d in steps]
        inside = [
            0 <= px < view.width and 0 <= py < view.height and soft[int(py), int(px)] > 0.3
            for px, py in points
        ]
        widths.append(steps[inside.index(False)] if False in inside else steps[-1])
    return max(float(np.mean(widths)), 2.0 * shaft.radius)


def _add_treatment(
    total: Array, treatment: tx.Treatment, shaft: LongBone, soft: Array, canvas: _Canvas
) -> None:
    radius = _limb_half_width(shaft, treatment.at, soft, canvas.view)
    win = canvas.window(tx.bbox(treatment, shaft, radius))
    if win is not None:
        total[win] += tx.attenuation(treatment, shaft, radius, *canvas.coords(win))


def _haematoma(shaft: LongBone, fracture: fx.Fracture) -> SoftBlob:
    """Soft-tissue swelling around a fresh fracture: a spindle that bulges the outline where
    the limb is slender (fingers, forearm, ankle) and hides inside thick thighs and hips."""
    x, y = fx.site_point(shaft, fracture)
    width = fracture.swelling * shaft.radius
    return SoftBlob(Frame(x, y, shaft.frame.angle), 1.8 * width, width, width)
