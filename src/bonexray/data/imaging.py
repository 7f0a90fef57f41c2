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
- Pixel ranges come from the data: 16-bit containers are scaled by their significant bits
  (PNG sBIT, else the smallest of 8/10/12/14/16 bits that holds the maximum value: a CR
  export of 12-bit data in a 16-bit PNG is scaled by 4095, not 65535); DICOM by BitsStored
  unless it carries a window or LUT; float images as they are when within [0, 1], else
  between their 0.5th and 99.5th percentiles. NaN or infinite pixels are refused.
- What no radiograph looks like is refused with its own status before it can reach a
  model: a side below `Limits.min_side` or an aspect ratio above `Limits.max_aspect`
  (checked on the header, before decoding), and blank images (the 1st to 99th percentile
  range below `Limits.min_contrast`).
"""

from __future__ import annotations

import errno
import io
import stat
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from bonexray.io.params import ParamsError, section

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
        "too_large": "file above the decode.max_file_bytes limit; not read",
        "non_finite": "floating-point pixels that are NaN or infinite",
        "bad_geometry": "a side below decode.min_side or an aspect ratio above decode.max_aspect",
        "blank": "constant or near-constant: 1st-99th percentile range below decode.min_contrast",
        "bad_name": "file name is not valid UTF-8 (census refuses it; rename the file)",
        "outside_link": "symlink resolving outside its source's folder (see census params)",
    }
)
USABLE = frozenset({"ok", "truncated"})
# Verdicts census gives from the path alone; repair quarantines these without opening them.
REFUSED_BY_CENSUS = frozenset({"bad_name", "outside_link"})
# Candidate significant bits of a 16-bit container without sBIT (detector ADCs are 10-16 bit).
SIGNIFICANT_BITS = (8, 10, 12, 14, 16)
# Float images outside [0, 1] are stretched between these percentiles (robust to hot pixels).
FLOAT_PERCENTILES = (0.5, 99.5)
# Percentiles whose distance measures contrast for the blank test.
CONTRAST_PERCENTILES = (1.0, 99.0)
# Pixels sampled (a regular stride) for float percentiles: exact enough, and bounded cost.
PERCENTILE_SAMPLE = 1 << 20

# Bytes appended after a cut JPEG: no 0xFF (which would start a marker), then an EOI marker.
# See _find_filled_row for why JPEG needs this.
_JPEG_GARBAGE = bytes(range(1, 255)) * 8 + b"\xff\xd9"
_TEXT_SNIFF_BYTES = 1024
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}

# PIL's bomb limit and truncated-image switch, and pydicom's validation mode, are module
# globals: hold this lock while they are changed so that threads never see each other's.
_SETTINGS_LOCK = threading.RLock()


@dataclass(frozen=True)
class Limits:
    """params.yaml `decode:`, one guard for census, repair and predict.

    max_image_pixels: decompression-bomb limit (None disables it, as in PIL).
    max_file_bytes: files above this are not read at all (None: no limit).
    min_side, max_aspect: smallest side and largest long/short ratio of a plausible film.
    min_contrast: blank below this 1st-99th percentile range, in [0, 1] units of full scale.
    """

    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    max_file_bytes: int | None = 1 << 30
    min_side: int = 16
    max_aspect: float = 8.0
    min_contrast: float = 0.02

    def __post_init__(self) -> None:
        for name in ("max_image_pixels", "max_file_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ParamsError(
                    f"decode.{name}: expected a positive integer or null, got {value!r}"
                )
        if not isinstance(self.min_side, int) or self.min_side < 1:
            raise ParamsError(f"decode.min_side: expected an integer >= 1, got {self.min_side!r}")
        if not self.max_aspect >= 1:
            raise ParamsError(f"decode.max_aspect: expected a number >= 1, got {self.max_aspect!r}")
        if not 0 <= self.min_contrast < 1:
            raise ParamsError(
                f"decode.min_contrast: expected a number in [0, 1), got {self.min_contrast!r}"
            )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Limits:
        decode = section(params, "decode")
        unknown = sorted(set(decode) - set(cls.__dataclass_fields__))
        if unknown:
            raise ParamsError(f"decode: unknown key(s) {unknown}")
        return cls(**decode)

    def geometry(self, width: int, height: int) -> str | None:
        """Why a width x height image is implausible as a radiograph, or None."""
        short, long = sorted((width, height))
        if short < self.min_side:
            return f"{width}x{height} pixels: a side below decode.min_side ({self.min_side})"
        if long > self.max_aspect * short:
            return (
                f"{width}x{height} pixels: aspect ratio {long / short:.1f} above "
                f"decode.max_aspect ({self.max_aspect:g})"
            )
        return None


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


def read_bytes(path: str | Path, max_file_bytes: int | None = None) -> bytes | Decoded:
    """The file's bytes, or a Decoded saying why there are none (never raises for a bad path).

    Checks the file type before opening it (opening a FIFO would block forever) and its size
    before reading it (a multi-GB file is not read into memory to learn it is no image).
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
    if max_file_bytes is not None and info.st_size > max_file_bytes:
        return Decoded(
            "too_large",
            f"{_bytes_text(info.st_size)}, above decode.max_file_bytes "
            f"({_bytes_text(max_file_bytes)}){_head_remark(path)}",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Decoded("unreadable", _os_reason(exc))
    return data if data else Decoded("empty", "zero bytes")


def decode(
    path: str | Path, *, limits: Limits = Limits(), draft: tuple[int, int] | None = None
) -> Decoded:
    """Fully decode one file to grayscale float32 in [0, 1]. Never raises for a bad file.

    limits: the bomb, file-size, geometry and contrast guards (params.yaml `decode:`). PIL's
        global bomb setting is restored afterwards.
    draft: for JPEG, decode at the smallest 1/2, 1/4 or 1/8 scale that keeps at least this
        (width, height). The entropy-coded data is still read to the end, so truncation is
        still detected; the image is then smaller than width x height (which stay full-size,
        as does filled_from_row).

    Colour JPEGs are decoded to luma directly; other colour images via PIL's "L" conversion.
    Safe to call from several threads (PIL's global switches are set under a lock, which
    serialises PIL decodes within one process); the pipeline uses processes anyway.
    """
    got = read_bytes(path, limits.max_file_bytes)
    if isinstance(got, Decoded):
        return got
    return decode_bytes(got, suffix=Path(path).suffix.lower(), limits=limits, draft=draft)


def decode_bytes(
    data: bytes,
    *,
    suffix: str = "",
    limits: Limits = Limits(),
    draft: tuple[int, int] | None = None,
) -> Decoded:
    """decode() for bytes already read; `suffix` (e.g. '.dcm') only helps spot DICOM."""
    if not data:
        return Decoded("empty", "zero bytes")
    try:
        if data[128:132] == b"DICM" or suffix in _DICOM_SUFFIXES:
            decoded = _decode_dicom(data, sniffed=data[128:132] == b"DICM", limits=limits)
        else:
            decoded = _decode_pil(data, limits=limits, draft=draft)
        return _screen(decoded, limits)
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


def _decode_pil(data: bytes, *, limits: Limits, draft: tuple[int, int] | None) -> Decoded:
    max_pixels = limits.max_image_pixels
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
    odd_shape = limits.geometry(im.width, im.height)
    if odd_shape:  # refused on the header: a 1 x 40000 strip is not decoded at all
        return Decoded("bad_geometry", odd_shape, **meta)
    if im.format == "PNG" and meta["bit_depth"] == 16:
        meta["bit_depth"] = _png_significant_bits(data) or 16

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
    pixels, bits, note = _gray_pixels(gray, meta["bit_depth"])
    meta["bit_depth"] = bits
    return Decoded(
        status,
        "; ".join(text for text in (reason, note) if text),
        pixels,
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


def _gray_pixels(gray: Image.Image, bit_depth: int | None) -> tuple[np.ndarray, int | None, str]:
    """Decoded.gray, its significant bits and a note on how it was scaled.

    uint8 as decoded for "L"; float32 in [0, 1] for deeper modes. A 16-bit container is
    scaled by its significant bits: `bit_depth` below 16 is the PNG's sBIT; otherwise the
    smallest of SIGNIFICANT_BITS that holds the maximum value. Float pixels that are NaN or
    infinite are returned as they are, for _screen to refuse.
    """
    arr = np.asarray(gray)
    if gray.mode == "L":
        return arr, bit_depth, ""
    high = int(arr.max()) if arr.size and arr.dtype.kind in "iu" else None
    if gray.mode.startswith("I;16") or (high is not None and arr.min() >= 0 and high <= 65535):
        # 16-bit data (PIL may widen it to 32-bit "I")
        if bit_depth is not None and bit_depth < 16:
            bits, why = bit_depth, "PNG sBIT"
        else:
            bits = next(b for b in SIGNIFICANT_BITS if high < 1 << b)
            why = f"largest value {high}"
        full = (1 << bits) - 1
        pixels = np.multiply(arr, np.float32(1.0 / full), dtype=np.float32)  # one pass
        if high > full:  # an sBIT that understates the data: clip, and say so
            np.minimum(pixels, 1.0, out=pixels)
            why += f", but values up to {high} (clipped)"
        note = "" if bits == 16 else f"16-bit container holding {bits}-bit data ({why})"
        return pixels, bits, note
    values = arr.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        return values, bit_depth, ""
    low, high_value = float(values.min()), float(values.max())
    if low >= 0.0 and high_value <= 1.0:  # a float image already on the [0, 1] scale
        return values, bit_depth, ""
    return (
        _robust_stretch(values),
        bit_depth,
        f"values {low:g}..{high_value:g} without a fixed range: stretched between the "
        f"{FLOAT_PERCENTILES[0]:g}th and {FLOAT_PERCENTILES[1]:g}th percentiles",
    )


def _png_significant_bits(data: bytes) -> int | None:
    """The PNG sBIT chunk's (first) significant-bits value, or None (PIL does not read it)."""
    offset = 8  # after the signature; sBIT must come before the first IDAT
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind == b"sBIT" and length >= 1 and offset + 9 <= len(data):
            bits = data[offset + 8]
            return bits if 1 <= bits <= 16 else None
        if kind in (b"IDAT", b"IEND"):
            return None
        offset += 12 + length
    return None


def _sampled(values: np.ndarray) -> np.ndarray:
    """A regular subsample of at most PERCENTILE_SAMPLE pixels (deterministic)."""
    flat = values.reshape(-1)
    return flat[:: max(1, flat.size // PERCENTILE_SAMPLE)]


def _robust_stretch(values: np.ndarray) -> np.ndarray:
    """Linear map of FLOAT_PERCENTILES to [0, 1], clipped; min-max when those coincide."""
    low, high = np.percentile(_sampled(values), FLOAT_PERCENTILES)
    if high <= low:
        return _stretch(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _percentile_levels(gray: np.ndarray) -> tuple[float, float]:
    """CONTRAST_PERCENTILES of a decoded image, in [0, 1] units of full scale."""
    if gray.dtype == np.uint8:  # exact, from the histogram
        cumulative = np.cumsum(np.bincount(gray.reshape(-1), minlength=256))
        ranks = [q / 100 * (cumulative[-1] - 1) for q in CONTRAST_PERCENTILES]
        low, high = (int(np.searchsorted(cumulative, rank, side="right")) for rank in ranks)
        return low / 255, high / 255
    low, high = np.percentile(_sampled(gray), CONTRAST_PERCENTILES)
    return float(low), float(high)


def _screen(decoded: Decoded, limits: Limits) -> Decoded:
    """Refuse usable decodes that hold no radiograph: NaN/inf pixels, blank images."""
    gray = decoded.gray
    if gray is None:
        return decoded
    if gray.dtype.kind == "f" and not np.isfinite(gray).all():
        nan = int(np.isnan(gray).sum())
        inf = int(np.isinf(gray).sum())
        return replace(
            decoded,
            status="non_finite",
            reason=f"{nan} NaN and {inf} infinite pixel values of {gray.size}",
            gray=None,
        )
    low, high = _percentile_levels(gray)
    if high - low < limits.min_contrast:
        what = "constant image" if float(gray.min()) == float(gray.max()) else "near-constant image"
        return replace(
            decoded,
            status="blank",
            reason=(
                f"{what}: 98% of pixels between {low:.3f} and {high:.3f} of full scale, "
                f"a range below decode.min_contrast ({limits.min_contrast:g})"
            ),
            gray=None,
        )
    return decoded


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


def _decode_dicom(data: bytes, *, sniffed: bool, limits: Limits) -> Decoded:
    with dicom_reading():
        return _decode_dicom_dataset(data, sniffed=sniffed, limits=limits)


def _decode_dicom_dataset(data: bytes, *, sniffed: bool, limits: Limits) -> Decoded:
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not sniffed)
    except Exception as exc:
        if not sniffed:  # only the extension said DICOM: let PIL have a go
            return _decode_pil(data, limits=limits, draft=None)
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
    max_pixels = limits.max_image_pixels
    if max_pixels is not None and rows and cols and int(rows) * int(cols) > max_pixels:
        return Decoded(
            "bomb",
            f"DICOM declares {int(cols)}x{int(rows)} pixels, above the {max_pixels} limit",
            **meta,
        )
    odd_shape = rows and cols and limits.geometry(int(cols), int(rows))
    if odd_shape:
        return Decoded("bad_geometry", odd_shape, **meta)
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
    elif _stored_values_are_display(ds, pixels):
        # No window, LUT or rescale: BitsStored is the range, so exposure is kept.
        full = (1 << int(bits)) - 1
        array = np.clip(pixels.astype(np.float32) * np.float32(1.0 / full), 0.0, 1.0)
        return Decoded("ok", "", _inverted(array, photometric), **meta)
    else:
        pixels = apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    pixels = np.asarray(pixels, dtype=np.float32)
    if not np.isfinite(pixels).all():
        return Decoded("ok", "", pixels, **meta)  # _screen refuses it, with the counts
    return Decoded("ok", "", _inverted(_stretch(pixels), photometric), colourfulness=colour, **meta)


def _stored_values_are_display(ds: Any, pixels: np.ndarray) -> bool:
    """Whether unsigned stored values map to grey by BitsStored alone (no LUT, window, rescale)."""
    return (
        pixels.dtype.kind == "u"
        and bool(ds.get("BitsStored"))
        and not any(
            tag in ds
            for tag in ("WindowCenter", "VOILUTSequence", "ModalityLUTSequence", "RescaleType")
        )
        and float(ds.get("RescaleSlope", 1) or 1) == 1
        and float(ds.get("RescaleIntercept", 0) or 0) == 0
    )


def _inverted(array: np.ndarray, photometric: str | None) -> np.ndarray:
    """MONOCHROME1 stores low values as white: invert so that bone is always bright."""
    return (1.0 - array).astype(np.float32) if photometric == "MONOCHROME1" else array


def _stretch(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; these sources have no fixed display range (a flat image -> zeros)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


# --- reasons -------------------------------------------------------------------------------


def _sniff_non_image(data: bytes) -> str:
    if not data[:_TEXT_SNIFF_BYTES].strip(b"\0") and data.count(0) == len(data):
        return "every byte is zero (a pre-allocated, wiped or never-written file)"
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


def _bytes_text(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _head_remark(path: Path) -> str:
    """What the first bytes of a file too large to read say (e.g. that they are all zero)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64 << 10)
    except OSError:
        return ""
    return "; its first 64 kB are all zero bytes" if head and not head.strip(b"\0") else ""


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
