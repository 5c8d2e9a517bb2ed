"""A pytest plugin that records the CPU time of every test, its subprocesses included.

    PYTHONPATH=benchmarks python -m pytest -q -p pytest_cpu_time
    python benchmarks/pytest_cpu_time.py            # CPU seconds per test file, largest first

Wall-clock durations (``--durations``) mislead on a machine whose cores the two test workers
share: a test looks slow when the other worker is busy. CPU time does not. Around each test
(setup, call and teardown: a module fixture counts towards the first test that uses it), each
test process appends to its own file in ``$CPU_TIME_DIR`` (default ``/tmp/fer_jax_cpu_time``)
a line ``<cpu seconds>\\t<wall seconds>\\t<node id>``, where the CPU seconds are the user and
system time of the test process and of the processes it started and waited for (command-line
runs, Grain workers).
"""
from __future__ import annotations

import collections
import os
import resource
import sys
import time
from pathlib import Path

import pytest


def _folder() -> Path:
    folder = Path(os.environ.get("CPU_TIME_DIR", "/tmp/fer_jax_cpu_time"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu_seconds(), time.perf_counter()
    yield
    cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    with open(_folder() / f"{os.getpid()}.tsv", "a") as f:
        f.write(f"{cpu:.2f}\t{wall:.2f}\t{item.nodeid}\n")


def summary(folder: Path, top: int = 40) -> str:
    """CPU seconds per test file (and the whole run), largest first."""
    per_file, per_test = collections.Counter(), []
    for path in folder.glob("*.tsv"):
        for line in path.read_text().splitlines():
            cpu, _, nodeid = line.split("\t", 2)
            per_file[nodeid.split("::", 1)[0]] += float(cpu)
            per_test.append((float(cpu), nodeid))
    lines = [f"{sum(per_file.values()):8.1f} s CPU in all"]
    lines += [f"{cpu:8.1f}  {name}" for name, cpu in per_file.most_common(top)]
    lines += ["", "largest tests:"]
    lines += [f"{cpu:8.1f}  {nodeid}" for cpu, nodeid in sorted(per_test, reverse=True)[:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else _folder()))
