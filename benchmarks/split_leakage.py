"""Near-duplicate grouping vs the independent pixel check, on FracAtlas (issue #13).

Runs the data stages' library code (census, repair, split; one process) on FracAtlas read
in place, in a scratch directory, with params.yaml's settings, then prints:

* the pHash and dHash distances of the image pairs given on the command line (default:
  the two cross-split pairs of #13);
* how many pairs each hash links at each distance, and how many of the dHash links the
  pHash misses (to choose split.dhash_distance);
* the pixel check's cross-split pair count with the pHash-only grouping (before #13),
  with pHash + dHash, and with params.yaml's grouping (adding the tile hash), and the
  pairs it names;
* the lowest coarse correlation among pairs whose masked correlation is high (to check
  that split.COARSE_MIN_CORRELATION loses none).

    PYTHONPATH=src .venv/bin/python benchmarks/split_leakage.py [--work DIR] [IMGa:IMGb ...]

--work keeps census.parquet and repair/ there and reuses them on the next run.
FracAtlas is read from ../shared/data/fracatlas or $BONEXRAY_FRACATLAS.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bonexray.data import census, imaging, repair, split
from bonexray.data.taxonomy import Taxonomy
from bonexray.io.params import load, section
from bonexray.io.shards import ShardReader

REPO = Path(__file__).resolve().parents[1]
ISSUE_PAIRS = ["IMG0002337:IMG0002340", "IMG0002646:IMG0004072"]


def prepare(work: Path, params: dict) -> tuple[pd.DataFrame, ShardReader]:
    """census.parquet and repair/ under work (reused when present), one worker each."""
    source = Path(os.environ.get("BONEXRAY_FRACATLAS", REPO.parent / "shared/data/fracatlas"))
    if not (source / "dataset.csv").is_file():
        raise SystemExit(f"no FracAtlas at {source}")
    data = work / "data"
    if not data.exists():
        data.symlink_to(source.resolve())
    table_path, shards = work / "census.parquet", work / "repair"
    if not table_path.is_file():
        started = time.perf_counter()
        table = census.run({**params, "census": {**params["census"], "workers": 1}}, base=work)
        table.to_parquet(table_path, index=False)
        print(f"census: {len(table)} files, {time.perf_counter() - started:.1f} s")
    table = pd.read_parquet(table_path)
    if not (shards / "index.parquet").is_file():
        started = time.perf_counter()
        options = section(params, "repair")
        repair.repair(
            table,
            shards,
            work / "quarantine.csv",
            size=int(options["image_size"]),
            keep_aspect=bool(options["keep_aspect"]),
            limits=imaging.Limits.from_params(params),
            root=work,
        )
        print(f"repair: {time.perf_counter() - started:.1f} s")
    return table, ShardReader(shards)


def distances(hex_hashes: pd.Series) -> np.ndarray:
    """All-pairs Hamming distances (n, n) of hex hashes."""
    bits = np.unpackbits(
        np.stack([np.frombuffer(bytes.fromhex(h), np.uint8) for h in hex_hashes]), axis=1
    )
    signs = bits.astype(np.float32) * 2 - 1
    return np.rint((bits.shape[1] - signs @ signs.T) / 2).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, help="scratch directory kept between runs")
    parser.add_argument("pairs", nargs="*", default=ISSUE_PAIRS, help="IMGa:IMGb pairs")
    args = parser.parse_args()
    params = load(REPO / "params.yaml")
    params["sources"] = {"fracatlas": {"kind": "fracatlas", "path": "data"}}
    work = args.work or Path(tempfile.mkdtemp(prefix="split_leakage_"))
    work.mkdir(parents=True, exist_ok=True)
    table, reader = prepare(work, params)
    settings = split.Settings.from_params(params)

    frame = split.join_inputs(table, reader.index)
    stem = frame["id"].str.extract(r"([^/]+)\.\w+$")[0]
    row = {name: k for k, name in enumerate(stem)}
    phash, dhash = distances(frame["phash"]), distances(frame["dhash"])
    for pair in args.pairs:
        a, b = (row[name] for name in pair.split(":"))
        print(f"{pair}: pHash {phash[a, b]} of 64 bits, dHash {dhash[a, b]} of 256 bits")

    upper = np.triu_indices(len(frame), 1)
    p, d = phash[upper], dhash[upper]
    print(
        "dHash distance: pairs linked by dHash / of which pHash misses (> near_duplicate_distance)"
    )
    for k in range(0, 21, 2):
        missed = int(((d <= k) & (p > settings.near_duplicate_distance)).sum())
        print(f"  <= {k:2d}: {int((d <= k).sum()):6d} / {missed}")
    phash_links = int((p <= settings.near_duplicate_distance).sum())
    print(f"pHash <= {settings.near_duplicate_distance}: {phash_links} pairs")

    started = time.perf_counter()
    thumbs = split.pixel_thumbnails(reader, settings.pixel_check.thumb_side)
    print(f"pixel thumbnails: {time.perf_counter() - started:.1f} s")
    # No pair is under 0 bits apart: the pHash-only grouping from before #13.
    old = dataclasses.replace(settings, dhash_distance=-1, tile_link=None)
    hashes = dataclasses.replace(settings, tile_link=None)
    taxonomy = Taxonomy.from_params(params)
    groupings = (("pHash only", old), ("pHash + dHash", hashes), ("params.yaml", settings))
    for name, chosen in groupings:
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, metrics = split.make_split(table, reader.index, taxonomy, chosen, thumbs)
        print(
            f"{name} grouping: links {metrics['groups']['links']}, "
            f"{metrics['groups']['count']} groups, leakage total {metrics['leakage']['total']}, "
            f"pixel check {metrics['pixel_leakage']['cross_split_pairs']} cross-split pairs "
            f"({time.perf_counter() - started:.1f} s)"
        )
        for warning in caught:
            if "pixel check" in str(warning.message):
                print(f"  {warning.message}")

    # Every pair with a coarse correlation >= 0.6: is any high masked one below the cut?
    check, side, n = settings.pixel_check, split.COARSE_SIDE, len(thumbs)
    factor = thumbs.shape[-1] // side
    shown = thumbs > check.dark_level
    blocks = (n, side, factor, side, factor)
    coarse = thumbs.reshape(blocks).mean(axis=(2, 4)).reshape(n, -1)
    coarse_shown = shown.reshape(blocks).all(axis=(2, 4)).reshape(n, -1)
    found = []
    for start in range(0, n, 512):
        rows = slice(start, start + 512)
        dot = split._masked_correlation_matrix(
            coarse[rows], coarse_shown[rows], coarse, coarse_shown
        )
        i, j = np.nonzero(dot >= 0.6)
        keep = j > i + start
        found.append(np.column_stack([i[keep] + start, j[keep], dot[i[keep], j[keep]]]))
    every = np.concatenate(found)
    pairs, coarse_of = every[:, :2].astype(np.int64), every[:, 2]
    masked = split.masked_correlation(thumbs, shown, pairs)
    print(
        f"coarse >= 0.6: {len(pairs)} pairs; >= cut {split.COARSE_MIN_CORRELATION}: "
        f"{int((coarse_of >= split.COARSE_MIN_CORRELATION).sum())}"
    )
    for level in (0.95, check.min_correlation):
        high = masked >= level
        print(
            f"masked correlation >= {level}: {int(high.sum())} pairs (any splits), lowest "
            f"coarse correlation among them {coarse_of[high].min():.3f}"
        )
    linked = (phash <= settings.near_duplicate_distance) | (dhash <= settings.dhash_distance)
    named = {tuple(sorted(row[name] for name in pair.split(":"))) for pair in args.pairs}
    free = ~linked[pairs[:, 0], pairs[:, 1]]
    for (a, b), r in zip(pairs, masked, strict=True):
        if (a, b) in named:
            print(f"{stem[a]}:{stem[b]}: masked correlation {r:.4f}")
    top = np.argsort(np.where(free, masked, -2))[::-1][:5]
    print("highest masked correlation of pairs no hash links directly:")
    for k in top:
        a, b = pairs[k]
        print(f"  {stem[a]}:{stem[b]} {masked[k]:.4f} (pHash {phash[a, b]}, dHash {dhash[a, b]})")


if __name__ == "__main__":
    main()
