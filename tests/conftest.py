"""Shared test set-up: absl flags parsed (Grain reads flags), small helpers."""
import sys
from pathlib import Path

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
