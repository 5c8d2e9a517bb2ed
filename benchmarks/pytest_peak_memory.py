"""A pytest plugin that records the peak memory of the test processes.

    PYTHONPATH=benchmarks python -m pytest -q -p pytest_peak_memory
    sort -n /tmp/fer_jax_peak_memory/*.txt | tail -3

After every test, each test process (each xdist worker) appends a line to its own file in
``$PEAK_MEMORY_DIR`` (default ``/tmp/fer_jax_peak_memory``) whenever its peak resident set size
(``ru_maxrss``) has grown: the peak in MB, the largest peak of the processes it started and
waited for (command-line runs), and the test after which it was reached.
"""
from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

_peak = [0]


def _folder() -> Path:
    folder = Path(os.environ.get("PEAK_MEMORY_DIR", "/tmp/fer_jax_peak_memory"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    if own > _peak[0]:
        _peak[0] = own
        with open(_folder() / f"{os.getpid()}.txt", "a") as f:
            f.write(f"{own} MB test process, {children} MB largest child: {item.nodeid}\n")
