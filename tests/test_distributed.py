"""Keras Tuner's chief/worker search on loopback: two CPU workers, one tiny search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pandas as pd
import pytest
from tiny_sample import CHANNELS, GRID, REGIONS, TINY_CONV, params, write_sample

from bonexray.models.interface import TrainOutputs
from bonexray.models.keras import distributed
from bonexray.models.keras.network import BoneHyperModel, NetworkSpec
from bonexray.models.keras.training import train_keras
from bonexray.models.keras.tuning import make_tuner, runners

TESTS = Path(__file__).parent
SPACE = {**TINY_CONV, "filters": {"choice": [4, 8]}, "dropout": {"range": [0.0, 0.3]}}
LOSS_WEIGHTS = {"region": 1.0, "fracture": 1.0}


def search_config(workers: int, max_trials: int) -> dict:
    return {
        "rnn": False,
        "search": {
            "tuner": "random",
            "max_trials": max_trials,
            "epochs": 2,
            "executions_per_trial": 1,
            "workers": workers,
        },
        "final_epochs": 1,
        "space": SPACE,
    }


def outputs_under(out) -> TrainOutputs:
    return TrainOutputs(
        model_dir=out / "models" / "nas",
        predictions=out / "predictions" / "nas.parquet",
        metrics=out / "metrics" / "nas.json",
        live_dir=out / "plots" / "train" / "nas",
        trials=out / "plots" / "trials" / "nas.csv",
    )


def test_two_workers_share_one_search_and_the_stage_refits_the_best(tmp_path):
    sample = write_sample(tmp_path / "sample")
    outputs = outputs_under(tmp_path / "out")
    cfg = params(nas=search_config(workers=2, max_trials=4))
    metrics = train_keras("nas", cfg, sample["labels"], sample["bands"], outputs)

    tuner_dir = outputs.model_dir / "tuner"
    ran = runners(tuner_dir)
    assert sorted(ran) == ["0", "1", "2", "3"]
    assert set(ran.values()) == {"tuner0", "tuner1"}  # both workers trained trials
    assert {p.stem for p in (tuner_dir / distributed.LOGS).glob("*.log")} == {
        "chief",
        "tuner0",
        "tuner1",
    }

    trials = pd.read_csv(outputs.trials)
    assert len(trials) == 4 and (trials["status"] == "COMPLETED").all()
    assert metrics["search_trials"] == 4
    best = json.loads((outputs.model_dir / "best_hyperparameters.json").read_text())
    best_trial = trials.loc[trials["score"].idxmin()]
    assert (best["filters"], best["dropout"]) == (best_trial["filters"], best_trial["dropout"])
    model = keras.saving.load_model(outputs.model_dir / "model.keras")
    assert model.get_layer("conv1").filters == best["filters"]
    assert len(pd.read_parquet(outputs.predictions)) == 24

    # A random oracle proposes by trial number, not by worker: the same trials as in one process.
    alone = make_tuner(
        BoneHyperModel(
            SPACE, NetworkSpec((GRID, GRID, CHANNELS), len(REGIONS), False, LOSS_WEIGHTS)
        ),
        cfg["models"]["nas"]["search"],
        tmp_path / "alone",
        seed=cfg["seed"],
    )
    proposed = [alone.oracle.create_trial(f"t{i}").hyperparameters.values for i in range(4)]
    assert trials[["filters", "dropout"]].to_dict("records") == [
        {"filters": v["filters"], "dropout": v["dropout"]} for v in proposed
    ]


def test_a_failing_process_fails_the_search_with_its_code_and_log(tmp_path):
    sample = write_sample(tmp_path / "sample")
    broken = params(nas=search_config(workers=2, max_trials=2))
    del broken["models"]["nas"]["space"]  # every process fails while reading its params
    job = {"model": "nas", "params": broken, "labels": str(sample["labels"])}
    job["bands"], job["images"] = str(sample["bands"]), None
    with pytest.raises(distributed.SearchProcessError, match=r"exited with code 1") as failed:
        distributed.run(tmp_path / "tuner", job, 2, "127.0.0.1", 0, seed=7)
    assert "missing ['space']" in str(failed.value)  # the log's tail names the cause
    with pytest.raises(ValueError, match="not empty"):
        distributed.run(tmp_path / "tuner", job, 2, "127.0.0.1", 0, seed=7)


def test_each_worker_sees_one_gpu_and_the_chief_none():
    envs = distributed.child_environments(2, "0.0.0.0", 8000, seed=7, gpus=["3", "5"])
    assert list(envs) == ["chief", "tuner0", "tuner1"]
    assert [envs[k]["CUDA_VISIBLE_DEVICES"] for k in envs] == ["", "3", "5"]
    assert envs["chief"]["KERASTUNER_ORACLE_IP"] == "0.0.0.0"
    assert {envs[k]["KERASTUNER_ORACLE_IP"] for k in ("tuner0", "tuner1")} == {"127.0.0.1"}
    assert {e["KERASTUNER_ORACLE_PORT"] for e in envs.values()} == {"8000"}
    assert envs["tuner1"]["PYTHONHASHSEED"] == os.environ.get("PYTHONHASHSEED", "7")
    on_cpu = distributed.child_environments(2, "127.0.0.1", 8000, seed=7, gpus=[])
    assert on_cpu["tuner0"].get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ValueError, match="3 workers but 2 GPUs"):
        distributed.child_environments(3, "127.0.0.1", 8000, seed=7, gpus=["0", "1"])


PREPARE_THEN_PROBE = """
import sys
import tensorflow as tf
from tiny_sample import params, write_sample
from bonexray.models.keras import devices
from bonexray.models.keras.training import prepare
sample = write_sample(__import__("pathlib").Path(sys.argv[1]))
cfg = params(nas=__import__("json").loads(sys.argv[2]))
prepare("nas", cfg, sample["labels"], sample["bands"])
devices.visible_gpus()
# Raises once TensorFlow's runtime has started (and, on a GPU machine, taken its memory).
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
if len(sys.argv) > 3:  # the probe's own check: a tensor starts the runtime
    tf.constant(1)
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()])
"""


def test_the_stage_starts_no_tensorflow_runtime_before_its_workers(tmp_path):
    """On a GPU machine a started runtime would hold the GPUs' memory the workers need."""
    paths = [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-c", PREPARE_THEN_PROBE, str(tmp_path / "sample")]
    command.append(json.dumps(search_config(workers=2, max_trials=2)))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    probed = subprocess.run([*command, "probe"], env=env, capture_output=True, text=True)
    assert "cannot be modified after being initialized" in probed.stderr
