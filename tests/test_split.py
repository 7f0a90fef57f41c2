"""The split stage: fractions, stratification, grouping against leakage, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from badfiles import texture
from paths import REPO
from PIL import Image

from bonexray.data import census as census_module
from bonexray.data.resize import to_working
from bonexray.data.split import (
    LeakageError,
    PixelCheck,
    Settings,
    TileLink,
    check_no_leakage,
    count_leaks,
    count_pixel_leaks,
    duplicate_groups,
    fold_plan,
    join_inputs,
    make_split,
    near_duplicate_pairs,
    pixel_thumbnails,
    strata,
    tile_pairs,
)
from bonexray.data.taxonomy import Taxonomy
from bonexray.io.params import ParamsError, load
from bonexray.io.shards import ShardReader, ShardWriter

TAXONOMY = Taxonomy.from_params(
    {
        "taxonomy": {
            "regions": ["hand", "elbow", "shoulder", "hip", "leg"],
            "synonyms": {"hand": ["wrist"], "leg": ["knee", "ankle"]},
            "ambiguous": ["mixed"],
        }
    }
)
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
DISTANCE = 6
DHASH_DISTANCE = 12
DISTANCES = {"near_duplicate": DISTANCE, "near_duplicate_dhash": DHASH_DISTANCE}
TILES = TileLink(distance=2, matches=8)
PIXEL_CHECK = PixelCheck(thumb_side=32, dark_level=48, min_correlation=0.99)
WORKING = 64  # working size of the shards these tests write


def hex64(value: int) -> str:
    return f"{value:016x}"


def flip_bits(value: int, k: int, rng: np.random.Generator) -> int:
    for bit in rng.choice(64, size=k, replace=False):
        value ^= 1 << int(bit)
    return value


def flip_hex(hex_hash: str, k: int, seed: int = 5) -> str:
    """hex_hash with k of its bits flipped."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8))
    bits[np.random.default_rng(seed).choice(len(bits), size=k, replace=False)] ^= 1
    return np.packbits(bits).tobytes().hex()


def random_images(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A census and repair index of n unrelated images (random 64-bit pHashes are ~32 bits
    apart, 256-bit dHashes ~128, so none are near duplicates) with skewed region x fracture
    classes, the smallest (hip|1) about 3%."""
    rng = np.random.default_rng(seed)
    census = pd.DataFrame(
        {
            "id": [f"img{i:05d}" for i in range(n)],
            "source": "clinic",
            "sha256": [f"sha{i}" for i in range(n)],
            "phash": [hex64(int(v)) for v in rng.integers(0, 2**63, n)],
            "dhash": [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(n)],
            "tile_hash": [  # 16 random 64-bit cells: ~32 bits apart, never a match
                rng.integers(0, 256, 128, dtype=np.uint8).tobytes().hex() for _ in range(n)
            ],
            "region_raw": pd.array(
                rng.choice(
                    ["hand", "wrist", "leg", "hip", "mixed", None],
                    n,
                    p=[0.3, 0.1, 0.35, 0.1, 0.1, 0.05],
                ),
                dtype="string",
            ),
            "fracture": pd.array(rng.choice([1, 0], n, p=[0.3, 0.7]), dtype="Int8"),
            "hardware": pd.array(rng.choice([1, 0, None], n), dtype="Int8"),
            "patient_id": pd.array([None] * n, dtype="string"),
            "study_id": pd.array([None] * n, dtype="string"),
        }
    )
    repair = pd.DataFrame({"id": census["id"], "pixel_sha256": [f"px{i}" for i in range(n)]})
    return census, repair


def run(
    census: pd.DataFrame,
    repair: pd.DataFrame,
    seed: int = 42,
    thumbnails: np.ndarray | None = None,
    **kwargs,
):
    options = {
        "fractions": FRACTIONS,
        "near_duplicate_distance": DISTANCE,
        "dhash_distance": DHASH_DISTANCE,
        "group_by_patient": True,
        "seed": seed,
        "pixel_check": PIXEL_CHECK,
        "tile_link": TILES,
        **kwargs,
    }
    return make_split(census, repair, TAXONOMY, Settings(**options), thumbnails)


def split_of(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["id"], table["split"], strict=True))


def test_fractions_are_respected():
    table, metrics = run(*random_images(1000))
    counts = table["split"].value_counts()
    assert counts["train"] == pytest.approx(600, abs=15)
    assert counts["val"] == pytest.approx(200, abs=15)
    assert counts["test"] == pytest.approx(200, abs=15)
    assert metrics["counts"] == {s: int(counts[s]) for s in ("train", "val", "test")}
    census = random_images(1000)[0].set_index("id")["hardware"]  # carried for evaluate
    assert table["hardware"].dtype == "Int8"
    assert table.set_index("id")["hardware"].equals(census.loc[table["id"]])
    assert list(table.columns) == [
        "id",
        "split",
        "group",
        "region_hint",
        "region_source",
        "fracture",
        "hardware",
        "stratum",
    ]


def test_stratification_keeps_class_ratios():
    table, metrics = run(*random_images(1500))
    overall = table["stratum"].value_counts(normalize=True)
    for split, rows in table.groupby("split"):
        share = rows["stratum"].value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert (share - overall).abs().max() < 0.02, split
    assert metrics["max_class_share_deviation"] < 0.02
    assert metrics["strata_missing_from_a_split"] == 0


def test_strata_resolve_regions_and_missing_labels():
    census, _ = random_images(5)
    census["region_raw"] = pd.array(["wrist", "mixed", None, "Leg", "banana"], dtype="string")
    census["fracture"] = pd.array([1, 0, None, 0, 1], dtype="Int8")
    labels = strata(census, TAXONOMY)
    assert labels["stratum"].tolist() == ["hand|1", "unknown|0", "unknown|na", "leg|0", "unknown|1"]
    assert labels["region_source"].tolist() == [
        "synonym",
        "ambiguous",
        "missing",
        "original",
        "unknown",
    ]
    assert labels["region_hint"].isna().tolist() == [False, True, True, False, True]


def test_exact_duplicates_never_cross_splits():
    census, repair = random_images(600)
    census.loc[100:159, "sha256"] = [f"same-bytes-{i // 3}" for i in range(60)]
    repair.loc[300:359, "pixel_sha256"] = [f"same-pixels-{i // 4}" for i in range(60)]
    table, metrics = run(census, repair)
    splits = table.assign(sha=census["sha256"], px=repair["pixel_sha256"])
    assert (splits.groupby("sha")["split"].nunique() == 1).all()
    assert (splits.groupby("px")["split"].nunique() == 1).all()
    assert metrics["groups"]["largest"] == 4
    assert metrics["groups"]["images_in_shared_groups"] == 120
    assert metrics["leakage"]["total"] == 0


def test_near_duplicate_pairs_match_brute_force():
    rng = np.random.default_rng(1)
    base = [int(v) for v in rng.integers(0, 2**63, 30)]
    values = base + [
        flip_bits(v, int(k), rng) for v, k in zip(base, rng.integers(0, 10, 30), strict=True)
    ]
    expected = {
        (i, j)
        for i in range(len(values))
        for j in range(i + 1, len(values))
        if bin(values[i] ^ values[j]).count("1") <= DISTANCE
    }
    found = near_duplicate_pairs([hex64(v) for v in values], DISTANCE)
    assert {tuple(map(int, p)) for p in found} == expected
    assert len(expected) > 5  # the test exercises real pairs


def test_near_duplicate_pairs_on_longer_hashes():
    # census.phash_size 16 gives 256-bit hashes: several 64-bit words per hash.
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, 32, dtype=np.uint8)
    b = a.copy()
    b[[0, 9, 20, 31]] ^= np.array([1, 128, 3, 16], dtype=np.uint8)  # 5 bits apart
    far = b.copy()
    far[5] ^= 0b11  # 7 bits from a
    pairs = near_duplicate_pairs(
        [a.tobytes().hex(), b.tobytes().hex(), far.tobytes().hex()], DISTANCE
    )
    assert {tuple(map(int, p)) for p in pairs} == {(0, 1), (1, 2)}


def test_near_duplicates_group_transitively_and_stop_at_the_threshold():
    census, repair = random_images(400)
    rng = np.random.default_rng(3)
    base = int(census.loc[0, "phash"], 16)
    within = flip_bits(base, DISTANCE, rng)
    beyond = flip_bits(base, DISTANCE + 1, rng)
    chain_1 = flip_bits(base, 4, rng)
    chain_2 = chain_1
    while bin(chain_2 ^ base).count("1") <= DISTANCE:  # near chain_1, far from base
        chain_2 = flip_bits(chain_1, 4, rng)
    census.loc[1:4, "phash"] = [hex64(within), hex64(beyond), hex64(chain_1), hex64(chain_2)]
    table, metrics = run(census, repair)
    group = table["group"].tolist()
    assert group[0] == group[1] == group[3] == group[4]  # base~within, base~chain_1~chain_2
    assert group[2] != group[0]  # one bit over the threshold is another image
    assert table.loc[[0, 1, 3, 4], "split"].nunique() == 1
    assert metrics["leakage"]["near_duplicate"] == 0


def test_one_patient_and_one_study_never_cross_splits():
    census, repair = random_images(600)
    census["patient_id"] = pd.array(
        [f"p{i // 5}" if i < 300 else None for i in range(600)], dtype="string"
    )
    census["study_id"] = pd.array(
        [f"s{i // 2}" if i >= 500 else None for i in range(600)], dtype="string"
    )
    table, metrics = run(census, repair)
    assert (table[:300].groupby(census["patient_id"][:300])["split"].nunique() == 1).all()
    assert (table[500:].groupby(census["study_id"][500:])["split"].nunique() == 1).all()
    assert metrics["leakage"]["patient"] == metrics["leakage"]["study"] == 0

    # The same patient id in two sources is two people; without grouping, no link at all.
    census.loc[0, "source"] = "other_clinic"
    table, _ = run(census, repair)
    assert table.loc[0, "group"] != table.loc[1, "group"]
    assert table.loc[1, "group"] == table.loc[2, "group"]
    table, metrics = run(census, repair, group_by_patient=False)
    assert table["group"].nunique() == 600
    assert "patient" not in metrics["leakage"]


def test_independent_check_catches_a_leaky_split():
    census, repair = random_images(300)
    census.loc[1, "sha256"] = census.loc[0, "sha256"]
    repair.loc[3, "pixel_sha256"] = repair.loc[2, "pixel_sha256"]
    census.loc[5, "phash"] = hex64(
        flip_bits(int(census.loc[4, "phash"], 16), 3, np.random.default_rng(4))
    )
    census["patient_id"] = pd.array([None] * 6 + ["p1", "p1", "p1"] + [None] * 291, dtype="string")
    census.loc[11, "dhash"] = flip_hex(census.loc[10, "dhash"], DHASH_DISTANCE)
    table, metrics = run(census, repair)
    frame = join_inputs(census, repair)
    assert count_leaks(frame, table["split"], DISTANCES, True)["total"] == 0
    check_no_leakage(metrics["leakage"])

    leaky = table["split"].to_numpy(dtype=object).copy()
    for first, second in ((0, 1), (2, 3), (4, 5), (6, 7), (10, 11)):
        leaky[second] = "test" if leaky[first] != "test" else "val"
    leaks = count_leaks(frame, leaky, DISTANCES, True)
    assert leaks == {
        "sha256": 1,
        "pixel_sha256": 1,
        "patient": 2,
        "study": 0,
        "near_duplicate": 1,
        "near_duplicate_dhash": 1,
        "total": 6,
    }
    with pytest.raises(LeakageError, match="near_duplicate: 1 pairs"):
        check_no_leakage(leaks)


def test_same_seed_same_split_other_seed_other_split():
    census, repair = random_images(500)
    first, _ = run(census, repair, seed=7)
    again, _ = run(census, repair, seed=7)
    other, _ = run(census, repair, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert (first["split"] != other["split"]).sum() > 50


def test_warns_about_a_stratum_too_small_for_every_split():
    census, repair = random_images(300)
    census.loc[:1, "region_raw"] = "shoulder"
    census.loc[:1, "fracture"] = 1
    with pytest.warns(UserWarning, match=r"shoulder\|1 \(2 images\)"):
        _, metrics = run(census, repair)
    assert metrics["strata_missing_from_a_split"] == 1


def test_no_warning_when_every_stratum_fits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(*random_images(300))


@pytest.mark.parametrize(
    ("fractions", "plan"),
    [
        ({"train": 0.6, "val": 0.2, "test": 0.2}, (5, {"train": 3, "val": 1, "test": 1})),
        ({"train": 0.7, "val": 0.15, "test": 0.15}, (20, {"train": 14, "val": 3, "test": 3})),
        ({"train": 0.8, "val": 0.1, "test": 0.1}, (10, {"train": 8, "val": 1, "test": 1})),
    ],
)
def test_fold_plan(fractions, plan):
    assert fold_plan(fractions) == plan


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.6, "val": 0.3, "test": 0.2},
        {"train": 0.61, "val": 0.2, "test": 0.19},
        {"train": 0.8, "valid": 0.1, "test": 0.1},
    ],
)
def test_fold_plan_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="split.fractions"):
        fold_plan(fractions)


def test_repair_ids_missing_from_census_are_an_error():
    census, repair = random_images(20)
    with pytest.raises(ValueError, match="absent from the census"):
        join_inputs(census.iloc[1:], repair)


def test_too_few_groups_is_a_clear_error():
    census, repair = random_images(12)
    census["patient_id"] = pd.array(["a", "b", "c"] * 4, dtype="string")
    with pytest.raises(ValueError, match="only 3 independent groups"):
        run(census, repair)


@pytest.mark.filterwarnings("ignore:strata too small")
def test_warns_when_one_group_is_larger_than_a_fold():
    census, repair = random_images(200)
    census.loc[:59, "sha256"] = "one-file-copied-60-times"
    with pytest.warns(UserWarning, match="one group holds 60 of 200 images"):
        run(census, repair)


# ---------------------------------------------------------------------------- second hash


def smooth_image(seed: int, side: int = 256, grid: int = 8) -> np.ndarray:
    """A smooth random uint8 picture: a grid x grid random field, bicubic-enlarged."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (grid, grid), dtype=np.uint8))
    return np.asarray(field.resize((side, side), Image.Resampling.BICUBIC))


def bits_apart(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def hashes(image: np.ndarray) -> tuple[str, str]:
    """The census's pHash (64 bits) and dHash (256 bits) of an image."""
    return census_module.perceptual_hash(image, 8), census_module.difference_hash(image, 16)


def test_dhash_links_a_reframed_copy_that_phash_misses_and_vice_versa():
    original = smooth_image(1)
    reframed = original.copy()
    reframed[-32:] = 0  # a black band over the bottom eighth, as on FracAtlas's re-framed films
    shifted = np.roll(smooth_image(2), 2, axis=1)  # moved 2 px sideways
    p_orig, d_orig = hashes(original)
    p_reframed, d_reframed = hashes(reframed)
    p_other, d_other = hashes(smooth_image(2))
    p_shifted, d_shifted = hashes(shifted)
    # The crafted edits: each hash misses the copy that the other catches.
    reframed_d = bits_apart(d_orig, d_reframed)
    assert bits_apart(p_orig, p_reframed) > DISTANCE and reframed_d <= DHASH_DISTANCE
    assert bits_apart(p_other, p_shifted) <= DISTANCE
    assert bits_apart(d_other, d_shifted) > DHASH_DISTANCE

    census, repair = random_images(300)
    census.loc[0:3, "phash"] = [p_orig, p_reframed, p_other, p_shifted]
    census.loc[0:3, "dhash"] = [d_orig, d_reframed, d_other, d_shifted]
    table, metrics = run(census, repair)
    group = table["group"].tolist()
    assert group[0] == group[1] and group[2] == group[3] and group[0] != group[2]
    assert table.loc[0, "split"] == table.loc[1, "split"]
    assert table.loc[2, "split"] == table.loc[3, "split"]
    assert metrics["groups"]["links"]["near_duplicate_dhash"] == 1
    assert metrics["groups"]["links"]["near_duplicate"] == 1
    assert metrics["leakage"]["total"] == 0

    # One bit under the pair's distance the dHash no longer links it.
    table, metrics = run(census, repair, dhash_distance=reframed_d - 1)
    assert table.loc[0, "group"] != table.loc[1, "group"]
    assert metrics["groups"]["links"]["near_duplicate_dhash"] == 0


def test_census_difference_hash_is_exact_and_from_the_same_decode(tmp_path):
    # uint8 in, PIL's fixed-point 8-bit resize, then comparisons: integer work throughout.
    image = smooth_image(3, side=200)
    expected = "0e1818181078f0f0e187e387fe673e673be3e3e067f8c638463c0638387838f8"
    assert census_module.difference_hash(image, 16) == expected
    # The definition, by hand: is each pixel of a 17 x 16 thumbnail brighter than its left
    # neighbour, row by row, most significant bit first.
    thumb = np.asarray(
        Image.fromarray(image).resize((17, 16), Image.Resampling.LANCZOS, reducing_gap=2.0)
    ).astype(np.int16)
    assert np.packbits(thumb[:, 1:] > thumb[:, :-1]).tobytes().hex() == expected
    assert len(census_module.difference_hash(image, 8)) == 16  # 64 bits
    Image.fromarray(image).save(tmp_path / "x.png")
    row = census_module.probe(tmp_path / "x.png", census_module.Settings(dhash_size=16))
    assert row["dhash"] == census_module.difference_hash(image, 16)
    assert row["phash"] == census_module.perceptual_hash(image, 8)
    assert census_module.COLUMNS["dhash"] == "string"
    columns = list(census_module.COLUMNS)
    assert columns.index("dhash") == columns.index("phash") + 1


# ---------------------------------------------------------------------------- pixel check


def write_shards(directory, images: list[np.ndarray], ids: list[str]) -> ShardReader:
    """Real repair-style shards: each image letterboxed to WORKING px by resize.to_working."""
    with ShardWriter(
        directory, (WORKING, WORKING), np.uint8, 128, meta={"size": WORKING, "keep_aspect": True}
    ) as writer:
        for item_id, image in zip(ids, images, strict=True):
            height, width = image.shape
            writer.add(item_id, to_working(image, WORKING), orig_width=width, orig_height=height)
    return ShardReader(directory)


def unrelated_films(n: int) -> list[np.ndarray]:
    """n independent detailed pictures of assorted aspect ratios (portrait, landscape)."""
    films = []
    for k in range(n):
        picture = smooth_image(1000 + k, side=240, grid=16)
        films.append(picture[:, : 160 + (k % 5) * 20] if k % 2 else picture[: 180 + k % 3 * 20])
    return films


def test_thumbnails_cover_the_image_not_its_letterbox(tmp_path):
    flat = np.full((60, 150), 200, dtype=np.uint8)  # a wide image: bands above and below
    reader = write_shards(tmp_path / "shards", [flat], ["wide"])
    assert (reader[0] == 0).any()  # the canvas has its padding
    thumbs = pixel_thumbnails(reader, 32)
    assert thumbs.shape == (1, 32, 32) and np.allclose(thumbs, 200, atol=1)


def test_pixel_check_catches_a_planted_pair_the_grouping_did_not_link(tmp_path):
    census, repair = random_images(300)
    first, _ = run(census, repair)  # the split does not depend on the pixels
    a = 0
    b = int(np.flatnonzero(first["split"].to_numpy() != first.loc[a, "split"])[0])
    films = unrelated_films(300)
    # b: film a re-exposed (less contrast, a brighter floor) and saved at another size.
    copy = np.clip(films[a].astype(np.float32) * 0.7 + 40, 0, 255).astype(np.uint8)
    films[b] = np.asarray(Image.fromarray(copy).resize((200, 150), Image.Resampling.BILINEAR))
    thumbs = pixel_thumbnails(write_shards(tmp_path / "shards", films, list(repair["id"])), 32)

    with pytest.warns(UserWarning, match=rf"pixel check: 1 cross-split pairs.*img{b:05d}"):
        table, metrics = run(census, repair, thumbnails=thumbs)
    assert table.loc[a, "group"] != table.loc[b, "group"]  # no hash links them
    assert metrics["leakage"]["total"] == 0  # the union-find is consistent all the same
    assert metrics["pixel_leakage"] == {"cross_split_pairs": 1}
    count, pairs, correlation = count_pixel_leaks(thumbs, table["split"], PIXEL_CHECK)
    assert count == 1 and set(map(int, pairs[0])) == {a, b}
    assert correlation[0] >= PIXEL_CHECK.min_correlation
    # All in one split, nothing crosses; at a stricter threshold than the pair, no match.
    assert count_pixel_leaks(thumbs, ["train"] * 300, PIXEL_CHECK)[0] == 0
    strict = PixelCheck(32, 48, min_correlation=float(np.nextafter(correlation[0], 2)))
    assert count_pixel_leaks(thumbs, table["split"], strict)[0] == 0

    # Once a link joins them (here: the same bytes), the check finds nothing.
    census.loc[b, "sha256"] = census.loc[a, "sha256"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table, metrics = run(census, repair, thumbnails=thumbs)
    assert table.loc[a, "split"] == table.loc[b, "split"]
    assert metrics["pixel_leakage"] == {"cross_split_pairs": 0}


# ---------------------------------------------------------------------------- params


def test_settings_are_read_from_params_yaml():
    params = load(REPO / "params.yaml")
    settings = Settings.from_params(params)
    split = params["split"]
    assert settings.near_duplicate_distance == split["near_duplicate_distance"]
    assert settings.dhash_distance == split["dhash_distance"]
    assert settings.pixel_check == PixelCheck(**split["pixel_check"])
    assert settings.tile_link == TileLink(split["tile_distance"], split["tile_matches"])
    assert settings.hash_distances == {
        "near_duplicate": split["near_duplicate_distance"],
        "near_duplicate_dhash": split["dhash_distance"],
    }
    assert settings.seed == params["seed"]
    assert census_module.Settings.from_params(params).dhash_size == params["census"]["dhash_size"]

    del params["split"]["dhash_distance"]
    with pytest.raises(ParamsError, match="split.dhash_distance"):
        Settings.from_params(params)
    with pytest.raises(ParamsError, match="thumb_side: 40 is not a multiple of 16"):
        PixelCheck(thumb_side=40, dark_level=32, min_correlation=0.98)


def test_tile_hash_links_a_copy_with_part_of_the_film_blacked_out():
    """The FracAtlas case both whole-image hashes miss: the same film, its lower third
    burnt black. The tile hash matches on the cells the copy keeps; flat cells never count."""
    film = texture(96, 128)
    masked = film.copy()
    masked[86:] = 0
    other = texture(96, 128, seed=1)
    tiles = [census_module.tile_hash(image) for image in (film, masked, other)]
    assert all(len(t) == 16 * census_module.TILE_GRID**2 for t in tiles)
    assert tiles[1].endswith(census_module.NO_TILE * census_module.TILE_GRID)  # black row
    assert tile_pairs(tiles, TILES).tolist() == [[0, 1]]
    dhashes = [census_module.difference_hash(image, 16) for image in (film, masked)]
    assert (
        bin(int(dhashes[0], 16) ^ int(dhashes[1], 16)).count("1") > DHASH_DISTANCE
    )  # the dHash alone would not link them

    census, repair = random_images(3)
    census["tile_hash"] = tiles
    frame = join_inputs(census, repair)
    groups, links = duplicate_groups(frame, DISTANCES, True, TILES)
    assert groups[0] == groups[1] != groups[2] and links["near_duplicate_tiles"] == 1
    leaks = count_leaks(frame, ["train", "test", "val"], DISTANCES, True, TILES)
    assert leaks["near_duplicate_tiles"] == 1 and leaks["total"] == 1
    flat = census_module.NO_TILE * census_module.TILE_GRID**2  # two blank images share nothing
    assert tile_pairs([flat, flat], TileLink(distance=64, matches=1)).size == 0
