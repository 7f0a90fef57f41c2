"""Extract a zip archive safely: every member is checked before anything is written.

Refused, naming the member and the reason: absolute paths (POSIX or Windows), paths that
resolve outside the target, symlinks and other non-regular entries (zip has no hard-link
entry; a Unix mode of any type but file or directory is refused), members larger than
`Limits.member_bytes`, and archives whose total uncompressed size or member count exceeds
its limits (zip bombs). zipfile's own extract() would silently rewrite such names instead.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath


class ArchiveError(ValueError):
    """The archive is unreadable or unsafe; the message names the archive and the member."""


@dataclass(frozen=True)
class Limits:
    member_bytes: int
    total_bytes: int
    members: int


def extract(archive: Path, target: Path, limits: Limits, *, strip_top: bool = False) -> int:
    """Extract `archive` into the existing directory `target`; return the files written.

    strip_top: when every member sits under one top-level folder, drop that folder (the
    official FracAtlas zip wraps everything in FracAtlas/).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            plan = _plan(archive, zf, target, limits, strip_top)
            for info, dest in plan:
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                # ZipExtFile stops at the declared file_size (checked above) and checks the
                # CRC, so a header that lies about the size cannot write more than it says.
                with zf.open(info) as src, open(dest, "xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise ArchiveError(f"{archive}: not a readable zip archive ({exc})") from None
    return sum(not info.is_dir() for info, _ in plan)


def _plan(
    archive: Path, zf: zipfile.ZipFile, target: Path, limits: Limits, strip_top: bool
) -> list[tuple[zipfile.ZipInfo, Path]]:
    """(member, destination) for every member, or ArchiveError for the first unsafe one."""
    infos = zf.infolist()
    if len(infos) > limits.members:
        raise ArchiveError(f"{archive}: {len(infos)} members, more than the limit {limits.members}")
    total = 0
    for info in infos:
        refuse = _refusal(info, limits)
        if refuse:
            raise ArchiveError(f"{archive}: member {info.filename!r} refused: {refuse}")
        total += info.file_size
        if total > limits.total_bytes:
            raise ArchiveError(
                f"{archive}: uncompressed size exceeds the limit of {limits.total_bytes} "
                f"bytes at member {info.filename!r} (zip bomb?)"
            )
    parts = [PurePosixPath(info.filename).parts for info in infos]
    strip = (
        strip_top
        and len({p[0] for p in parts if p}) == 1
        and all(len(p) > 1 or info.is_dir() for info, p in zip(infos, parts, strict=True))
    )
    root = target.resolve()
    plan = []
    for info, member_parts in zip(infos, parts, strict=True):
        rel = member_parts[1:] if strip else member_parts
        if not rel:
            continue  # the stripped top folder itself
        dest = root.joinpath(*rel)
        if not dest.resolve().is_relative_to(root):
            raise ArchiveError(
                f"{archive}: member {info.filename!r} refused: its path leaves the target {target}"
            )
        plan.append((info, dest))
    return plan


def _refusal(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    """Why one member may not be extracted (None: it may)."""
    name = info.filename
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.drive or windows.root:
        return "absolute path"
    mode = info.external_attr >> 16
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "a symlink" if stat.S_ISLNK(mode) else f"file type {stat.S_IFMT(mode):o}"
        return f"{kind}, only regular files and folders are extracted"
    if info.file_size > limits.member_bytes:
        return f"{info.file_size} bytes uncompressed, more than the limit {limits.member_bytes}"
    return None
