"""Random forest baseline: one RandomForestClassifier per head on the feature vectors.

Both heads are searched with RandomizedSearchCV over params.yaml rf.distributions, with
StratifiedKFold on the train split (already grouped by near-duplicate and patient, so plain
stratified folds do not leak). The region forest fits every labelled training row; the
fracture forest only those whose fracture label is known. With the same seed and the same
distributions both searches draw the same candidates, so one trials table holds both.

The forests are saved with skops (``<head>.skops``), not pickle/joblib: unpickling runs
whatever code the file names, so a tampered model file is a program; skops.io.load builds
only the types it is told to trust, and `load_forests` trusts a short allow-list.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold

from bonexray.data.taxonomy import Taxonomy
from bonexray.errors import ConfigError
from bonexray.io import jsonfile, predictions
from bonexray.io.modelfiles import dump_skops
from bonexray.io.params import ParamsError, section
from bonexray.models.examples import Examples, load_examples
from bonexray.models.interface import FOREST, HEADS, Description, TrainOutputs, setting_text

MODEL_SUFFIX = ".skops"
# What a saved forest may contain besides the types skops trusts by default: skops 0.16 asks
# only for the tree structure; the two classes are listed so that a skops release trusting
# less by default still loads our files. Nothing else (numpy dtypes are trusted already).
TRUSTED_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.ensemble._forest.RandomForestClassifier",
    }
)
CLASS_WEIGHTS = {"balanced": "balanced", "balanced_subsample": "balanced_subsample", "none": None}


def head_rows(train: Examples, head: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for one head: fracture keeps only rows with a known label."""
    if head == "region":
        return train.features, train.region
    known = ~np.isnan(train.fracture)
    return train.features[known], train.fracture[known].astype(np.int64)


def make_search(rf: Mapping[str, Any], seed: int) -> RandomizedSearchCV:
    if rf["class_weight"] not in CLASS_WEIGHTS:
        raise ParamsError(
            f"params.yaml rf.class_weight: {rf['class_weight']!r} not in {sorted(CLASS_WEIGHTS)}"
        )
    forest = RandomForestClassifier(
        class_weight=CLASS_WEIGHTS[rf["class_weight"]], random_state=seed, n_jobs=1
    )
    return RandomizedSearchCV(
        forest,
        param_distributions=dict(rf["distributions"]),
        n_iter=int(rf["n_iter"]),
        scoring=rf["scoring"],
        cv=StratifiedKFold(n_splits=int(rf["cv"]), shuffle=True, random_state=seed),
        random_state=seed,
        n_jobs=int(rf["n_jobs"]),
        refit=True,
    )


def fit_forests(train: Examples, rf: Mapping[str, Any], seed: int) -> dict[str, RandomizedSearchCV]:
    """Search and refit one forest per head."""
    searches = {}
    for head in HEADS:
        x, y = head_rows(train, head)
        if len(np.unique(y)) < 2:
            raise ConfigError(f"rf {head}: the training rows hold fewer than two classes")
        searches[head] = make_search(rf, seed).fit(x, y)
    return searches


def trials_table(searches: Mapping[str, RandomizedSearchCV]) -> pd.DataFrame:
    """One row per candidate: trial, its parameters, and each head's CV score (higher=better)."""
    candidates = searches["region"].cv_results_["params"]
    if any(s.cv_results_["params"] != candidates for s in searches.values()):
        raise RuntimeError("rf: the heads' searches drew different candidates")
    table = pd.DataFrame({"trial": range(len(candidates))})
    for name in candidates[0]:
        # object dtype: keeps 8 an int next to None instead of 8.0 next to NaN
        table[name] = pd.Series([_json_value(c[name]) for c in candidates], dtype=object)
    for head, search in searches.items():
        results = search.cv_results_
        table[f"{head}_score"] = results["mean_test_score"]
        table[f"{head}_score_std"] = results["std_test_score"]
        table[f"{head}_rank"] = results["rank_test_score"]
    return table


def predict_frame(
    searches: Mapping[str, Any], examples: Examples, regions: Sequence[str]
) -> pd.DataFrame:
    """The predictions table; regions absent from training get probability 0."""
    region, fracture = predict_heads(searches, examples.features, len(regions))
    return predictions.to_frame(examples.ids, examples.split, region, fracture, regions)


def predict_heads(
    forests: Mapping[str, Any], features: np.ndarray, n_regions: int
) -> tuple[np.ndarray, np.ndarray]:
    """(region probabilities (n, n_regions), fracture probabilities (n,)) of the two forests
    (fitted searches or load_forests' estimators), keyed by head."""
    region_model, fracture_model = forests["region"], forests["fracture"]
    region = np.zeros((len(features), n_regions))
    region[:, region_model.classes_] = region_model.predict_proba(features)
    positive = list(fracture_model.classes_).index(1)
    return region, fracture_model.predict_proba(features)[:, positive]


def train_rf(
    params: Mapping[str, Any],
    labels_path: str | Path,
    vectors_dir: str | Path,
    outputs: TrainOutputs,
) -> dict[str, Any]:
    """Search both forests, save them, predict val and test; return the metrics written."""
    rf = section(params, "rf")
    seed = int(section(params, "seed"))
    regions = Taxonomy.from_params(params).regions
    examples = load_examples(labels_path, vectors_dir, regions)
    train = examples.labelled("train")

    started = time.perf_counter()
    searches = fit_forests(train, rf, seed)
    print(f"rf: search took {time.perf_counter() - started:.1f} s")

    model_dir = outputs.model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    for head, search in searches.items():
        dump_skops(search.best_estimator_, model_dir / f"{head}{MODEL_SUFFIX}")
    table = trials_table(searches)
    table.to_csv(model_dir / "trials.csv", index=False)
    outputs.trials.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(outputs.trials, index=False)
    predictions.write(predict_frame(searches, examples.to_predict(), regions), outputs.predictions)

    metrics: dict[str, Any] = {"n_iter": int(rf["n_iter"]), "cv": int(rf["cv"])}
    for head, search in searches.items():
        metrics[head] = {
            f"best_cv_{rf['scoring']}": float(search.best_score_),
            "best_params": {k: _json_value(v) for k, v in search.best_params_.items()},
            "n_train": len(head_rows(train, head)[1]),
        }
    jsonfile.write(outputs.metrics, metrics, sort_keys=True)
    return metrics


class UntrustedModelError(ConfigError):
    """A saved forest names types outside TRUSTED_TYPES; it is not loaded."""


def load_forests(model_dir: str | Path) -> dict[str, RandomForestClassifier]:
    """The fitted forests of train_rf, keyed "region" and "fracture", loaded without pickle.

    Each ``<model_dir>/<head>.skops`` is checked first: if it holds a type that skops does
    not trust by default and TRUSTED_TYPES does not list, nothing is built from it and
    UntrustedModelError names the file and the types.
    """
    forests = {}
    for head in HEADS:
        path = Path(model_dir) / f"{head}{MODEL_SUFFIX}"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such forest (run the train_rf stage)")
        try:
            untrusted = skops.io.get_untrusted_types(file=path)
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:  # truncated or foreign
            raise ConfigError(f"{path}: not a skops model file ({exc})") from exc
        refused = sorted(set(untrusted) - TRUSTED_TYPES)
        if refused:
            raise UntrustedModelError(
                f"{path}: refused to load, it holds types outside the trusted list: {refused}"
            )
        forests[head] = skops.io.load(path, trusted=list(untrusted))
    return forests


class ForestModel:
    """The two forests behind the TwoHeadModel interface (models/family.py)."""

    family = FOREST

    def __init__(self, forests: Mapping[str, Any], n_regions: int) -> None:
        self.network = dict(forests)
        self.n_regions = n_regions
        self.input_shape = (int(forests["region"].n_features_in_),)

    @classmethod
    def load(cls, model_dir: str | Path, n_regions: int) -> ForestModel:
        return cls(load_forests(model_dir), n_regions)

    def predict_heads(
        self, inputs: np.ndarray, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return predict_heads(self.network, inputs, self.n_regions)


def describe(trained: Mapping[str, Any]) -> Description:
    """The model card's Model section, from train_rf's metrics."""
    summary = (
        "Random forests, one per head (scikit-learn `RandomForestClassifier`), each searched "
        f"with `RandomizedSearchCV` ({trained['n_iter']} draws, {trained['cv']}-fold "
        "stratified CV on the train split) on a vector of pooled wavelet statistics per "
        "image (energy, mean, std, entropy of every sub-band, plus the downsampled "
        "approximation band). Saved with skops (`region.skops`, `fracture.skops`)."
    )
    rows = [
        [key, *(setting_text(trained[h]["best_params"].get(key)) for h in HEADS)]
        for key in sorted(trained["region"]["best_params"])
    ]
    scoring = [k for k in trained["region"] if k.startswith("best_cv_")]
    rows += [[k, trained["region"][k], trained["fracture"][k]] for k in scoring]
    rows.append(["training images", trained["region"]["n_train"], trained["fracture"]["n_train"]])
    return Description(summary, ["hyperparameter", "region forest", "fracture forest"], rows)


def _json_value(value: Any) -> Any:
    """None (e.g. max_depth: null) as the string "none", which dvc metrics can show."""
    return "none" if value is None else value
