"""Every census image -> a canonical working-size uint8 image, or quarantine with a reason.

Usable files ("ok", and "truncated" ones whose missing rows the decoder zero-filled, which
are recorded as "repaired") go to a shard directory; everything else is listed in the
quarantine table. Every census image row ends up in exactly one of the two.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from bonexray.data import imaging
from bonexray.data.resize import PAD_VALUE, RESAMPLE_NAME, Working, load_working
from bonexray.errors import ConfigError
from bonexray.io.shards import ShardWriter

QUARANTINE_COLUMNS = ["id", "path", "source", "status", "reason"]
INDEX_DTYPES = {
    "id": "string",
    "shard": "int64",
    "row": "int64",
    "source": "string",
    "status": "string",
    "filled_from_row": "Int32",
    "orig_width": "int64",
    "orig_height": "int64",
    "pixel_sha256": "string",
}
# A spawned worker takes ~0.2 s to start (it imports numpy, PIL and the decoder, plus the
# calling script's top-level imports: keep those light). Below ~600 small radiographs one
# process is as fast as two.
MIN_IMAGES_FOR_POOL = 600
# Files per task sent to a worker: large enough that inter-process traffic is a small
# share of the work, small enough to keep both workers busy to the end.
CHUNK_SIZE = 16


def _results(
    paths: list[str], size: int, keep_aspect: bool, limits: imaging.Limits, workers: int
) -> Iterator[Working]:
    """load_working() of each path, in order; in a process pool when workers > 1 and it pays."""
    args = (paths, repeat(size), repeat(keep_aspect), repeat(limits))
    if workers <= 1 or len(paths) < MIN_IMAGES_FOR_POOL:
        yield from map(load_working, *args)
        return
    # "spawn": forking a parent that already runs pyarrow's threads can deadlock a child.
    # The worker function lives in bonexray.data.resize, which imports no pandas/pyarrow.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        # Order-preserving map: output is identical whatever the worker count.
        yield from pool.map(load_working, *args, chunksize=CHUNK_SIZE)


def repair(
    census: pd.DataFrame,
    out_dir: str | Path,
    quarantine_path: str | Path,
    *,
    size: int,
    keep_aspect: bool,
    limits: imaging.Limits,
    shard_size: int = 2048,
    workers: int = 1,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Repair every census row with role "image"; write shards and quarantine; return metrics.

    ``root`` is the directory census paths are relative to (the repository root). With
    ``workers > 1`` worker processes are spawned, so a calling script needs the usual
    ``if __name__ == "__main__":`` guard. Output does not depend on ``workers``.
    """
    missing = {"id", "path", "source", "role"} - set(census.columns)
    if missing:
        raise ConfigError(f"census: missing columns {sorted(missing)}")
    columns = ["id", "path", "source"] + [c for c in ("status", "reason") if c in census]
    images = census.loc[census["role"] == "image", columns].reset_index(drop=True)
    if "status" in images.columns:
        census_usable = images["status"].isin(imaging.USABLE).to_numpy()
        # Census refused these from their path alone (a name that is not UTF-8, a link out
        # of the source): they are not opened here either, and keep census's reason.
        refused = images["status"].isin(imaging.REFUSED_BY_CENSUS).to_numpy()
    else:
        census_usable, refused = None, np.zeros(len(images), dtype=bool)
    paths = [str(Path(root) / p) for p in images.loc[~refused, "path"]]

    writer = ShardWriter(
        out_dir,
        (size, size),
        np.uint8,
        shard_size,
        meta={
            "size": size,
            "keep_aspect": keep_aspect,
            "pad_value": PAD_VALUE,
            "resample": RESAMPLE_NAME,
        },
        index_dtypes=INDEX_DTYPES,
    )
    kept_status: dict[str, str] = {}
    quarantined: list[dict[str, Any]] = []
    decode_status: Counter[str] = Counter()
    zero_filled_rows = 0
    changed_since_census = 0
    opened = iter(_results(paths, size, keep_aspect, limits, workers))
    records = (
        Working(item.status, item.reason, None, None, None, None) if skip else next(opened)
        for item, skip in zip(images.itertuples(index=False), refused, strict=True)
    )
    progress = tqdm(records, total=len(images), desc="repair", unit="img", disable=None)
    for k, (item, record) in enumerate(zip(images.itertuples(index=False), progress, strict=True)):
        decode_status[record.status] += 1
        usable = record.pixels is not None
        if census_usable is not None and usable != census_usable[k]:
            changed_since_census += 1
        if not usable:
            quarantined.append(
                {
                    "id": item.id,
                    "path": item.path,
                    "source": item.source,
                    "status": record.status,
                    "reason": record.reason,
                }
            )
            continue
        # "truncated" = rows zero-filled from filled_from_row on; a cut progressive JPEG
        # is "truncated" too but has every row (coarser), so filled_from_row is None.
        filled = record.filled_from_row
        if filled is not None:
            zero_filled_rows += record.height - filled
        kept_status[item.id] = "repaired" if record.status == "truncated" else "ok"
        writer.add(
            item.id,
            record.pixels,
            source=item.source,
            status=kept_status[item.id],
            filled_from_row=filled,
            orig_width=record.width,
            orig_height=record.height,
            pixel_sha256=hashlib.sha256(record.pixels.tobytes()).hexdigest(),
        )

    # Every census image in exactly one of the two outputs, checked before either is written.
    accounted = sorted([*kept_status, *(q["id"] for q in quarantined)])
    if accounted != sorted(images["id"]):
        raise AssertionError(
            f"repair lost or duplicated images: {len(images)} in, {len(kept_status)} kept + "
            f"{len(quarantined)} quarantined"
        )
    writer.close()
    quarantine = pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS)
    Path(quarantine_path).parent.mkdir(parents=True, exist_ok=True)
    quarantine.to_csv(quarantine_path, index=False, lineterminator="\n")

    repaired = sum(status == "repaired" for status in kept_status.values())
    return {
        "images": len(images),
        "decode_status": dict(sorted(decode_status.items())),
        "ok": len(kept_status) - repaired,
        "repaired": repaired,
        "zero_filled_rows": int(zero_filled_rows),
        "quarantined": len(quarantined),
        "quarantined_by_reason": dict(sorted(Counter(q["status"] for q in quarantined).items())),
        "usability_changed_since_census": changed_since_census,
        "size": size,
        "keep_aspect": keep_aspect,
    }
