"""Shared test set-up: XLA's CPU compiler turned down, absl flags parsed (Grain reads flags),
small helpers."""
import os
import sys
from pathlib import Path

# Tests run tiny models for a few steps, so compiling dominates their time: XLA's lowest CPU
# optimisation level compiles several times faster and computes the same values up to
# rounding. Set before JAX starts; command-line runs of the tests inherit it. An XLA_FLAGS
# given by the caller is kept.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true "
                      "--xla_cpu_use_fusion_emitters=false")

import pytest
from absl import flags

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["pytest"])


@pytest.fixture
def python():
    """The interpreter running the tests (for CLI subprocesses)."""
    return sys.executable
