"""The two band layouts (features.grid finest | coarsest): input size and training speed.

For each image side and layout, in one run: the band input shape that features.describe
gives with params.yaml's features (wavelet, level, fft; grid set per row), its bytes per
image (float32), and the training images/s of the fixed CNN (params.yaml models.cnn.fixed)
fitted with model.fit on the described bands of synthetic textured images (random labels:
what the network learns does not matter to a speed figure; the shapes do). Each row gets a
fresh model, one untimed warm-up epoch (tracing), then timed epochs; images/s of the fastest
timed epoch (load from other jobs only ever adds time) and CPU ms per image (this process's
user + system time). Prints the ratios coarsest / finest per side.

    .venv/bin/python benchmarks/grid_layouts.py                     # 128 and 256 px, ~2 min
    .venv/bin/python benchmarks/grid_layouts.py --sides 128 256 384 --images 200
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from input_pipeline import epoch_seconds  # noqa: E402

from bonexray.io import jsonfile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def textured(n: int, side: int, seed: int):
    """uint8 (n, side, side): smoothed noise, a stand-in for radiograph texture."""
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.random((n, side // 8, side // 8))
    image = np.kron(coarse, np.ones((8, 8))) + 0.2 * rng.random((n, side, side))
    return np.rint(255 * image / image.max()).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sides", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--images", type=int, default=300, help="(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per row")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import keras
    import keras_tuner as kt
    import numpy as np

    from bonexray.features.wavelet import GRIDS, FeatureConfig, describe
    from bonexray.io.params import load, section
    from bonexray.models.keras.network import BoneHyperModel, NetworkSpec
    from bonexray.models.keras.training import configure_determinism

    params = load(REPO / "params.yaml")
    train_params, seed = section(params, "train"), int(section(params, "seed"))
    regions = section(params, "taxonomy.regions")
    batch_size = int(train_params["batch_size"])
    base = FeatureConfig.from_params(section(params, "features"))
    configure_determinism(seed, bool(train_params["deterministic"]))
    rng = np.random.default_rng(seed)
    y = {
        "region": rng.integers(0, len(regions), args.images).astype(np.int32),
        "fracture": rng.integers(0, 2, args.images).astype(np.float32)[:, None],
    }

    rows = []
    for side in args.sides:
        images = textured(args.images, side, seed)
        for grid in GRIDS:
            cfg = dataclasses.replace(base, grid=grid)
            x = describe(images, cfg)[0]
            spec = NetworkSpec(x.shape[1:], len(regions), False, train_params["loss_weights"])
            keras.backend.clear_session()
            keras.utils.set_random_seed(seed)
            model = BoneHyperModel(section(params, "models.cnn.fixed"), spec).build(
                kt.HyperParameters()
            )
            fit = {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
            times = epoch_seconds(model, (), fit, args.epochs)
            rows.append(
                {
                    "side": side,
                    "grid": grid,
                    "shape": list(x.shape[1:]),
                    "bytes_per_image": int(x[0].nbytes),
                    "images_per_s": args.images / min(wall for wall, _ in times),
                    "cpu_ms_per_image": 1000 * min(cpu for _, cpu in times) / args.images,
                    "cpu_s": sum(cpu for _, cpu in times),
                }
            )
            print(
                f"{side:4d} px {grid:8s} {'x'.join(map(str, x.shape[1:])):>10s} "
                f"{x[0].nbytes / 1024:8.0f} KiB {rows[-1]['images_per_s']:8.1f} images/s "
                f"{rows[-1]['cpu_ms_per_image']:7.2f} CPU ms/image",
                flush=True,
            )
    by = {(r["side"], r["grid"]): r for r in rows}
    print(
        f"{args.images} images, batch {batch_size}, models.cnn.fixed, features "
        f"{base.wavelet} level {base.level} fft {base.fft}, {args.epochs} timed epoch(s), "
        f"{os.cpu_count()} CPUs"
    )
    ratios = {}
    for side in args.sides:
        coarse, fine = by[(side, "coarsest")], by[(side, "finest")]
        ratios[side] = {
            key: coarse[key] / fine[key]
            for key in ("bytes_per_image", "images_per_s", "cpu_ms_per_image")
        }
        print(
            f"  {side} px coarsest / finest: bytes {ratios[side]['bytes_per_image']:.2f}, "
            f"images/s {ratios[side]['images_per_s']:.2f}, "
            f"CPU ms/image {ratios[side]['cpu_ms_per_image']:.2f}"
        )
    if args.json:
        jsonfile.write(args.json, {"rows": rows, "ratios": ratios, "images": args.images})
    return 0


if __name__ == "__main__":
    sys.exit(main())
