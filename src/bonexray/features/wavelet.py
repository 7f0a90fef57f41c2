"""Wavelet sub-band channels (plus an optional FFT channel) and random-forest vectors.

Every image of split.parquet is described twice, from the same 2-D DWT
(``pywt.wavedec2(image / 255, wavelet, mode, level)``, params features.*):

Band channels, for the networks: float32 (G, G, C), on one of two grids (features.grid)
    ALL sub-bands are kept (the study kept only the approximation): the approximation A<L>
    of the coarsest level L and the horizontal, vertical and diagonal details H<l>, V<l>,
    D<l> of each level l = L..1 (pywt's order, coarse to fine; level 1 is the finest).

    finest: G x G is the size of the level-1 details (size / 2 for periodization), C = 3L + 1.
        Coarser bands are brought onto it by NEAREST-neighbour upsampling: every stored value
        is a real coefficient (no smoothing across coefficients, which would blur the very
        edges the details encode), and for periodization, where the ratio is an exact power
        of 2, it is a plain repeat. Channels A<L>, H<L>, V<L>, D<L>, ..., H1, V1, D1. Works for
        every DWT mode; the input grows with the square of the image side.
    coarsest: G x G is the size of the level-L bands, size / 2**L (the wavelet-CNN layout of
        Fujieda et al. 2018 and MWCNN, Liu et al. 2018). A<L>, H<L>, V<L>, D<L> as they are;
        each finer detail band of level l < L is packed onto G by lossless SPACE-TO-DEPTH
        with block b = 2**(L - l): its b x b sub-positions become b * b channels, named
        "<band>.r<r>c<c>", in row-major order (r, then c), channel (g_i, g_j) of
        "H1.r0c1" holding H1[b * g_i + 0, b * g_j + 1] (tf.nn.space_to_depth's order for one
        band). Levels coarse to fine and H, V, D within a level as in pywt, so C = 4 +
        3 * sum_{l<L} 4**(L-l) = 4**L: 256 px at level 2 gives 64 x 64 x 16, 512 px at
        level 3 64 x 64 x 64, the same numbers as the image's pixels, with no repeats.
        Needs features.mode periodization and a side divisible by 2**L (only there are the
        band sizes exact powers of 2 of each other); anything else is refused.
    `coefficients_from_channels` undoes either layout exactly (pywt.waverec2 of its result
    gives back the image); it is the one inverse, used by the tests.
    With ``features.fft`` on, a last channel "fft" holds log1p |fftshift(fft2(image / 255))|
    over the two SPATIAL axes (the study transformed width x channel by mistake), brought onto
    the grid by area averaging on either grid (the spectrum is a density; averaging keeps
    peaks in place at 1/ratio of their distance from the centre). It stays one channel on the
    coarsest grid too: space-to-depth would add 4**L channels of a global, smooth statistic
    that the details already carry locally, for a network that pools it anyway.
    Channels are standardised per channel with the mean and std of all pixels of TRAIN-split
    images only (a std of 0 is replaced by 1); names, grid and statistics are in
    bands/meta.json.

Random-forest vector: float32 (D,)
    For each sub-band (and the FFT channel when on), at its native size, un-normalised:
      energy   mean of squared coefficients (per coefficient, so levels are comparable)
      mean, std
      entropy  Shannon entropy in bits, -sum p_k log2 p_k, of the coefficient histogram with
               ``features.entropy_bins`` equal bins spanning that band's own min..max,
               p_k = count_k / n (0 for a constant band)
    followed by the approximation band area-averaged to rf_approx_size x rf_approx_size,
    row-major. Feature names are in vectors/meta.json. The vectors do not depend on
    features.grid (they read the native bands).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pywt
from tqdm import tqdm

from bonexray.errors import ConfigError
from bonexray.io.params import ParamsError
from bonexray.io.shards import ShardReader, ShardWriter

STATISTICS = ("energy", "mean", "std", "entropy")
BANDS_DIR = "bands"
VECTORS_DIR = "vectors"
BATCH = 256  # images per vectorised DWT/FFT call
GRIDS = ("finest", "coarsest")
# What bands/meta.json says about how each layout put the bands on its grid.
RESAMPLING = {
    "finest": "coarser wavelet bands: nearest upsampling to the level-1 grid; fft: area average",
    "coarsest": "finer wavelet detail bands: space-to-depth onto the level-L grid, block "
    "2**(L - l), channels <band>.r<row>c<col>; fft: area average",
}


@dataclass(frozen=True)
class FeatureConfig:
    """params.yaml features."""

    wavelet: str
    level: int
    mode: str
    fft: bool
    rf_approx_size: int
    entropy_bins: int
    shard_size: int
    grid: str

    @classmethod
    def from_params(cls, cfg: Mapping[str, Any]) -> FeatureConfig:
        config = cls(
            wavelet=str(cfg["wavelet"]),
            level=int(cfg["level"]),
            mode=str(cfg["mode"]),
            fft=bool(cfg["fft"]),
            rf_approx_size=int(cfg["rf_approx_size"]),
            entropy_bins=int(cfg["entropy_bins"]),
            shard_size=int(cfg["shard_size"]),
            grid=str(cfg["grid"]),
        )
        if config.wavelet not in pywt.wavelist(kind="discrete"):
            raise ParamsError(
                f"params.yaml features.wavelet: '{config.wavelet}' is not a discrete wavelet"
            )
        if config.mode not in pywt.Modes.modes:
            raise ParamsError(
                f"params.yaml features.mode: '{config.mode}' not in {pywt.Modes.modes}"
            )
        if config.grid not in GRIDS:
            raise ParamsError(f"params.yaml features.grid: '{config.grid}' not in {GRIDS}")
        if config.grid == "coarsest" and config.mode != "periodization":
            raise ParamsError(
                f"params.yaml features.grid: coarsest needs features.mode periodization, not "
                f"'{config.mode}': only there are the band sizes exact powers of 2 of each "
                "other, which lossless space-to-depth needs (finest works with any mode)"
            )
        if config.level < 1 or config.rf_approx_size < 1 or config.entropy_bins < 2:
            raise ParamsError(
                "params.yaml features: level and rf_approx_size >= 1, entropy_bins >= 2"
            )
        return config


def wavelet_coefficients(images: np.ndarray, cfg: FeatureConfig) -> list:
    """pywt.wavedec2 over the last two axes of (..., H, W).

    Returns [A_L, (H_L, V_L, D_L), ..., (H_1, V_1, D_1)], pywt's order.
    """
    size = min(images.shape[-2:])
    max_level = pywt.dwt_max_level(size, pywt.Wavelet(cfg.wavelet).dec_len)
    if cfg.level > max_level:
        raise ParamsError(
            f"params.yaml features.level: {cfg.level} exceeds the {cfg.wavelet} maximum of "
            f"{max_level} for {size} px images"
        )
    return pywt.wavedec2(images, cfg.wavelet, mode=cfg.mode, level=cfg.level, axes=(-2, -1))


def named_bands(coeffs: Sequence) -> list[tuple[str, np.ndarray]]:
    """Pair wavedec2's coefficients with names A<L>, H<L>, V<L>, D<L>, ..., H1, V1, D1."""
    level = len(coeffs) - 1
    bands = [(f"A{level}", coeffs[0])]
    for offset, details in enumerate(coeffs[1:]):
        bands += [(f"{k}{level - offset}", d) for k, d in zip("HVD", details, strict=True)]
    return bands


def band_names(cfg: FeatureConfig) -> list[str]:
    return [f"A{cfg.level}"] + [f"{k}{lv}" for lv in range(cfg.level, 0, -1) for k in "HVD"]


def block(level: int, cfg: FeatureConfig) -> int:
    """Space-to-depth block of a level-``level`` band on the coarsest grid (1: as it is)."""
    return 2 ** (cfg.level - level)


def channel_names(cfg: FeatureConfig) -> list[str]:
    """Names of the band channels in order, for either grid (see the module docstring)."""
    if cfg.grid == "finest":
        names = band_names(cfg)
    else:
        names = [f"A{cfg.level}"]
        for lv in range(cfg.level, 0, -1):
            b = block(lv, cfg)
            subs = [f".r{r}c{c}" for r in range(b) for c in range(b)] if b > 1 else [""]
            names += [f"{k}{lv}{sub}" for k in "HVD" for sub in subs]
    return names + (["fft"] if cfg.fft else [])


def feature_names(cfg: FeatureConfig) -> list[str]:
    side = cfg.rf_approx_size
    described = band_names(cfg) + (["fft"] if cfg.fft else [])
    return [f"{band}_{stat}" for band in described for stat in STATISTICS] + [
        f"A{cfg.level}_r{r}_c{c}" for r in range(side) for c in range(side)
    ]


def fft_log_magnitude(images: np.ndarray) -> np.ndarray:
    """log1p |F| of the 2-D FFT over the two spatial (last) axes, zero frequency centred."""
    spectrum = np.fft.fftshift(np.fft.fft2(images, axes=(-2, -1)), axes=(-2, -1))
    return np.log1p(np.abs(spectrum))


def upsample_nearest(bands: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of the last two axes; a repeat for integer ratios."""
    rows = np.arange(shape[0]) * bands.shape[-2] // shape[0]
    cols = np.arange(shape[1]) * bands.shape[-1] // shape[1]
    return bands[..., rows[:, None], cols[None, :]]


def space_to_depth(bands: np.ndarray, b: int) -> np.ndarray:
    """(..., G*b, G*b) -> (..., G, G, b*b): sub-position (r, c) of each b x b block becomes
    channel r * b + c (lossless; `depth_to_space` undoes it)."""
    *lead, height, width = bands.shape
    blocks = bands.reshape(*lead, height // b, b, width // b, b)
    return np.moveaxis(blocks, -3, -2).reshape(*lead, height // b, width // b, b * b)


def depth_to_space(channels: np.ndarray, b: int) -> np.ndarray:
    """(..., G, G, b*b) -> (..., G*b, G*b), the inverse of `space_to_depth`."""
    *lead, height, width, _ = channels.shape
    blocks = np.moveaxis(channels.reshape(*lead, height, width, b, b), -2, -3)
    return blocks.reshape(*lead, height * b, width * b)


def _band_planes(
    bands: Sequence[tuple[str, np.ndarray]], image_shape: tuple[int, ...], cfg: FeatureConfig
) -> list:
    """The (N, G, G) planes of named bands on cfg.grid, in channel_names order."""
    if cfg.grid == "finest":
        grid = bands[-1][1].shape[-2:]  # the level-1 details
        return [upsample_nearest(band, grid) for _, band in bands]
    if any(side % 2**cfg.level for side in image_shape[-2:]):
        raise ParamsError(
            f"params.yaml features.grid: coarsest needs an image side divisible by "
            f"2**features.level = {2**cfg.level}, got {image_shape[-2:]} px (use finest, or "
            "change repair.image_size or features.level)"
        )
    planes = []
    for name, band in bands:
        b = block(int(name[1:]), cfg)
        planes += [band] if b == 1 else list(np.moveaxis(space_to_depth(band, b), -1, 0))
    return planes


def coefficients_from_channels(channels: np.ndarray, cfg: FeatureConfig) -> list:
    """pywt's coefficient list [A_L, (H_L, V_L, D_L), ..., (H_1, V_1, D_1)] of UN-standardised
    band channels (..., G, G, C) in cfg's layout (the fft channel, if any, is ignored), so
    that ``pywt.waverec2(result, cfg.wavelet, cfg.mode, axes=(-2, -1))`` gives back the image
    / 255. Finest: each native coefficient is taken from the first grid row and column that
    nearest upsampling repeated it to (native sizes from pywt's length rule, any mode)."""
    names = channel_names(cfg)
    if channels.shape[-1] != len(names):
        raise ValueError(f"{channels.shape[-1]} channels; features {cfg} give {len(names)}")
    plane = {name: channels[..., c] for c, name in enumerate(names)}
    if cfg.grid == "finest":
        grid = channels.shape[-3]
        wavelet = pywt.Wavelet(cfg.wavelet)
        native = {1: grid}
        for lv in range(2, cfg.level + 1):
            native[lv] = pywt.dwt_coeff_len(native[lv - 1], wavelet, cfg.mode)

        def band(name: str, lv: int) -> np.ndarray:
            first = -(-np.arange(native[lv]) * grid // native[lv])  # ceil(j * G / n)
            return plane[name][..., first[:, None], first[None, :]]

    else:

        def band(name: str, lv: int) -> np.ndarray:
            b = block(lv, cfg)
            if b == 1:
                return plane[name]
            subs = [plane[f"{name}.r{r}c{c}"] for r in range(b) for c in range(b)]
            return depth_to_space(np.stack(subs, axis=-1), b)

    top = cfg.level
    return [band(f"A{top}", top)] + [
        tuple(band(f"{k}{lv}", lv) for k in "HVD") for lv in range(top, 0, -1)
    ]


def area_resize(arrays: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average resampling of the last two axes (exact box means for integer ratios)."""
    return (
        _area_weights(arrays.shape[-2], shape[0])
        @ arrays
        @ _area_weights(arrays.shape[-1], shape[1]).T
    )


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    # Row i averages input cells over [i, i+1) * n_in / n_out, weighted by overlap.
    scale = n_in / n_out
    start = np.arange(n_out)[:, None] * scale
    cells = np.arange(n_in)[None, :]
    overlap = np.minimum(start + scale, cells + 1) - np.maximum(start, cells)
    return np.clip(overlap, 0.0, None) / scale


def band_statistics(bands: np.ndarray, bins: int) -> np.ndarray:
    """(N, 4): energy, mean, std, histogram entropy (bits) of each (H, W) band of (N, H, W)."""
    flat = bands.reshape(len(bands), -1)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    bin_of = np.floor((flat - low) / np.where(span > 0, span, 1.0) * bins).astype(np.int64)
    bin_of = np.minimum(bin_of, bins - 1) + bins * np.arange(len(flat))[:, None]
    p = np.bincount(bin_of.ravel(), minlength=bins * len(flat)).reshape(len(flat), bins)
    p = p / flat.shape[1]
    entropy = -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    return np.stack([np.mean(flat**2, axis=1), flat.mean(axis=1), flat.std(axis=1), entropy], 1)


def describe(images: np.ndarray, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Un-normalised band channels (N, G, G, C) and RF vectors (N, D) of uint8 (N, S, S) images."""
    pixels = np.asarray(images, dtype=np.float64) / 255.0
    bands = named_bands(wavelet_coefficients(pixels, cfg))
    planes = _band_planes(bands, pixels.shape, cfg)
    grid = planes[0].shape[-2:]
    described = [band for _, band in bands]
    if cfg.fft:
        spectrum = fft_log_magnitude(pixels)
        planes.append(area_resize(spectrum, grid))
        described.append(spectrum)
    channels = np.stack(planes, axis=-1).astype(np.float32)
    approx = area_resize(bands[0][1], (cfg.rf_approx_size, cfg.rf_approx_size))
    vectors = np.concatenate(
        [band_statistics(b, cfg.entropy_bins) for b in described]
        + [approx.reshape(len(pixels), -1)],
        axis=1,
    ).astype(np.float32)
    return channels, vectors


def standardise(channels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Band channels standardised per channel with the train statistics, as networks read
    them (features stage and `bonexray predict` alike)."""
    return ((channels - mean) / std).astype(np.float32)


def _batches(images: ShardReader, positions: Sequence[int], desc: str) -> Iterator[np.ndarray]:
    """The images at ``positions`` in batches of BATCH, with a progress bar."""
    batches = images.iter_batches(positions, BATCH)
    yield from tqdm(batches, desc=desc, disable=None, total=-(-len(positions) // BATCH))


def train_statistics(
    images: ShardReader, positions: Sequence[int], cfg: FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over every pixel of the given (train) images."""
    if len(positions) == 0:
        raise ConfigError("features: the split table has no train images to normalise with")
    shift = total = squares = None
    count = 0
    for batch in _batches(images, positions, "train stats"):
        channels = describe(batch, cfg)[0].astype(np.float64)
        if shift is None:  # shifted sums avoid cancellation in E[x^2] - E[x]^2
            shift = channels.mean(axis=(0, 1, 2))
            total = np.zeros_like(shift)
            squares = np.zeros_like(shift)
        centred = channels - shift
        total += centred.sum(axis=(0, 1, 2))
        squares += (centred**2).sum(axis=(0, 1, 2))
        count += channels.shape[0] * channels.shape[1] * channels.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean + shift, np.where(std > 0, std, 1.0)


def build(
    split: pd.DataFrame, images: ShardReader, out_dir: str | Path, cfg: FeatureConfig
) -> dict[str, Any]:
    """Write bands/ and vectors/ shard dirs for every image of ``split``, in its order."""
    missing = {"id", "split"} - set(split.columns)
    if missing:
        raise ConfigError(f"split table: missing columns {sorted(missing)}")
    images.require(split["id"], "the split table's ids")
    positions = np.array([images.position(i) for i in split["id"]], dtype=np.int64)
    is_train = (split["split"] == "train").to_numpy()
    mean, std = train_statistics(images, positions[is_train], cfg)

    probe_channels, probe_vector = describe(images.take(positions[:1]), cfg)
    names, features = channel_names(cfg), feature_names(cfg)
    assert probe_channels.shape[-1] == len(names) and probe_vector.shape[-1] == len(features)
    out_dir = Path(out_dir)
    bands = ShardWriter(
        out_dir / BANDS_DIR,
        probe_channels.shape[1:],
        np.float32,
        cfg.shard_size,
        meta={
            "channels": names,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "normalised_with": "train split, per channel over all pixels",
            "resampling": RESAMPLING[cfg.grid],
            "input_scale": "image / 255",
            **asdict(cfg),
        },
    )
    vectors = ShardWriter(
        out_dir / VECTORS_DIR,
        probe_vector.shape[1:],
        np.float32,
        cfg.shard_size,
        meta={"feature_names": features, "input_scale": "image / 255", **asdict(cfg)},
    )
    started = time.perf_counter()
    ids, splits = split["id"].tolist(), split["split"].tolist()
    done = 0
    for batch in _batches(images, positions, "features"):
        channels, vector = describe(batch, cfg)
        channels = standardise(channels, mean, std)
        for k in range(len(batch)):
            bands.add(ids[done + k], channels[k], split=splits[done + k])
            vectors.add(ids[done + k], vector[k], split=splits[done + k])
        done += len(batch)
    bands.close()
    vectors.close()
    elapsed = time.perf_counter() - started
    print(f"features: {done} images in {elapsed:.2f} s ({done / max(elapsed, 1e-9):.0f} images/s)")
    return {
        "n_images": done,
        "n_train_for_stats": int(is_train.sum()),
        "grid": cfg.grid,
        "grid_height": int(probe_channels.shape[1]),
        "grid_width": int(probe_channels.shape[2]),
        "n_channels": len(names),
        "channels": ",".join(names),
        "vector_dim": len(features),
    }
