"""imaging.decode on the bad-input corpus, on cut real radiographs, and on fuzzed bytes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import badfiles
import numpy as np
import pytest
from paths import FRACATLAS
from PIL import Image, ImageFile

from bonexray.data import imaging
from bonexray.io.params import ParamsError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, badfiles.BadFile]]:
    root = tmp_path_factory.mktemp("bad")
    return root, badfiles.build(root)


@pytest.fixture(scope="module")
def decoded(corpus) -> dict[str, imaging.Decoded]:
    root, files = corpus
    return {name: imaging.decode(root / name) for name in files}


def test_corpus_covers_at_least_thirty_kinds(corpus):
    _, files = corpus
    assert len({f.status for f in files.values()} - {"ok"}) >= 12
    assert len(files) >= 30


def test_no_usable_image_is_blank_or_black(decoded):
    """What passes the decoder has content: never an image silently reduced to zeros."""
    limits = imaging.Limits()
    for name, got in decoded.items():
        if got.usable:
            low, high = np.percentile(got.array, [1, 99])
            assert high - low >= limits.min_contrast, name


def test_16_bit_container_scaled_by_its_significant_bits(decoded):
    for name in ("twelve_bit_sbit.png", "twelve_bit.png", "twelve_bit.tif"):
        got = decoded[name]
        assert got.bit_depth == 12, name
        # texture() * 16 peaks at 3808 of 4095: bright, not 3808 / 65535 = 0.06
        assert got.array.max() == pytest.approx(3808 / 4095, abs=1e-6), name
    assert decoded["gray16.png"].bit_depth == 16 and decoded["gray16.png"].array.max() == 1.0


def test_float_images_kept_or_stretched_never_zeroed(decoded):
    unit = decoded["float_unit.tif"]
    assert unit.array.max() == pytest.approx(238 / 255, abs=1e-6)  # already on [0, 1]: as is
    hu = decoded["float_hu.tif"]
    assert hu.array.min() == 0.0 and hu.array.max() == 1.0
    assert decoded["float_nan_inf.tif"].gray is None


def test_limits_from_params_are_checked():
    limits = imaging.Limits.from_params({"decode": {"min_side": 32, "max_aspect": 4}})
    assert limits.geometry(31, 100) and limits.geometry(40, 200) and not limits.geometry(40, 160)
    for bad in ({"min_side": 0}, {"max_aspect": 0.5}, {"min_contrast": 1.5}, {"sides": 3}):
        with pytest.raises(ParamsError, match="decode"):
            imaging.Limits.from_params({"decode": bad})


def test_file_too_large_is_refused_unread(tmp_path, corpus):
    root, _ = corpus
    small = imaging.Limits(max_file_bytes=1000)
    got = imaging.decode(root / "good.jpg", limits=small)
    assert got.status == "too_large" and "above decode.max_file_bytes" in got.reason
    sparse = tmp_path / "sparse.jpg"  # 3 GB of zeros that take no disk space
    with sparse.open("wb") as handle:
        handle.truncate(3 << 30)
    got = imaging.decode(sparse)
    assert got.status == "too_large" and "first 64 kB are all zero" in got.reason


def test_status_and_reason(corpus, decoded):
    """Every file gets its expected status and a reason that says what is wrong."""
    wrong = []
    for name, expected in corpus[1].items():
        got = decoded[name]
        if expected.root_only_differs and os.geteuid() == 0:
            continue  # permissions do not bite as root: see test_permission_denied
        if got.status != expected.status or expected.reason.lower() not in got.reason.lower():
            wrong.append(f"{name}: expected {expected.status} ({expected.reason!r}), got {got}")
        if got.status != "ok" and not got.reason:
            wrong.append(f"{name}: status {got.status} without a reason")
    assert not wrong, "\n".join(wrong)


def test_usable_means_an_array(decoded):
    for name, got in decoded.items():
        if got.usable:
            assert got.array is not None and got.array.ndim == 2, name
            assert got.array.dtype == np.float32, name
            assert got.array.min() >= 0.0 and got.array.max() <= 1.0, name
            assert got.array.shape == (got.height, got.width), name
        else:
            assert got.array is None, name


def test_gray_keeps_the_source_depth(decoded):
    """8-bit sources stay uint8 (no conversion cost); array is the same image in [0, 1]."""
    for name in ("good.png", "good.jpg", "palette.png"):
        got = decoded[name]
        assert got.gray.dtype == np.uint8, name
        np.testing.assert_allclose(got.array, got.gray / 255, rtol=1e-6)
        np.testing.assert_array_equal(imaging.to_uint8(got.array), got.gray)
    deep = decoded["gray16.png"]
    assert deep.gray.dtype == np.float32 and deep.array is deep.gray


def test_exif_orientation_applied(decoded):
    got = decoded["exif_rotated.jpg"]
    assert (got.width, got.height) == (32, 64)  # stored 64 wide, displayed 32 wide
    # Orientation 6 turns the stored left edge into the top: the bright half is now on top.
    assert got.array[:32].mean() > 0.9 and got.array[32:].mean() < 0.1


def test_monochrome1_inverted(decoded):
    mono1, mono2 = decoded["mono1.dcm"].array, decoded["mono2_named.jpg"].array
    assert mono2[:, 0].mean() < 0.05 and mono2[:, -1].mean() > 0.95  # ramp: low values dark
    assert mono1[:, 0].mean() > 0.95 and mono1[:, -1].mean() < 0.05  # MONOCHROME1: low = white
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_dicom_sniffed_regardless_of_extension(decoded):
    assert decoded["mono2_named.jpg"].format == "DICOM"
    assert decoded["mono2_named.jpg"].bit_depth == 12


def test_16_bit_precision_kept(decoded):
    got = decoded["gray16.png"]
    assert got.bit_depth == 16 and got.mode.startswith("I;16")
    assert len(np.unique(got.array)) > 256


def test_alpha_composited_on_black(decoded):
    rgba = decoded["rgba.png"].array
    assert np.all(rgba[:, :20] == 0)  # transparent: black
    np.testing.assert_allclose(rgba[:, 20:], 200 / 255, atol=1 / 255)


def test_colour_modes_match_grayscale(decoded):
    reference = decoded["good.png"].array
    for name in ("good.jpg", "cmyk.jpg", "palette.png"):
        assert np.abs(decoded[name].array - reference).mean() < 0.06, name


@pytest.mark.parametrize(
    ("name", "good"), [("truncated.jpg", "good.jpg"), ("truncated.png", "good.png")]
)
def test_truncated_rows_zero_filled(name, good, decoded):
    got, full = decoded[name], decoded[good].array
    row = got.filled_from_row
    assert got.truncated and 0 < row < got.height
    assert np.all(got.array[row:] == 0)
    np.testing.assert_array_equal(got.array[:row], full[:row])  # kept rows are the real ones
    assert np.any(full[row:] != 0)


def test_progressive_truncation_keeps_all_rows(decoded):
    got = decoded["truncated_progressive.jpg"]
    assert got.truncated and got.filled_from_row is None
    assert got.array[-8:].std() > 0.01  # the last rows still carry image content


def test_draft_reports_full_size_and_full_res_rows(corpus, decoded):
    root, _ = corpus
    data = (root / "good.jpg").read_bytes()
    cut = data[: len(data) * 2 // 3]
    full = imaging.decode_bytes(cut)
    small = imaging.decode_bytes(cut, draft=(24, 24))
    assert small.array.shape == (32, 24)  # 1/4 scale
    assert (small.width, small.height) == (96, 128)
    assert small.status == full.status == "truncated"
    assert small.filled_from_row == full.filled_from_row


def test_bomb_limit_is_per_call_and_restored(corpus):
    root, _ = corpus
    before = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    assert (
        imaging.decode(root / "good.jpg", limits=imaging.Limits(max_image_pixels=1000)).status
        == "bomb"
    )
    assert imaging.decode(root / "truncated.jpg").status == "truncated"
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert (
        imaging.decode(root / "good.jpg", limits=imaging.Limits(max_image_pixels=None)).status
        == "ok"
    )


def test_missing_path():
    got = imaging.decode("/nonexistent/bonexray/x.png")
    assert got.status == "missing" and not got.usable


def test_permission_denied():
    """chmod 000 as a real non-root user: fork, drop to 'nobody' when we are root."""
    folder = Path(tempfile.mkdtemp(prefix="bonexray-perm-"))
    try:
        folder.chmod(0o711)  # others may traverse it, so the FILE's mode is what denies access
        locked = folder / "locked.png"
        locked.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
        locked.chmod(0)
        status, reason = decode_in_child(locked, uid=65534 if os.geteuid() == 0 else None)
    finally:
        shutil.rmtree(folder)
    assert (status, reason) == ("unreadable", "permission denied")


def decode_in_child(path: Path, uid: int | None) -> list[str]:
    """[status, reason] of decode(path) in a forked child, optionally as another user."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe and never return into pytest
        try:
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            got = imaging.decode(path)
            os.write(write_end, json.dumps([got.status, got.reason]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer, "the child process died before answering"
    return json.loads(answer)


def test_fuzzed_bytes_never_raise(corpus):
    root, _ = corpus
    rng = np.random.default_rng(7)
    for name in ("good.jpg", "good.png", "gray16.png", "mono1.dcm"):
        data = (root / name).read_bytes()
        for _ in range(25):
            mutated = bytearray(data)
            positions = rng.integers(0, len(data), 12)
            mutated_bytes = rng.integers(0, 256, 12, dtype=np.uint8)
            for pos, value in zip(positions, mutated_bytes, strict=True):
                mutated[pos] = int(value)
            cut = int(rng.integers(len(data) // 4, len(data) + 1))
            got = imaging.decode_bytes(bytes(mutated[:cut]), suffix=Path(name).suffix)
            assert got.status in imaging.STATUSES
            assert (got.array is not None) == got.usable


@pytest.mark.fracatlas
def test_real_truncations_find_the_cut():
    """Cut real FracAtlas JPEGs (and a PNG re-encoding) at several points: the kept rows are
    exactly the full decode's, the rest is zero, and the cut row grows with the bytes kept."""
    folder = FRACATLAS / "images" / "Fractured"
    if not folder.is_dir():
        pytest.skip(f"FracAtlas not found at {FRACATLAS} (set BONEXRAY_FRACATLAS)")
    names = sorted(p.name for p in folder.glob("*.jpg"))[::97][:5]
    for name in names:
        data = (folder / name).read_bytes()
        full = imaging.decode_bytes(data)
        png = badfiles.encode(Image.fromarray(imaging.to_uint8(full.array)), "PNG")
        full_png = imaging.decode_bytes(png)
        for blob, reference in ((data, full), (png, full_png)):
            rows = []
            for fraction in (0.25, 0.5, 0.75):
                got = imaging.decode_bytes(blob[: int(len(blob) * fraction)])
                assert got.status == "truncated", (name, fraction, got.reason)
                row = got.filled_from_row
                assert 0 < row < got.height
                np.testing.assert_array_equal(got.array[:row], reference.array[:row])
                assert np.all(got.array[row:] == 0)
                assert abs(row / got.height - fraction) < 0.35, (name, fraction, row)
                rows.append(row)
            assert rows == sorted(rows) and rows[0] < rows[-1], (name, rows)
