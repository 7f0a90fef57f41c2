"""Detector physics and image processing: from attenuation line integrals to a picture.

Per pixel the detector sees I = I0 * exp(-sum mu_i t_i) quanta (I0 varies across the field
by the anode heel effect), plus scatter (a blurred fraction of the primary that grows with
patient thickness). Quanta are Poisson-distributed; the scintillator spreads light (Gaussian
blur), the electronics add Gaussian read noise. Lead shutters collimate the beam and a lead
side marker ("L"/"R") lies on the detector. Processing takes the log (so bone is bright),
windows it on the collimated field, applies a tone curve and sometimes edge enhancement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bonexray.synth.geometry import Array

_GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}
SHUTTER_MU_T = 4.5  # lead shutter: about 1 % of the beam passes
MARKER_MU_T = 3.5
DIRECT_EXPOSURE = 0.3  # log attenuation below this is air or skin edge, not body


@dataclass(frozen=True)
class Exposure:
    photons: float  # quanta per pixel behind the body (automatic exposure control)
    heel: float  # relative change of I0 across the image
    heel_angle: float
    scatter: float  # scatter-to-primary ratio per 10 cm of soft tissue
    blur: float  # scintillator spread, sigma in px
    read_noise: float  # quanta
    shutters: tuple[float, float, float, float]  # top, bottom, left, right (fraction of side)
    shutter_angle: float
    black_border: bool  # processing masks the shuttered border black (else it stays white)
    marker: str | None
    marker_corner: int
    gamma: float
    compress: float  # dynamic range compression: fraction of the large-scale trend removed
    enhance: float  # unsharp-mask strength (0: none)
    enhance_sigma: float  # px
    window_low: float  # percentile of the body taken as (nearly) black
    window_floor: float  # fraction of that percentile where black starts (air is below)
    window_high: float  # percentile of the field taken as white


def sample_exposure(rng: np.random.Generator, thick: bool) -> Exposure:
    """A technique and processing chain; `thick` body parts are noisier."""
    collimated = rng.random() < 0.7
    shutters = tuple(float(x) for x in rng.uniform(0.0, 0.12, 4) * collimated)
    return Exposure(
        photons=float(rng.uniform(150, 500) if thick else rng.uniform(250, 1200)),
        heel=float(rng.uniform(-0.15, 0.15)),
        heel_angle=float(rng.uniform(0, 2 * np.pi)),
        scatter=float(rng.uniform(0.1, 0.3)),
        blur=float(rng.uniform(0.6, 1.3)),
        read_noise=float(rng.uniform(0.5, 3.0)),
        shutters=shutters,  # type: ignore[arg-type]
        shutter_angle=float(rng.normal(0.0, np.deg2rad(1.5))),
        black_border=bool(rng.random() < 0.4),
        marker=str(rng.choice(["L", "R"])) if rng.random() < 0.75 else None,
        marker_corner=int(rng.integers(4)),
        gamma=float(rng.uniform(0.8, 1.35)),
        compress=float(rng.uniform(0.3, 0.7) if thick else rng.uniform(0.0, 0.4)),
        enhance=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.5 else 0.0,
        enhance_sigma=float(rng.uniform(2.0, 6.0)),
        window_low=float(rng.uniform(0.2, 3.0)),
        window_floor=float(rng.uniform(0.4, 0.9)),
        window_high=float(rng.uniform(99.3, 99.9)),
    )


def field_mask(shape: tuple[int, int], exposure: Exposure) -> Array:
    """True inside the collimated (exposed) field."""
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(exposure.shutter_angle), np.sin(exposure.shutter_angle)
    u = c * (cols - w / 2) + s * (rows - h / 2) + w / 2
    v = -s * (cols - w / 2) + c * (rows - h / 2) + h / 2
    top, bottom, left, right = exposure.shutters
    return (v >= top * h) & (v < (1 - bottom) * h) & (u >= left * w) & (u < (1 - right) * w)


def _marker(shape: tuple[int, int], inside: Array, exposure: Exposure) -> Array:
    """Lead side marker in a plastic holder, near a corner of the exposed field."""
    out = np.zeros(shape, np.float32)
    if exposure.marker is None:
        return out
    h, w = shape
    k = max(2, round(min(h, w) * 0.012))
    glyph = np.array([[ch == "1" for ch in row] for row in _GLYPHS[exposure.marker]])
    glyph = np.kron(glyph, np.ones((k, k), bool))
    pad = k
    box = np.pad(glyph, pad).astype(np.float32) * MARKER_MU_T + 0.25
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    margin = 3 * k
    top = exposure.marker_corner < 2
    left = exposure.marker_corner % 2 == 0
    r0 = rows[0] + margin if top else rows[-1] - margin - box.shape[0]
    c0 = cols[0] + margin if left else cols[-1] - margin - box.shape[1]
    r0, c0 = int(np.clip(r0, 0, h - box.shape[0])), int(np.clip(c0, 0, w - box.shape[1]))
    out[r0 : r0 + box.shape[0], c0 : c0 + box.shape[1]] = box
    return out


def _lowpass(image: Array, factor: int = 8, sigma: float = 2.5) -> Array:
    """Very wide blur, cheaply: block means, blur, interpolate back."""
    h, w = image.shape
    hh, ww = -(-h // factor), -(-w // factor)
    padded = np.pad(image, ((0, hh * factor - h), (0, ww * factor - w)), mode="edge")
    small = padded.reshape(hh, factor, ww, factor).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma, mode="nearest")
    return ndimage.zoom(small, (h / hh, w / ww), order=1, mode="nearest", grid_mode=True)[:h, :w]


def detect(
    total: Array, soft_cm: Array, exposure: Exposure, rng: np.random.Generator
) -> tuple[Array, Array, Array]:
    """Detected signal (float, quanta), open-beam I0 map, and the exposed-field mask."""
    shape = total.shape
    inside = field_mask(shape, exposure)
    attenuation = total + np.where(inside, 0.0, SHUTTER_MU_T) + _marker(shape, inside, exposure)
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (
        (cols - w / 2) * np.cos(exposure.heel_angle) + (rows - h / 2) * np.sin(exposure.heel_angle)
    ) / max(h, w)
    # Automatic exposure control: the tube output is set so the typical ray through the body
    # delivers `photons` quanta; thick parts get a longer exposure, not a noisier image.
    body = inside & (soft_cm > 1.0)
    typical = float(np.median(total[body])) if body.any() else 0.0
    open_beam = exposure.photons * np.exp(typical) * (1.0 + exposure.heel * ramp)
    primary = open_beam * np.exp(-attenuation)
    mean_soft = float(soft_cm[inside].mean()) if inside.any() else 0.0
    scatter = exposure.scatter * (mean_soft / 10.0) * _lowpass(primary * inside)
    quanta = rng.poisson(primary + scatter).astype(np.float32)
    signal = ndimage.gaussian_filter(quanta, exposure.blur, mode="nearest")
    signal += rng.normal(0.0, exposure.read_noise, shape).astype(np.float32)
    return signal, open_beam.astype(np.float32), inside


def process(signal: Array, open_beam: Array, inside: Array, exposure: Exposure) -> Array:
    """Log transform, window on the exposed field, tone curve: float image in [0, 1].

    Like a vendor's processing, large-scale trends (body thickness) are partly removed
    (dynamic range compression) and the window ignores direct exposure (air), so thick body
    parts keep their bone contrast.
    """
    log_att = np.log(open_beam / np.maximum(signal, 0.5))
    if exposure.compress > 0:
        trend = _lowpass(np.where(inside, log_att, 0.0))
        log_att = log_att - exposure.compress * np.where(log_att > DIRECT_EXPOSURE, trend, 0.0)
    values = log_att[inside] if inside.sum() > 64 else log_att.ravel()
    body = values[values > DIRECT_EXPOSURE]
    hi = np.percentile(values, exposure.window_high)
    lo = 0.0
    if body.size > 64:
        lo = exposure.window_floor * float(np.percentile(body, exposure.window_low))
    image = np.clip((log_att - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** exposure.gamma
    if exposure.enhance > 0:
        detail = image - ndimage.gaussian_filter(image, exposure.enhance_sigma, mode="nearest")
        image = np.clip(image + exposure.enhance * detail, 0.0, 1.0)
    if exposure.black_border:
        image = np.where(inside, image, 0.0)
    return image.astype(np.float32)
