"""Serving records: what `bonexray predict` needs to know about each trained model.

The evaluate stage writes ``artifacts/serving/``:

    <model>.json   one ServingRecord per model: kind, model directory, regions in head order,
                   temperatures, fracture threshold and how it was chosen, test summary;
                   the ensemble's (kind "ensemble") names its members instead of a directory
                   and is not calibrated itself (predict applies each member's record)
    best.json      {"model": <name>, ...}: the model with the best VALIDATION selection score

Each record also carries the out-of-distribution reference (ood.py) fitted on the train and
val working images, for predict's quality gate.

They are the single source of these decisions for predict, which never refits or re-chooses
anything. Artifact paths are relative to the artifacts directory (``artifacts/``), so a
copy of that directory serves as well as the original.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bonexray.errors import ConfigError
from bonexray.evaluation.calibration import Temperatures
from bonexray.io import jsonfile
from bonexray.models.interface import ENSEMBLE, FAMILIES

SERVING_DIR = "serving"  # under the artifacts directory
MODELS_DIR = "models"  # the training stages' outputs, artifacts/models/<model>
BEST_FILE = "best.json"


class ServingError(ConfigError):
    """A serving record is missing or malformed; the message names the file."""


def model_artifact(model: str) -> str:
    """The directory a model's training stage writes, relative to the artifacts directory.

    What lies inside is the loader's business (models/family.py), so this record does not
    change with it.
    """
    return f"{MODELS_DIR}/{model}"


@dataclass(frozen=True)
class ServingRecord:
    model: str
    kind: str  # a models.interface.FAMILIES key
    artifact: str | None  # the model's directory, relative to the artifacts directory
    regions: tuple[str, ...]  # the region head's classes, in output order
    calibration: str  # calibration.METHODS
    temperatures: Temperatures
    threshold: float  # p_fracture >= threshold (calibrated scale) -> fractured
    operating_point: str  # how threshold was chosen on val: youden | sensitivity
    target_sensitivity: float | None  # for operating_point "sensitivity"
    val_sensitivity: float | None  # on val, at threshold (None: val lacked a class)
    val_specificity: float | None
    test: Mapping[str, Any] = field(default_factory=dict)  # summary of the test metrics
    # ood.Reference.to_dict(): the train statistics and val threshold predict's quality gate
    # scores new images with (the same for every model; None in records written before it)
    ood: Mapping[str, Any] | None = None
    members: tuple[str, ...] = ()  # the ensemble's models (kind "ensemble"; artifact None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["regions"] = list(self.regions)
        data["members"] = list(self.members)
        data["temperatures"] = self.temperatures.to_dict()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServingRecord:
        values = dict(data)
        values["regions"] = tuple(values["regions"])
        values["members"] = tuple(values.get("members", ()))  # records before the ensemble
        values["temperatures"] = Temperatures.from_dict(values["temperatures"])
        return cls(**values)


def write(records: Mapping[str, ServingRecord], best: str, directory: str | Path) -> None:
    """Replace ``directory`` with one JSON per record plus best.json."""
    if best not in records:
        raise ValueError(f"best model {best!r} has no serving record")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.json"):  # no record of a model removed from params.yaml
        stale.unlink()
    for name, record in records.items():
        jsonfile.write(directory / f"{name}.json", record.to_json())
    jsonfile.write(
        directory / BEST_FILE,
        {
            "model": best,
            "chosen_on": "val",
            "criterion": "mean of val region macro-F1 and val fracture AUROC",
            "models": sorted(records),
        },
    )


def available(directory: str | Path) -> list[str]:
    """Names of the models that have a record in ``directory``."""
    return sorted(p.stem for p in Path(directory).glob("*.json") if p.name != BEST_FILE)


def best_model(directory: str | Path) -> str:
    return str(_read_json(Path(directory) / BEST_FILE)["model"])


def read(directory: str | Path, model: str | None = None) -> ServingRecord:
    """The record of ``model`` (default: the best one) from a serving directory."""
    directory = Path(directory)
    name = model or best_model(directory)
    path = directory / f"{name}.json"
    if not path.is_file() and (directory / BEST_FILE).is_file():
        raise ServingError(
            f"{path}: no serving record for model {name!r}; "
            f"known models: {', '.join(available(directory)) or 'none'}"
        )
    data = _read_json(path)
    try:
        record = ServingRecord.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ServingError(f"{path}: not a serving record ({type(exc).__name__}: {exc})") from None
    if record.kind not in FAMILIES:
        raise ServingError(f"{path}: kind {record.kind!r} is not one of {tuple(FAMILIES)}")
    if (FAMILIES[record.kind] is ENSEMBLE) != bool(record.members):
        raise ServingError(f"{path}: members are given for, and only for, kind 'ensemble'")
    return record


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ServingError(f"{path}: not found") from None
    except (OSError, ValueError) as exc:
        raise ServingError(f"{path}: unreadable ({exc})") from None
