"""A corpus of bad and odd inputs, built in a temporary directory (shared by several tests).

`build(root)` writes every file and returns {relative name: BadFile}. Each BadFile says what
imaging.decode must report for it. Everything is generated here: no downloads, no fixtures
in the repository, deterministic bytes.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class BadFile:
    name: str
    status: str  # what imaging.decode must report
    reason: str  # a phrase the reason must contain (case-insensitive); "" for a clean decode
    root_only_differs: bool = False  # permissions do not bite when running as root


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A uint8 image with structure in every row (so a cut shows up wherever it falls)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 40 + (x * 3 + y * 5) % 160
    return np.clip(base + rng.integers(0, 40, (height, width)), 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with one tiny IDAT: a decompression bomb shape."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1))  # one zero row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
    **tags: object,
) -> None:
    """A minimal valid DICOM file (Explicit VR Little Endian); pixels None -> no PixelData."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        BasicTextSRStorage,
        ComputedRadiographyImageStorage,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    sop_class = BasicTextSRStorage if pixels is None else ComputedRadiographyImageStorage
    instance = generate_uid(entropy_srcs=[path.name])  # deterministic
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance
    ds.Modality = "SR" if pixels is None else "CR"
    ds.PatientID = "P0001"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", path.name])
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    if pixels is not None:
        pixels = np.ascontiguousarray(pixels, dtype=np.uint16)
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        if frames > 1:
            ds.NumberOfFrames = frames
            pixels = np.stack([pixels] * frames)
        ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def dicom_ramp() -> np.ndarray:
    """12-bit horizontal ramp: dark on the left, bright on the right (in stored values)."""
    return np.tile(np.linspace(0, 4095, 48).astype(np.uint16), (32, 1))


def build(root: Path) -> dict[str, BadFile]:
    """Write the corpus under root; return {name: expectation}."""
    root.mkdir(parents=True, exist_ok=True)
    files: list[BadFile] = []

    def add(name: str, data: bytes, status: str, reason: str = "") -> None:
        (root / name).write_bytes(data)
        files.append(BadFile(name, status, reason))

    gray = Image.fromarray(texture(96, 128))
    jpeg = encode(gray.convert("RGB"), "JPEG", quality=92)
    add("good.jpg", jpeg, "ok")
    add("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated", "truncated")
    png = encode(gray, "PNG")
    add("good.png", png, "ok")
    add("truncated.png", png[: len(png) // 2], "truncated", "truncated")
    progressive = encode(gray, "JPEG", quality=92, progressive=True)
    add(
        "truncated_progressive.jpg",
        progressive[: len(progressive) * 2 // 3],
        "truncated",
        "progressive",
    )
    add("no_eoi.jpg", jpeg[:-2], "ok", "trailer missing")  # only the end-of-image marker cut
    corrupt = bytearray(png)
    corrupt[len(png) // 2 : len(png) // 2 + 64] = bytes(range(64))
    add("corrupt.png", bytes(corrupt), "corrupt", "")
    add("empty.jpg", b"", "empty", "zero bytes")
    add("notes.jpg", b"scan of the left wrist, see report\n", "not_image", "text")
    html = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>"
    add("error_page.png", html, "not_image", "HTML page")
    add("random.png", np.random.default_rng(1).bytes(600), "not_image", "unrecognised binary")

    ramp16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    add("gray16.png", encode(Image.fromarray(ramp16), "PNG"), "ok")
    add("palette.png", encode(gray.quantize(16), "PNG"), "ok")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, 20:, 3] = 255  # left half fully transparent (over white RGB): composites to black
    add("rgba.png", encode(Image.fromarray(rgba, "RGBA"), "PNG"), "ok")
    add("cmyk.jpg", encode(gray.convert("RGB").convert("CMYK"), "JPEG", quality=92), "ok")
    wide = np.zeros((32, 64), np.uint8)
    wide[:, :32] = 255  # stored: bright left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    add("exif_rotated.jpg", encode(Image.fromarray(wide), "JPEG", quality=95, exif=exif), "ok")
    tiff = io.BytesIO()
    gray.save(tiff, "TIFF", save_all=True, append_images=[gray])
    add("two_pages.tif", tiff.getvalue(), "unsupported", "multi-frame")
    add("bomb.png", png_header_only(30_000, 30_000), "bomb", "decompression bomb")
    add("bomb_warning_level.png", png_header_only(10_000, 10_000), "bomb", "decompression bomb")

    write_dicom(root / "report.dcm", None, BodyPartExamined="HAND")
    files.append(BadFile("report.dcm", "no_pixel_data", "without PixelData"))
    write_dicom(
        root / "mono1.dcm", dicom_ramp(), photometric="MONOCHROME1", BodyPartExamined="KNEE"
    )
    files.append(BadFile("mono1.dcm", "ok", ""))
    write_dicom(root / "mono2_named.jpg", dicom_ramp(), BodyPartExamined="KNEE")
    files.append(BadFile("mono2_named.jpg", "ok", ""))
    write_dicom(root / "cine.dcm", dicom_ramp(), frames=3)
    files.append(BadFile("cine.dcm", "unsupported", "multi-frame"))

    locked = root / "locked.jpg"
    locked.write_bytes(jpeg)
    locked.chmod(0)
    files.append(BadFile("locked.jpg", "unreadable", "permission denied", root_only_differs=True))
    os.mkfifo(root / "pipe.jpg")  # opening it would block forever
    files.append(BadFile("pipe.jpg", "unreadable", "FIFO"))
    (root / "folder.jpg").mkdir()
    files.append(BadFile("folder.jpg", "unreadable", "directory"))
    (root / "loop_a.jpg").symlink_to("loop_b.jpg")
    (root / "loop_b.jpg").symlink_to("loop_a.jpg")
    files += [BadFile(n, "broken_link", "loop") for n in ("loop_a.jpg", "loop_b.jpg")]
    (root / "dangling.png").symlink_to("gone/nowhere.png")
    files.append(BadFile("dangling.png", "broken_link", "dangling"))

    # Pixel ranges: what the data holds, not what the container could hold.
    twelve = (texture(64, 48).astype(np.uint16) * 16).clip(0, 4095)  # 12-bit values, max 4095
    add(
        "twelve_bit_sbit.png",
        png_with_sbit(encode(Image.fromarray(twelve), "PNG"), 12),
        "ok",
        "12-bit data (PNG sBIT)",
    )
    add("twelve_bit.png", encode(Image.fromarray(twelve), "PNG"), "ok", "12-bit data (largest")
    add("twelve_bit.tif", encode(Image.fromarray(twelve), "TIFF"), "ok", "12-bit data (largest")
    flat = texture(64, 48).astype(np.float32)
    add("float_unit.tif", encode(Image.fromarray(flat / 255), "TIFF"), "ok")
    add("float_hu.tif", encode(Image.fromarray(flat * 8 - 1000), "TIFF"), "ok", "percentiles")
    holes = flat / 255
    holes[3, 5], holes[10, 7] = np.nan, np.inf
    add(
        "float_nan_inf.tif",
        encode(Image.fromarray(holes), "TIFF"),
        "non_finite",
        "1 NaN and 1 infinite",
    )

    # No image content: blank films, a zero-filled file.
    add(
        "all_black.png",
        encode(Image.fromarray(np.zeros((64, 64), np.uint8)), "PNG"),
        "blank",
        "constant image",
    )
    white = Image.fromarray(np.full((64, 64), 255, np.uint8)).convert("RGB")
    add("all_white.jpg", encode(white, "JPEG", quality=90), "blank", "constant")
    labelled = np.full((100, 100), 250, np.uint8)
    labelled[2:5, 2:5] = 0  # a tiny marker: 0.09% of the pixels
    add("white_with_marker.png", encode(Image.fromarray(labelled), "PNG"), "blank", "near-constant")
    add("zeros.jpg", bytes(100_000), "not_image", "every byte is zero")

    # Implausible geometry, refused on the header (1 x 40000 is never decoded).
    strip = np.zeros((1, 40000), np.uint8)
    add("strip_1x40000.png", encode(Image.fromarray(strip), "PNG"), "bad_geometry", "a side below")
    add(
        "strip_40000x1.png", encode(Image.fromarray(strip.T), "PNG"), "bad_geometry", "a side below"
    )
    add(
        "narrow.png",
        encode(Image.fromarray(texture(400, 20)), "PNG"),
        "bad_geometry",
        "aspect ratio 20.0",
    )
    add(
        "thumb_8px.jpg",
        encode(Image.fromarray(texture(8, 8)), "JPEG"),
        "bad_geometry",
        "a side below",
    )

    # More containers that must not pass as images.
    add("archive.png", gzip.compress(png, mtime=0), "not_image", "unrecognised binary")
    frames = [Image.fromarray(texture(32, 32, seed=k)) for k in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    add("animated.gif", gif.getvalue(), "unsupported", "multi-frame")
    add("bomb.jpg", jpeg_header_only(40_000, 40_000), "bomb", "decompression bomb")
    return {f.name: f for f in files}


def png_with_sbit(png: bytes, bits: int) -> bytes:
    """The PNG with an sBIT chunk (significant bits of the grey channel) after IHDR."""
    payload = bytes([bits])
    body = b"sBIT" + payload
    chunk = struct.pack(">I", 1) + body + struct.pack(">I", zlib.crc32(body))
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def jpeg_header_only(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 header is rewritten to declare width x height."""
    data = bytearray(encode(Image.fromarray(texture(16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def regular_entries(root: Path) -> list[str]:
    """Every non-directory entry under root (what census must list), relative, sorted."""
    found = []
    for folder, _, names in os.walk(root):
        found += [Path(folder, n).relative_to(root).as_posix() for n in names]
    return sorted(found)


def tiny_png(path: Path) -> Path:
    """The smallest image census calls ok: min_side pixels a side, with texture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(texture(16, 16)).save(path)
    return path


CSV_HEADER = (
    "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,"
    "frontal,lateral,oblique\n"
)


def build_fracatlas(root: Path) -> None:
    """A FracAtlas-like layout whose CSV and files disagree: IMG04 listed but missing,
    IMG99 present but not listed; plus annotation and split sidecars."""
    rows = [
        "IMG01.jpg,1,0,0,0,0,0,0,1,1,1,0,0",  # hand, fractured, frontal
        "IMG02.jpg,1,1,0,0,0,0,0,0,0,1,1,0",  # two regions: mixed; two views
        "IMG03.jpg,0,0,1,0,1,0,0,0,0,0,0,1",  # mixed flag wins
        "IMG04.jpg,0,1,0,0,0,0,0,1,1,0,1,0",  # listed, but its image is missing
    ]
    (root / "dataset.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset.csv").write_text(CSV_HEADER + "\n".join(rows) + "\n")
    tiny_png(root / "images" / "Fractured" / "IMG01.jpg")
    tiny_png(root / "images" / "Non_fractured" / "IMG02.jpg")
    tiny_png(root / "images" / "Non_fractured" / "IMG03.jpg")
    tiny_png(root / "images" / "Non_fractured" / "IMG99.jpg")  # not in the CSV
    (root / "annotations" / "yolo").mkdir(parents=True)
    (root / "annotations" / "yolo" / "IMG01.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "fracture_split").mkdir()
    (root / "fracture_split" / "train.csv").write_text("image_id\nIMG01.jpg\n")
