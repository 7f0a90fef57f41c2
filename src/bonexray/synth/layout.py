"""Where each file goes: the two clinics' folder layouts and file naming.

clinic_a: generic class-folder tree `[split/][region/]class/file`, merged from several
exports, so region folders are sometimes canonical, sometimes synonyms or capitalised,
sometimes missing or ambiguous, and class folder names differ between exports.
clinic_b: MURA, `XR_<REGION>/patient<5 digits>/study<n>_<positive|negative>/image<k>.png`.
"""

from __future__ import annotations

import numpy as np

from bonexray.synth.plan import Shot

SPLITS = ("train", "valid", "test")
SPLIT_WEIGHTS = (0.7, 0.2, 0.1)
CLASS_FOLDERS = {  # batch -> (fractured, not fractured); all listed in params.yaml sources
    "roboflow": ("fractured", "not_fractured"),
    "export": ("fracture", "normal"),
    "png": ("broken", "non_fractured"),
    "unsorted": ("fractured", "normal"),
    "mixed": ("fractured", "normal"),
}
# variant -> region folder names used in clinic_a; the first is the canonical region name
REGION_FOLDERS = {
    "hand": ("hand", "Hand", "palm"),
    "wrist": ("hand", "wrist", "Wrist", "carpus"),
    "forearm": ("hand", "forearm", "Forearm"),
    "elbow": ("elbow", "Elbow", "olecranon"),
    "humerus": ("elbow", "humerus", "upper_arm"),
    "shoulder": ("shoulder", "Shoulder", "clavicle", "glenohumeral"),
    "hip": ("hip", "Hip", "femoral_neck"),
    "pelvis": ("hip", "pelvis", "Pelvis", "acetabulum"),
    "knee": ("leg", "knee", "Knee"),
    "lower_leg": ("leg", "tibia", "lower_limb", "Leg"),
    "ankle": ("leg", "ankle", "Ankle", "foot"),
}
NO_REGION = ("unsorted", "", "train")  # ambiguous folder, nothing, or a split only
AMBIGUOUS = ("mixed", "other", "multiple")
MURA_FOLDERS = {
    "hand": ("XR_HAND",),
    "wrist": ("XR_WRIST",),
    "forearm": ("XR_FOREARM",),
    "elbow": ("XR_ELBOW",),
    "humerus": ("XR_HUMERUS",),
    "shoulder": ("XR_SHOULDER",),
    "hip": ("XR_HIP",),
    "pelvis": ("XR_PELVIS",),
    "knee": ("XR_KNEE",),
    "lower_leg": ("XR_TIBIA",),
    "ankle": ("XR_ANKLE", "XR_ANKLE", "XR_FOOT"),
}


class Namer:
    """Deterministic, collision-free relative paths (under the output directory)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.counters = {batch: int(rng.integers(100, 5000)) for batch in CLASS_FOLDERS}
        self.mura_folder: dict[str, str] = {}
        self.unsorted = 0

    def _claim(self, path: str) -> str:
        if path in self.used:
            raise RuntimeError(f"synthetic layout produced the same path twice: {path}")
        self.used.add(path)
        return path

    def _number(self, batch: str) -> int:
        self.counters[batch] += int(self.rng.integers(1, 4))  # exports skip numbers
        return self.counters[batch]

    def _choice(self, options) -> str:
        return str(options[int(self.rng.integers(len(options)))])

    def split(self, avoid: str | None = None) -> str:
        splits = [s for s in SPLITS if s != avoid]
        p = np.array([w for s, w in zip(SPLITS, SPLIT_WEIGHTS, strict=True) if s != avoid])
        return splits[int(self.rng.choice(len(splits), p=p / p.sum()))]

    def region_folder(self, shot: Shot, batch: str) -> str:
        names = REGION_FOLDERS[shot.variant]
        if batch == "roboflow" and self.rng.random() < 0.6:
            return names[0]
        if batch == "png":
            return self._choice([n for n in names if n.islower()])
        return self._choice(names)

    def clinic_a(
        self,
        shot: Shot,
        suffix: str,
        batch: str | None = None,
        split: str | None = None,
        stem: str | None = None,
    ) -> str:
        """A clinic_a path for `shot` in `batch` (default: its own)."""
        batch = batch or shot.batch or "export"
        cls = CLASS_FOLDERS[batch][0 if shot.fractured else 1]
        n = self._number(batch)
        if batch == "roboflow":
            stem = stem or f"IMG{n:07d}"
            token = f"{int(self.rng.integers(2**63)):016x}{int(self.rng.integers(2**63)):016x}"
            name = f"{stem}_{suffix.lstrip('.')}.rf.{token}{suffix}"
            parts = [split or self.split(), self.region_folder(shot, batch), cls, name]
        elif batch == "export":
            parts = [self.region_folder(shot, batch), cls, f"IMG_{n:05d}{suffix}"]
        elif batch == "png":
            folder = self.region_folder(shot, batch)
            parts = [folder, cls, f"{folder}_{n:04d}{suffix}"]
        elif batch == "unsorted":
            # cycle, so even a small sample has each kind of missing region
            parts = [NO_REGION[self.unsorted % len(NO_REGION)], cls, f"scan_{n:04d}{suffix}"]
            self.unsorted += 1
        else:
            parts = [self._choice(AMBIGUOUS), cls, f"xray_{n:04d}{suffix}"]
        return self._claim("/".join(["clinic_a", *[p for p in parts if p]]))

    def clinic_b(self, shot: Shot, view: int | None = None) -> str:
        """MURA path; the folder (XR_ANKLE or XR_FOOT...) is fixed per patient."""
        assert shot.patient is not None
        folder = self.mura_folder.setdefault(shot.patient, self._choice(MURA_FOLDERS[shot.variant]))
        outcome = "positive" if shot.fractured else "negative"
        name = f"image{view or shot.view}.png"
        return self._claim(f"clinic_b/{folder}/{shot.patient}/study{shot.study}_{outcome}/{name}")

    def copy_name(self, path: str) -> str:
        """The name a second copy gets beside the first: 'x.jpg' -> 'x (1).jpg'."""
        stem, dot, ext = path.rpartition(".")
        return self._claim(f"{stem} (1).{ext}" if dot else f"{path} (1)")
