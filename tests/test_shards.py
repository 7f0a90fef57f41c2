from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bonexray.io.shards import ShardReader, ShardWriter

SMAPS = Path("/proc/self/smaps")


def test_round_trip_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    items = rng.integers(0, 255, size=(7, 4, 5), dtype=np.uint8)
    with ShardWriter(tmp_path, (4, 5), np.uint8, shard_size=3, meta={"size": 4}) as writer:
        for i, item in enumerate(items):
            writer.add(f"img{i}", item, label=i % 2)
    assert sorted(p.name for p in tmp_path.glob("shard-*.npy")) == [
        "shard-00000.npy",
        "shard-00001.npy",
        "shard-00002.npy",
    ]
    reader = ShardReader(tmp_path)
    assert len(reader) == 7
    assert reader.meta["size"] == 4
    np.testing.assert_array_equal(reader[4], items[4])
    np.testing.assert_array_equal(reader.take([6, 0, 3]), items[[6, 0, 3]])
    np.testing.assert_array_equal(reader.take_ids(["img5", "img1"]), items[[5, 1]])
    np.testing.assert_array_equal(reader[2:5], items[2:5])
    assert reader.index["label"].tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert reader.position("img3") == 3


def test_shards_are_memory_mapped(tmp_path):
    with ShardWriter(tmp_path, (2,), np.float32) as writer:
        writer.add("a", np.ones(2, np.float32))
    reader = ShardReader(tmp_path)
    assert isinstance(reader._shards[0], np.memmap)


def test_wrong_shape_names_the_item(tmp_path):
    writer = ShardWriter(tmp_path, (2, 2), np.uint8)
    with pytest.raises(ValueError, match="bad.png"):
        writer.add("bad.png", np.zeros((3, 2), np.uint8))


def test_rewrite_removes_stale_shards(tmp_path):
    with ShardWriter(tmp_path, (1,), np.uint8, shard_size=1) as writer:
        for i in range(3):
            writer.add(str(i), np.array([i], np.uint8))
    with ShardWriter(tmp_path, (1,), np.uint8, shard_size=1) as writer:
        writer.add("only", np.array([9], np.uint8))
    assert len(list(tmp_path.glob("shard-*.npy"))) == 1
    assert ShardReader(tmp_path).index["id"].tolist() == ["only"]


def test_empty_writer_gives_readable_empty_index(tmp_path):
    ShardWriter(tmp_path, (2,), np.uint8).close()
    reader = ShardReader(tmp_path)
    assert len(reader) == 0
    assert isinstance(reader.index, pd.DataFrame)


def test_not_a_shard_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.parquet"):
        ShardReader(tmp_path)


def test_require_names_the_missing_ids(tmp_path):
    with ShardWriter(tmp_path, (1,), np.uint8) as writer:
        writer.add("a", np.zeros(1, np.uint8))
    reader = ShardReader(tmp_path)
    reader.require(["a"])
    with pytest.raises(ValueError, match=r"1 of the labels have no item.*'b'"):
        reader.require(["a", "b"], "the labels")


def test_index_dtypes_keep_nullable_integers(tmp_path):
    with ShardWriter(tmp_path, (1,), np.uint8, index_dtypes={"filled": "Int32"}) as writer:
        writer.add("a", np.zeros(1, np.uint8), filled=None)
        writer.add("b", np.zeros(1, np.uint8), filled=7)
    index = ShardReader(tmp_path).index
    assert str(index["filled"].dtype) == "Int32"
    assert index["filled"].isna().tolist() == [True, False]


def test_rows_stay_on_disk_until_read(tmp_path):
    rng = np.random.default_rng(1)
    items = rng.normal(size=(7, 3, 2)).astype(np.float32)
    with ShardWriter(tmp_path, (3, 2), np.float32, shard_size=3) as writer:
        for i, item in enumerate(items):
            writer.add(f"img{i}", item)
    rows = ShardReader(tmp_path).rows(["img6", "img0", "img4", "img2"])
    assert rows.shape == (4, 3, 2) and len(rows) == 4
    np.testing.assert_array_equal(rows.read(), items[[6, 0, 4, 2]])
    picked = rows.subset(np.array([True, False, True, False]))
    np.testing.assert_array_equal(picked.read(), items[[6, 4]])
    np.testing.assert_array_equal(rows.read(np.array([3, 0])), items[[2, 6]])


def mapped_resident_kib(path) -> int:
    """Resident KiB of this process's memory maps of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in SMAPS.read_text().splitlines():
        if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not SMAPS.exists(), reason="Linux /proc only")
def test_reading_rows_leaves_no_shard_page_resident_in_the_process(tmp_path):
    """Pages read through a memory map would stay in the reader's resident set, so a model
    stage reading every row each epoch would grow with the data set."""
    items = np.ones((64, 32, 32), np.float32)  # 256 KiB in one shard
    with ShardWriter(tmp_path, (32, 32), np.float32) as writer:
        for i, item in enumerate(items):
            writer.add(str(i), item)
    reader = ShardReader(tmp_path)
    assert reader.take(range(64)).sum() == items.sum()
    assert mapped_resident_kib(tmp_path / "shard-00000.npy") == 0
    np.asarray(reader._shards[0]).sum()  # reading through the map does count
    assert mapped_resident_kib(tmp_path / "shard-00000.npy") > 0
