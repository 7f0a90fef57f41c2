"""params.yaml itself: every key survives DVC's run-cache key."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from dvc_data.hashfile.meta import Meta
from paths import REPO

from bonexray.io.params import load


def dotted_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from dotted_keys(value, f"{prefix}{key}.")
    yield prefix.rstrip(".")


def test_no_param_is_named_like_a_key_the_run_cache_ignores():
    """DVC hashes a stage for its run cache with keys named `size` and `nfiles` left out at
    every depth (dvc/stage/cache.py), so a stage whose only change is such a param is
    'restored from run-cache' with the outputs of the old value."""
    ignored = {Meta.PARAM_SIZE, Meta.PARAM_NFILES}
    params = load(REPO / "params.yaml")
    clashes = [key for key in dotted_keys(params) if key.rsplit(".", 1)[-1] in ignored]
    assert not clashes, f"rename these params.yaml keys: {clashes}"
