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
  quality gate    quality.py: blank, extreme-geometry, colour-photo or out-of-distribution
                  images are "withheld" (probabilities kept, no region/fracture call)

The ensemble (``--model ensemble``, kind "ensemble") loads each member through its own
serving record as above; each member computes its inputs from the working image with its
family's preprocessing, applies predict.tta and its calibration, and the ensemble is the
mean of those (evaluation.ensemble.combine, as evaluate computed it), thresholded and gated
with the ensemble's own record. The members share one ``Described`` batch: the wavelet
transform runs once per batch (once more for TTA's mirror images), not once per member.

Rows stream out batch by batch (``Predictor.stream``, ``TableWriter``): an input that makes
decoding, describing or the model raise gets a row with status "error" and the run goes on
(a failed model call is retried image by image). Paths in rows are in display form
(io.names.display); files are opened with the original str.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np
import pandas as pd
from tqdm import tqdm

from bonexray.data.imaging import Limits
from bonexray.data.resize import Working, load_working
from bonexray.data.sources.base import is_sidecar, walk_files
from bonexray.errors import ConfigError
from bonexray.evaluation import ensemble, ood, serving
from bonexray.features.wavelet import BANDS_DIR, VECTORS_DIR, FeatureConfig, describe, standardise
from bonexray.inference.quality import Assessment, Gate
from bonexray.io import shards
from bonexray.io.names import display
from bonexray.io.params import ParamsError, section
from bonexray.io.predictions import region_columns
from bonexray.models import family
from bonexray.models.interface import ENSEMBLE, FAMILIES, FOREST, Family, TwoHeadModel

# The pipeline's layout under the artifacts directory (dvc.yaml outs).
FEATURES_DIR = "features"
REPAIR_DIR = "repair"
TTA_MODES = ("none", "hflip")
FORMATS = ("csv", "jsonl", "json")  # json: one array, closed when the run ends
REPRO_HINT = "run `dvc repro` to build it, or `dvc pull` to fetch it from the DVC remote"
DECIMALS = 6
EMPTY_FOLDER = "empty folder"  # the status of a folder input without image files


class ArtifactsError(ConfigError, RuntimeError):
    """What predict needs from the pipeline is missing, stale or unreadable (a usage error)."""


# Added after the original columns, which stay as they were.
QUALITY_COLUMNS = ["status", "decision", "quality", "reason", "ood_score", "colourfulness"]
DECISIONS = ("called", "withheld", "failed")


def output_columns(regions: Sequence[str]) -> list[str]:
    """The columns of predict's output table, in order (--explain adds ``explanation``)."""
    return [
        "path",
        "model",
        *region_columns(regions),
        "region",
        "p_fracture",
        "fracture",
        "error",
        *QUALITY_COLUMNS,
    ]


class Input(NamedTuple):
    """One output row to be: an image path, or a path that is an error already."""

    path: str
    error: str | None = None  # the row's reason; its status is EMPTY_FOLDER


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
        inputs += found or [Input(str(given), "no image files found in it")]
    return inputs


@dataclass
class Described:
    """A batch of uint8 working images (n, size, size) and their features.describe output,
    computed on first use and kept, for the images and for their mirror images (TTA):
    what several models of one pipeline share (the ensemble's members read the same
    features stage)."""

    working: np.ndarray
    config: FeatureConfig
    _described: dict[bool, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def features(self, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(band channels, vectors) of the images, or of their left-right mirror images."""
        if mirrored not in self._described:
            images = np.ascontiguousarray(self.working[:, :, ::-1]) if mirrored else self.working
            self._described[mirrored] = describe(images, self.config)
        return self._described[mirrored]


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

    def inputs(
        self, working: np.ndarray, described: Described | None = None, mirrored: bool = False
    ) -> np.ndarray:
        """Model inputs of uint8 working images (n, size, size), as the features stage wrote
        them: standardised band channels (n, G, G, C) or vectors (n, D); for the ensemble
        the working images themselves (each member describes them its own way).

        ``described``: the same images described already (shared, not recomputed);
        ``mirrored``: the inputs of their left-right mirror images instead.
        """
        if self.family is ENSEMBLE:  # its Predictor has no TTA of its own: never mirrored
            return working
        if described is None:
            described = Described(working, self.features)
        channels, vectors = described.features(mirrored)
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


class EnsembleModel:
    """The ensemble as a TwoHeadModel over working images: the mean of its members'
    calibrated probabilities, each member with its own preprocessing, TTA and calibration
    (Predictor.probabilities)."""

    family = ENSEMBLE

    def __init__(self, members: Sequence[Predictor]) -> None:
        self.members = list(members)
        size = self.members[0].preprocessing.size
        self.input_shape = (size, size)
        self.network = {member.record.model: member.model for member in self.members}

    def predict_heads(
        self, inputs: np.ndarray, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        # Each member batches as its own Predictor does (predict.batch_size); all of them
        # read one features stage (Preprocessing.load checked each), so one description.
        described = Described(inputs, self.members[0].preprocessing.features)
        outputs = [member.probabilities(inputs, described=described) for member in self.members]
        return ensemble.combine([r for r, _ in outputs], [f for _, f in outputs])


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
        gate: Gate | None = None,
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
        self.gate = gate  # None: every decoded image is called
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
        tta = str(options["tta"])
        if FAMILIES[record.kind] is ENSEMBLE:
            members = [cls.load(artifacts_dir, params, member) for member in record.members]
            loaded: TwoHeadModel = EnsembleModel(members)
            first = members[0].preprocessing
            preprocessing = replace(
                first, family=ENSEMBLE, item_shape=loaded.input_shape, mean=None, std=None
            )
            tta = "none"  # done by each member, before its calibration, as for a model alone
        else:
            preprocessing = Preprocessing.load(params, artifacts_dir, FAMILIES[record.kind])
            loaded = load_model(record, artifacts_dir)
        try:
            reference = None if record.ood is None else ood.Reference.from_dict(record.ood)
        except (KeyError, TypeError, ValueError) as exc:
            raise serving.ServingError(
                f"{serving_dir}/{record.model}.json: ood reference unreadable ({exc}); "
                "run `dvc repro`"
            ) from None
        if reference is None:
            tqdm.write(
                f"bonexray predict: note: {serving_dir}/{record.model}.json has no "
                "out-of-distribution reference (written before it existed; `dvc repro` "
                "adds it): that check is skipped",
                file=sys.stderr,
            )
        gate = Gate.from_params(options, preprocessing.size, preprocessing.keep_aspect, reference)
        predictor = cls(
            record,
            loaded,
            preprocessing,
            tta=tta,
            batch_size=int(options["batch_size"]),
            gate=gate,
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
        self,
        working: np.ndarray,
        inputs: np.ndarray | None = None,
        described: Described | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (region (n, regions), fracture (n,)) of uint8 working images.

        ``inputs``: the model inputs of ``working`` computed already; ``described``: their
        shared description (Described), used for whatever is not given.
        With predict.tta "hflip" the model's probabilities of each image and its mirror image
        are averaged before calibration (the temperatures were fitted without TTA).
        """
        if described is None:  # nothing is described until an input needs it
            described = Described(working, self.preprocessing.features)
        if inputs is None:
            inputs = self.preprocessing.inputs(working, described)
        region, fracture = self._heads(inputs)
        if self.tta == "hflip":
            mirrored = self.preprocessing.inputs(working, described, mirrored=True)
            region_m, fracture_m = self._heads(mirrored)
            region, fracture = (region + region_m) / 2, (fracture + fracture_m) / 2
        temperatures = self.record.temperatures
        return temperatures.region_proba(region), temperatures.fracture_proba(fracture)

    def _load(self, item: Input) -> Working:
        working = load_working(
            item.path,
            self.preprocessing.size,
            self.preprocessing.keep_aspect,
            self.preprocessing.limits,
        )
        if working.status == "truncated":  # usable, as repair keeps it; worth saying
            note = f"bonexray predict: note: {display(item.path)}: {working.reason}"
            tqdm.write(note, file=sys.stderr)
        return working

    def predict_batch(self, batch: Sequence[Input]) -> PredictedBatch:
        """Decode, describe, gate and predict one batch. A bad input gets a row saying why;
        an exception while handling one input fails that input's row only."""
        rows = [_Row(display(item.path)) for item in batch]
        loaded: dict[int, Working] = {}
        for k, item in enumerate(batch):
            if item.error is not None:
                rows[k].fail(EMPTY_FOLDER, item.error)
                continue
            try:
                working = self._load(item)
                if working.pixels is None:
                    rows[k].fail(working.status, working.reason)
                    continue
                rows[k].status, rows[k].colourfulness = working.status, working.colourfulness
                if self.gate is not None:
                    rows[k].assessment = self.gate.assess(working)
                loaded[k] = working
            except Exception as exc:  # a decoder or gate bug must not take the run down
                rows[k].fail("error", _exception_text(exc))
        positions = list(loaded)
        size = self.preprocessing.size
        working = np.zeros((0, size, size), np.uint8)
        if positions:
            working = np.stack([loaded[k].pixels for k in positions])
        no_inputs = np.zeros((0, *self.preprocessing.item_shape), np.float32)
        (inputs,), failed = _guarded(
            lambda w: (self.preprocessing.inputs(w),), (working,), (no_inputs,)
        )
        working = np.delete(working, list(failed), axis=0)
        positions = _drop(positions, failed, rows)
        no_output = (np.zeros((0, len(self.record.regions))), np.zeros(0))
        (region, fracture), failed = _guarded(self.probabilities, (working, inputs), no_output)
        keep = [j for j in range(len(positions)) if j not in failed]
        working, inputs = working[keep], inputs[keep]
        ok_positions = _drop(positions, failed, rows)
        labels = np.asarray(self.record.regions, dtype=object)
        for j, k in enumerate(ok_positions):
            # The metrics module's convention: positive when p >= threshold.
            rows[k].call(region[j], labels[region[j].argmax()], fracture[j], self.record.threshold)
        ok = np.zeros(len(batch), dtype=bool)
        ok[ok_positions] = True
        return PredictedBatch(
            paths=[item.path for item in batch],
            ok=ok,
            working=working,
            inputs=inputs,
            rows=self._frame(rows),
        )

    def _frame(self, rows: Sequence[_Row]) -> pd.DataFrame:
        columns = region_columns(self.record.regions)
        frame = pd.DataFrame(
            {"path": [r.path for r in rows], "model": self.record.model}, dtype=object
        )
        proba = np.array(
            [r.region if r.region is not None else [np.nan] * len(columns) for r in rows],
            dtype=np.float64,
        ).reshape(len(rows), len(columns))
        for c, column in enumerate(columns):
            frame[column] = proba[:, c]
        frame["region"] = pd.Series([r.label for r in rows], dtype=object)
        frame["p_fracture"] = np.array([r.p_fracture for r in rows], dtype=np.float64)
        frame["fracture"] = pd.array([r.fracture for r in rows], dtype="Int8")
        frame["error"] = [r.error for r in rows]
        frame["status"] = [r.status for r in rows]
        frame["decision"] = [r.decision for r in rows]
        frame["quality"] = [r.quality for r in rows]
        frame["reason"] = [r.reason for r in rows]
        frame["ood_score"] = np.array([r.ood_score for r in rows], dtype=np.float64)
        frame["colourfulness"] = np.array([r.colourfulness for r in rows], dtype=np.float64)
        return frame[self.columns]

    def stream(
        self,
        paths: Iterable[str | Path],
        on_batch: Callable[[PredictedBatch], None] | None = None,
    ) -> Iterator[PredictedBatch]:
        """Each batch as soon as it is predicted, in input order; progress on stderr."""
        inputs = expand_inputs(paths)
        with tqdm(
            total=len(inputs), desc="predict", unit="img", file=sys.stderr, disable=None
        ) as progress:
            for start in range(0, len(inputs), self.batch_size):
                batch = self.predict_batch(inputs[start : start + self.batch_size])
                for path, error in zip(batch.rows["path"], batch.rows["error"], strict=True):
                    if error:
                        tqdm.write(f"bonexray predict: {path}: {error}", file=sys.stderr)
                if on_batch is not None:
                    on_batch(batch)
                progress.update(len(batch.paths))
                yield batch

    def run(
        self,
        paths: Iterable[str | Path],
        on_batch: Callable[[PredictedBatch], None] | None = None,
    ) -> pd.DataFrame:
        """One row per input image (folders expanded), in order; progress on stderr."""
        frames = [batch.rows for batch in self.stream(paths, on_batch)]
        if not frames:
            return pd.DataFrame(columns=self.columns)
        return pd.concat(frames, ignore_index=True)


@dataclass
class _Row:
    """One output row while its batch is worked on."""

    path: str  # display form
    status: str = ""
    error: str = ""
    reason: str = ""
    decision: str = "failed"
    assessment: Assessment | None = None  # of a decoded image, when gated
    colourfulness: float | None = None
    region: np.ndarray | None = None
    label: str | None = None
    p_fracture: float = np.nan
    fracture: int | None = None

    def fail(self, status: str, reason: str) -> None:
        self.status, self.reason, self.error = status, reason, f"{status}: {reason}"
        self.decision = "failed"

    def call(self, region: np.ndarray, label: str, p_fracture: float, threshold: float) -> None:
        self.region, self.p_fracture = region, float(p_fracture)
        if self.assessment is not None and self.assessment.flags:
            self.decision, self.reason = "withheld", "; ".join(self.assessment.reasons)
            return
        self.decision, self.label = "called", label
        self.fracture = int(p_fracture >= threshold)

    @property
    def quality(self) -> str:
        if self.assessment is None:
            return ""
        return ";".join(self.assessment.flags) or "ok"

    @property
    def ood_score(self) -> float:
        score = None if self.assessment is None else self.assessment.ood_score
        return np.nan if score is None else score


def _exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _guarded(
    fn: Callable[..., tuple[np.ndarray, ...]],
    arrays: tuple[np.ndarray, ...],
    empty: tuple[np.ndarray, ...],
) -> tuple[tuple[np.ndarray, ...], dict[int, str]]:
    """``fn`` over the whole batch; if it raises, over each item alone, so that one bad item
    fails alone. Returns fn's outputs for the items that succeeded, in order (``empty``
    when none did), and the errors by position in the batch."""
    n = len(arrays[0])
    if n == 0:
        return empty, {}
    try:
        return fn(*arrays), {}
    except Exception as exc:
        if n == 1:
            return empty, {0: _exception_text(exc)}
    outputs, failed = [], {}
    for k in range(n):
        try:
            outputs.append(fn(*(a[k : k + 1] for a in arrays)))
        except Exception as exc:
            failed[k] = _exception_text(exc)
    if not outputs:
        return empty, failed
    return tuple(np.concatenate(parts) for parts in zip(*outputs, strict=True)), failed


def _drop(positions: list[int], failed: Mapping[int, str], rows: list[_Row]) -> list[int]:
    """Fail the rows at ``failed`` (indices into ``positions``); the positions left."""
    for j, text in failed.items():
        rows[positions[j]].fail("error", text)
    return [k for j, k in enumerate(positions) if j not in failed]


def overlay_writer(predictor: Predictor, out_dir: str | Path) -> Callable[[PredictedBatch], None]:
    """An on_batch hook: each predicted image's fracture Grad-CAM overlay as a PNG in
    ``out_dir``, its path in the row's ``explanation`` column (empty for failed inputs).

    Files are numbered in input order (``00000_<stem>.png``): two inputs may share a name.
    The map explains the model's score of the image itself (not of TTA's mirror image).
    """
    from bonexray.explain import gradcam

    if not predictor.model.family.explainable:
        why = {
            FOREST: "the forest has no feature map to explain",
            ENSEMBLE: "the ensemble has no single feature map (explain its Keras members)",
        }[predictor.model.family]
        raise ArtifactsError(
            f"{predictor.record.model}: --explain needs a Keras model (Grad-CAM); {why}"
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
                batch.rows.loc[row, "explanation"] = display(path)
        seen += len(batch.paths)

    return write


class TableWriter:
    """predict's rows as CSV, JSON Lines or one JSON array, written and flushed batch by
    batch, so that whatever was predicted before a failure is on disk."""

    def __init__(self, stream: TextIO, fmt: str, columns: Sequence[str]) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"output format must be one of {FORMATS}, got {fmt!r}")
        self.stream, self.fmt, self.columns = stream, fmt, list(columns)
        self.rows = 0
        if fmt == "json":
            self.stream.write("[")

    def write(self, frame: pd.DataFrame) -> None:
        frame = frame.reindex(columns=self.columns)
        probabilities = [c for c in frame.columns if c.startswith("p_")]
        frame[probabilities] = frame[probabilities].astype(float).round(DECIMALS)
        if self.fmt == "csv":
            text = frame.to_csv(index=False, header=self.rows == 0, lineterminator="\n")
        else:
            records = frame.to_json(orient="records", lines=True).splitlines() if len(frame) else []
            if self.fmt == "jsonl":
                text = "".join(f"{record}\n" for record in records)
            else:  # a separator before every array element but the first
                text = "".join(
                    ("\n " if self.rows + k == 0 else ",\n ") + record
                    for k, record in enumerate(records)
                )
        self.stream.write(text)
        self.stream.flush()
        self.rows += len(frame)

    def close(self) -> None:
        """Ends the JSON array (nothing to do for CSV and JSON Lines)."""
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.rows else "]\n")
            self.stream.flush()


def format_for(out: str | Path | None, fmt: str | None) -> str:
    """--format if given, else from --out's suffix (.jsonl, .json; anything else: csv)."""
    if fmt is not None:
        return fmt
    suffix = Path(out).suffix.lower() if out is not None else ""
    return {".jsonl": "jsonl", ".json": "json"}.get(suffix, "csv")


def format_output(frame: pd.DataFrame, fmt: str) -> str:
    """The prediction table as CSV, JSON Lines or JSON (a list of row objects; missing
    values null)."""
    out = io.StringIO()
    writer = TableWriter(out, fmt, list(frame.columns))
    writer.write(frame)
    writer.close()
    return out.getvalue()
