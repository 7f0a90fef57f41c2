"""Public datasets `bonexray fetch` can download, verify and place under data/ as a source.

A fetch: download the release's archive (resumable, bytes verified, see download.py) into
a cache, extract it safely (archive.py) into a staging folder next to the output, check
that the result has the layout its source adapter reads, then rename it into place. An
output folder exists only when complete; a failed fetch leaves no partial one behind.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from bonexray.data import datasets
from bonexray.data.archive import ArchiveError, Limits, extract
from bonexray.data.download import Digests, Expected, fetch_verified
from bonexray.errors import ConfigError


class FetchError(ConfigError, RuntimeError):
    """The fetch cannot go ahead as asked (e.g. the output folder is already there)."""


@dataclass(frozen=True)
class Release:
    """One published archive and what the pipeline needs to know about it."""

    name: str
    kind: str  # the source adapter (bonexray.data.sources.REGISTRY) that reads the extracted tree
    url: str
    archive_name: str
    expected: Expected
    limits: Limits
    required: tuple[str, ...]  # paths the extracted tree must have
    doi: str  # of this release's files
    dataset: datasets.Dataset  # licence and citation (bonexray/datasets.py, their one place)


# FracAtlas v7 on figshare: article 22363012, doi:10.6084/m9.figshare.22363012.v7, file
# FracAtlas.zip (file_id 65518038). Size and MD5 (figshare publishes MD5, not SHA-256) as
# quoted from the figshare record by a public repository; they were NOT checked against
# figshare when this was written (no network), so the first real fetch is their test: a
# mismatch stops it with a ChecksumError naming both values.
FRACATLAS = Release(
    name="fracatlas",
    kind="fracatlas",
    url="https://figshare.com/ndownloader/files/65518038",
    archive_name="FracAtlas.zip",
    expected=Expected(size=338_436_460, md5="fe9da2c7c285915ebee69dfdab8fd396"),
    # ~4,100 JPEGs (incompressible, ~340 MB) plus annotation files in four formats: the
    # limits leave a wide margin and still stop a zip bomb long before the disk fills.
    limits=Limits(member_bytes=256 << 20, total_bytes=2 << 30, members=100_000),
    required=("dataset.csv", "images/Fractured", "images/Non_fractured"),
    doi="10.6084/m9.figshare.22363012.v7",
    dataset=datasets.FRACATLAS,
)
RELEASES: dict[str, Release] = {FRACATLAS.name: FRACATLAS}


@dataclass(frozen=True)
class Fetched:
    out: Path
    archive: Path
    digests: Digests
    downloaded: bool  # False: a verified archive was already in the cache
    files: int


def default_cache() -> Path:
    """Where archives are kept between runs (resume, re-extract): outside data/, which
    DVC tracks, so that the archive is not versioned next to its own contents."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bonexray"


def fetch(
    release: Release,
    out: Path,
    *,
    archive: Path | None = None,
    url: str | None = None,
    expected: Expected | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> Fetched:
    """Download, verify and extract `release` into `out` (replacing it only with `force`).

    `archive`: where the archive is downloaded to, or found already (default: the cache).
    `url`, `expected`: override the release's pinned URL and size/digests.
    """
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise FetchError(f"{out} already exists and is not empty; pass --force to replace it")
    archive = Path(archive) if archive else default_cache() / release.archive_name
    digests, downloaded = fetch_verified(
        url or release.url, archive, expected or release.expected, progress=progress
    )
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    staging.mkdir(parents=True)
    try:
        files = extract(archive, staging, release.limits, strip_top=True)
        missing = [rel for rel in release.required if not (staging / rel).exists()]
        if missing:
            raise ArchiveError(
                f"{archive}: not the {release.name} layout, no {', '.join(missing)} "
                "at its top level (or under its single top folder)"
            )
        if out.is_symlink() or out.is_file():
            out.unlink()
        elif out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Fetched(out, archive, digests, downloaded, files)


def source_entry(release: Release, out: Path) -> str:
    """The params.yaml `sources:` entry that reads the fetched tree, as YAML."""
    return yaml.safe_dump(
        {"sources": {release.name: {"kind": release.kind, "path": out.as_posix()}}},
        sort_keys=False,
    )
