"""Census: one row per file found, whatever it is, with hashes, decode verdict and raw labels.

Every configured source is listed by its adapter; every other file under the data root is
listed too (role "unassigned"), so the table never has fewer rows than there are files.
Each file is read once: sha256 of its bytes, a full decode (imaging.decode_bytes, JPEGs at
reduced scale), and two hashes of the decoded image for near-duplicate grouping: a DCT
perceptual hash and a difference hash, which fail on different edits (split.py).
The table is sorted by id and written so that the same input gives identical bytes.

Two verdicts come from the path alone, before any decode (imaging.REFUSED_BY_CENSUS):
a name that is not UTF-8 ("bad_name": the id shows the odd bytes as \\xNN, the file is
still hashed and decoded from its real name) and a symlink that resolves outside its
source's folder ("outside_link": data from anywhere on the disk, which `dvc add data`
does not version; not read unless `census.follow_outside_links`). Links into the
repository's DVC cache are DVC's own (cache type symlink) and are followed.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pandas as pd

# imagehash.phash imports scipy.fftpack on its first call (~0.4 s of CPU). Imported here,
# once, so that forked census workers inherit it instead of each importing it again.
import scipy.fftpack  # noqa: F401
from PIL import Image
from tqdm import tqdm

from bonexray.data import imaging
from bonexray.data.sources import (
    Adapter,
    SourceConfigError,
    SourceFile,
    adapters_from_params,
    walk_files,
)
from bonexray.io import jsonfile
from bonexray.io.names import display, is_utf8
from bonexray.io.params import section

UNASSIGNED = "unassigned"  # source and role of files under the data root that no source claims
# Column -> dtype, in table order (the contract later stages read).
COLUMNS: dict[str, str] = {
    "id": "string",
    "source": "string",
    "path": "string",
    "role": "string",
    "size_bytes": "Int64",
    "sha256": "string",
    "phash": "string",
    "dhash": "string",
    "tile_hash": "string",  # TILE_GRID**2 cells of 16 hex digits; "-" x 16 for a flat cell
    "width": "Int64",
    "height": "Int64",
    "mode": "string",
    "bit_depth": "Int64",
    "format": "string",
    "status": "string",
    "reason": "string",
    "truncated": "bool",
    "region_raw": "string",
    "fracture": "Int8",
    "abnormal": "Int8",
    "patient_id": "string",
    "study_id": "string",
    "split_hint": "string",
    "view": "string",
    "hardware": "Int8",
    "multiscan": "Int8",
}
# phash shrinks the image to (4 * hash_size)^2 with LANCZOS. Box-reducing it by an integer
# factor first, leaving LANCZOS at least this factor, makes that ~2.5x cheaper; on FracAtlas
# the hash moves by 0.5 of 64 bits on average (the draft-scale decode alone moves it as
# much from a full-resolution phash).
PHASH_REDUCING_GAP = 2.0
# tile_hash: a grid of small dHashes (split links images that match on enough cells).
TILE_GRID = 4
TILE_BITS_SIDE = 8  # each cell's dHash is 8 x 8 = 64 bits
TILE_FLAT_LEVELS = 2  # a cell whose thumbnail spans at most this many levels is flat
NO_TILE = "-" * 16
LABELS = (
    "region_raw",
    "fracture",
    "abnormal",
    "patient_id",
    "study_id",
    "split_hint",
    "view",
    "hardware",
    "multiscan",
)


@dataclass(frozen=True)
class Settings:
    """params.yaml `census:`."""

    workers: int = 1
    phash_size: int = 8
    dhash_size: int = 16
    draft_size: int | None = 128
    limits: imaging.Limits = imaging.Limits()
    follow_outside_links: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Settings:
        census = section(params, "census")
        return cls(
            workers=int(census.get("workers", cls.workers)),
            phash_size=int(census.get("phash_size", cls.phash_size)),
            dhash_size=int(census.get("dhash_size", cls.dhash_size)),
            draft_size=census.get("draft_size", cls.draft_size),
            limits=imaging.Limits.from_params(params),
            follow_outside_links=bool(census.get("follow_outside_links", cls.follow_outside_links)),
        )


def file_id(path: str | Path) -> str:
    """The table key: the path as given, normalised, in posix form, display-safe."""
    return display(os.path.normpath(path).replace(os.sep, "/"))  # str ops: called per file


def refusal(
    path: str | Path, root: str | Path | None, trusted: Sequence[str | Path] = ()
) -> tuple[str, str] | None:
    """(status, reason) when census refuses a file from its path alone, else None.

    root: the folder of the file's source; a file that resolves outside it (through a file
    or a directory symlink) is refused unless it resolves into one of ``trusted``. None
    skips the link check (``census.follow_outside_links``).
    """
    if not is_utf8(path):
        return (
            "bad_name",
            "file name is not valid UTF-8 (shown here with \\xNN escapes); rename it, e.g. "
            "`convmv -f latin1 -t utf8 --notest -r <folder>`, then `dvc add` again",
        )
    if root is None:
        return None
    target = os.path.realpath(path)
    allowed = [os.path.realpath(folder) for folder in (root, *trusted)]
    if any(target == folder or target.startswith(folder + os.sep) for folder in allowed):
        return None
    return (
        "outside_link",
        f"a symlink to '{display(target)}', outside its source's folder '{display(root)}': "
        "DVC does not version it there; copy the file in, point the source at the real "
        "folder, or set census.follow_outside_links: true",
    )


def list_files(adapters: Sequence[Adapter], data_root: str | Path | None) -> list[SourceFile]:
    """Everything the sources yield, plus unclaimed files under data_root, sorted by id."""
    claimed: dict[str, SourceFile] = {}
    for adapter in adapters:
        if adapter.name == UNASSIGNED:
            raise SourceConfigError(f"sources.{UNASSIGNED}: this name is reserved, pick another")
        for found in adapter.scan():
            key = file_id(found.path)
            if key in claimed:
                raise SourceConfigError(
                    f"{key} is listed by sources '{claimed[key].source}' and '{found.source}': "
                    "their paths overlap"
                )
            claimed[key] = found
    if data_root is not None and Path(data_root).is_dir():
        for path in walk_files(Path(data_root)):
            key = file_id(path)
            if key not in claimed:
                claimed[key] = SourceFile(path, UNASSIGNED, UNASSIGNED)
    return [claimed[key] for key in sorted(claimed)]


def probe(path: str | Path, settings: Settings) -> dict[str, Any]:
    """The file-level columns of one file: hashes, size and decode verdict. Never raises."""
    got = imaging.read_bytes(path, settings.limits.max_file_bytes)
    if isinstance(got, imaging.Decoded):
        data, decoded = None, got
    else:
        data = got
        draft = (settings.draft_size, settings.draft_size) if settings.draft_size else None
        decoded = imaging.decode_bytes(
            data,
            suffix=Path(path).suffix.lower(),
            limits=settings.limits,
            draft=draft,
        )
    gray = decoded.gray
    phash = None if gray is None else perceptual_hash(gray, settings.phash_size)
    dhash = None if gray is None else difference_hash(gray, settings.dhash_size)
    tiles = None if gray is None else tile_hash(gray)
    return {
        "size_bytes": None if data is None else len(data),
        "sha256": None if data is None else hashlib.sha256(data).hexdigest(),
        "phash": phash,
        "dhash": dhash,
        "tile_hash": tiles,
        "width": decoded.width,
        "height": decoded.height,
        "mode": decoded.mode,
        "bit_depth": decoded.bit_depth,
        "format": decoded.format,
        "status": decoded.status,
        "reason": decoded.reason,
        "truncated": decoded.truncated,
    }


def _thumbnail(gray: np.ndarray, width: int, height: int) -> Image.Image:
    """The 8-bit image at imagehash's own input size, so that its resize is only a copy."""
    return Image.fromarray(imaging.to_uint8(gray)).resize(
        (width, height), Image.Resampling.LANCZOS, reducing_gap=PHASH_REDUCING_GAP
    )


def perceptual_hash(gray: np.ndarray, hash_size: int) -> str:
    """imagehash.phash (hash_size**2 bits, hex) of a decoded grayscale image."""
    side = 4 * hash_size  # imagehash's own input size (highfreq_factor=4)
    return str(imagehash.phash(_thumbnail(gray, side, side), hash_size=hash_size))


def difference_hash(gray: np.ndarray, hash_size: int) -> str:
    """imagehash.dhash (hash_size**2 bits, hex): signs of horizontal brightness steps."""
    thumb = _thumbnail(gray, hash_size + 1, hash_size)  # imagehash's own input size
    return str(imagehash.dhash(thumb, hash_size=hash_size))


def tile_hash(gray: np.ndarray) -> str:
    """A 64-bit dHash per cell of a TILE_GRID x TILE_GRID grid over the image, hex, in
    row-major order; a flat cell (a black band, padding) is NO_TILE, so two images never
    match on what neither shows. A copy with part of the film masked or cut away still
    matches on the cells it keeps, which a hash of the whole image does not."""
    side = TILE_BITS_SIDE
    thumb = np.asarray(_thumbnail(gray, TILE_GRID * (side + 1), TILE_GRID * side), dtype=np.int16)
    cells = []
    for row in range(TILE_GRID):
        for col in range(TILE_GRID):
            cell = thumb[row * side : (row + 1) * side, col * (side + 1) : (col + 1) * (side + 1)]
            if int(cell.max()) - int(cell.min()) <= TILE_FLAT_LEVELS:
                cells.append(NO_TILE)
            else:  # imagehash.dhash's convention: is the right neighbour brighter?
                cells.append(np.packbits(cell[:, 1:] > cell[:, :-1]).tobytes().hex())
    return "".join(cells)


def _probe_task(task: tuple[str, Settings]) -> dict[str, Any]:
    return probe(*task)


def _probed(paths: list[str], settings: Settings) -> Iterator[dict[str, Any]]:
    """probe() over paths, in input order, in a process pool when workers > 1."""
    tasks = [(path, settings) for path in paths]
    if settings.workers <= 1 or len(tasks) < 2:
        yield from map(_probe_task, tasks)
        return
    chunk = max(1, min(64, len(tasks) // (settings.workers * 8)))
    with ProcessPoolExecutor(max_workers=settings.workers) as pool:
        yield from pool.map(_probe_task, tasks, chunksize=chunk)


def build_table(
    files: Sequence[SourceFile],
    settings: Settings,
    *,
    roots: Mapping[str, str | Path] | None = None,
    trusted: Sequence[str | Path] = (),
    progress: bool | None = None,
) -> pd.DataFrame:
    """The census table (COLUMNS, sorted by id) for files as listed by list_files().

    roots: source name -> its folder, for the outside-link check (run() passes every
    source's folder, and the data root for unassigned files); a source not in it, or
    ``settings.follow_outside_links``, skips that check. trusted: folders links may
    resolve into (the DVC cache).
    """
    keyed = sorted(((file_id(f.path), f) for f in files), key=lambda pair: pair[0])
    ids = [key for key, _ in keyed]
    files = [found for _, found in keyed]
    check_links = roots is not None and not settings.follow_outside_links
    refusals = [
        refusal(found.path, roots.get(found.source) if check_links else None, trusted)
        for found in files
    ]
    # Links out of the source are not read; a bad name is still hashed and decoded.
    opened = iter(
        _probed(
            [str(f.path) for f, no in zip(files, refusals, strict=True) if not _unread(no)],
            settings,
        )
    )
    records = tqdm(
        (_refused_record(*no) if _unread(no) else next(opened) for no in refusals),
        total=len(ids),
        desc="census",
        unit="file",
        disable=None if progress is None else not progress,
    )
    rows = []
    for key, found, record, no in zip(ids, files, records, refusals, strict=True):
        if no is not None and not _unread(no):
            decoded = f"the file itself: {record['status']}"
            record = {**record, "status": no[0], "reason": f"{no[1]}; {decoded}"}
        reason = "; ".join(text for text in (record["reason"], found.note) if text)
        labels = {name: getattr(found, name) for name in LABELS}
        rows.append(
            {
                "id": key,
                "source": found.source,
                "path": key,  # where to open it, relative to the repository root
                "role": found.role,
                **record,
                "reason": reason,
                **labels,
            }
        )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.astype(COLUMNS).reset_index(drop=True)


def _unread(refused: tuple[str, str] | None) -> bool:
    return refused is not None and refused[0] == "outside_link"


# probe()'s columns that need the file's bytes.
_UNREAD_COLUMNS = tuple(
    ["size_bytes", "sha256", "phash", "dhash", "tile_hash", "width", "height", "mode"]
    + ["bit_depth", "format"]
)


def _refused_record(status: str, reason: str) -> dict[str, Any]:
    """probe()'s columns for a file census does not open."""
    return {
        **dict.fromkeys(_UNREAD_COLUMNS),
        "status": status,
        "reason": reason,
        "truncated": False,
    }


def summarise(table: pd.DataFrame) -> dict[str, Any]:
    """metrics/census.json: totals, decode status of image files, per source/region/fracture."""
    images = table[table["role"] != "sidecar"]  # images plus unassigned files
    usable = images["status"].isin(imaging.USABLE)
    by_source: dict[str, Any] = {}
    for source, rows in table.groupby("source", sort=True):
        source_images = rows[rows["role"] != "sidecar"]
        regions: dict[str, dict[str, int]] = {}
        for (region, fracture), count in _region_fracture(source_images).items():
            regions.setdefault(region, {})[fracture] = count
        by_source[str(source)] = {
            "files": len(rows),
            "images": len(source_images),
            "usable": int(source_images["status"].isin(imaging.USABLE).sum()),
            "sidecars": int((rows["role"] == "sidecar").sum()),
            "status": _counts(source_images["status"]),
            "regions": regions,
        }
    return {
        "files": len(table),
        "images": int((table["role"] == "image").sum()),
        "usable_images": int((usable & (images["role"] == "image")).sum()),
        "truncated_images": int((images["status"] == "truncated").sum()),
        "sidecars": int((table["role"] == "sidecar").sum()),
        "unassigned": int((table["role"] == UNASSIGNED).sum()),
        "image_status": {
            status: int((images["status"] == status).sum()) for status in imaging.STATUSES
        },
        "by_source": by_source,
    }


def group_counts(table: pd.DataFrame) -> pd.DataFrame:
    """plots/census/counts.csv: one bar per source/region_raw/fracture of image files."""
    images = table[table["role"] == "image"]
    counts = [
        {"group": f"{source}/{region}/{fracture}", "count": count}
        for (source, rows) in images.groupby("source", sort=True)
        for (region, fracture), count in _region_fracture(rows).items()
    ]
    return pd.DataFrame(counts, columns=["group", "count"])


def _region_fracture(images: pd.DataFrame) -> dict[tuple[str, str], int]:
    fracture = images["fracture"].map({1: "fractured", 0: "not_fractured"}).fillna("fracture_NA")
    region = images["region_raw"].fillna("NA")
    counts = Counter(zip(region, fracture, strict=True))
    return {key: int(counts[key]) for key in sorted(counts)}


def _counts(values: Iterable[str]) -> dict[str, int]:
    counts = Counter(values)
    return {key: int(counts[key]) for key in sorted(counts)}


def run(
    params: Mapping[str, Any], *, data_root: str | Path | None = "data", base: str | Path = "."
) -> pd.DataFrame:
    """The census table for params.yaml's sources plus unclaimed files under data_root."""
    adapters = adapters_from_params(params, base=base)
    root = None if data_root is None else Path(base) / data_root
    files = list_files(adapters, root)
    roots = {adapter.name: adapter.root for adapter in adapters}
    if root is not None:
        roots[UNASSIGNED] = root
    trusted = [Path(base) / ".dvc" / "cache"]  # DVC's own links (cache type symlink)
    return build_table(files, Settings.from_params(params), roots=roots, trusted=trusted)


def write_outputs(
    table: pd.DataFrame,
    out: str | Path,
    metrics: str | Path | None = None,
    plot: str | Path | None = None,
) -> None:
    """Write the parquet table (byte-reproducible), metrics JSON and plot CSV."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False, engine="pyarrow", compression="zstd")
    if metrics is not None:
        jsonfile.write(metrics, summarise(table))
    if plot is not None:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        group_counts(table).to_csv(plot, index=False, lineterminator="\n")
