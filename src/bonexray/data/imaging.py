"""Decode any file that may or may not be a radiograph, without ever raising.

`decode(path)` returns a `Decoded` record: a status from STATUSES, a human-readable reason,
and (for usable files) a 2-D grayscale image: `gray` at the source's own depth (uint8 for
8-bit sources, float32 in [0, 1] otherwise) and `array`, always float32 in [0, 1]. Census
uses it to describe every file found; repair uses it to build the working images. Both get
the same verdict for the same bytes, because there is exactly one decoder.

Conventions:
- Grayscale: PIL's ITU-R 601-2 luma for colour images; DICOM after its modality and VOI
  LUTs, MONOCHROME1 inverted so that bone is always bright.
- Transparency (RGBA, LA, palette with transparency) is composited on BLACK: transparent
  pixels carry no data, and black is both a radiograph's background (air) and the value
  repair uses for missing rows and letterbox padding.
- A truncated file keeps every row that really came from the file; the rest is zero-filled
  and `filled_from_row` says where the fill starts (full-resolution, file row order).
- The decompression-bomb guard stays on: PIL's warning level counts as a bomb too.
"""

from __future__ import annotations

import errno
import io
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# PIL's own default; repeated here so that it does not depend on what other code set globally.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

STATUSES = MappingProxyType(
    {
        "ok": "decoded completely",
        "truncated": "file ends early; rows from filled_from_row on are zero-filled",
        "empty": "zero bytes",
        "missing": "listed by a source (or asked for) but no such file",
        "not_image": "not an image format (text, HTML page, unknown binary)",
        "corrupt": "an image format, but the decoder failed",
        "bomb": "declared pixel count above the decompression-bomb limit; not decoded",
        "unreadable": "cannot be read: permission denied, a directory, FIFO or device, I/O error",
        "broken_link": "dangling symlink or symlink loop",
        "no_pixel_data": "DICOM file without PixelData (e.g. a structured report)",
        "unsupported": "a valid file this pipeline refuses (multi-frame, undecodable codec)",
    }
)
USABLE = frozenset({"ok", "truncated"})

# Bytes appended after a cut JPEG: no 0xFF (which would start a marker), then an EOI marker.
# See _find_filled_row for why JPEG needs this.
_JPEG_GARBAGE = bytes(range(1, 255)) * 8 + b"\xff\xd9"
_TEXT_SNIFF_BYTES = 1024
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}

# PIL's bomb limit and truncated-image switch, and pydicom's validation mode, are module
# globals: hold this lock while they are changed so that threads never see each other's.
_SETTINGS_LOCK = threading.RLock()


@dataclass(frozen=True, eq=False)
class Decoded:
    """What decode() found. `gray` (and `array`) is None unless status is in USABLE.

    `gray` is uint8 for 8-bit sources (the decoder's own values: no conversion cost, and
    8-bit consumers such as the phash and repair's resize use it as is) and float32 in
    [0, 1] for everything else (16-bit, DICOM), which keeps their precision.

    width/height are the full-resolution size after EXIF orientation, even when `draft`
    made the image smaller. filled_from_row counts rows of the file at full resolution, in
    stored (pre-EXIF) order; it can differ by one JPEG MCU row between draft scales when
    the cut falls inside detail that a reduced scale does not use. For DICOM, `mode` is
    the PhotometricInterpretation and `bit_depth` is BitsStored.
    """

    status: str
    reason: str
    gray: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    bit_depth: int | None = None
    format: str | None = None
    truncated: bool = False
    filled_from_row: int | None = None
    # Hasler & Suesstrunk (2003) colourfulness of the colour source before its grey
    # conversion (0 for grey content, ~15 "slightly colourful", >45 "very"); None for grey
    # sources and truncated colour JPEGs. predict withholds colour photos on it.
    colourfulness: float | None = None

    @property
    def usable(self) -> bool:
        return self.status in USABLE

    @cached_property
    def array(self) -> np.ndarray | None:
        """`gray` as float32 in [0, 1] (8-bit: value / 255), computed on first use."""
        if self.gray is None or self.gray.dtype != np.uint8:
            return self.gray
        return np.multiply(self.gray, np.float32(1.0 / 255), dtype=np.float32)  # one pass


def to_uint8(array: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as uint8 0..255 (rounded, clipped); uint8 is returned as is."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    return np.clip(np.rint(array.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def read_bytes(path: str | Path) -> bytes | Decoded:
    """The file's bytes, or a Decoded saying why there are none (never raises for a bad path).

    Checks the file type before opening it: opening a FIFO would block forever.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return Decoded("broken_link", f"dangling symlink to '{_readlink(path)}'")
        return Decoded("missing", "no such file")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Decoded("broken_link", "symlink loop (too many levels of symbolic links)")
        return Decoded("unreadable", _os_reason(exc))
    if not stat.S_ISREG(info.st_mode):
        return Decoded("unreadable", f"not a regular file: {_file_kind(info.st_mode)}")
    if info.st_size == 0:
        return Decoded("empty", "zero bytes")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Decoded("unreadable", _os_reason(exc))
    return data if data else Decoded("empty", "zero bytes")


def decode(
    path: str | Path,
    *,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Decoded:
    """Fully decode one file to grayscale float32 in [0, 1]. Never raises for a bad file.

    max_image_pixels: decompression-bomb limit for this call (None disables it, as in PIL;
        the pipeline always passes a number). PIL's global setting is restored afterwards.
    draft: for JPEG, decode at the smallest 1/2, 1/4 or 1/8 scale that keeps at least this
        (width, height). The entropy-coded data is still read to the end, so truncation is
        still detected; the image is then smaller than width x height (which stay full-size,
        as does filled_from_row).

    Colour JPEGs are decoded to luma directly; other colour images via PIL's "L" conversion.
    Safe to call from several threads (PIL's global switches are set under a lock, which
    serialises PIL decodes within one process); the pipeline uses processes anyway.
    """
    got = read_bytes(path)
    if isinstance(got, Decoded):
        return got
    return decode_bytes(
        got, suffix=Path(path).suffix.lower(), max_image_pixels=max_image_pixels, draft=draft
    )


def decode_bytes(
    data: bytes,
    *,
    suffix: str = "",
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Decoded:
    """decode() for bytes already read; `suffix` (e.g. '.dcm') only helps spot DICOM."""
    if not data:
        return Decoded("empty", "zero bytes")
    try:
        if data[128:132] == b"DICM" or suffix in _DICOM_SUFFIXES:
            return _decode_dicom(
                data, sniffed=data[128:132] == b"DICM", max_pixels=max_image_pixels
            )
        return _decode_pil(data, max_pixels=max_image_pixels, draft=draft)
    except MemoryError:
        return Decoded("bomb", "ran out of memory while decoding")
    except Exception as exc:  # the contract is "never raises": any decoder bug becomes a status
        return Decoded("corrupt", f"unexpected decoder error: {type(exc).__name__}: {exc}")


# --- PIL formats ---------------------------------------------------------------------------


@contextmanager
def _pil_settings(max_pixels: int | None, load_truncated: bool = False) -> Iterator[None]:
    """Set PIL's bomb limit and truncated-load switch for this block only."""
    with _SETTINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": not our verdict
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = load_truncated
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _decode_pil(data: bytes, *, max_pixels: int | None, draft: tuple[int, int] | None) -> Decoded:
    try:
        with _pil_settings(max_pixels):
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return Decoded("not_image", _sniff_non_image(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Decoded("bomb", str(exc))
    except Exception as exc:  # a known signature whose header does not parse
        return Decoded("corrupt", f"header unreadable: {_exc_text(exc)}")

    meta = {
        "mode": im.mode,
        "bit_depth": _bit_depth(im.mode),
        "format": im.format,
        "width": im.width,
        "height": im.height,
    }
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        return Decoded(
            "unsupported",
            f"multi-frame image ({frames} frames): which one to use is ambiguous",
            **meta,
        )

    try:
        with _pil_settings(max_pixels):
            _apply_draft(im, draft)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Decoded("bomb", str(exc), **meta)
    except Exception as exc:
        if not _looks_truncated(exc):
            return Decoded("corrupt", f"decoder error: {_exc_text(exc)}", **meta)
        return _recover_truncated(
            data, meta, progressive="progressive" in im.info, draft=draft, max_pixels=max_pixels
        )
    decoded = _finish(im, meta, status="ok", reason="")
    if im.format == "JPEG" and im.mode != meta["mode"]:  # decoded to luma: colour from 1/8 scale
        decoded = replace(decoded, colourfulness=_jpeg_colourfulness(data, max_pixels))
    return decoded


def _recover_truncated(
    data: bytes,
    meta: dict,
    *,
    progressive: bool,
    draft: tuple[int, int] | None,
    max_pixels: int | None,
) -> Decoded:
    """Keep the rows that really came from a truncated file and zero-fill the rest."""
    if progressive:
        # Every row is already there at coarser detail (later refinement scans are missing):
        # nothing to zero-fill, and nothing better to offer than the coarse image.
        im, _ = _load_truncated(data, draft, max_pixels)
        return _finish(
            im,
            meta,
            status="truncated",
            truncated=True,
            reason="progressive JPEG cut short: all rows decoded, fine detail missing",
        )
    im, row, scale = _find_filled_row(data, draft, max_pixels)
    if row is None:
        return _finish(
            im,
            meta,
            status="ok",
            reason="file ends early, but every pixel row was decoded (trailer missing)",
        )
    if row == 0:
        return Decoded("corrupt", "truncated before the first complete pixel row", **meta)
    height = meta["height"]
    return _finish(
        im,
        meta,
        status="truncated",
        truncated=True,
        fill_row=row,
        scale=scale,
        reason=f"file truncated: rows {row * scale}..{height - 1} of {height} zero-filled",
    )


def _apply_draft(im: Image.Image, draft: tuple[int, int] | None) -> int:
    """Configure the JPEG decoder; return the scale factor (1 when not reduced).

    Colour JPEGs are always decoded to luma only (libjpeg's Y channel): that is the grey
    image, it is faster, and it makes the decode (and so filled_from_row) the same with and
    without `draft`.
    """
    if im.format != "JPEG" or (draft is None and im.mode != "RGB"):
        return 1
    full_width = im.width
    got = im.draft("L" if im.mode == "RGB" else im.mode, draft)
    if not got:
        return 1
    return max(1, round(full_width / got[1][2]))


def _load_truncated(
    data: bytes,
    draft: tuple[int, int] | None,
    max_pixels: int | None,
    *,
    fill: int = 0,
    pad: bytes = b"",
) -> tuple[Image.Image, int]:
    """Load with PIL's truncated-image mode on, into a buffer pre-filled with `fill`.

    Returns the image and its draft scale.
    """
    with _pil_settings(max_pixels, load_truncated=True):
        im = Image.open(io.BytesIO(data + pad))
        scale = _apply_draft(im, draft)
        # Decoders write into the image memory row by row; rows they never reach keep this value.
        im.im = Image.new(im.mode, im.size, _fill_colour(im.mode, fill)).im
        im.load()
    return im, scale


def _find_filled_row(
    data: bytes, draft: tuple[int, int] | None, max_pixels: int | None
) -> tuple[Image.Image, int | None, int]:
    """Decode a truncated file twice, differently; rows that differ did not come from the file.

    PNG/GIF/TIFF decoders leave rows they never reached untouched, so the two decodes start
    from buffers filled with 0 and with the maximum. libjpeg instead paints every row (grey
    past the break), so for JPEG the second decode also gets junk bytes after the cut: the
    junk decodes into different pixels from the first missing block on. The first differing
    row, rounded down to the start of its JPEG MCU row, is where the zero fill starts.

    Returns (the image decoded without junk, first filled row at decode scale or None if
    every row is real, draft scale).
    """
    is_jpeg = data[:2] == b"\xff\xd8"
    first, scale = _load_truncated(data, draft, max_pixels, fill=0)
    pad = _JPEG_GARBAGE if is_jpeg else b""
    second, _ = _load_truncated(data, draft, max_pixels, fill=255, pad=pad)
    a, b = np.asarray(first), np.asarray(second)
    differs = np.flatnonzero((a != b).reshape(a.shape[0], -1).any(axis=1))
    if differs.size == 0:
        return first, None, scale
    row = int(differs[0])
    if is_jpeg:
        # layer: (component id, h, v, quant table); an MCU row is 8 * max(v) pixel rows.
        v_max = max((layer[2] for layer in getattr(first, "layer", [])), default=2)
        mcu_rows = max(1, 8 * v_max // scale)
        row -= row % mcu_rows
    return first, row, scale


def _finish(
    im: Image.Image,
    meta: dict,
    *,
    status: str,
    reason: str,
    truncated: bool = False,
    fill_row: int | None = None,
    scale: int = 1,
) -> Decoded:
    """Grayscale, zero-fill missing rows, apply EXIF orientation, scale to [0, 1]."""
    colour = None if _is_gray_mode(im.mode) else colourfulness(np.asarray(im.convert("RGB")))
    gray = _to_gray(im)
    if fill_row is not None:
        gray.paste(0, (0, fill_row, gray.width, gray.height))
    stored_size = gray.size
    try:
        ImageOps.exif_transpose(gray, in_place=True)  # in place: no copy when upright
    except Exception:  # malformed EXIF: keep the stored orientation, but say so
        reason = f"{reason}; EXIF unreadable, orientation not applied".lstrip("; ")
    if gray.size != stored_size:  # rotated by 90 degrees: report the displayed size
        meta = {**meta, "width": meta["height"], "height": meta["width"]}
    return Decoded(
        status,
        reason,
        _gray_pixels(gray),
        truncated=truncated,
        filled_from_row=None if fill_row is None else fill_row * scale,
        colourfulness=colour,
        **meta,
    )


def _is_gray_mode(mode: str) -> bool:
    return mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16")


# Colourfulness is a global statistic: this many samples per side estimate it well enough,
# and bound the cost on a large photo.
_COLOUR_SAMPLES = 256


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness of an (h, w, 3) image on the 0..255 scale:
    std_rgyb + 0.3 * mean_rgyb of the opponent channels rg = R - G, yb = (R + G) / 2 - B."""
    step = max(1, max(rgb.shape[:2]) // _COLOUR_SAMPLES)
    r, g, b = np.moveaxis(np.asarray(rgb[::step, ::step, :3], dtype=np.float64), -1, 0)
    rg, yb = r - g, (r + g) / 2 - b
    spread = np.hypot(rg.std(), yb.std())
    return float(spread + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _jpeg_colourfulness(data: bytes, max_pixels: int | None) -> float | None:
    """A colour JPEG's colourfulness from an RGB decode at the smallest DCT scale (cheap)."""
    try:
        with _pil_settings(max_pixels):
            im = Image.open(io.BytesIO(data))
            im.draft("RGB", (1, 1))
            return colourfulness(np.asarray(im.convert("RGB")))
    except Exception:  # the luma decode succeeded; without colour the gate just has no say
        return None


def _to_gray(im: Image.Image) -> Image.Image:
    """One band, as L, I;16, I or F; keeps 16-bit precision; composites alpha on black."""
    mode = im.mode
    if mode in ("L", "I", "F") or mode.startswith("I;16"):
        return im
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        gray = Image.alpha_composite(black, rgba).convert("L")
    elif mode in ("1", "P", "RGB"):
        gray = im.convert("L")
    else:  # CMYK, YCbCr, LAB, HSV: PIL converts these to L via RGB
        gray = im.convert("RGB").convert("L")
    gray.info = im.info  # keeps EXIF for exif_transpose
    return gray


def _gray_pixels(gray: Image.Image) -> np.ndarray:
    """Decoded.gray: uint8 as decoded for "L", float32 in [0, 1] for deeper modes."""
    arr = np.asarray(gray)
    if gray.mode == "L":
        return arr
    if gray.mode.startswith("I;16") or (
        gray.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535
    ):  # 16-bit data (PIL may widen it to 32-bit "I")
        return np.multiply(arr, np.float32(1.0 / 65535), dtype=np.float32)  # one pass
    return _stretch(arr)


def _looks_truncated(exc: BaseException) -> bool:
    return isinstance(exc, EOFError) or "truncat" in str(exc).lower()


def _fill_colour(mode: str, value: int) -> float | int | tuple[int, ...]:
    if mode.startswith("I;16") or mode == "I":
        value *= 257
    bands = Image.getmodebands(mode)
    return value if bands == 1 else (value,) * bands


def _bit_depth(mode: str) -> int:
    if mode == "1":
        return 1
    if mode.startswith("I;16"):
        return 16
    if mode in ("I", "F"):
        return 32
    return 8


# --- DICOM ---------------------------------------------------------------------------------


@contextmanager
def dicom_reading() -> Iterator[None]:
    """Context for pydicom reads: no value validation, which warns and logs (to stderr) on
    every odd UID or date; a header we can read is good enough."""
    from pydicom import config

    with _SETTINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = config.settings.reading_validation_mode
        config.settings.reading_validation_mode = config.IGNORE
        try:
            yield
        finally:
            config.settings.reading_validation_mode = saved


def _decode_dicom(data: bytes, *, sniffed: bool, max_pixels: int | None) -> Decoded:
    with dicom_reading():
        return _decode_dicom_dataset(data, sniffed=sniffed, max_pixels=max_pixels)


def _decode_dicom_dataset(data: bytes, *, sniffed: bool, max_pixels: int | None) -> Decoded:
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not sniffed)
    except Exception as exc:
        if not sniffed:  # only the extension said DICOM: let PIL have a go
            return _decode_pil(data, max_pixels=max_pixels, draft=None)
        return Decoded("corrupt", f"DICOM header unreadable: {_exc_text(exc)}", format="DICOM")

    photometric = str(ds.get("PhotometricInterpretation", "")) or None
    rows, cols = ds.get("Rows"), ds.get("Columns")
    bits = ds.get("BitsStored")
    meta = {
        "mode": photometric,
        "bit_depth": int(bits) if bits else None,
        "format": "DICOM",
        "width": int(cols) if cols else None,
        "height": int(rows) if rows else None,
    }
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        kind = str(ds.get("Modality", "")) or "unknown modality"
        return Decoded("no_pixel_data", f"DICOM without PixelData ({kind})", **meta)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return Decoded(
            "unsupported", f"multi-frame DICOM ({frames} frames) is not supported", **meta
        )
    if max_pixels is not None and rows and cols and int(rows) * int(cols) > max_pixels:
        return Decoded(
            "bomb",
            f"DICOM declares {int(cols)}x{int(rows)} pixels, above the {max_pixels} limit",
            **meta,
        )
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed:
            return Decoded(
                "unsupported",
                f"cannot decode compressed transfer syntax '{syntax.name}' "
                f"(a pydicom pixel plugin such as pylibjpeg may be needed): {_exc_text(exc)}",
                **meta,
            )
        return Decoded("corrupt", f"DICOM pixel data unreadable: {_exc_text(exc)}", **meta)

    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    colour = None
    if pixels.ndim == 3:  # colour DICOM (pydicom already converted YBR to RGB)
        colour = colourfulness(_stretch(pixels[..., :3]) * 255)
        pixels = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    else:
        pixels = apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    array = _stretch(pixels)
    if photometric == "MONOCHROME1":  # low values are white in MONOCHROME1
        array = 1.0 - array
    return Decoded("ok", "", array.astype(np.float32), colourfulness=colour, **meta)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; these sources have no fixed display range (a flat image -> zeros)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


# --- reasons -------------------------------------------------------------------------------


def _sniff_non_image(data: bytes) -> str:
    head = data[:_TEXT_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head or b"<body" in head:
        return "HTML page, not an image (e.g. an error or login page saved under an image name)"
    if head.startswith(b"<?xml") or b"<svg" in head:
        return "XML/SVG document, not a raster image"
    try:
        data[:_TEXT_SNIFF_BYTES].decode("utf-8")
    except UnicodeDecodeError:
        return f"unrecognised binary format (starts with {data[:8].hex()})"
    return "text file, not an image"


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "not a regular file: a directory"
    return exc.strerror or _exc_text(exc)


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return "?"


def _exc_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
