"""The tests' shared environment, set before any test module imports TensorFlow.

Paths every test module needs are in paths.py (importable: tests/ is on sys.path).
"""

from __future__ import annotations

import os

# TensorFlow reads these when it is first imported; `make test` sets them too.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
