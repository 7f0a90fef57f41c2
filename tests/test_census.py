"""Census over the bad-input corpus: every file is a row, nothing crashes, bytes reproducible."""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import warnings
from pathlib import Path

import badfiles
import imagehash
import numpy as np
import pandas as pd
import pytest
from paths import FRACATLAS, REPO
from PIL import Image

from bonexray.data import census, imaging
from bonexray.data.sources import SourceConfigError, SourceWarning

STAGE = REPO / "stages" / "census.py"


def census_params(workers: int = 1, **sources) -> dict:
    return {
        "sources": sources or {"bad": {"kind": "folder", "path": "data/bad"}},
        "census": {"workers": workers, "phash_size": 8, "draft_size": 32},
        "decode": {"max_image_pixels": 89478485},
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict[str, badfiles.BadFile]]:
    """A repository root with data/bad (a folder source) and stray files no source claims."""
    root = tmp_path_factory.mktemp("repo")
    expected = badfiles.build(root / "data" / "bad")
    badfiles.tiny_png(root / "data" / "stray" / "x.png")
    (root / "data" / "notes.md").write_text("unclaimed\n")
    return root, expected


@pytest.fixture(scope="module")
def table(repo) -> pd.DataFrame:
    root, _ = repo
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        return census.run(census_params(workers=2))


def test_every_file_is_a_row(repo, table):
    root, _ = repo
    on_disk = [f"data/{rel}" for rel in badfiles.regular_entries(root / "data")]
    assert table["id"].tolist() == on_disk  # sorted, one row per file, ids repo-relative
    assert table["id"].is_unique and (table["path"] == table["id"]).all()
    assert list(table.columns) == list(census.COLUMNS)


def test_statuses_match_the_corpus(repo, table):
    _, expected = repo
    rows = table.set_index("id")
    for name, bad in expected.items():
        if name == "folder.jpg" or (bad.root_only_differs and os.geteuid() == 0):
            continue  # a directory is not a file; root ignores chmod 000
        row = rows.loc[f"data/bad/{name}"]
        assert row["status"] == bad.status, (name, row["reason"])
        assert bad.reason.lower() in row["reason"].lower(), name
        assert row["source"] == "bad" and row["role"] == "image"
        assert pd.isna(row["phash"]) == (bad.status not in imaging.USABLE), name
    assert rows.loc["data/bad/truncated.jpg", "truncated"]
    assert (
        rows.loc["data/bad/good.jpg", "sha256"]
        == hashlib.sha256((repo[0] / "data/bad/good.jpg").read_bytes()).hexdigest()
    )
    assert pd.isna(rows.loc["data/bad/dangling.png", "sha256"])


def test_unclaimed_files_are_unassigned(table):
    stray = table[table["source"] == census.UNASSIGNED]
    assert stray["id"].tolist() == ["data/notes.md", "data/stray/x.png"]
    assert (stray["role"] == census.UNASSIGNED).all()
    assert stray.set_index("id").loc["data/stray/x.png", "status"] == "ok"  # still probed


def test_bytes_reproducible_and_independent_of_workers(repo, tmp_path):
    root, _ = repo
    digests = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for workers in (1, 2, 1):
            out = tmp_path / f"census_{len(digests)}.parquet"
            census.write_outputs(census.run(census_params(workers)), out)
            digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(set(digests)) == 1


def test_metrics_and_plot_add_up(table, tmp_path):
    metrics = census.summarise(table)
    assert metrics["files"] == len(table)
    not_sidecar = (table["role"] != "sidecar").sum()
    assert sum(metrics["image_status"].values()) == not_sidecar
    assert set(metrics["image_status"]) == set(imaging.STATUSES)
    assert metrics["unassigned"] == 2 and metrics["by_source"]["bad"]["files"] == len(
        table[table["source"] == "bad"]
    )
    counts = census.group_counts(table)
    assert list(counts.columns) == ["group", "count"]
    assert counts["count"].sum() == metrics["images"]
    census.write_outputs(table, tmp_path / "c.parquet", tmp_path / "m.json", tmp_path / "p.csv")
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads(json.dumps(metrics))
    assert pd.read_csv(tmp_path / "p.csv").equals(counts)


def test_listed_but_missing_files_are_rows(tmp_path, monkeypatch):
    badfiles.build_fracatlas(tmp_path / "data" / "fa")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SourceWarning)
        table = census.run(census_params(fa={"kind": "fracatlas", "path": "data/fa"}))
    rows = table.set_index("id")
    missing = rows.loc["data/fa/images/Fractured/IMG04.jpg"]
    assert missing["status"] == "missing" and "missing on disk" in missing["reason"]
    assert missing["fracture"] == 1 and missing["region_raw"] == "leg"
    unlisted = rows.loc["data/fa/images/Non_fractured/IMG99.jpg"]
    assert unlisted["status"] == "ok" and "not listed" in unlisted["reason"]
    assert len(table) == len(badfiles.regular_entries(tmp_path / "data")) + 1


def test_overlapping_sources_refused(repo, monkeypatch):
    monkeypatch.chdir(repo[0])
    params = census_params(
        whole={"kind": "folder", "path": "data"}, part={"kind": "folder", "path": "data/bad"}
    )
    with pytest.raises(SourceConfigError, match="sources 'whole' and 'part'"):
        census.run(params)


def test_stage_script(repo, tmp_path, monkeypatch):
    root, _ = repo
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps(census_params()))  # JSON is YAML
    monkeypatch.chdir(root)
    main = runpy.run_path(str(STAGE))["main"]
    outs = [tmp_path / "census.parquet", tmp_path / "census.json", tmp_path / "counts.csv"]
    argv = ["--out", outs[0], "--metrics", outs[1], "--plot", outs[2], "--params", params]
    assert main([str(a) for a in argv]) == 0
    assert len(pd.read_parquet(outs[0])) == len(badfiles.regular_entries(root / "data"))
    assert json.loads(outs[1].read_text())["files"] > 0 and outs[2].read_text().startswith("group")


def _bits_apart(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_perceptual_hash_groups_resized_copies_not_different_images():
    rng = np.random.default_rng(3)
    smooth = [
        np.asarray(
            Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).resize(
                (200, 240), Image.Resampling.BICUBIC
            )
        )
        for _ in range(2)
    ]
    first, other = (census.perceptual_hash(image, 8) for image in smooth)
    smaller = np.asarray(Image.fromarray(smooth[0]).resize((150, 180), Image.Resampling.LANCZOS))
    assert len(first) == 16  # 64 bits, hex
    assert _bits_apart(first, census.perceptual_hash(smaller, 8)) <= 6  # split's threshold
    assert _bits_apart(first, other) > 12
    # The float image of the same 8-bit picture hashes identically.
    assert census.perceptual_hash(smooth[0] / np.float32(255), 8) == first


@pytest.mark.fracatlas
@pytest.mark.skipif(not (FRACATLAS / "images").is_dir(), reason="FracAtlas not available")
def test_perceptual_hash_stays_close_to_full_resolution_phash():
    """From the census's draft-scale decode, the hash is within ~1 bit of imagehash.phash
    of the full-resolution image on real radiographs (mean over 40)."""
    paths = sorted((FRACATLAS / "images").rglob("*.jpg"))[::100][:40]
    apart = []
    for path in paths:
        full = imaging.decode(path).gray
        draft = imaging.decode(path, draft=(128, 128)).gray
        assert draft.shape[0] < full.shape[0]  # really decoded at a reduced scale
        reference = str(imagehash.phash(Image.fromarray(full)))
        apart.append(_bits_apart(census.perceptual_hash(draft, 8), reference))
    assert np.mean(apart) <= 1.5 and max(apart) <= 6


@pytest.fixture(scope="module")
def linked(tmp_path_factory) -> Path:
    """A repository whose source holds a non-UTF-8 name and links inside and outside it."""
    root = tmp_path_factory.mktemp("linked")
    src = root / "data" / "src"
    badfiles.tiny_png(src / "ok.png")
    badfiles.tiny_png(Path(os.fsdecode(bytes(src / "latin1_") + b"\xe9.png")))  # latin-1 e-acute
    badfiles.tiny_png(root / "elsewhere" / "x.png")
    badfiles.tiny_png(root / "elsewhere_dir" / "y.png")
    cached = root / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef"  # no suffix, as DVC's
    cached.parent.mkdir(parents=True)
    cached.write_bytes((src / "ok.png").read_bytes())
    (src / "inside.png").symlink_to("ok.png")
    (src / "outside.png").symlink_to("../../elsewhere/x.png")
    (src / "linked_dir").symlink_to("../../elsewhere_dir")
    (src / "cached.png").symlink_to("../../.dvc/cache/files/md5/ab/cdef")  # DVC's symlink cache
    (root / "data" / "stray.png").symlink_to("../elsewhere/x.png")  # unassigned, also outside
    return root


def linked_census(root: Path, **census_options) -> pd.DataFrame:
    params = census_params(src={"kind": "folder", "path": "data/src"})
    params["census"].update(census_options)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        return census.run(params).set_index("id")


def test_names_that_are_not_utf8_are_kept_with_a_display_id(linked, tmp_path):
    rows = linked_census(linked)
    row = rows.loc["data/src/latin1_\\xe9.png"]
    assert row["status"] == "bad_name" and "not valid UTF-8" in row["reason"]
    assert "the file itself: ok" in row["reason"]  # still read from its real name
    real = Path(os.fsdecode(bytes(linked / "data/src/latin1_") + b"\xe9.png"))
    assert row["sha256"] == hashlib.sha256(real.read_bytes()).hexdigest()
    census.write_outputs(rows.reset_index(), tmp_path / "c.parquet")  # pyarrow takes it
    assert "data/src/latin1_\\xe9.png" in set(pd.read_parquet(tmp_path / "c.parquet")["id"])


def test_links_out_of_the_source_are_refused_unread(linked):
    rows = linked_census(linked)
    refused = ["data/src/outside.png", "data/src/linked_dir/y.png", "data/stray.png"]
    assert (rows.loc[refused, "status"] == "outside_link").all()
    assert rows.loc[refused, "sha256"].isna().all()  # never read
    assert "elsewhere" in rows.loc["data/src/outside.png", "reason"]
    assert "census.follow_outside_links" in rows.loc["data/src/outside.png", "reason"]
    followed = ["data/src/ok.png", "data/src/inside.png", "data/src/cached.png"]
    assert (rows.loc[followed, "status"] == "ok").all()
    allowed = linked_census(linked, follow_outside_links=True)
    assert (allowed.loc[refused, "status"] == "ok").all()


def test_repair_quarantines_census_refusals_without_opening(linked, tmp_path):
    from bonexray.data.repair import repair

    table = linked_census(linked).reset_index()
    table["role"] = "image"
    metrics = repair(
        table, tmp_path / "repair", tmp_path / "q.csv", size=32, keep_aspect=True,
        limits=imaging.Limits(), root=linked,
    )  # fmt: skip
    quarantine = pd.read_csv(tmp_path / "q.csv").set_index("id")
    for status in ("bad_name", "outside_link"):
        ids = table.loc[table["status"] == status, "id"]
        assert (quarantine.loc[ids, "status"] == status).all()  # not "missing"
        assert (quarantine.loc[ids, "reason"] == table.set_index("id").loc[ids, "reason"]).all()
    assert metrics["quarantined_by_reason"] == {"bad_name": 1, "outside_link": 3}


def test_repair_over_the_corpus_keeps_or_quarantines_every_image(repo, table, tmp_path):
    """The corpus through census then repair: every image row is in exactly one output, with
    the decoder's verdict; nothing usable is reduced to black."""
    from bonexray.data.repair import repair
    from bonexray.io.shards import ShardReader

    root, expected = repo
    metrics = repair(
        table, tmp_path / "repair", tmp_path / "q.csv", size=32, keep_aspect=True,
        limits=imaging.Limits(), root=root,
    )  # fmt: skip
    kept = ShardReader(tmp_path / "repair")
    quarantine = pd.read_csv(tmp_path / "q.csv", keep_default_na=False).set_index("id")
    images = table.loc[table["role"] == "image", "id"]
    assert sorted([*kept.index["id"], *quarantine.index]) == sorted(images)
    assert metrics["usability_changed_since_census"] == 0  # one decoder, one verdict
    for name, bad in expected.items():
        key = f"data/bad/{name}"
        if name == "folder.jpg" or (bad.root_only_differs and os.geteuid() == 0):
            continue
        if bad.status in imaging.USABLE:
            assert kept[kept.position(key)].max() > 0, name
        else:
            assert quarantine.loc[key, "status"] == bad.status and quarantine.loc[key, "reason"]
