"""Train/val/test split: stratified on region x fracture, grouped against leakage.

Images that must never sit in different splits are joined into one group:

* exact duplicates: the same file bytes (``sha256``) or the same working-size pixels
  (``pixel_sha256``, from ``repair``: catches re-encodes and copies at another size that
  letterbox to identical pixels);
* near duplicates (crops, re-exposures, augmented copies: the leakage of the study this
  project reproduces), by two views of census's decode that fail on different edits: the
  DCT perceptual hash within ``near_duplicate_distance`` bits, or the difference hash
  within ``dhash_distance`` bits (on FracAtlas it links a re-exposed pelvis and two
  re-framed films that the pHash puts 8-20 bits apart), or, for copies with part of the
  film masked or cut away, census's ``tile_hash`` (a dHash per cell of a 4 x 4 grid)
  matching within ``tile_distance`` bits on at least ``tile_matches`` cells both show
  (on FracAtlas: a tibia film with its lower third blacked out, 28 dHash bits away);
* with ``group_by_patient``: one patient, and one study, per group.

Groups are the connected components of the graph of those links (a union-find), so
linking is transitive. Whole groups are then dealt to folds by scikit-learn's
``StratifiedGroupKFold`` and the folds to splits by the configured fractions
(0.6/0.2/0.2 -> 5 folds dealt 3/1/1).

:func:`count_leaks` re-checks the result: it recomputes every linked pair from the raw
columns, by different code paths and without reading the group ids, and counts the pairs
that straddle two splits (a consistency check of the union-find: must be 0).
:func:`count_pixel_leaks` is the independent check of the linking itself: from repair's
working-size pixels (not census's decode), it correlates small thumbnails over the
pixels both images expose, and counts cross-split pairs above ``pixel_check``'s own
threshold. It measures what both hashes missed, with its own false positives, so the
stage reports it and warns rather than fails.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from bonexray.data.resize import content_box
from bonexray.data.taxonomy import Taxonomy
from bonexray.errors import ConfigError
from bonexray.io.labels import SPLITS
from bonexray.io.params import ParamsError, section
from bonexray.io.shards import ShardReader

EXACT_KEYS = ("sha256", "pixel_sha256")
UNKNOWN_REGION = "unknown"
MAX_FOLDS = 20
# Rows x columns of one block of the all-pairs Hamming computation (bounds memory).
PAIR_BLOCK_CELLS = 4_000_000
# Near-duplicate link kind -> the census hash column it compares.
HASH_LINKS = {"near_duplicate": "phash", "near_duplicate_dhash": "dhash"}
TILE_LINK = "near_duplicate_tiles"  # link kind of census tile_hash matches
# The pixel check first keeps cross-split pairs whose 16 x 16 block means correlate at
# least this well (matrix products), then computes the masked correlation at the full
# thumbnail size on those only. On FracAtlas (benchmarks/split_leakage.py, every pair
# down to a coarse 0.6) the pairs at a masked correlation >= 0.99 all have a coarse one
# >= 0.99, those >= 0.95 one >= 0.84; 0.5% of pairs pass the cut.
COARSE_SIDE = 16
COARSE_MIN_CORRELATION = 0.9
# A masked correlation over less than this share of the thumbnail is noise, not a match.
MIN_SHARED_SHARE = 1 / 16

CENSUS_COLUMNS = (
    "id",
    "source",
    "sha256",
    "phash",
    "dhash",
    "tile_hash",
    "region_raw",
    "fracture",
    "hardware",
    "patient_id",
    "study_id",
)
REPAIR_COLUMNS = ("id", "pixel_sha256")


class LeakageError(ConfigError, RuntimeError):
    """The split puts linked images (duplicates, one patient) in different splits."""


@dataclass(frozen=True)
class PixelCheck:
    """params.yaml `split.pixel_check`: the independent leakage check on repair's pixels."""

    thumb_side: int  # thumbnail side in pixels; a multiple of COARSE_SIDE
    dark_level: int  # pixels at or below this (0-255) in either image are left out
    min_correlation: float  # masked correlation at which two images count as one film

    def __post_init__(self) -> None:
        if self.thumb_side < COARSE_SIDE or self.thumb_side % COARSE_SIDE:
            raise ParamsError(
                f"split.pixel_check.thumb_side: {self.thumb_side} is not a multiple of "
                f"{COARSE_SIDE}"
            )
        if not 0 <= self.dark_level < 255:
            raise ParamsError(f"split.pixel_check.dark_level: {self.dark_level} not in 0..254")
        if not -1 <= self.min_correlation <= 1:
            raise ParamsError(
                f"split.pixel_check.min_correlation: {self.min_correlation} not in -1..1"
            )


@dataclass(frozen=True)
class TileLink:
    """params.yaml `split.tile_distance` and `split.tile_matches`: census tile_hash links."""

    distance: int  # Hamming distance (of a cell's 64 bits) at which two cells match
    matches: int  # matching cells, both non-flat, that link two images

    def __post_init__(self) -> None:
        if not 0 <= self.distance <= 64:
            raise ParamsError(f"split.tile_distance: {self.distance} not in 0..64")
        if self.matches < 1:
            raise ParamsError(f"split.tile_matches: {self.matches} must be >= 1")


@dataclass(frozen=True)
class Settings:
    """params.yaml `seed` and `split:`."""

    fractions: Mapping[str, float]
    near_duplicate_distance: int  # pHash bits
    dhash_distance: int  # dHash bits
    group_by_patient: bool
    seed: int
    pixel_check: PixelCheck
    tile_link: TileLink | None  # None: no tile-hash links

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Settings:
        check = section(params, "split.pixel_check")
        return cls(
            fractions=dict(section(params, "split.fractions")),
            near_duplicate_distance=int(section(params, "split.near_duplicate_distance")),
            dhash_distance=int(section(params, "split.dhash_distance")),
            group_by_patient=bool(section(params, "split.group_by_patient")),
            seed=int(section(params, "seed")),
            tile_link=TileLink(
                distance=int(section(params, "split.tile_distance")),
                matches=int(section(params, "split.tile_matches")),
            ),
            pixel_check=PixelCheck(
                thumb_side=int(section(check, "thumb_side")),
                dark_level=int(section(check, "dark_level")),
                min_correlation=float(section(check, "min_correlation")),
            ),
        )

    @property
    def hash_distances(self) -> dict[str, int]:
        """Near-duplicate link kind -> its Hamming threshold (HASH_LINKS gives the column)."""
        return {
            "near_duplicate": self.near_duplicate_distance,
            "near_duplicate_dhash": self.dhash_distance,
        }


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


def unpack_tiles(tile_hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """census tile_hash strings -> ((n, cells) uint64 cell hashes, (n, cells) bool present)."""
    if not tile_hashes:
        return np.zeros((0, 0), np.uint64), np.zeros((0, 0), bool)
    lengths = {len(h) for h in tile_hashes}
    if len(lengths) > 1 or lengths.pop() % 16:
        raise ValueError("tile hashes of different or odd lengths: the census is inconsistent")
    cells = [[h[k : k + 16] for k in range(0, len(h), 16)] for h in tile_hashes]
    present = np.array([[not c.startswith("-") for c in row] for row in cells])
    words = np.array([[int(c, 16) if c[0] != "-" else 0 for c in row] for row in cells], np.uint64)
    return words, present


def tile_pairs(tile_hashes: Sequence[str], link: TileLink) -> np.ndarray:
    """All pairs (i, j), i < j, matching on at least ``link.matches`` non-flat cells.

    XOR + popcount per cell, in row blocks of bounded memory (O(n^2 * cells); ~2 s for
    FracAtlas' 4,024 images).
    """
    words, present = unpack_tiles(tile_hashes)
    n, cells = words.shape
    block = max(1, PAIR_BLOCK_CELLS // max(n * cells, 1))
    found: list[np.ndarray] = []
    for start in range(0, n, block):
        distance = np.bitwise_count(words[start : start + block, None, :] ^ words[None, start:])
        shown = present[start : start + block, None, :] & present[None, start:]
        matches = ((distance <= link.distance) & shown).sum(axis=2)
        i, j = np.nonzero(matches >= link.matches)
        upper = j > i
        found.append(np.column_stack([i[upper], j[upper]]) + start)
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)


def _hash_edges(hashes: pd.Series, pairs_of: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Edges (row pairs of the frame) that ``pairs_of`` finds among the rows with a hash."""
    rows = np.flatnonzero(hashes.notna().to_numpy())
    near = pairs_of(hashes.iloc[rows].astype(str).tolist())
    return rows[near] if len(near) else near


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
    frame: pd.DataFrame,
    hash_distances: Mapping[str, int],
    group_by_patient: bool,
    tile_link: TileLink | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Group id per row (first-appearance order) and how many links each kind made.

    ``hash_distances``: near-duplicate link kind (HASH_LINKS) -> its Hamming threshold;
    ``tile_link``: also link by the tile hash (kind TILE_LINK).
    """
    n = len(frame)
    edges = {kind: _key_edges(keys) for kind, keys in link_keys(frame, group_by_patient).items()}
    for kind, max_distance in hash_distances.items():
        edges[kind] = _hash_edges(
            frame[HASH_LINKS[kind]], lambda hashes, d=max_distance: near_duplicate_pairs(hashes, d)
        )
    if tile_link is not None:
        edges[TILE_LINK] = _hash_edges(
            frame["tile_hash"], lambda hashes: tile_pairs(hashes, tile_link)
        )
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
            "folds. Add images, or set split.group_by_patient false or the hash distances lower."
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


def _cross_pairs_cells(
    signs: np.ndarray, shown: np.ndarray, split: np.ndarray, max_distance: int, matches: int
) -> int:
    """Pairs across splits whose (n, cells, bits) +-1 hashes agree within ``max_distance``
    bits on at least ``matches`` cells both show, as +-1 matrix products (not XOR/popcount):
    for +-1 vectors a, b of n bits, a . b = n - 2 * hamming(a, b)."""
    n_bits = signs.shape[2]
    leaks = 0
    for a_pos, a in enumerate(SPLITS):
        for b in SPLITS[a_pos + 1 :]:
            left, right = signs[split == a], signs[split == b]
            shown_left, shown_right = shown[split == a], shown[split == b]
            for start in range(0, len(left), 1024):
                rows = slice(start, start + 1024)
                agree = np.zeros((len(left[rows]), len(right)), np.int32)
                for cell in range(signs.shape[1]):
                    dot = left[rows, cell] @ right[:, cell].T
                    close = (n_bits - dot) / 2 <= max_distance  # exact in float32
                    agree += close & shown_left[rows, cell, None] & shown_right[None, :, cell]
                leaks += int((agree >= matches).sum())
    return leaks


def _cross_pairs_near(hex_hashes: pd.Series, split: np.ndarray, max_distance: int) -> int:
    """Near-duplicate pairs across splits: one cell, the whole hash."""
    present = hex_hashes.notna().to_numpy()
    hashes = hex_hashes[present].astype(str).tolist()
    if not hashes:
        return 0
    bits = np.unpackbits(
        np.stack([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes]), axis=1
    )
    signs = (bits.astype(np.float32) * 2 - 1)[:, None, :]
    shown = np.ones(signs.shape[:2], dtype=bool)
    return _cross_pairs_cells(signs, shown, split[present], max_distance, matches=1)


def _cross_pairs_tiles(tile_hashes: pd.Series, split: np.ndarray, link: TileLink) -> int:
    """Tile-linked pairs across splits: TILE_GRID**2 cells of 64 bits."""
    present_rows = tile_hashes.notna().to_numpy()
    words, present = unpack_tiles(tile_hashes[present_rows].astype(str).tolist())
    if not len(words):
        return 0
    # (n, cells, 64) signs: the bits of each cell's hash, big-endian as written in hex
    bits = np.unpackbits(words.astype(">u8").view(np.uint8).reshape(len(words), -1, 8), axis=2)
    signs = bits.astype(np.float32) * 2 - 1
    return _cross_pairs_cells(signs, present, split[present_rows], link.distance, link.matches)


def count_leaks(
    frame: pd.DataFrame,
    split: Sequence[str],
    hash_distances: Mapping[str, int],
    group_by_patient: bool,
    tile_link: TileLink | None = None,
) -> dict[str, int]:
    """Pairs of linked images that sit in different splits, per kind, and their total.

    Independent of :func:`duplicate_groups`' code: reads only the raw columns and the
    split, never the group ids, and counts pairs by other means (cross-tabulation, and a
    bit matrix product instead of XOR/popcount), so a bug in the grouping cannot hide
    here. Only the definition of the links (:func:`link_keys`, the thresholds) is shared.
    """
    split = np.asarray(split, dtype=object)
    leaks = {
        kind: _cross_pairs_equal_keys(keys, split)
        for kind, keys in link_keys(frame, group_by_patient).items()
    }
    for kind, max_distance in hash_distances.items():
        leaks[kind] = _cross_pairs_near(frame[HASH_LINKS[kind]], split, max_distance)
    if tile_link is not None:
        leaks[TILE_LINK] = _cross_pairs_tiles(frame["tile_hash"], split, tile_link)
    leaks["total"] = sum(leaks.values())
    return leaks


def pixel_thumbnails(reader: ShardReader, side: int, batch: int = 1024) -> np.ndarray:
    """(n, side, side) float32 block means of each working image's content, in index order.

    Only the part of the canvas the image covers (letterbox geometry from the index's
    original size, one pixel inset against rounding) is reduced, so that the padding does
    not make any two images of the same aspect ratio look alike.
    """
    index, size = reader.index, int(reader.meta["size"])
    keep_aspect = bool(reader.meta["keep_aspect"])
    out = np.empty((len(index), side, side), np.float32)
    widths, heights = index["orig_width"].to_numpy(), index["orig_height"].to_numpy()
    positions = np.arange(len(index))
    for start, pixels in zip(
        range(0, len(index), batch), reader.iter_batches(positions, batch), strict=True
    ):
        for k, image in enumerate(pixels, start):
            box = content_box(int(widths[k]), int(heights[k]), size, keep_aspect)
            inset = 1 if keep_aspect and min(box.width, box.height) > 2 else 0
            image = image[
                box.top + inset : box.top + box.height - inset,
                box.left + inset : box.left + box.width - inset,
            ]
            thumb = Image.fromarray(image).convert("F").resize((side, side), Image.Resampling.BOX)
            out[k] = np.asarray(thumb)
    return out


def _min_shared(n_pixels: int) -> int:
    return max(1, int(n_pixels * MIN_SHARED_SHARE))


def masked_correlation(
    thumbnails: np.ndarray, shown: np.ndarray, pairs: np.ndarray, block: int = 4096
) -> np.ndarray:
    """Pearson correlation of each pair's thumbnails over the pixels both ``shown``
    (brighter than the dark level): black background, letterbox and a burnt-in black band
    (a film re-framed or re-exported with a strip) do not count. 0 where they share too few.
    """
    flat = thumbnails.reshape(len(thumbnails), -1).astype(np.float64)
    mask = shown.reshape(len(shown), -1)
    out = np.zeros(len(pairs))
    for start in range(0, len(pairs), block):
        first, second = pairs[start : start + block, 0], pairs[start : start + block, 1]
        a, b, both = flat[first], flat[second], mask[first] & mask[second]
        count = both.sum(axis=1, keepdims=True)
        mean_a = (a * both).sum(axis=1, keepdims=True) / np.maximum(count, 1)
        mean_b = (b * both).sum(axis=1, keepdims=True) / np.maximum(count, 1)
        a, b = np.where(both, a - mean_a, 0.0), np.where(both, b - mean_b, 0.0)
        denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
        valid = (count[:, 0] >= _min_shared(flat.shape[1])) & (denominator > 0)
        out[start : start + len(a)][valid] = (a * b).sum(axis=1)[valid] / denominator[valid]
    return out


def _masked_correlation_matrix(
    values_a: np.ndarray, shown_a: np.ndarray, values_b: np.ndarray, shown_b: np.ndarray
) -> np.ndarray:
    """:func:`masked_correlation` of every row of a with every row of b, from six matrix
    products of the masked sums (values centred on 128 first, against cancellation)."""
    ma, mb = shown_a.astype(np.float64), shown_b.astype(np.float64)
    va, vb = (values_a - 128.0) * ma, (values_b - 128.0) * mb
    count = ma @ mb.T
    sum_a, sum_b = va @ mb.T, ma @ vb.T
    safe = np.maximum(count, 1)
    covariance = va @ vb.T - sum_a * sum_b / safe
    variance = ((va * va) @ mb.T - sum_a**2 / safe) * (ma @ (vb * vb).T - sum_b**2 / safe)
    valid = (count >= _min_shared(values_a.shape[1])) & (variance > 0)
    return np.divide(
        covariance, np.sqrt(np.where(valid, variance, 1)), where=valid, out=np.zeros_like(count)
    )


def count_pixel_leaks(
    thumbnails: np.ndarray, split: Sequence[str], check: PixelCheck
) -> tuple[int, np.ndarray, np.ndarray]:
    """Cross-split pairs that look like one film in repair's pixels, by no hash.

    Returns the count, the (k, 2) row pairs, and their masked correlations. Candidates
    come from the same masked correlation on 16 x 16 block means (matrix products over
    every cross-split pair), then :func:`masked_correlation` at the thumbnail's full
    resolution decides. O(n^2) like :func:`near_duplicate_pairs`: ~3 s for FracAtlas's
    4,024 images on one core.
    """
    split = np.asarray(split, dtype=object)
    n, side = len(thumbnails), thumbnails.shape[-1] if len(thumbnails) else COARSE_SIDE
    factor = side // COARSE_SIDE
    shown = thumbnails > check.dark_level
    blocks = (n, COARSE_SIDE, factor, COARSE_SIDE, factor)
    coarse = thumbnails.reshape(blocks).mean(axis=(2, 4)).reshape(n, -1)
    coarse_shown = shown.reshape(blocks).all(axis=(2, 4)).reshape(n, -1)
    found = [np.empty((0, 2), dtype=np.int64)]
    for a_pos, a in enumerate(SPLITS):
        for b in SPLITS[a_pos + 1 :]:
            left, right = np.flatnonzero(split == a), np.flatnonzero(split == b)
            block = max(1, PAIR_BLOCK_CELLS // max(len(right), 1))
            for start in range(0, len(left), block):
                rows = left[start : start + block]
                correlation = _masked_correlation_matrix(
                    coarse[rows], coarse_shown[rows], coarse[right], coarse_shown[right]
                )
                i, j = np.nonzero(correlation >= COARSE_MIN_CORRELATION)
                found.append(np.column_stack([rows[i], right[j]]))
    candidates = np.concatenate(found)
    correlation = masked_correlation(thumbnails, shown, candidates)
    hit = correlation >= check.min_correlation
    return int(hit.sum()), candidates[hit], correlation[hit]


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
    settings: Settings,
    thumbnails: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The split table (split.parquet) and its metrics (split.json).

    ``thumbnails`` (:func:`pixel_thumbnails`, rows in repair index order) turn on the
    independent pixel check: metrics ``pixel_leakage``, and a warning naming each
    cross-split pair it finds. A warning, not an error: the check has false positives of
    its own (on FracAtlas films of two patients on one detector reach 0.983), the grouping
    cannot act on them without the check ceasing to be independent, and the remedy (a
    link for that pair) is a judgement to make on the named images. Also warns, naming
    them, about strata too small to appear in every non-empty split. Does not raise on
    leakage: call :func:`check_no_leakage` on the metrics.
    """
    frame = join_inputs(census, repair_index)
    labels = strata(frame, taxonomy)
    distances = settings.hash_distances
    groups, links = duplicate_groups(
        frame, distances, settings.group_by_patient, settings.tile_link
    )
    split = assign_splits(labels["stratum"], groups, settings.fractions, settings.seed)
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
    n_folds, _ = fold_plan(settings.fractions)
    if len(group_sizes) and group_sizes.max() > len(groups) / n_folds:
        warnings.warn(
            f"one group holds {group_sizes.max()} of {len(groups)} images, more than a fold: "
            "the split fractions cannot be met (are the hash distances too loose?)",
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
        "leakage": count_leaks(
            frame, split, distances, settings.group_by_patient, settings.tile_link
        ),
    }
    if thumbnails is not None:
        metrics["pixel_leakage"] = _pixel_leakage(frame["id"], thumbnails, split, settings)
    return table, metrics


def _pixel_leakage(
    ids: pd.Series, thumbnails: np.ndarray, split: np.ndarray, settings: Settings
) -> dict[str, Any]:
    """metrics ``pixel_leakage``, warning with the pairs found (see :func:`make_split`)."""
    if len(thumbnails) != len(ids):
        raise ConfigError(f"{len(thumbnails)} pixel thumbnails for {len(ids)} images")
    check = settings.pixel_check
    count, pairs, correlation = count_pixel_leaks(thumbnails, split, check)
    if count:
        named = "; ".join(
            f"{ids.iloc[i]} ({split[i]}) ~ {ids.iloc[j]} ({split[j]}) r={r:.3f}"
            for (i, j), r in zip(pairs[:10], correlation[:10], strict=True)
        )
        warnings.warn(
            f"pixel check: {count} cross-split pairs look like one film "
            f"(masked correlation >= {check.min_correlation}) but no link joined them: "
            f"{named}{' ...' if count > 10 else ''}. Inspect them: a film seen twice needs a "
            "link (a patient id, or a hash threshold) to stay in one split.",
            stacklevel=3,
        )
    return {"cross_split_pairs": count}


def check_no_leakage(leakage: Mapping[str, int]) -> None:
    """Raise :class:`LeakageError` naming each kind of link that crosses splits."""
    if leakage.get("total", 0):
        kinds = ", ".join(f"{k}: {v} pairs" for k, v in leakage.items() if k != "total" and v)
        raise LeakageError(f"split leaks linked images across splits ({kinds})")
