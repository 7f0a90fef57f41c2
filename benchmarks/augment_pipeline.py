"""Training input throughput with train.augment off vs on, in one run, on FracAtlas images.

Brings the first N FracAtlas images (sorted paths) to the working size as repair does
(params.yaml repair.image_size, letterboxed), makes their bands as the features stage does
(params.yaml features), and feeds them as train rows (labels drawn at random: what the
network learns does not matter to a throughput figure) to two train datasets built by
`make_dataset`, as the train stage builds them (one in five images goes to val, which
prepare needs and the timings leave out):
  (off) train.augment.enabled false: precomputed bands read from the shards;
  (on)  enabled, params.yaml's magnitudes: working images augmented, described and
        standardised per batch (features/augment.py), in a parallel tf.data map.
Prints, for each: images/s of the input path alone (2 epochs, nothing trained) and of
training params.yaml models.cnn.fixed (after one untimed warm-up epoch; the two alternate
over rounds so that load from other jobs falls on both; fastest epoch), with CPU ms per
image (this process's user + system), and the ratios on/off.

    .venv/bin/python benchmarks/augment_pipeline.py        # 720 images, about 3 min on 2 cores
    .venv/bin/python benchmarks/augment_pipeline.py --images 240 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from input_pipeline import cpu_seconds, epoch_seconds  # noqa: E402

from bonexray.io import jsonfile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FRACATLAS = Path(os.environ.get("BONEXRAY_FRACATLAS", REPO.parent / "shared/data/fracatlas"))


def write_sample(directory: Path, n: int, params: dict) -> dict[str, Path]:
    """Working images and bands of the first n FracAtlas images, and a labels table."""
    import numpy as np
    import pandas as pd

    from bonexray.data.imaging import Limits
    from bonexray.data.resize import load_working
    from bonexray.features.wavelet import FeatureConfig, build
    from bonexray.io.params import section
    from bonexray.io.shards import ShardReader, ShardWriter

    paths = sorted((FRACATLAS / "images").rglob("*.jpg"))[:n]
    if len(paths) < n:
        raise SystemExit(f"{FRACATLAS}: {len(paths)} images, {n} asked for")
    side = int(section(params, "repair.image_size"))
    limits = Limits.from_params(params)
    out = {"images": directory / "repair", "labels": directory / "labels.parquet"}
    ids = [str(p.relative_to(FRACATLAS)) for p in paths]
    with ShardWriter(out["images"], (side, side), np.uint8, shard_size=2048) as images:
        for item_id, path in zip(ids, paths, strict=True):
            images.add(item_id, load_working(path, side, True, limits).pixels)
    rng = np.random.default_rng(0)
    labels = pd.DataFrame(
        {
            "id": ids,
            "split": np.where(np.arange(n) % 5 == 4, "val", "train"),  # prepare needs val
            "region": rng.choice(section(params, "taxonomy.regions"), size=n),
            "label_source": "original",
            "fracture": pd.array(rng.integers(0, 2, size=n), dtype="Int8"),
        }
    )
    labels.to_parquet(out["labels"], index=False)
    features = FeatureConfig.from_params(section(params, "features"))
    build(labels[["id", "split"]], ShardReader(out["images"]), directory / "features", features)
    out["bands"] = directory / "features" / "bands"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=720, help="(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=2, help="(off), (on) alternations")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import keras
    import keras_tuner as kt

    from bonexray.io.params import load, section
    from bonexray.models.keras.network import BoneHyperModel, NetworkSpec
    from bonexray.models.keras.training import prepare

    params = load(REPO / "params.yaml")
    params["models"] = {
        "cnn": {"rnn": False, "epochs": 1, "fixed": params["models"]["cnn"]["fixed"]}
    }
    seed = int(section(params, "seed"))
    figures: dict = {"images": args.images, "cpus": os.cpu_count()}
    times: dict[str, list[tuple]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="bonexray-augment-") as tmp:
        started = time.perf_counter()
        sample = write_sample(Path(tmp), args.images, params)
        print(f"sample: {args.images} FracAtlas images in {time.perf_counter() - started:.1f} s")
        jobs = {}
        for way in times:
            params["train"]["augment"]["enabled"] = way == "on"
            jobs[way] = prepare("cnn", params, sample["labels"], sample["bands"], sample["images"])
        shape = jobs["off"].examples.rows.item_shape
        for way, job in jobs.items():
            data, _, steps = job.datasets()
            batches = data.take(2 * steps)  # the train dataset is endless
            wall, cpu = time.perf_counter(), cpu_seconds()
            for _batch in batches:
                pass
            n = 2 * len(job.train)
            figures[f"{way}_input_images_per_s"] = n / (time.perf_counter() - wall)
            figures[f"{way}_input_cpu_ms_per_image"] = 1000 * (cpu_seconds() - cpu) / n

        spec = NetworkSpec(
            tuple(shape), len(jobs["off"].regions), False, params["train"]["loss_weights"]
        )
        hypermodel = BoneHyperModel(section(params, "models.cnn.fixed"), spec)
        for _ in range(args.rounds):
            for way, job in jobs.items():
                keras.backend.clear_session()
                keras.utils.set_random_seed(seed)
                data, _, steps = job.datasets()
                kwargs = {"shuffle": False, "steps_per_epoch": steps}
                model = hypermodel.build(kt.HyperParameters())
                times[way] += epoch_seconds(model, (data,), kwargs, args.epochs)
    n = len(jobs["off"].train)
    for way, epochs in times.items():
        figures[f"{way}_train_images_per_s"] = n / min(wall for wall, _ in epochs)
        figures[f"{way}_train_cpu_ms_per_image"] = 1000 * min(c for _, c in epochs) / n
    for what in ("input_images_per_s", "train_images_per_s"):
        figures[f"ratio_{what}"] = figures[f"on_{what}"] / figures[f"off_{what}"]
    figures["epoch_seconds_wall_cpu"] = times
    print(
        f"{n} training images {tuple(shape)} from {n} FracAtlas films, batch "
        f"{jobs['off'].batch_size}, models.cnn.fixed, {args.rounds} rounds x {args.epochs} "
        f"timed epochs, {os.cpu_count()} CPUs"
    )
    print(
        f"  {'':34s} {'input img/s':>12s} {'CPU ms/img':>11s} "
        f"{'train img/s':>12s} {'CPU ms/img':>11s}"
    )
    for way, label in (
        ("off", "augment off (precomputed bands)"),
        ("on", "augment on (images, per batch)"),
    ):
        print(
            f"  {label:34s} {figures[f'{way}_input_images_per_s']:12.1f} "
            f"{figures[f'{way}_input_cpu_ms_per_image']:11.2f} "
            f"{figures[f'{way}_train_images_per_s']:12.1f} "
            f"{figures[f'{way}_train_cpu_ms_per_image']:11.2f}"
        )
    print(
        f"  ratio on / off: input {figures['ratio_input_images_per_s']:.3f}, "
        f"training {figures['ratio_train_images_per_s']:.3f}"
    )
    if args.json:
        jsonfile.write(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
