"""predict's quality gate: which decoded images get no confident call.

An image the models were never trained on still gets probabilities, often confident ones
(an all-white image called "hip, fractured"). Each check below flags such an input; a
flagged image's row keeps the model's probabilities but its decision is "withheld" (no
region or fracture call), and the row says which checks failed and why:

  constant             the image content (letterbox padding left out) has a std below
                       predict.min_contrast: blank, all-black, all-white, a flat field
  extreme_geometry     long/short side above predict.max_aspect, or a short side below
                       predict.min_side pixels: a strip, a thumbnail
  colour_photo         imaging.Decoded.colourfulness above predict.max_colourfulness
  out_of_distribution  ood.Reference.score (max |z| of intensity statistics against the
                       train split) above the threshold evaluate chose on val

Files that do not decode at all (imaging statuses outside USABLE, among them the decoder's
own "blank" and "bad_geometry") never reach the gate: their rows have no prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from bonexray.data.resize import Working, content_box
from bonexray.evaluation import ood
from bonexray.io.params import ParamsError

CHECKS = ("constant", "extreme_geometry", "colour_photo", "out_of_distribution")
KEYS = ("max_colourfulness", "min_contrast", "max_aspect", "min_side")


class Assessment(NamedTuple):
    flags: tuple[str, ...]  # CHECKS that failed, in CHECKS order; empty: passed
    reasons: tuple[str, ...]  # one per flag, with the measured value and the limit
    ood_score: float | None  # None without a reference (a serving record older than it)


@dataclass(frozen=True)
class Gate:
    max_colourfulness: float
    min_contrast: float
    max_aspect: float
    min_side: int
    size: int  # repair.image_size: the working images'
    keep_aspect: bool
    reference: ood.Reference | None

    @classmethod
    def from_params(
        cls,
        options: Mapping[str, Any],
        size: int,
        keep_aspect: bool,
        reference: ood.Reference | None,
    ) -> Gate:
        """The thresholds of params.yaml predict; the reference from the serving record."""
        missing = [key for key in KEYS if key not in options]
        if missing:
            raise ParamsError(f"params.yaml predict: missing {', '.join(missing)}")
        gate = cls(
            max_colourfulness=float(options["max_colourfulness"]),
            min_contrast=float(options["min_contrast"]),
            max_aspect=float(options["max_aspect"]),
            min_side=int(options["min_side"]),
            size=size,
            keep_aspect=keep_aspect,
            reference=reference,
        )
        if gate.max_aspect < 1 or gate.min_side < 1 or gate.min_contrast < 0:
            raise ParamsError(
                "params.yaml predict: max_aspect and min_side must be >= 1 and min_contrast "
                f">= 0, got {gate.max_aspect}, {gate.min_side}, {gate.min_contrast}"
            )
        return gate

    def assess(self, working: Working) -> Assessment:
        """Flags of one usable working image (working.pixels is not None)."""
        box = content_box(working.width, working.height, self.size, self.keep_aspect)
        stats = ood.statistics(working.pixels, box)
        found: list[tuple[str, str]] = []
        contrast = float(stats[ood.FEATURES.index("std")])
        if contrast < self.min_contrast:
            found.append(("constant", f"content std {contrast:.4f} < {self.min_contrast}"))
        if working.width and working.height:
            short, long = sorted((working.width, working.height))
            if long / short > self.max_aspect or short < self.min_side:
                found.append(
                    (
                        "extreme_geometry",
                        f"{working.width}x{working.height} (aspect {long / short:.1f}, limits "
                        f"{self.max_aspect} and short side >= {self.min_side})",
                    )
                )
        colour = working.colourfulness
        if colour is not None and colour > self.max_colourfulness:
            found.append(("colour_photo", f"colourfulness {colour:.1f} > {self.max_colourfulness}"))
        score = None
        if self.reference is not None:
            score = float(self.reference.score(stats))
            if not np.isfinite(score) or score > self.reference.threshold:
                found.append(
                    (
                        "out_of_distribution",
                        f"ood score {score:.2f} > {self.reference.threshold:.2f}",
                    )
                )
        return Assessment(tuple(f for f, _ in found), tuple(r for _, r in found), score)
