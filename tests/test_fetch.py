"""`bonexray fetch` end to end against a real HTTP server on 127.0.0.1 serving a tiny zip in
the official FracAtlas layout: placement as a source, checksums, resumption, unsafe
archives and the CLI's exit codes."""

from __future__ import annotations

import hashlib
import io
import stat
import threading
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import badfiles
import pytest
import yaml
from PIL import Image

from bonexray.cli import main
from bonexray.data.archive import ArchiveError, Limits, extract
from bonexray.data.download import ChecksumError, DownloadError, Expected, fetch_verified
from bonexray.data.fetch import FRACATLAS, fetch
from bonexray.data.sources import adapters_from_params

ROWS = {  # image -> dataset.csv row after image_id (hand..oblique, see badfiles.CSV_HEADER)
    "Fractured/IMG0000001.jpg": "1,0,0,0,0,0,0,1,1,1,0,0",  # hand, fractured, frontal
    "Non_fractured/IMG0000002.jpg": "0,1,0,0,0,0,0,0,0,0,1,0",  # leg, lateral
}
# The official zip: everything under FracAtlas/, annotations in four formats, utilities.
# Utilities/ holds more than the split CSVs; the .py stands for any such file whose suffix
# is not a sidecar's, which the adapter must still not take for an image.
METADATA = {
    "Annotations/YOLO/IMG0000001.txt": b"0 0.5 0.5 0.2 0.2\n",
    "Annotations/PASCAL VOC/IMG0000001.xml": b"<annotation/>\n",
    "Annotations/COCO JSON/COCO_fracture_masks.json": b"{}\n",
    "Utilities/Fracture Split/train.csv": b"image_id\nIMG0000001.jpg\n",
    "Utilities/helper.py": b"print('not an image')\n",
}


def official_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("FracAtlas/", b"")  # folder entries, as archivers write them
        zf.writestr("FracAtlas/images/", b"")
        header = badfiles.CSV_HEADER
        zf.writestr(
            "FracAtlas/dataset.csv",
            header + "".join(f"{Path(k).name},{v}\n" for k, v in ROWS.items()),
        )
        for i, name in enumerate(ROWS):
            image = Image.fromarray(badfiles.texture(24, 32, seed=i))
            zf.writestr(f"FracAtlas/images/{name}", badfiles.encode(image, "JPEG"))
        for name, data in METADATA.items():
            zf.writestr(f"FracAtlas/{name}", data)
    return buf.getvalue()


PAYLOAD = official_zip()
EXPECTED = Expected(size=len(PAYLOAD), md5=hashlib.md5(PAYLOAD).hexdigest())
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Behaviour:
    """What the test server does; `ranges` records each request's Range header."""

    payload: bytes = PAYLOAD
    honour_range: bool = True
    cut_after: int | None = None  # send only this many body bytes, then close...
    cuts: int = 0  # ...for this many responses
    ranges: list[str | None] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        state: Behaviour = self.server.behaviour
        if self.path == "/redirect":  # figshare answers its download URL with a redirect
            self.send_response(302)
            self.send_header("Location", "/FracAtlas.zip")
            self.end_headers()
            return
        if self.path != "/FracAtlas.zip":
            self.send_error(404)
            return
        state.ranges.append(self.headers.get("Range"))
        data, start = state.payload, 0
        asked = self.headers.get("Range")
        if asked and state.honour_range:
            start = int(asked.removeprefix("bytes=").removesuffix("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cuts and state.cut_after is not None:
            state.cuts -= 1
            body = body[: state.cut_after]
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1 (port 0): yields (base URL, its Behaviour)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.behaviour = Behaviour()
    # a short poll interval: shutdown() waits for it
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.behaviour
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A repository-like working directory; the download cache is kept inside it too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def cli(*args: str) -> int:
    return main(["fetch", "fracatlas", *args])


def pinned(url: str, *extra: str) -> list[str]:
    return ["--url", url, "--size", str(EXPECTED.size), "--md5", EXPECTED.md5, *extra]


def test_fetch_places_fracatlas_where_its_adapter_reads_it(server, workdir, capsys):
    base, behaviour = server
    assert cli(*pinned(f"{base}/redirect")) == 0
    shown = capsys.readouterr().out
    out = workdir / "data" / "fracatlas"
    assert (out / "dataset.csv").is_file() and not (out / "FracAtlas").exists()
    for name in [*ROWS, *METADATA]:
        assert (out / ("images/" if name in ROWS else "") / name).is_file(), name
    assert sorted(p.name for p in (workdir / "data").iterdir()) == ["fracatlas"]  # no staging
    assert sorted(p.name for p in (workdir / "cache" / "bonexray").iterdir()) == ["FracAtlas.zip"]
    assert SHA256 in shown and "Scientific Data 10, 521 (2023)" in shown and "CC BY 4.0" in shown

    # The printed entry, as a user pastes it into params.yaml, reads the tree without a warning.
    entry = yaml.safe_load(shown[shown.index("\nsources:\n") :].split("\n\n")[0])
    assert entry == {"sources": {"fracatlas": {"kind": "fracatlas", "path": "data/fracatlas"}}}
    (adapter,) = adapters_from_params(entry, base=workdir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = {f.path.relative_to(out).as_posix(): f for f in adapter.scan()}
    images = {rel: (f.region_raw, f.fracture) for rel, f in found.items() if f.role == "image"}
    assert images == {
        "images/Fractured/IMG0000001.jpg": ("hand", 1),
        "images/Non_fractured/IMG0000002.jpg": ("leg", 0),
    }
    assert len(found) == len(ROWS) + len(METADATA) + 1  # + dataset.csv, all sidecars

    # Again: the output exists (2); with --force it is replaced from the cached archive,
    # which is verified again (now against the pinned SHA-256 too) without a download.
    requests = len(behaviour.ranges)
    (out / "stale.txt").write_text("from before")
    assert cli(*pinned(f"{base}/redirect")) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli(*pinned(f"{base}/redirect", "--sha256", SHA256, "--force")) == 0
    assert "already downloaded" in capsys.readouterr().out
    assert len(behaviour.ranges) == requests and not (out / "stale.txt").exists()


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        (PAYLOAD[:100] + bytes([PAYLOAD[100] ^ 1]) + PAYLOAD[101:], "md5"),  # one bit flipped
        (PAYLOAD[:-10], f"the server sends {len(PAYLOAD) - 10} bytes, expected {len(PAYLOAD)}"),
    ],
    ids=["flipped-bit", "wrong-size"],
)
def test_corrupt_download_is_refused_and_nothing_kept(server, workdir, capsys, served, reason):
    base, behaviour = server
    behaviour.payload = served
    assert cli(*pinned(f"{base}/FracAtlas.zip")) == 1
    err = capsys.readouterr().err
    assert reason in err and f"{base}/FracAtlas.zip" in err
    assert not (workdir / "data").exists()  # no output, no staging folder
    assert not any((workdir / "cache" / "bonexray").iterdir())  # neither .zip nor .part


def test_wrong_pinned_sha256_is_refused(server, workdir, capsys):
    base, _ = server
    assert cli(*pinned(f"{base}/FracAtlas.zip", "--sha256", "0" * 64)) == 1
    assert f"sha256 {SHA256}, expected {'0' * 64}" in capsys.readouterr().err
    assert not (workdir / "data").exists()


def test_wrong_file_at_the_archive_path_is_left_alone(server, workdir, capsys):
    base, behaviour = server
    archive = workdir / "mine.zip"
    archive.write_bytes(b"someone else's file")
    assert cli(*pinned(f"{base}/FracAtlas.zip", "--archive", str(archive))) == 1
    assert f"{archive}: 19 bytes, expected {EXPECTED.size}" in capsys.readouterr().err
    assert archive.read_bytes() == b"someone else's file" and behaviour.ranges == []


def test_cut_response_is_resumed_with_a_range_request(server, tmp_path):
    base, behaviour = server
    half = len(PAYLOAD) // 2
    behaviour.cut_after, behaviour.cuts = half, 1
    dest = tmp_path / "FracAtlas.zip"
    digests, downloaded = fetch_verified(f"{base}/redirect", dest, EXPECTED)
    assert downloaded and digests.sha256 == SHA256 and dest.read_bytes() == PAYLOAD
    assert behaviour.ranges == [None, f"bytes={half}-"]
    assert not dest.with_name("FracAtlas.zip.part").exists()


def test_failed_run_keeps_the_part_and_the_next_run_resumes_it(server, tmp_path):
    base, behaviour = server
    behaviour.cut_after, behaviour.cuts = 100, 3  # every attempt of the first run is cut
    dest = tmp_path / "FracAtlas.zip"
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        fetch_verified(f"{base}/FracAtlas.zip", dest, EXPECTED, attempts=3)
    part = dest.with_name("FracAtlas.zip.part")
    assert part.read_bytes() == PAYLOAD[:300] and not dest.exists()
    assert behaviour.ranges == [None, "bytes=100-", "bytes=200-"]
    fetch_verified(f"{base}/FracAtlas.zip", dest, EXPECTED)
    assert behaviour.ranges[-1] == "bytes=300-" and dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    ("part_bytes", "honour_range", "ranges"),
    [
        (PAYLOAD[:50], False, ["bytes=50-"]),  # server ignores Range: 200, rewritten from 0
        (PAYLOAD + b"extra", True, [None]),  # larger than the archive: dropped, no Range
        (PAYLOAD, True, []),  # complete already: verified, no request at all
    ],
    ids=["range-ignored", "part-too-large", "part-complete"],
)
def test_partial_file_is_resumed_or_restarted_cleanly(
    server, tmp_path, part_bytes, honour_range, ranges
):
    base, behaviour = server
    behaviour.honour_range = honour_range
    dest = tmp_path / "FracAtlas.zip"
    dest.with_name("FracAtlas.zip.part").write_bytes(part_bytes)
    fetch_verified(f"{base}/FracAtlas.zip", dest, EXPECTED)
    assert dest.read_bytes() == PAYLOAD and behaviour.ranges == ranges


def test_range_beyond_a_changed_file_restarts_and_reports_its_size(server, tmp_path):
    base, behaviour = server
    behaviour.payload = PAYLOAD[:40]  # the server's file is not the one the .part began
    dest = tmp_path / "FracAtlas.zip"
    dest.with_name("FracAtlas.zip.part").write_bytes(PAYLOAD[:50])
    with pytest.raises(DownloadError, match=f"sends 40 bytes, expected {EXPECTED.size}"):
        fetch_verified(f"{base}/FracAtlas.zip", dest, EXPECTED)
    assert behaviour.ranges == ["bytes=50-", None]  # 416, then the whole file asked for
    assert not dest.with_name("FracAtlas.zip.part").exists()


def test_part_that_is_not_a_prefix_fails_verification_and_is_deleted(server, tmp_path):
    base, behaviour = server
    dest = tmp_path / "FracAtlas.zip"
    part = dest.with_name("FracAtlas.zip.part")
    part.write_bytes(b"x" * 64)  # e.g. left by a download of another file
    with pytest.raises(ChecksumError, match="md5 .* expected .*deleted"):
        fetch_verified(f"{base}/FracAtlas.zip", dest, EXPECTED)
    assert behaviour.ranges == ["bytes=64-"] and not part.exists() and not dest.exists()


def test_http_error_names_the_url(server, workdir, capsys):
    base, _ = server
    assert cli(*pinned(f"{base}/missing.zip")) == 1
    assert f"{base}/missing.zip: HTTP 404" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        cli("--md5", "not-hex")
    assert exited.value.code == 2 and "expected 32 hex digits" in capsys.readouterr().err


LIMITS = Limits(member_bytes=10_000, total_bytes=25_000, members=50)


def symlink(zf: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("FracAtlas/images/link.jpg")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, "../../../outside.jpg")


def members(*names_sizes: tuple[str, int]):
    return lambda zf: [zf.writestr(name, b"\0" * size) for name, size in names_sizes]


ABSOLUTE = "/tmp/bonexray-fetch-evil.txt"
UNSAFE = {
    "traversal": (members(("FracAtlas/../../evil.txt", 5)), "FracAtlas/../../evil.txt", "leaves"),
    "absolute": (members((ABSOLUTE, 5)), ABSOLUTE, "absolute path"),
    "windows-absolute": (members(("C:\\evil.txt", 5)), "C:\\evil.txt", "absolute path"),
    "symlink": (symlink, "FracAtlas/images/link.jpg", "a symlink"),
    "oversized-member": (members(("FracAtlas/big.bin", 10_001)), "FracAtlas/big.bin", "limit"),
    "zip-bomb": (
        members(*((f"FracAtlas/part{i}.bin", 9_000) for i in range(3))),
        "FracAtlas/part2.bin",
        "uncompressed size exceeds the limit of 25000",
    ),
    "too-many-members": (
        members(*((f"FracAtlas/{i}", 0) for i in range(51))),
        "",  # the archive's fault, not one member's
        "52 members, more than the limit 50",
    ),
}


@pytest.mark.parametrize("case", UNSAFE, ids=list(UNSAFE))
def test_unsafe_member_is_refused_before_anything_is_written(tmp_path, case):
    write, member, reason = UNSAFE[case]
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("FracAtlas/dataset.csv", "image_id\n")  # a safe member first
        write(zf)
    target = tmp_path / "deep" / "er" / "target"
    target.mkdir(parents=True)
    with pytest.raises(ArchiveError) as refused:
        extract(archive, target, LIMITS, strip_top=True)
    assert str(archive) in str(refused.value) and repr(member)[1:-1] in str(refused.value)
    assert reason in str(refused.value)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == ["bad.zip", "deep", "deep/er", "deep/er/target"]
    assert not Path(ABSOLUTE).exists()


def test_unsafe_archive_through_fetch_leaves_no_output(tmp_path):
    archive = tmp_path / "FracAtlas.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("FracAtlas/dataset.csv", "image_id\n")
        symlink(zf)
    data = archive.read_bytes()
    expected = Expected(size=len(data), md5=hashlib.md5(data).hexdigest())
    with pytest.raises(ArchiveError, match="a symlink"):
        fetch(FRACATLAS, tmp_path / "data" / "fracatlas", archive=archive, expected=expected)
    assert list((tmp_path / "data").iterdir()) == []


def test_archive_without_the_layout_is_refused(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("something/else.txt", "hello")
    data = archive.read_bytes()
    release = replace(FRACATLAS, expected=Expected(len(data), hashlib.md5(data).hexdigest()))
    with pytest.raises(ArchiveError, match="not the fracatlas layout, no dataset.csv"):
        fetch(release, tmp_path / "data" / "fracatlas", archive=archive)
    assert list((tmp_path / "data").iterdir()) == []
