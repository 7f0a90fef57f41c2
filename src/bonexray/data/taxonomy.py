"""Region taxonomy: canonical region names and their synonyms, read from params.yaml.

This is the only place that maps raw region strings (folder names, CSV flags, DICOM
BodyPartExamined, MURA's XR_* study types) to the canonical regions used everywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bonexray.io.params import ParamsError

LabelSource = Literal["original", "synonym", "ambiguous", "missing", "unknown"]


def normalise_token(raw: str) -> str:
    """'XR_WRIST' -> 'wrist', 'Fore-Arm ' -> 'fore_arm'."""
    token = re.sub(r"[^a-z0-9]+", "_", raw.strip().lower()).strip("_")
    return token.removeprefix("xr_")


@dataclass(frozen=True)
class Taxonomy:
    """Canonical regions (ordered: the class index of the region head) and synonyms."""

    regions: tuple[str, ...]
    synonyms: Mapping[str, str]  # normalised token -> canonical region
    ambiguous: frozenset[str]

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Taxonomy:
        tax = params["taxonomy"]
        regions = tuple(tax["regions"])
        synonyms: dict[str, str] = {}
        for region in regions:
            for word in [region, *tax.get("synonyms", {}).get(region, [])]:
                token = normalise_token(word)
                if synonyms.get(token, region) != region:
                    raise ParamsError(
                        f"params.yaml taxonomy: '{word}' is a synonym of both "
                        f"'{synonyms[token]}' and '{region}'"
                    )
                synonyms[token] = region
        unknown = set(tax.get("synonyms", {})) - set(regions)
        if unknown:
            raise ParamsError(
                f"params.yaml taxonomy: synonyms for undeclared regions {sorted(unknown)}"
            )
        ambiguous = frozenset(normalise_token(w) for w in tax.get("ambiguous", []))
        return cls(regions=regions, synonyms=synonyms, ambiguous=ambiguous)

    def index(self, region: str) -> int:
        return self.regions.index(region)

    def resolve(self, raw: str | None) -> tuple[str | None, LabelSource]:
        """Map a raw region string to (canonical region or None, how it was resolved)."""
        if raw is None or (isinstance(raw, float) and raw != raw) or not str(raw).strip():
            return None, "missing"
        token = normalise_token(str(raw))
        if token in self.regions:
            return token, "original"
        if token in self.synonyms:
            return self.synonyms[token], "synonym"
        if token in self.ambiguous:
            return None, "ambiguous"
        return None, "unknown"
