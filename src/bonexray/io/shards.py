"""Packed, memory-mappable arrays plus an index table.

Stages after `repair` exchange data as a directory holding

    shard-00000.npy, shard-00001.npy, ...   arrays of shape (n_i, *item_shape), one dtype
    index.parquet                           one row per item: id, shard, row, plus metadata

instead of thousands of small files, which are slow to hash and push in DVC. Shards are
opened with ``np.load(mmap_mode="r")`` so a reader touches only the rows it asks for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bonexray.errors import ConfigError
from bonexray.io import jsonfile

INDEX = "index.parquet"
META = "meta.json"


class ShardWriter:
    """Append items one at a time; flushes a shard every ``shard_size`` items.

    Use as a context manager; ``close()`` writes the index with the per-item metadata
    passed to ``add`` (one dict per item, the same keys for all).
    """

    def __init__(
        self,
        directory: str | Path,
        item_shape: Sequence[int],
        dtype: np.dtype | str,
        shard_size: int = 4096,
        meta: dict | None = None,
        index_dtypes: dict[str, str] | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("shard-*.npy"):
            stale.unlink()
        self.item_shape = tuple(int(s) for s in item_shape)
        self.dtype = np.dtype(dtype)
        self.shard_size = shard_size
        self.meta = dict(meta or {})
        # Per-column dtypes for the index, e.g. {"filled_from_row": "Int32"}: pandas would
        # otherwise infer float for an integer column holding None.
        self.index_dtypes = dict(index_dtypes or {})
        self._buffer = np.empty((shard_size, *self.item_shape), self.dtype)
        self._fill = 0
        self._shard = 0
        self._rows: list[dict] = []

    def add(self, item_id: str, array: np.ndarray, **metadata: object) -> None:
        array = np.asarray(array)
        if array.shape != self.item_shape:
            raise ValueError(f"{item_id}: shape {array.shape}, expected {self.item_shape}")
        self._buffer[self._fill] = array
        self._rows.append({"id": item_id, "shard": self._shard, "row": self._fill, **metadata})
        self._fill += 1
        if self._fill == self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if self._fill:
            np.save(self.directory / f"shard-{self._shard:05d}.npy", self._buffer[: self._fill])
            self._shard += 1
            self._fill = 0

    def close(self) -> pd.DataFrame:
        self._flush()
        columns = [
            "id",
            "shard",
            "row",
            *(c for c in self.index_dtypes if c not in ("id", "shard", "row")),
        ]
        index = pd.DataFrame(self._rows, columns=None if self._rows else columns)
        index = index.astype(self.index_dtypes)
        index.to_parquet(self.directory / INDEX, index=False)
        meta = {"item_shape": list(self.item_shape), "dtype": self.dtype.str, **self.meta}
        jsonfile.write(self.directory / META, meta, sort_keys=True)
        return index

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def read_meta(directory: str | Path) -> dict:
    """A shard directory's meta.json (item_shape, dtype, and what its writer recorded),
    without opening the shards."""
    path = Path(directory) / META
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {directory} is not a shard directory")
    return json.loads(path.read_text())


class ShardReader(Sequence[np.ndarray]):
    """Random access to a shard directory by position in its index."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not (self.directory / INDEX).is_file():
            raise FileNotFoundError(f"{self.directory}: no {INDEX}; not a shard directory")
        self.index = pd.read_parquet(self.directory / INDEX)
        self.meta = read_meta(self.directory)
        n_shards = int(self.index["shard"].max()) + 1 if len(self.index) else 0
        self._shards = [
            np.load(self.directory / f"shard-{i:05d}.npy", mmap_mode="r") for i in range(n_shards)
        ]
        self._pos = {item_id: i for i, item_id in enumerate(self.index["id"])}
        self._shard_of = self.index["shard"].to_numpy()
        self._row_of = self.index["row"].to_numpy()

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["item_shape"])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.take(range(*i.indices(len(self))))
        return np.asarray(self._shards[self._shard_of[i]][self._row_of[i]])

    def position(self, item_id: str) -> int:
        return self._pos[item_id]

    def require(self, ids: Iterable[str], what: str = "the requested ids") -> None:
        """Fail with a clear error if any of ``ids`` has no item here."""
        absent = sorted(set(ids) - self._pos.keys())
        if absent:
            raise ConfigError(
                f"{self.directory}: {len(absent)} of {what} have no item, e.g. {absent[:3]}"
            )

    def take(self, positions: Iterable[int]) -> np.ndarray:
        """Stack the items at ``positions`` into one in-memory array.

        Rows are copied with pread from the page cache, not through the memory maps: pages
        touched through a map stay in this process's resident set, so a model stage that
        reads every row each epoch would grow with the data set.
        """
        positions = np.fromiter(positions, dtype=np.int64)
        out = np.empty((len(positions), *self.item_shape), np.dtype(self.meta["dtype"]))
        row_bytes = out[0].nbytes if len(out) else 0
        files: dict[int, int] = {}
        try:
            for k, p in enumerate(positions):
                shard = int(self._shard_of[p])
                if shard not in files:
                    path = self.directory / f"shard-{shard:05d}.npy"
                    files[shard] = os.open(path, os.O_RDONLY)
                offset = self._shards[shard].offset + int(self._row_of[p]) * row_bytes
                if os.preadv(files[shard], [out[k]], offset) != row_bytes:
                    raise ConfigError(f"{self.directory}: shard {shard} is truncated")
        finally:
            for fd in files.values():
                os.close(fd)
        return out

    def take_ids(self, ids: Iterable[str]) -> np.ndarray:
        return self.take(self._pos[i] for i in ids)

    def iter_batches(self, positions: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(positions), batch_size):
            yield self.take(positions[start : start + batch_size])

    def rows(self, ids: Iterable[str]) -> ShardRows:
        """The items of ``ids``, in that order, left on disk until read."""
        return ShardRows(self, np.fromiter((self._pos[i] for i in ids), dtype=np.int64))


class ShardRows:
    """A selection of a shard directory's items, read on demand.

    Training streams batches from here, so a stage holds one batch of a data set in
    memory rather than the whole set, whatever its size.
    """

    def __init__(self, reader: ShardReader, positions: np.ndarray) -> None:
        self.reader = reader
        self.positions = np.asarray(positions, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.reader.item_shape

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.item_shape)

    def subset(self, selection: np.ndarray) -> ShardRows:
        """Rows by boolean mask or integer index, still on disk."""
        return ShardRows(self.reader, self.positions[selection])

    def read(self, selection: np.ndarray | None = None) -> np.ndarray:
        """All rows, or those at ``selection``, as one in-memory array."""
        positions = self.positions if selection is None else self.positions[selection]
        return self.reader.take(positions)
