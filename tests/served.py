"""A tiny trained artifact set, built by the pipeline's own functions (repair, features, a
tiny Keras CNN, a tiny forest, evaluate's serving records): what `bonexray predict` and
`bonexray validate` read. conftest.py's session fixture ``served`` builds it once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from badfiles import texture
from PIL import Image
from tiny_sample import REGIONS, TINY_CONV, params

from bonexray.data.imaging import Limits
from bonexray.data.repair import repair
from bonexray.evaluation import ood, serving
from bonexray.evaluation import scoring as evaluate
from bonexray.features import wavelet as features
from bonexray.io import predictions
from bonexray.io.labels import read_labels
from bonexray.io.shards import ShardReader
from bonexray.models.forest import train_rf
from bonexray.models.interface import TrainOutputs
from bonexray.models.keras.training import train_keras

SIZE = 32  # repair.image_size
MODELS = ["cnn", "rf"]
SERVED = [*MODELS, "ensemble"]  # evaluate.ensemble: mean of the two
SPLITS = ["train"] * 18 + ["val"] * 6 + ["test"] * 6
GATE = {"max_colourfulness": 20.0, "min_contrast": 0.01, "max_aspect": 4.0, "min_side": 16}


def tiny_params() -> dict:
    # A gentler learning rate than TINY_CONV's: at 0.01 two epochs leave most ReLUs dead,
    # and a model whose output is constant could not tell the tests' images apart.
    p = params(cnn={"rnn": False, "epochs": 2, "fixed": {**TINY_CONV, "learning_rate": 0.003}})
    p |= {
        "decode": {"max_image_pixels": 89_478_485},
        "repair": {"image_size": SIZE, "keep_aspect": True, "shard_size": 64, "workers": 1},
        "features": {
            "wavelet": "haar",
            "level": 2,
            "mode": "periodization",
            "fft": True,
            "grid": "finest",
            "rf_approx_size": 4,
            "entropy_bins": 8,
            "shard_size": 64,
        },
        "evaluate": {
            "bootstrap": 10,
            "operating_point": "youden",
            "target_sensitivity": 0.9,
            "calibration_bins": 5,
            "calibration": "temperature",
            "ensemble": "mean",
            "report_examples": 4,
            "score_region_sources": ["original", "synonym"],
            "ood_val_pass": 0.99,
            "ood_min_threshold": 3.0,
        },
        "predict": {"batch_size": 4, "tta": "none", **GATE},
    }
    return p


def radiograph(i: int) -> np.ndarray:
    """A textured image whose brightness follows its region (some signal to learn)."""
    image = texture(40 + 4 * (i % 3), 48, seed=i).astype(np.float64)
    return np.clip(image * (0.5 + 0.25 * (i % 3)), 0, 255).astype(np.uint8)


def build_artifacts(root: Path) -> dict:
    """Data, then every artifact predict reads, through the real stage functions."""
    cfg = tiny_params()
    rows = []
    for i, split in enumerate(SPLITS):
        rel = f"data/img{i:02d}.{'jpg' if i % 4 == 3 else 'png'}"
        (root / "data").mkdir(exist_ok=True)
        Image.fromarray(radiograph(i)).save(root / rel)
        rows.append(
            {
                "id": rel,
                "path": rel,
                "source": "clinic",
                "role": "image",
                "split": split,
                "region": REGIONS[i % 3],
                "label_source": "original",
                "fracture": (i // 3) % 2,
            }
        )
    table = pd.DataFrame(rows)
    art = root / "artifacts"
    repair(
        table,
        art / "repair",
        art / "quarantine.csv",
        size=SIZE,
        keep_aspect=True,
        limits=Limits.from_params(cfg),
        root=root,
    )
    features.build(
        table[["id", "split"]],
        ShardReader(art / "repair"),
        art / "features",
        features.FeatureConfig.from_params(cfg["features"]),
    )
    labels = table[["id", "split", "region", "label_source", "fracture"]].copy()
    labels["fracture"] = labels["fracture"].astype("Int8")
    labels.to_parquet(art / "labels.parquet", index=False)
    train_keras(
        "cnn",
        cfg,
        art / "labels.parquet",
        art / "features" / "bands",
        TrainOutputs(
            model_dir=art / "models" / "cnn",
            predictions=art / "predictions" / "cnn.parquet",
            metrics=root / "metrics" / "cnn.json",
            live_dir=root / "plots" / "cnn",
            trials=root / "plots" / "trials" / "cnn.csv",
        ),
    )
    train_rf(
        cfg,
        art / "labels.parquet",
        art / "features" / "vectors",
        TrainOutputs(
            model_dir=art / "models" / "rf",
            predictions=art / "predictions" / "rf.parquet",
            metrics=root / "metrics" / "rf.json",
            trials=root / "plots" / "trials" / "rf.csv",
        ),
    )
    settings = evaluate.Settings.from_params(cfg)
    tables = {m: predictions.read(art / "predictions" / f"{m}.parquet", REGIONS) for m in MODELS}
    scores = evaluate.evaluate_all(
        read_labels(art / "labels.parquet", REGIONS), tables, REGIONS, settings
    )
    reference = ood.fit_on_shards(
        ShardReader(art / "repair"),
        labels,
        cfg["evaluate"]["ood_val_pass"],
        cfg["evaluate"]["ood_min_threshold"],
    )
    served = evaluate.with_ensemble(MODELS, settings)
    assert served == SERVED
    records = evaluate.serving_records(scores, served, REGIONS, settings, reference)
    serving.write(records, evaluate.best_model(scores, served), art / "serving")
    (root / "params.yaml").write_text(yaml.safe_dump(cfg))
    return {
        "root": root,
        "artifacts": art,
        "params": root / "params.yaml",
        "cfg": cfg,
        "scores": scores,
    }
