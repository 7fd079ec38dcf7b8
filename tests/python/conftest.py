"""pytest configuration of the Python package's tests (tests/python, docs/python.md).

The package under test is whatever `import fp8flow` finds: ctest puts the build's copy first
(PYTHONPATH=build/python); an installed package (pip install .) works the same. FP8FLOW_BIN names the CLI
for the tests that compare the bindings with it (default: build/fp8flow of this checkout)."""
import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # user_kernels


@pytest.fixture(scope="session")
def fp8flow_bin():
    b = os.environ.get("FP8FLOW_BIN", os.path.join(ROOT, "build", "fp8flow"))
    if not os.access(b, os.X_OK):
        pytest.skip(f"no fp8flow binary at {b} (set FP8FLOW_BIN)")
    return b
