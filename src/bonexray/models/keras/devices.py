"""What the Keras models run on: the backend, the precision policy, the distribution
strategy, the GPUs.

The Keras backend is Keras' own choice, the KERAS_BACKEND environment variable (default
tensorflow), fixed when keras is first imported; `backend` reads it.

params.yaml train:
  mixed_precision  true: float16 compute with float32 variables (Keras' mixed_float16
                   policy, any backend), for GPUs with tensor cores; the heads stay float32
                   (network.py)
  distribution     auto: data parallel when more than one GPU is visible, else one device;
                   mirrored: always (one replica per visible GPU, or the CPU); none: one
                   device. On TensorFlow: tf.distribute.MirroredStrategy or the default
                   strategy; on another backend: keras.distribution.DataParallel over the
                   backend's devices, or none (`KerasDistribution`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from typing import Any

from bonexray.io.params import ParamsError

DISTRIBUTIONS = ("auto", "none", "mirrored")
MIXED_POLICY = "mixed_float16"


@contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """Models built (and compiled) in this block follow the mixed policy if ``mixed``.

    A scope at build time rather than one global setting per process, because
    keras.backend.clear_session(), which Keras Tuner calls before every trial, resets the
    global dtype policy to float32.
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(MIXED_POLICY if mixed else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def backend() -> str:
    """The Keras backend of this process: "tensorflow", "jax", "torch" or "numpy"."""
    import keras

    return keras.backend.backend()


def visible_gpus() -> list[str]:
    """The visible GPUs, named as CUDA_VISIBLE_DEVICES names them for a child process.

    Starts no GPU runtime in this process: started, it would take the GPUs' memory before
    the search's worker processes could. TensorFlow lists physical devices without starting
    one; JAX has no such call, so a child process counts them.
    """
    count = _gpu_count(backend())
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [d.strip() for d in listed.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


@cache  # once per process: the child takes seconds
def _gpu_count(name: str) -> int:
    if name == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if name != "jax":
        return 0  # the backends tested are tensorflow and jax (README "Backends")
    code = "import jax; print(sum(d.platform == 'gpu' for d in jax.devices()))"
    counted = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return int(counted.stdout.strip().splitlines()[-1])


class KerasDistribution:
    """A keras.distribution on a backend other than TensorFlow, with the two members of a
    tf.distribute strategy that the callers use: ``scope()`` and ``num_replicas_in_sync``.

    ``extended`` is None: Keras Tuner reads its multi-worker settings from a strategy's
    ``extended`` when it has them, and this one has none.
    """

    extended = None

    def __init__(self, distribution: Any = None, replicas: int = 1) -> None:
        self.distribution = distribution
        self.num_replicas_in_sync = replicas

    def scope(self) -> AbstractContextManager:
        return nullcontext() if self.distribution is None else self.distribution.scope()


def strategy(mode: str):
    """The strategy train.distribution asks for on this machine (module docstring).

    Models must be built and compiled inside its scope(); train.batch_size is per replica,
    so a batch of the input pipeline holds batch_size x num_replicas_in_sync images.
    """
    if mode not in DISTRIBUTIONS:
        raise ParamsError(f"params.yaml train.distribution: {mode!r} is not one of {DISTRIBUTIONS}")
    parallel = mode == "mirrored" or (mode == "auto" and len(visible_gpus()) > 1)
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy() if parallel else tf.distribute.get_strategy()
    if not parallel:
        return KerasDistribution()
    import keras

    replicas = keras.distribution.list_devices()  # the GPUs where there are, else the CPUs
    return KerasDistribution(keras.distribution.DataParallel(devices=replicas), len(replicas))
