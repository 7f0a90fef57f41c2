"""2-D placement (rigid frames, affine maps) and analytic projected thicknesses.

Every solid is three-dimensional with its long axes in the detector plane; a parallel X-ray
beam crosses it along the depth axis, so the path length through it at a detector point is a
chord length with a closed form: 2*sqrt(R^2 - d^2) for a cylinder or sphere-swept segment
(d = in-plane distance to its axis), 2*c*sqrt(1 - (u/a)^2 - (v/b)^2) for an ellipsoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray


def rotation(angle: float) -> Array:
    """3x3 homogeneous rotation by `angle` radians (x right, y down: clockwise on screen)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def translation(dx: float, dy: float) -> Array:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float) -> Array:
    return np.diag([sx, sy, 1.0])


def apply(matrix: Array, x: Array, y: Array) -> tuple[Array, Array]:
    """Map coordinate arrays through a 3x3 affine matrix."""
    m = matrix
    return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]


@dataclass(frozen=True)
class Frame:
    """A rigid local frame: origin (x, y) and the direction `angle` of its u axis."""

    x: float
    y: float
    angle: float

    @classmethod
    def between(cls, start: tuple[float, float], end: tuple[float, float]) -> tuple[Frame, float]:
        """Frame at `start` with u pointing to `end`, and the distance between them."""
        dx, dy = end[0] - start[0], end[1] - start[1]
        return cls(start[0], start[1], float(np.arctan2(dy, dx))), float(np.hypot(dx, dy))

    def local_to_world(self) -> Array:
        return translation(self.x, self.y) @ rotation(self.angle)

    def world_to_local(self) -> Array:
        return rotation(-self.angle) @ translation(-self.x, -self.y)

    def point(self, u: float, v: float = 0.0) -> tuple[float, float]:
        """World coordinates of the local point (u, v)."""
        px, py = apply(self.local_to_world(), np.float64(u), np.float64(v))
        return float(px), float(py)


def chord(radius: Array | float, distance: Array) -> Array:
    """Path length through a circular cross-section of `radius` at in-plane `distance`."""
    return 2.0 * np.sqrt(np.maximum(np.square(radius) - np.square(distance), 0.0))


def segment_distance(u: Array, v: Array, length: float) -> tuple[Array, Array]:
    """Distance from local points to the segment [0, length] on the u axis, and clipped u."""
    uc = np.clip(u, 0.0, length)
    return np.hypot(u - uc, v), uc


def ellipsoid_chord(u: Array, v: Array, a: float, b: float, c: float) -> Array:
    """Path length through an ellipsoid with in-plane semi-axes a (u), b (v), depth c."""
    q = 1.0 - np.square(u / a) - np.square(v / b)
    return 2.0 * c * np.sqrt(np.maximum(q, 0.0))


def smoothstep(edge0: float, edge1: float, x: Array) -> Array:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
