"""`bonexray predict`: region and fracture of new images, with a trained model.

Every step is the pipeline's own code, so an image at prediction time goes through exactly
what the model was trained and evaluated on:

  working image   resize.load_working, the repair stage's function: imaging.decode (DICOM
                  modality and VOI LUTs, MONOCHROME1 inverted, multi-frame refused,
                  truncated rows zero-filled), then letterboxed to repair.image_size
  features        features.describe; a Keras model gets the band channels standardised
                  with the TRAIN statistics of artifacts/features/bands/meta.json, the
                  forest the vectors
  model           models.family.load: keras.saving.load_model(safe_mode=True) or the
                  skops forests, behind one interface
  calibration     the serving record evaluate wrote (serving.py): the temperatures and the
                  fracture threshold chosen on val, on the calibrated scale

Settings come from params.yaml (repair, decode, features, predict); they are checked
against what the artifacts were built with, so a params.yaml edited since the last
`dvc repro` is refused rather than silently mis-preprocessed.

Hook for explainers (e.g. `--explain DIR` with Grad-CAM): ``Predictor.run(paths,
on_batch=f)`` calls ``f(batch)`` with every PredictedBatch: the working images, the exact
arrays fed to ``Predictor.model`` (a models.interface.TwoHeadModel) and the output rows, so
an explainer recomputes nothing.
`overlay_writer` is the one `--explain DIR` uses.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from bonexray.data.imaging import Limits
from bonexray.data.resize import load_working
from bonexray.data.sources.base import is_sidecar, walk_files
from bonexray.errors import ConfigError
from bonexray.evaluation import serving
from bonexray.features.wavelet import BANDS_DIR, VECTORS_DIR, FeatureConfig, describe, standardise
from bonexray.io import shards
from bonexray.io.params import ParamsError, section
from bonexray.io.predictions import region_columns
from bonexray.models import family
from bonexray.models.interface import FAMILIES, Family, TwoHeadModel

# The pipeline's layout under the artifacts directory (dvc.yaml outs).
FEATURES_DIR = "features"
REPAIR_DIR = "repair"
TTA_MODES = ("none", "hflip")
FORMATS = ("csv", "json")
REPRO_HINT = "run `dvc repro` to build it, or `dvc pull` to fetch it from the DVC remote"
DECIMALS = 6


class ArtifactsError(ConfigError, RuntimeError):
    """What predict needs from the pipeline is missing, stale or unreadable (a usage error)."""


def output_columns(regions: Sequence[str]) -> list[str]:
    """The columns of predict's output table, in order (--explain adds ``explanation``)."""
    return ["path", "model", *region_columns(regions), "region", "p_fracture", "fracture", "error"]


class Input(NamedTuple):
    """One output row to be: an image path, or a path that is an error already."""

    path: str
    error: str | None = None


def expand_inputs(paths: Iterable[str | Path]) -> list[Input]:
    """Files as given; folders searched recursively in sorted order (a DICOM series folder
    gives one input per file), skipping sidecar files (.json, .csv, DICOMDIR, ...).

    A path that does not exist stays an input: decoding reports it as missing.
    """
    inputs = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            inputs.append(Input(str(given)))
            continue
        found = [Input(str(f)) for f in walk_files(path) if not is_sidecar(f)]
        inputs += found or [Input(str(given), "empty folder: no image files found in it")]
    return inputs


@dataclass(frozen=True)
class Preprocessing:
    """Image -> model input, as the repair and features stages computed it for training."""

    family: Family
    size: int  # repair.image_size
    keep_aspect: bool
    limits: Limits  # params.yaml decode: the guards census and repair applied
    features: FeatureConfig
    item_shape: tuple[int, ...]  # of one model input (bands or vector), from the shard meta
    mean: np.ndarray | None  # per-channel band standardisation (Keras models only)
    std: np.ndarray | None

    @classmethod
    def load(
        cls, params: Mapping[str, Any], artifacts_dir: str | Path, family: Family
    ) -> Preprocessing:
        """Settings from params.yaml, checked against the feature shards' meta.json."""
        repair = section(params, "repair")
        config = FeatureConfig.from_params(section(params, "features"))
        size, keep_aspect = int(repair["image_size"]), bool(repair["keep_aspect"])
        artifacts_dir = Path(artifacts_dir)
        features_dir = BANDS_DIR if family.features == "bands" else VECTORS_DIR
        meta_dir = artifacts_dir / FEATURES_DIR / features_dir
        meta = _shard_meta(meta_dir)
        # shard_size only packs the arrays; every other features key changes them.
        wanted = {f"features.{k}": v for k, v in asdict(config).items() if k != "shard_size"}
        built = {key: meta.get(key.removeprefix("features.")) for key in wanted}
        repair_dir = artifacts_dir / REPAIR_DIR
        if (repair_dir / shards.META).is_file():  # a served copy may ship without the images
            repair_meta = shards.read_meta(repair_dir)
            built |= {"repair.image_size": repair_meta.get("size")}
            built |= {"repair.keep_aspect": repair_meta.get("keep_aspect")}
            wanted |= {"repair.image_size": size, "repair.keep_aspect": keep_aspect}
        stale = [
            f"{key}: built with {built[key]!r}, params.yaml has {value!r}"
            for key, value in wanted.items()
            if built[key] != value
        ]
        if stale:
            raise ArtifactsError(
                f"{artifacts_dir} is stale for the params file ({'; '.join(stale)}); "
                "run `dvc repro` (or check out the params.yaml the artifacts were built with)"
            )
        prep = cls(
            family=family,
            size=size,
            keep_aspect=keep_aspect,
            limits=Limits.from_params(params),
            features=config,
            item_shape=tuple(meta["item_shape"]),
            mean=np.asarray(meta["mean"], np.float64) if family.features == "bands" else None,
            std=np.asarray(meta["std"], np.float64) if family.features == "bands" else None,
        )
        probe = prep.inputs(np.zeros((1, size, size), np.uint8))
        if probe.shape[1:] != prep.item_shape:  # e.g. repair.image_size changed since repro
            raise ArtifactsError(
                f"{meta_dir / shards.META}: the model was trained on inputs of shape "
                f"{prep.item_shape}, params.yaml gives {probe.shape[1:]}; run `dvc repro`"
            )
        return prep

    def inputs(self, working: np.ndarray) -> np.ndarray:
        """Model inputs of uint8 working images (n, size, size), as the features stage wrote
        them: standardised band channels (n, G, G, C) or vectors (n, D)."""
        channels, vectors = describe(working, self.features)
        if self.family.features == "vectors":
            return vectors
        return standardise(channels, self.mean, self.std)


def _shard_meta(directory: Path) -> dict:
    try:
        return shards.read_meta(directory)
    except FileNotFoundError as exc:
        raise ArtifactsError(f"{exc}; {REPRO_HINT}") from None


def load_model(record: serving.ServingRecord, artifacts_dir: str | Path) -> TwoHeadModel:
    """The trained model a serving record names."""
    try:
        directory = Path(artifacts_dir) / record.artifact
        return family.load(record.kind, directory, len(record.regions))
    except FileNotFoundError as exc:
        raise ArtifactsError(f"{exc}; {REPRO_HINT}") from None
    except ValueError as exc:  # unreadable or untrusted model file
        raise ArtifactsError(str(exc)) from None


@dataclass(frozen=True)
class PredictedBatch:
    """One model call's worth of images, as an explainer needs them.

    ``paths`` and ``rows`` (the output rows) cover every input of the batch, in order;
    ``ok`` marks those that decoded. ``working`` (n_ok, size, size) uint8 are their working
    images and ``inputs`` the exact arrays fed to the model (without TTA's mirror images),
    for the ok inputs only, in order.
    """

    paths: list[str]
    ok: np.ndarray
    working: np.ndarray
    inputs: np.ndarray
    rows: pd.DataFrame


class Predictor:
    """A loaded model with its serving record and preprocessing."""

    def __init__(
        self,
        record: serving.ServingRecord,
        model: Any,
        preprocessing: Preprocessing,
        tta: str = "none",
        batch_size: int = 32,
    ) -> None:
        if tta not in TTA_MODES:
            raise ParamsError(f"params.yaml predict.tta: {tta!r} is not one of {TTA_MODES}")
        if batch_size < 1:
            raise ParamsError(f"params.yaml predict.batch_size: must be >= 1, got {batch_size}")
        self.record = record
        self.model = model
        self.preprocessing = preprocessing
        self.tta = tta
        self.batch_size = batch_size
        self.columns = output_columns(record.regions)

    @classmethod
    def load(
        cls, artifacts_dir: str | Path, params: Mapping[str, Any], model: str | None = None
    ) -> Predictor:
        """The model ``model`` (default: evaluate's best on val) with everything it needs.

        Raises ArtifactsError (missing/stale artifacts), serving.ServingError (unknown model,
        broken record) or ParamsError: all usage errors, each naming the file.
        """
        serving_dir = Path(artifacts_dir) / serving.SERVING_DIR
        if not (serving_dir / serving.BEST_FILE).is_file():
            raise ArtifactsError(
                f"{serving_dir / serving.BEST_FILE}: not found (the evaluate stage writes the "
                f"serving records); {REPRO_HINT}"
            )
        record = serving.read(serving_dir, model)
        options = section(params, "predict")
        preprocessing = Preprocessing.load(params, artifacts_dir, FAMILIES[record.kind])
        predictor = cls(
            record,
            load_model(record, artifacts_dir),
            preprocessing,
            tta=str(options["tta"]),
            batch_size=int(options["batch_size"]),
        )
        predictor._check_model()
        return predictor

    def _check_model(self) -> None:
        """The model takes the inputs the preprocessing makes (a stale model would not)."""
        shape = self.preprocessing.item_shape
        expected = self.model.input_shape
        if expected != shape:
            raise ArtifactsError(
                f"{self.record.model}: the model takes inputs of shape {expected}, the feature "
                f"shards hold {shape}; run `dvc repro`"
            )

    def _heads(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict_heads(inputs, self.batch_size)

    def probabilities(
        self, working: np.ndarray, inputs: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (region (n, regions), fracture (n,)) of uint8 working images.

        With predict.tta "hflip" the model's probabilities of each image and its mirror image
        are averaged before calibration (the temperatures were fitted without TTA).
        """
        if inputs is None:
            inputs = self.preprocessing.inputs(working)
        region, fracture = self._heads(inputs)
        if self.tta == "hflip":
            mirrored = self.preprocessing.inputs(np.ascontiguousarray(working[:, :, ::-1]))
            region_m, fracture_m = self._heads(mirrored)
            region, fracture = (region + region_m) / 2, (fracture + fracture_m) / 2
        temperatures = self.record.temperatures
        return temperatures.region_proba(region), temperatures.fracture_proba(fracture)

    def predict_batch(self, batch: Sequence[Input]) -> PredictedBatch:
        """Decode, describe and predict one batch; a bad input gets a row with its error."""
        errors: list[str] = []
        images = []
        for item in batch:
            if item.error is not None:
                errors.append(item.error)
                continue
            working = load_working(
                item.path,
                self.preprocessing.size,
                self.preprocessing.keep_aspect,
                self.preprocessing.limits,
            )
            if working.pixels is None:
                errors.append(f"{working.status}: {working.reason}")
                continue
            if working.status == "truncated":  # usable, as repair keeps it; worth saying
                note = f"bonexray predict: note: {item.path}: {working.reason}"
                tqdm.write(note, file=sys.stderr)
            errors.append("")
            images.append(working.pixels)
        ok = np.array([e == "" for e in errors], dtype=bool)
        size = self.preprocessing.size
        working = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
        inputs = self.preprocessing.inputs(working) if images else np.zeros((0, 0), np.float32)
        rows = pd.DataFrame(
            {"path": [item.path for item in batch], "model": self.record.model}, dtype=object
        )
        columns = region_columns(self.record.regions)
        for column in [*columns, "p_fracture"]:
            rows[column] = np.nan
        rows["region"] = pd.Series([None] * len(batch), dtype=object)
        rows["fracture"] = pd.array([pd.NA] * len(batch), dtype="Int8")
        rows["error"] = errors
        if images:
            region, fracture = self.probabilities(working, inputs)
            rows.loc[ok, columns] = region
            rows.loc[ok, "p_fracture"] = fracture
            rows.loc[ok, "region"] = np.asarray(self.record.regions, dtype=object)[
                region.argmax(axis=1)
            ]
            # The metrics module's convention: positive when p >= threshold.
            rows.loc[ok, "fracture"] = (fracture >= self.record.threshold).astype(np.int8)
        return PredictedBatch(
            paths=[item.path for item in batch],
            ok=ok,
            working=working,
            inputs=inputs,
            rows=rows[self.columns],
        )

    def run(
        self,
        paths: Iterable[str | Path],
        on_batch: Callable[[PredictedBatch], None] | None = None,
    ) -> pd.DataFrame:
        """One row per input image (folders expanded), in order; progress on stderr."""
        inputs = expand_inputs(paths)
        frames = []
        with tqdm(
            total=len(inputs), desc="predict", unit="img", file=sys.stderr, disable=None
        ) as progress:
            for start in range(0, len(inputs), self.batch_size):
                batch = self.predict_batch(inputs[start : start + self.batch_size])
                for path, error in zip(batch.paths, batch.rows["error"], strict=True):
                    if error:
                        tqdm.write(f"bonexray predict: {path}: {error}", file=sys.stderr)
                if on_batch is not None:
                    on_batch(batch)
                frames.append(batch.rows)
                progress.update(len(batch.paths))
        if not frames:
            return pd.DataFrame(columns=self.columns)
        return pd.concat(frames, ignore_index=True)


def overlay_writer(predictor: Predictor, out_dir: str | Path) -> Callable[[PredictedBatch], None]:
    """An on_batch hook: each predicted image's fracture Grad-CAM overlay as a PNG in
    ``out_dir``, its path in the row's ``explanation`` column (empty for failed inputs).

    Files are numbered in input order (``00000_<stem>.png``): two inputs may share a name.
    The map explains the model's score of the image itself (not of TTA's mirror image).
    """
    from bonexray.explain import gradcam

    if not predictor.model.family.explainable:
        raise ArtifactsError(
            f"{predictor.record.model}: --explain needs a Keras model (Grad-CAM); "
            f"the forest has no feature map to explain"
        )
    out_dir = Path(out_dir)
    seen = 0

    def write(batch: PredictedBatch) -> None:
        nonlocal seen
        batch.rows["explanation"] = ""
        if batch.ok.any():
            maps = gradcam.explain(predictor.model.network, batch.inputs)
            for k, row in enumerate(np.flatnonzero(batch.ok)):
                path = out_dir / f"{seen + row:05d}_{Path(batch.paths[row]).stem}.png"
                gradcam.save_overlay(path, batch.working[k], maps[k])
                batch.rows.loc[row, "explanation"] = str(path)
        seen += len(batch.paths)

    return write


def format_output(frame: pd.DataFrame, fmt: str) -> str:
    """The prediction table as CSV or JSON (a list of row objects; missing values null)."""
    if fmt not in FORMATS:
        raise ValueError(f"output format must be one of {FORMATS}, got {fmt!r}")
    frame = frame.copy()
    probabilities = [c for c in frame.columns if c.startswith("p_")]
    frame[probabilities] = frame[probabilities].astype(float).round(DECIMALS)
    if fmt == "json":
        return frame.to_json(orient="records", indent=2) + "\n"
    out = io.StringIO()
    frame.to_csv(out, index=False, lineterminator="\n")
    return out.getvalue()
