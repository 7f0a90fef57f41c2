"""Pointing game on FracAtlas: does a model's fracture Grad-CAM peak inside the fracture box?

Over the fractured TEST images of a FracAtlas pipeline run that have YOLO boxes, counts how
often the maximum of the fracture Grad-CAM (bonexray.explain.gradcam, mapped to the working image)
lies inside a box, and beside it, in the same run, the hit rate of a uniformly random pixel
of the canvas and of the image alone (no letterbox padding): simulated (``--draws`` per
image) and expected (the share of the canvas, or of the image, inside the boxes). Prints
the hit rates and Grad-CAM's ratio to each (1.0: no better than chance).

Boxes (annotations/yolo/<image stem>.txt, normalised) are mapped through the letterbox
from the original size recorded by census (bonexray.explain.localisation). Images whose file
carries an EXIF rotation are left out: census sizes are after the rotation, and whether the
boxes were drawn before or after it is not documented.

    benchmarks/fracatlas_pipeline.sh       # ~25 min: a FracAtlas `dvc repro` in a clone
    .venv/bin/python benchmarks/gradcam_pointing.py --repo /tmp/tmp.X/repo --model cnn_rnn_nas
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

EXIF_ORIENTATION = 274


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--repo",
        type=Path,
        required=True,
        help="a repository after a FracAtlas `dvc repro` (benchmarks/fracatlas_pipeline.sh "
        "prints its clone's path)",
    )
    parser.add_argument(
        "--model", default="cnn_rnn_nas", help="Keras model to explain (default: cnn_rnn_nas)"
    )
    parser.add_argument(
        "--annotations",
        type=Path,
        help="folder of YOLO box files (default: <repo>/data/annotations/yolo, FracAtlas's)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="a peak within this many working-image pixels of a box counts (default: 0)",
    )
    parser.add_argument("--draws", type=int, default=1000, help="random pixels per image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    return parser.parse_args(argv)


def fractured_test_rows(repo: Path) -> pd.DataFrame:
    """Fractured test images that evaluate scores (not excluded), with census's sizes."""
    labels = pd.read_parquet(repo / "artifacts" / "labels.parquet")
    census = pd.read_parquet(repo / "artifacts" / "census.parquet")
    rows = labels[
        (labels["split"] == "test")
        & (labels["fracture"] == 1)
        & (labels["label_source"] != "excluded")
    ]
    return rows[["id"]].merge(census[["id", "path", "width", "height"]], on="id", how="left")


def rotated(path: Path) -> bool:
    with Image.open(path) as image:
        return image.getexif().get(EXIF_ORIENTATION, 1) != 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bonexray.explain import gradcam
    from bonexray.explain.localisation import (
        box_mask,
        boxes_on_working_image,
        content_mask,
        expected_random_hit_rate,
        pointing_hit,
        random_hit_rate,
        read_yolo_boxes,
    )
    from bonexray.io.shards import ShardReader
    from bonexray.models.keras.files import keras_model_path, load_keras_model

    repo = args.repo
    annotations = args.annotations or repo / "data" / "annotations" / "yolo"
    if not annotations.is_dir():
        print(f"gradcam_pointing: no box folder at {annotations}", file=sys.stderr)
        return 2
    try:
        model = load_keras_model(keras_model_path(repo / "artifacts" / "models", args.model))
        rows = fractured_test_rows(repo)
        images = ShardReader(repo / "artifacts" / "repair")
        bands = ShardReader(repo / "artifacts" / "features" / "bands")
    except (OSError, ValueError) as exc:
        print(f"gradcam_pointing: {exc}", file=sys.stderr)
        return 2
    size = images.item_shape[0]
    in_shards = set(bands.index["id"]) & set(images.index["id"])

    skipped = {"no box file": 0, "no boxes": 0, "EXIF-rotated": 0, "not in the shards": 0}
    ids, masks, contents = [], [], []
    for row in rows.itertuples(index=False):
        labels_file = annotations / f"{Path(row.id).stem}.txt"
        if not labels_file.is_file():
            skipped["no box file"] += 1
            continue
        boxes = read_yolo_boxes(labels_file)
        if not len(boxes):
            skipped["no boxes"] += 1
        elif rotated(repo / row.path):
            skipped["EXIF-rotated"] += 1
        elif row.id not in in_shards:
            skipped["not in the shards"] += 1
        else:
            on_image = boxes_on_working_image(boxes, int(row.width), int(row.height), size)
            ids.append(row.id)
            masks.append(box_mask(on_image, size, args.margin))
            contents.append(content_mask(int(row.width), int(row.height), size))
    if not ids:
        print(f"gradcam_pointing: no fractured test image with boxes ({skipped})", file=sys.stderr)
        return 2

    started = time.perf_counter()
    heatmaps = gradcam.explain(model, bands.take_ids(ids), head="fracture")
    seconds = time.perf_counter() - started
    hits = [
        pointing_hit(gradcam.to_image(h, (size, size)), m)
        for h, m in zip(heatmaps, masks, strict=True)
    ]
    gradcam_rate = float(np.mean(hits))
    rng = np.random.default_rng(args.seed)
    baselines = {
        "random pixel of the canvas": (
            random_hit_rate(masks, args.draws, rng),
            expected_random_hit_rate(masks),
        ),
        "random pixel of the image": (  # never in the letterbox padding
            random_hit_rate(masks, args.draws, rng, within=contents),
            expected_random_hit_rate(masks, within=contents),
        ),
    }

    left_out = ", ".join(f"{n} {why}" for why, n in skipped.items() if n) or "none"
    print(f"pointing game: {args.model} fracture Grad-CAM on the test split of {repo}")
    print(
        f"fractured test images: {len(rows)}; scored (with boxes): {len(ids)}; left out: "
        f"{left_out}; working image {size} px, margin {args.margin:g} px"
    )
    print(f"{'Grad-CAM peak inside a box':<28} {sum(hits)}/{len(ids)} = {gradcam_rate:.3f}")
    for name, (simulated, expected) in baselines.items():
        print(
            f"{name:<28} {simulated:.3f} simulated ({args.draws} draws per image), "
            f"{expected:.3f} expected (mean box share); Grad-CAM / it: "
            f"{gradcam_rate / simulated:.2f} (simulated), {gradcam_rate / expected:.2f} (expected)"
        )
    print(f"Grad-CAM of {len(ids)} images: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
