"""Training throughput through the pipeline's input path against arrays already in RAM.

Trains the same network (params.yaml models.cnn.fixed, the fixed traditional CNN, at the
default profile's band shape) on the same synthetic images in two ways, in one run:
  (a) pipeline: bonexray.models.keras.training.make_dataset over shard-backed Examples, as the train
      stage feeds it (each batch read from the shard files while the previous one trains);
  (b) in memory: model.fit on NumPy arrays read into RAM beforehand (features, targets and
      per-head sample weights), batch_size and shuffling as in (a).
Each way gets a fresh model from the same seed, one untimed warm-up epoch (tracing), then
timed epochs; the two alternate over rounds so that load from other jobs on a shared CPU
falls on both. Prints, for each: images/s of its fastest epoch (the one least slowed by
other jobs: load only ever adds time) and of its median epoch, and CPU ms per image (this
process's user + system time, which other jobs barely change); the ratios (a)/(b) (target
>= 0.9); and how fast the input path alone yields batches.

    .venv/bin/python benchmarks/input_pipeline.py           # 1200 images, about 2 min
    .venv/bin/python benchmarks/input_pipeline.py --images 600 --epochs 1 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import synthetic_bands  # noqa: E402

from bonexray.io import jsonfile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def epoch_seconds(model, fit_args: tuple, fit_kwargs: dict, epochs: int) -> list[tuple]:
    """(wall, CPU) seconds of each epoch after one warm-up epoch."""
    import keras

    times: list[tuple] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter(), cpu_seconds()

        def on_epoch_end(self, epoch, logs=None):
            if epoch > 0:
                wall, cpu = self.started
                times.append((time.perf_counter() - wall, cpu_seconds() - cpu))

    model.fit(*fit_args, epochs=epochs + 1, callbacks=[Clock()], verbose=0, **fit_kwargs)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1200, help="(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=4, help="(a), (b) alternations")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import keras
    import keras_tuner as kt

    from bonexray.io.params import load, section
    from bonexray.models.examples import load_examples
    from bonexray.models.keras.network import BoneHyperModel, NetworkSpec
    from bonexray.models.keras.training import (
        HeadWeights,
        configure_determinism,
        make_dataset,
        steps_per_epoch,
        targets,
    )

    params = load(REPO / "params.yaml")
    train_params, seed = section(params, "train"), int(section(params, "seed"))
    regions = section(params, "taxonomy.regions")
    batch_size = int(train_params["batch_size"])
    configure_determinism(seed, bool(train_params["deterministic"]))
    spec = NetworkSpec(
        tuple(synthetic_bands.SHAPE), len(regions), False, train_params["loss_weights"]
    )
    hypermodel = BoneHyperModel(section(params, "models.cnn.fixed"), spec)

    def fresh_model():
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        return hypermodel.build(kt.HyperParameters())

    with tempfile.TemporaryDirectory(prefix="bonexray-input-") as tmp:
        sample = synthetic_bands.write(Path(tmp) / "sample", args.images, regions)
        train = load_examples(sample["labels"], sample["bands"], regions).labelled("train")
        weights = HeadWeights.from_training(train, train_params["class_weight"])
        pipeline = make_dataset(train, weights, batch_size, shuffle_seed=seed)
        steps = steps_per_epoch(len(train), batch_size)  # the shuffled dataset is endless

        started = time.perf_counter()
        for _batch in pipeline.take(2 * steps):
            pass
        input_only = 2 * len(train) / (time.perf_counter() - started)

        x, y, w = train.features, targets(train), weights.for_rows(train)
        in_memory = {"x": x, "y": y, "sample_weight": w, "batch_size": batch_size}
        times: dict[str, list[tuple]] = {"pipeline": [], "in_memory": []}
        for _ in range(args.rounds):
            times["pipeline"] += epoch_seconds(
                fresh_model(),
                (pipeline,),
                {"shuffle": False, "steps_per_epoch": steps},
                args.epochs,
            )
            times["in_memory"] += epoch_seconds(
                fresh_model(), (), {**in_memory, "shuffle": True}, args.epochs
            )

    n = len(train)
    figures: dict = {
        "images": args.images,
        "train_images": n,
        "shape": list(synthetic_bands.SHAPE),
        "batch_size": batch_size,
        "cpus": os.cpu_count(),
        "input_only_images_per_s": input_only,
        "epoch_seconds_wall_cpu": times,
    }
    for way, epochs in times.items():
        walls = [wall for wall, _ in epochs]
        figures[f"{way}_best_images_per_s"] = n / min(walls)
        figures[f"{way}_median_images_per_s"] = n / statistics.median(walls)
        figures[f"{way}_cpu_ms_per_image"] = 1000 * statistics.median(c for _, c in epochs) / n
    for kind in ("best", "median"):
        figures[f"ratio_{kind}"] = (
            figures[f"pipeline_{kind}_images_per_s"] / figures[f"in_memory_{kind}_images_per_s"]
        )
    figures["ratio_cpu"] = (
        figures["in_memory_cpu_ms_per_image"] / figures["pipeline_cpu_ms_per_image"]
    )
    print(
        f"{n} training images {tuple(synthetic_bands.SHAPE)}, batch {batch_size}, "
        f"models.cnn.fixed, {args.rounds} rounds x {args.epochs} timed epochs, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"  {'':40s} {'best ep.':>9s} {'median':>9s} {'CPU ms/image':>13s}")
    for label, way in (
        ("(a) pipeline (make_dataset over shards)", "pipeline"),
        ("(b) in-memory NumPy arrays", "in_memory"),
    ):
        best, median = figures[f"{way}_best_images_per_s"], figures[f"{way}_median_images_per_s"]
        cpu = figures[f"{way}_cpu_ms_per_image"]
        print(f"  {label:40s} {best:9.1f} {median:9.1f} {cpu:13.2f}")
    print(
        f"  ratio (a) / (b): {figures['ratio_best']:.2f} fastest epochs, "
        f"{figures['ratio_median']:.2f} median epochs, {figures['ratio_cpu']:.2f} by CPU time "
        "(target >= 0.9)"
    )
    print(f"  the input path alone yields {input_only:.0f} images/s")
    if args.json:
        jsonfile.write(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
