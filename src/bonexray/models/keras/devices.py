"""What the Keras models run on: the precision policy, the distribution strategy, the GPUs.

params.yaml train:
  mixed_precision  true: float16 compute with float32 variables (Keras' mixed_float16
                   policy), for GPUs with tensor cores; the heads stay float32 (network.py)
  distribution     auto: tf.distribute.MirroredStrategy when more than one GPU is visible,
                   else TensorFlow's default strategy; mirrored: always (one replica per
                   visible GPU, or the CPU); none: the default strategy
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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


def visible_gpus() -> list[str]:
    """The visible GPUs, named as CUDA_VISIBLE_DEVICES names them for a child process.

    Lists physical devices only, which does not start TensorFlow's runtime: started, it
    would take the GPUs' memory before the search's worker processes could.
    """
    import tensorflow as tf

    count = len(tf.config.list_physical_devices("GPU"))
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [d.strip() for d in listed.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def strategy(mode: str):
    """The tf.distribute strategy train.distribution asks for on this machine.

    Models must be built and compiled inside its scope(); train.batch_size is per replica,
    so a batch of the input pipeline holds batch_size x num_replicas_in_sync images.
    """
    import tensorflow as tf

    if mode not in DISTRIBUTIONS:
        raise ParamsError(f"params.yaml train.distribution: {mode!r} is not one of {DISTRIBUTIONS}")
    if mode == "mirrored" or (mode == "auto" and len(visible_gpus()) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
