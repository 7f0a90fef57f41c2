"""A Keras Tuner search spread over processes: one chief, N workers, one shared directory.

When models.<name>.search.workers > 1, the train@<name> stage runs Keras Tuner's own
distributed mode rather than its search loop:

- a chief process (KERASTUNER_TUNER_ID=chief) holds the oracle and serves it over gRPC on
  train.oracle_address:train.oracle_port (port 0: a free port, chosen per run). It trains
  nothing and sees no GPU; it ends once the oracle has stopped and every worker that asked
  for a trial has been told so (or, listening on loopback, is stopped once the stage's own
  workers have all ended: no other can exist);
- worker processes tuner0, tuner1, ... ask the chief for trials, train them and report
  back; with GPUs visible each worker sees exactly one (CUDA_VISIBLE_DEVICES), one worker
  per GPU, else they share the CPU;
- the directory holds the oracle's trial records (written by the chief), the workers'
  checkpoints, job.json (the model, its params and inputs, from which each process builds
  the same search) and logs/<process>.log.

Every child inherits the stage's environment (PYTHONHASHSEED is set to the seed when the
stage has none) and builds its search from the same params, so it seeds and configures
TensorFlow as the stage does. The stage waits for all of them: a process that exits with
an error stops the others and fails the stage with its exit code and its log's last lines.
Afterwards the stage reads the chief's trial records back and trains the best trial on
(from its checkpoint) itself.

More workers on other hosts can join the same search: see README "Distributed search".

Each process runs `python -m bonexray.models.keras.worker DIRECTORY` (worker.py); its role
is KERASTUNER_TUNER_ID (chief or a worker id).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bonexray.errors import ConfigError
from bonexray.io import jsonfile
from bonexray.io.params import ParamsError
from bonexray.models.keras.devices import visible_gpus

JOB = "job.json"
LOGS = "logs"
CHIEF = "chief"
ANY_ADDRESS = ("0.0.0.0", "::", "[::]")
TAIL_LINES = 40
PROCESS_MODULE = "bonexray.models.keras.worker"  # run by every chief and worker


class SearchProcessError(RuntimeError):
    """A chief or worker process of a distributed search failed."""


def worker_ids(workers: int) -> list[str]:
    return [f"tuner{i}" for i in range(workers)]


def is_chief() -> bool:
    # Keras Tuner's own rule (distribute/utils.py): any id containing "chief".
    return CHIEF in os.environ.get("KERASTUNER_TUNER_ID", "")


def read_job(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / JOB
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; the train stage writes it when it starts")
    return json.loads(path.read_text())


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name
        return address == "localhost"


def free_port(address: str) -> int:
    """A TCP port free on ``address`` now (the chief binds it a moment later)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address.strip("[]"), 0))
        return int(probe.getsockname()[1])


def child_environments(
    workers: int, address: str, port: int, seed: int, gpus: Sequence[str]
) -> dict[str, dict[str, str]]:
    """The environment of each process, chief first, by its tuner id."""
    if gpus and workers > len(gpus):
        raise ParamsError(
            f"params.yaml search.workers: {workers} workers but {len(gpus)} GPUs visible "
            "(one worker per GPU)"
        )
    base = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", str(seed))}
    # Workers on this host reach a chief listening on every interface through loopback.
    connect = "127.0.0.1" if address in ANY_ADDRESS else address
    envs = {
        CHIEF: {
            **base,
            "KERASTUNER_TUNER_ID": CHIEF,
            "KERASTUNER_ORACLE_IP": address,
            "KERASTUNER_ORACLE_PORT": str(port),
            "CUDA_VISIBLE_DEVICES": "",  # the oracle trains nothing; leave the GPUs to workers
        }
    }
    for i, tuner_id in enumerate(worker_ids(workers)):
        envs[tuner_id] = {
            **base,
            "KERASTUNER_TUNER_ID": tuner_id,
            "KERASTUNER_ORACLE_IP": connect,
            "KERASTUNER_ORACLE_PORT": str(port),
        }
        if gpus:
            envs[tuner_id]["CUDA_VISIBLE_DEVICES"] = gpus[i]
    return envs


class _Child:
    """One process; its output goes to its log file and, prefixed, to the stage's stdout."""

    def __init__(self, name: str, directory: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.log = directory / LOGS / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", PROCESS_MODULE, str(directory)],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._pump = threading.Thread(target=self._forward, daemon=True)
        self._pump.start()

    def _forward(self) -> None:
        with self.log.open("w") as log:
            for line in self.process.stdout:  # type: ignore[union-attr]
                log.write(line)
                log.flush()
                sys.stdout.write(f"[{self.name}] {line}")
                sys.stdout.flush()

    def finished(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self._pump.join()  # the log is complete once the pipe is drained
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._pump.join()

    def failure(self, code: int) -> SearchProcessError:
        tail = self.log.read_text().splitlines()[-TAIL_LINES:]
        return SearchProcessError(
            f"distributed search: {self.name} exited with code {code}; "
            f"last lines of {self.log}:\n" + "\n".join(tail)
        )


def run(
    directory: str | Path,
    job: Mapping[str, Any],
    workers: int,
    address: str,
    port: int,
    seed: int,
    poll_s: float = 0.5,
) -> None:
    """Run a chief and ``workers`` workers over ``directory``; return when all have ended.

    ``directory`` must be empty or absent (the processes share it, none may overwrite it).
    Raises SearchProcessError if any process fails; the others are stopped first.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise ConfigError(f"{directory}: not empty; a distributed search starts from scratch")
    (directory / LOGS).mkdir()
    # Key order kept: the space is declared in params order, which fixes the random draws.
    jsonfile.write(directory / JOB, job)
    port = port or free_port(address)
    envs = child_environments(workers, address, port, seed, visible_gpus())
    workers_named = ", ".join(worker_ids(workers))
    print(f"distributed search: chief on {address}:{port}, workers {workers_named}")
    children: list[_Child] = []
    try:
        children = [_Child(name, directory, env) for name, env in envs.items()]
        chief, pending = children[0], set(children[1:])
        while True:
            for child in list(pending):
                code = child.finished()
                if code:
                    raise child.failure(code)
                if code == 0:
                    pending.discard(child)
            code = chief.finished()
            if code:
                raise chief.failure(code)
            if code == 0:
                # Done: no trial is running and none can start. A worker still alive has
                # not asked for a trial yet and would wait for an answer that never comes.
                return
            if not pending and _is_loopback(address):
                # Every worker was told to stop, so every trial has ended and is saved, and
                # on loopback no other host's worker can be left. The chief would notice
                # only at its next check, every 20 s.
                return
            time.sleep(poll_s)
    finally:
        for child in children:
            child.stop()
