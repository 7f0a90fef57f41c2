"""Train/val/test split: stratified on region x fracture, grouped against leakage.

Images that must never sit in different splits are joined into one group:

* exact duplicates: the same file bytes (``sha256``) or the same working-size pixels
  (``pixel_sha256``, from ``repair``: catches re-encodes and copies at another size that
  letterbox to identical pixels);
* near duplicates: perceptual hashes within ``near_duplicate_distance`` bits (crops,
  re-exposures, augmented copies: the leakage of the study this project reproduces);
* with ``group_by_patient``: one patient, and one study, per group.

Groups are the connected components of the graph of those links (a union-find), so
linking is transitive. Whole groups are then dealt to folds by scikit-learn's
``StratifiedGroupKFold`` and the folds to splits by the configured fractions
(0.6/0.2/0.2 -> 5 folds dealt 3/1/1).

:func:`count_leaks` re-checks the result independently: it recomputes every linked pair
from the raw columns, by different code paths and without reading the group ids, and
counts the pairs that straddle two splits.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from bonexray.data.taxonomy import Taxonomy
from bonexray.errors import ConfigError
from bonexray.io.labels import SPLITS
from bonexray.io.params import ParamsError

EXACT_KEYS = ("sha256", "pixel_sha256")
UNKNOWN_REGION = "unknown"
MAX_FOLDS = 20
# Rows x columns of one block of the all-pairs Hamming computation (bounds memory).
PAIR_BLOCK_CELLS = 4_000_000

CENSUS_COLUMNS = (
    "id",
    "source",
    "sha256",
    "phash",
    "region_raw",
    "fracture",
    "hardware",
    "patient_id",
    "study_id",
)
REPAIR_COLUMNS = ("id", "pixel_sha256")


class LeakageError(ConfigError, RuntimeError):
    """The split puts linked images (duplicates, one patient) in different splits."""


# ---------------------------------------------------------------------------- inputs


def join_inputs(census: pd.DataFrame, repair_index: pd.DataFrame) -> pd.DataFrame:
    """The images to split (those ``repair`` kept), in repair order, with census columns."""
    for name, frame, needed in (
        ("census", census, CENSUS_COLUMNS),
        ("repair index", repair_index, REPAIR_COLUMNS),
    ):
        missing = set(needed) - set(frame.columns)
        if missing:
            raise ConfigError(f"{name}: missing columns {sorted(missing)}")
    frame = repair_index[list(REPAIR_COLUMNS)].merge(
        census[list(CENSUS_COLUMNS)], on="id", how="left", validate="one_to_one", indicator=True
    )
    orphans = frame.loc[frame["_merge"] != "both", "id"]
    if len(orphans):
        raise ConfigError(
            f"repair index has {len(orphans)} ids absent from the census, e.g. {orphans.iloc[0]!r}"
        )
    return frame.drop(columns="_merge").reset_index(drop=True)


def strata(frame: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """region_hint, region_source, fracture and the stratum 'region|fracture' per image.

    Unresolved regions form the 'unknown' region; a missing fracture label is its own
    value 'na', so unlabelled images are spread over the splits like the others.
    """
    resolved = [taxonomy.resolve(None if pd.isna(raw) else str(raw)) for raw in frame["region_raw"]]
    region = pd.Series([r for r, _ in resolved], dtype="string")
    fracture = frame["fracture"].astype("Int8").reset_index(drop=True)
    fracture_text = fracture.astype("string").fillna("na")
    return pd.DataFrame(
        {
            "region_hint": region,
            "region_source": pd.Series([s for _, s in resolved], dtype="string"),
            "fracture": fracture,
            "stratum": region.fillna(UNKNOWN_REGION) + "|" + fracture_text,
        }
    )


# ---------------------------------------------------------------------------- grouping


def pack_hashes(hex_hashes: Sequence[str]) -> np.ndarray:
    """Hex perceptual hashes -> (n, words) uint64, zero-padded (padding never differs)."""
    lengths = {len(h) for h in hex_hashes}
    if len(lengths) > 1:
        raise ValueError(
            f"perceptual hashes of different lengths {sorted(lengths)}: "
            "census.phash_size must be the same for every image"
        )
    n_bytes = lengths.pop() // 2 if lengths else 8
    n_words = -(-n_bytes // 8)
    packed = np.zeros((len(hex_hashes), n_words * 8), dtype=np.uint8)
    for i, h in enumerate(hex_hashes):
        try:
            packed[i, :n_bytes] = np.frombuffer(bytes.fromhex(h), dtype=np.uint8)
        except ValueError:
            raise ValueError(f"perceptual hash {h!r} is not a hex string") from None
    return packed.view("<u8")


def near_duplicate_pairs(hex_hashes: Sequence[str], max_distance: int) -> np.ndarray:
    """All pairs (i, j), i < j, whose hashes differ in at most ``max_distance`` bits.

    Exhaustive XOR + popcount over packed 64-bit words, in row blocks of bounded memory:
    O(n^2) time, but vectorised: measured ~0.15 s for 4,000 images and ~2 s for 20,000 on
    one laptop core, so ~1 min for 100,000. Past a few hundred thousand images replace it
    with an index: multi-index hashing (cut the hash into max_distance + 1 chunks; by
    pigeonhole every near pair matches exactly on at least one chunk) or a BK-tree.
    """
    words = pack_hashes(hex_hashes)
    n = len(words)
    block = max(1, PAIR_BLOCK_CELLS // max(n, 1))
    found: list[np.ndarray] = []
    for start in range(0, n, block):
        rows = words[start : start + block]
        distance = np.bitwise_count(rows[:, None, :] ^ words[None, start:, :]).sum(axis=2)
        i, j = np.nonzero(distance <= max_distance)
        upper = j > i  # column j of this block is image start + j: keep each pair once
        found.append(np.column_stack([i[upper], j[upper]]) + start)
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)


def _key_edges(keys: pd.Series) -> np.ndarray:
    """Edges joining every row to the first row with the same (non-missing) key."""
    present = keys.notna().to_numpy()
    rows = np.flatnonzero(present)
    codes, _ = pd.factorize(keys[present], sort=False)
    first = pd.Series(rows).groupby(codes).transform("first").to_numpy()
    return np.column_stack([first, rows])


def link_keys(frame: pd.DataFrame, group_by_patient: bool) -> dict[str, pd.Series]:
    """The columns whose equal values link images, by kind.

    Patient and study ids are only unique within a source (two hospitals both have a
    'patient 1'), so they are keyed by source; a study by its patient too.
    """
    keys = {name: frame[name].astype("string") for name in EXACT_KEYS}
    if group_by_patient:
        source = frame["source"].astype("string")
        patient = frame["patient_id"].astype("string")
        study = frame["study_id"].astype("string")
        keys["patient"] = source + "/" + patient
        keys["study"] = source + "/" + patient.fillna("?") + "/" + study
    return keys


def duplicate_groups(
    frame: pd.DataFrame, near_duplicate_distance: int, group_by_patient: bool
) -> tuple[np.ndarray, dict[str, int]]:
    """Group id per row (first-appearance order) and how many links each kind made."""
    n = len(frame)
    edges = {kind: _key_edges(keys) for kind, keys in link_keys(frame, group_by_patient).items()}
    has_hash = frame["phash"].notna().to_numpy()
    hashed_rows = np.flatnonzero(has_hash)
    near = near_duplicate_pairs(
        frame["phash"][has_hash].astype(str).tolist(), near_duplicate_distance
    )
    edges["near_duplicate"] = hashed_rows[near] if len(near) else near
    every = np.concatenate(list(edges.values())) if edges else np.empty((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(every)), (every[:, 0], every[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups, _ = pd.factorize(labels, sort=False)
    links = {kind: int((pairs[:, 0] != pairs[:, 1]).sum()) for kind, pairs in edges.items()}
    return groups.astype(np.int64), links


# ---------------------------------------------------------------------------- assignment


def fold_plan(fractions: Mapping[str, float]) -> tuple[int, dict[str, int]]:
    """The fewest folds that express the fractions exactly: 0.6/0.2/0.2 -> 5, {3, 1, 1}."""
    if set(fractions) != set(SPLITS):
        raise ParamsError(f"split.fractions: expected keys {list(SPLITS)}, got {sorted(fractions)}")
    values = {s: float(fractions[s]) for s in SPLITS}
    if any(v < 0 for v in values.values()) or abs(sum(values.values()) - 1.0) > 1e-6:
        raise ParamsError(f"split.fractions must be >= 0 and sum to 1, got {values}")
    exact = {s: Fraction(v).limit_denominator(MAX_FOLDS) for s, v in values.items()}
    n_folds = int(np.lcm.reduce([f.denominator for f in exact.values()]))
    if n_folds > MAX_FOLDS or any(abs(float(exact[s]) - values[s]) > 1e-6 for s in SPLITS):
        raise ParamsError(
            f"split.fractions {values}: each must be a multiple of 1/k for one k <= {MAX_FOLDS} "
            "(e.g. 0.6/0.2/0.2, 0.7/0.15/0.15, 0.8/0.1/0.1)"
        )
    n_folds = max(n_folds, 2)
    return n_folds, {s: int(exact[s] * n_folds) for s in SPLITS}


def assign_splits(
    stratum: Sequence[str], groups: np.ndarray, fractions: Mapping[str, float], seed: int
) -> np.ndarray:
    """Split name per row: whole groups dealt to stratified folds, folds to splits."""
    n_folds, folds_per_split = fold_plan(fractions)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ConfigError(
            f"only {n_groups} independent groups of images; the fractions need {n_folds} "
            "folds. Add images or set split.group_by_patient / near_duplicate_distance looser."
        )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.empty(len(groups), dtype=np.int64)
    with warnings.catch_warnings():
        # Small strata are reported by name in make_split; sklearn's version names none.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for k, (_, held_out) in enumerate(
            splitter.split(np.zeros(len(groups)), np.asarray(stratum, dtype=str), groups)
        ):
            fold[held_out] = k
    split_of_fold = np.repeat(SPLITS, [folds_per_split[s] for s in SPLITS])
    return split_of_fold[fold]


# ---------------------------------------------------------------------------- checking


def _cross_pairs_equal_keys(keys: pd.Series, split: np.ndarray) -> int:
    """Pairs sharing a key but in different splits: (n^2 - sum of per-split n^2) / 2."""
    present = keys.notna().to_numpy()
    table = pd.crosstab(keys[present].to_numpy(), split[present]).to_numpy(dtype=np.int64)
    return int(((table.sum(axis=1) ** 2 - (table**2).sum(axis=1)) // 2).sum())


def _cross_pairs_near(hex_hashes: pd.Series, split: np.ndarray, max_distance: int) -> int:
    """Near-duplicate pairs across splits, as a +-1 bit matrix product (not XOR/popcount).

    For +-1 vectors a, b of n bits, a . b = n - 2 * hamming(a, b).
    """
    present = hex_hashes.notna().to_numpy()
    hashes = hex_hashes[present].astype(str).tolist()
    if not hashes:
        return 0
    bits = np.unpackbits(
        np.stack([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes]), axis=1
    )
    signs = bits.astype(np.float32) * 2 - 1
    n_bits = signs.shape[1]
    split = split[present]
    leaks = 0
    for a_pos, a in enumerate(SPLITS):
        for b in SPLITS[a_pos + 1 :]:
            left, right = signs[split == a], signs[split == b]
            for start in range(0, len(left), 1024):
                dot = left[start : start + 1024] @ right.T
                leaks += int(((n_bits - dot) / 2 <= max_distance).sum())  # exact in float32
    return leaks


def count_leaks(
    frame: pd.DataFrame,
    split: Sequence[str],
    near_duplicate_distance: int,
    group_by_patient: bool,
) -> dict[str, int]:
    """Pairs of linked images that sit in different splits, per kind, and their total.

    Independent of :func:`duplicate_groups`: reads only the raw columns and the split,
    never the group ids, and counts pairs by other means (cross-tabulation, and a bit
    matrix product instead of XOR/popcount), so a bug in the grouping cannot hide here.
    Only the definition of the keys (:func:`link_keys`) is shared.
    """
    split = np.asarray(split, dtype=object)
    leaks = {
        kind: _cross_pairs_equal_keys(keys, split)
        for kind, keys in link_keys(frame, group_by_patient).items()
    }
    leaks["near_duplicate"] = _cross_pairs_near(frame["phash"], split, near_duplicate_distance)
    leaks["total"] = sum(leaks.values())
    return leaks


# ---------------------------------------------------------------------------- the stage


def _class_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    counts = pd.crosstab(table["split"], table["stratum"])
    return {
        s: {k: int(v) for k, v in counts.loc[s].items()} if s in counts.index else {}
        for s in SPLITS
    }


def _max_share_deviation(table: pd.DataFrame) -> float:
    """Largest |share of a stratum in a split - its share overall| over non-empty splits."""
    shares = pd.crosstab(table["split"], table["stratum"], normalize="index")
    overall = table["stratum"].value_counts(normalize=True)
    return float((shares - overall[shares.columns]).abs().to_numpy().max()) if len(shares) else 0.0


def make_split(
    census: pd.DataFrame,
    repair_index: pd.DataFrame,
    taxonomy: Taxonomy,
    *,
    fractions: Mapping[str, float],
    near_duplicate_distance: int,
    group_by_patient: bool,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The split table (split.parquet) and its metrics (split.json).

    Warns, naming them, about strata too small to appear in every non-empty split.
    Does not raise on leakage: call :func:`check_no_leakage` on the metrics.
    """
    frame = join_inputs(census, repair_index)
    labels = strata(frame, taxonomy)
    groups, links = duplicate_groups(frame, near_duplicate_distance, group_by_patient)
    split = assign_splits(labels["stratum"], groups, fractions, seed)
    table = pd.concat(
        [
            pd.DataFrame(
                {"id": frame["id"], "split": pd.Series(split, dtype="string"), "group": groups}
            ),
            labels,
            frame["hardware"].astype("Int8"),  # carried to labels.parquet for evaluate
        ],
        axis=1,
    )[["id", "split", "group", "region_hint", "region_source", "fracture", "hardware", "stratum"]]

    used_splits = [s for s in SPLITS if (split == s).any()]
    presence = pd.crosstab(table["stratum"], table["split"])
    missing = sorted(s for s in presence.index if (presence.loc[s, used_splits] == 0).any())
    if missing:
        detail = ", ".join(f"{s} ({int(presence.loc[s].sum())} images)" for s in missing)
        warnings.warn(f"strata too small to appear in every split: {detail}", stacklevel=2)

    group_sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    n_folds, _ = fold_plan(fractions)
    if len(group_sizes) and group_sizes.max() > len(groups) / n_folds:
        warnings.warn(
            f"one group holds {group_sizes.max()} of {len(groups)} images, more than a fold: "
            "the split fractions cannot be met (is near_duplicate_distance too loose?)",
            stacklevel=2,
        )
    metrics: dict[str, Any] = {
        "images": len(table),
        "counts": {s: int((split == s).sum()) for s in SPLITS},
        "fractions": {
            s: round(float((split == s).mean()), 4) if len(split) else 0.0 for s in SPLITS
        },
        "classes": _class_counts(table),
        "max_class_share_deviation": round(_max_share_deviation(table), 4),
        "strata_missing_from_a_split": len(missing),
        "groups": {
            "count": len(group_sizes),
            "largest": int(group_sizes.max()) if len(group_sizes) else 0,
            "singletons": int((group_sizes == 1).sum()),
            "images_in_shared_groups": int(group_sizes[group_sizes > 1].sum()),
            "links": links,
        },
        "leakage": count_leaks(frame, split, near_duplicate_distance, group_by_patient),
    }
    return table, metrics


def check_no_leakage(leakage: Mapping[str, int]) -> None:
    """Raise :class:`LeakageError` naming each kind of link that crosses splits."""
    if leakage.get("total", 0):
        kinds = ", ".join(f"{k}: {v} pairs" for k, v in leakage.items() if k != "total" and v)
        raise LeakageError(f"split leaks linked images across splits ({kinds})")
