"""One process of a distributed search (distributed.py starts them): the chief or a worker.

python -m bonexray.models.keras.worker DIRECTORY   # role: KERASTUNER_TUNER_ID
"""

from __future__ import annotations

import sys
from pathlib import Path

from bonexray.models.keras import devices, distributed
from bonexray.models.keras.training import prepare
from bonexray.models.keras.tuning import run_search


def search_process(directory: Path) -> None:
    """Build the stage's search from DIRECTORY/job.json and run this process's part of it."""
    spec = distributed.read_job(directory)
    job = prepare(spec["model"], spec["params"], spec["labels"], spec["bands"], spec["images"])
    # overwrite=False: the processes share the directory.
    if distributed.is_chief():
        # Serves the oracle until every worker has been told to stop.
        job.tuner(directory, overwrite=False).search()
        return
    # A worker sees one GPU at most, so train.distribution "auto" mirrors nothing here.
    # Each trial starts from the seed: its score depends neither on which worker ran it
    # nor on what that worker ran before.
    strategy = devices.strategy(job.train_params["distribution"])
    tuner = job.tuner(
        directory, overwrite=False, distribution_strategy=strategy, trial_seed=job.seed
    )
    train_data, val_data, steps = job.datasets(strategy.num_replicas_in_sync)
    epochs = int(job.config.search["epochs"])
    run_search(tuner, train_data, val_data, epochs, job.callbacks(epochs, final=False), steps)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit(
            f"usage: python -m {distributed.PROCESS_MODULE} DIRECTORY  (role: KERASTUNER_TUNER_ID)"
        )
    search_process(Path(args[0]))


if __name__ == "__main__":
    main()
