"""The tests' shared environment, set before any test module imports TensorFlow.

Paths every test module needs are in paths.py (importable: tests/ is on sys.path).
"""

from __future__ import annotations

import os

import pytest

# TensorFlow reads these when it is first imported; `make test` sets them too.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> dict:
    """served.build_artifacts once per session: test_predict and test_validate share it
    (neither changes it)."""
    from served import build_artifacts  # TensorFlow: only for the modules that use it

    return build_artifacts(tmp_path_factory.mktemp("served"))
