"""Download one file over HTTP(S), resumably, and keep it only once its checksums match.

The bytes go to `<dest>.part`; an interrupted transfer is resumed with an HTTP Range request
(in this run, and in the next one if every attempt fails). The `.part` file is renamed to
`dest` only after its size, MD5 and (when one is known) SHA-256 match, so a file at `dest`
is always a verified one.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20
USER_AGENT = "bonexray-fetch"
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# What a dropped or stalled connection raises while a response is read (TimeoutError
# included, as socket.timeout is an alias of it).
INTERRUPTIONS = (http.client.IncompleteRead, ConnectionError, TimeoutError, urllib.error.URLError)


class DownloadError(RuntimeError):
    """A download failed or its bytes are not the expected ones; the message names the URL
    or file and the reason."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected size or digests."""


@dataclass(frozen=True)
class Expected:
    """What the file must be: its size in bytes, MD5, and SHA-256 when one is pinned."""

    size: int
    md5: str
    sha256: str | None = None


@dataclass(frozen=True)
class Digests:
    md5: str
    sha256: str


def digests(path: Path) -> Digests:
    """MD5 and SHA-256 of a file, read once in chunks."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return Digests(md5.hexdigest(), sha256.hexdigest())


def verify(path: Path, expected: Expected) -> Digests:
    """Digests of `path`; ChecksumError naming the file and what differs when it is not
    the expected file."""
    size = path.stat().st_size
    if size != expected.size:
        raise ChecksumError(f"{path}: {size} bytes, expected {expected.size}")
    found = digests(path)
    for name in ("md5", "sha256"):
        want = getattr(expected, name)
        if want and getattr(found, name) != want.lower():
            raise ChecksumError(f"{path}: {name} {getattr(found, name)}, expected {want}")
    return found


def fetch_verified(
    url: str,
    dest: Path,
    expected: Expected,
    *,
    attempts: int = 3,
    timeout: float = 60.0,
    progress: bool | None = None,
) -> tuple[Digests, bool]:
    """Make `dest` the verified download of `url`; return its digests and whether it was
    downloaded now (False: a verified file was already at `dest`).

    A `.part` file that fails verification is deleted (its bytes are wrong, resuming it
    cannot help) and ChecksumError raised. `progress`: tqdm bar (None: only on a terminal).
    """
    dest = Path(dest)
    if dest.exists():
        try:
            return verify(dest, expected), False
        except ChecksumError as exc:
            raise ChecksumError(f"{exc}; it is not the expected archive: delete it") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _download(url, part, expected.size, attempts, timeout, progress)
    try:
        found = verify(part, expected)
    except ChecksumError as exc:
        part.unlink()
        raise ChecksumError(f"download from {url} is corrupt: {exc} (deleted)") from None
    part.replace(dest)
    return found, True


def _download(
    url: str, part: Path, size: int, attempts: int, timeout: float, progress: bool | None
) -> None:
    """Fill `part` with the first `size` bytes of `url`, resuming what is already there."""
    if part.exists() and part.stat().st_size > size:
        part.unlink()  # not a prefix of the expected file: start again
    have = part.stat().st_size if part.exists() else 0
    with tqdm(
        total=size,
        initial=have,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=part.name.removesuffix(".part"),
        disable=None if progress is None else not progress,
    ) as bar:
        failures: list[str] = []
        while have < size and len(failures) < attempts:
            try:
                have = _transfer(url, part, have, size, timeout, bar)
            except INTERRUPTIONS as exc:
                have = part.stat().st_size if part.exists() else 0
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if have < size:  # the server closed the response early without an error
                failures.append(f"connection closed after {have} bytes")
    if have < size:
        kept = f"; its first {have} bytes are kept in {part}" if have else ""
        raise DownloadError(
            f"{url}: download failed after {len(failures)} attempts (last: {failures[-1]})"
            f"{kept}: run the same command again to {'resume' if have else 'retry'}"
        )


def _transfer(url: str, part: Path, have: int, size: int, timeout: float, bar: tqdm) -> int:
    """One request: append from byte `have` (or write from 0); return the bytes now held."""
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(  # noqa: S310 - https/http URL given by the user
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range not satisfiable: the partial file is no prefix
            return _restart(url, part, size, timeout, bar)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with response:
        if response.status == 206:
            match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if not match or int(match[1]) != have:
                return _restart(url, part, size, timeout, bar)  # not the range asked for
            if match[3] not in ("*", str(size)):
                raise DownloadError(f"{url}: the server has {match[3]} bytes, expected {size}")
        else:  # 200: the whole file, also when the server ignored the Range
            length = response.headers.get("Content-Length")
            if length is not None and int(length) != size:
                raise DownloadError(f"{url}: the server sends {length} bytes, expected {size}")
            if have:
                bar.reset(total=size)
            have = 0
        with open(part, "r+b" if have else "wb") as out:
            out.truncate(have)
            out.seek(have)
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
                if out.tell() > size:
                    break  # never fill the disk with more than was promised
            held = out.tell()
    if held > size:
        part.unlink()
        raise DownloadError(f"{url}: the server sent more than the expected {size} bytes")
    return held


def _restart(url: str, part: Path, size: int, timeout: float, bar: tqdm) -> int:
    """Drop the partial file and request the whole file."""
    part.unlink()
    bar.reset(total=size)
    return _transfer(url, part, 0, size, timeout, bar)
