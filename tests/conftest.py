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

REPO = Path(__file__).resolve().parents[1]

# Many tests, and the command-line runs they start, compile the same small programs (the smoke
# TimeSformer's train step, checkpoint fingerprints, ...): one compilation cache on disk,
# shared by the test processes and their subprocesses, compiles each once per run (and keeps
# it for the next run of the suite; JAX keys entries by program, flags and version).
# Command-line runs (which inherit these variables) cache every program that took 20 ms or
# more to compile: most of them run the same smoke configs, so a small program compiled by one
# run is read back by the next (about 1 s of a 6 s smoke run). The test processes themselves
# compile mostly programs of their own and keep 0.2 s (pytest_configure), below which writing
# an entry costs more than it saves.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.02")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))
# A command-line run that hangs is ended with SIGABRT by the test waiting for it
# (shared_runs.finish): Python's fault handler then prints where each thread waited.
os.environ.setdefault("PYTHONFAULTHANDLER", "1")

import gc  # noqa: E402

import pytest  # noqa: E402 — after the environment above
from absl import flags  # noqa: E402

# Tracing and compiling allocate many short-lived objects, on which Python's cyclic collector
# ran about 5 % of a test process's time (perf). Collections are made rare here; each test
# file still ends with a full one (_release_compiled_programs).
gc.set_threshold(100_000, 50, 100)


# Files of independent, costly tests: each test is its own unit of work for the test workers.
INDEPENDENT_FILES = {"test_configs.py", "test_distributed.py", "test_readme.py"}
# Files with the longest units of work (a test or a shared fixture of a minute or so) run first,
# so that the two workers end together on short ones (pytest.ini: --no-loadscope-reorder).
LONGEST_FIRST = ("test_distributed.py", "test_preemption.py", "test_sampler_training.py",
                 "test_readme.py", "test_sweep.py", "test_train_cli.py", "test_report_cli.py",
                 "test_configs.py", "test_au_guidance.py", "test_workdir_safety.py")


def pytest_collection_modifyitems(config, items):
    """Orders the files as ``LONGEST_FIRST`` says (the rest after them, as collected)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduling: the tests of a file run on one worker, in order (they may
    share a module fixture, e.g. a trained run, and JAX's caches), except in
    ``INDEPENDENT_FILES``, whose tests go one by one to whichever worker is free. (xdist's own
    ``--dist loadgroup`` cannot express this with pytest 9: it renames node ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if Path(path).name in INDEPENDENT_FILES else path

    return FileScheduling(config, log)


def pytest_configure(config):
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["pytest"])
    import jax
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


@pytest.fixture
def python():
    """The interpreter running the tests (for CLI subprocesses)."""
    return sys.executable


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test file, drop JAX's compiled programs and traced functions and give freed
    memory back to the OS: a test process runs many files, and their caches would otherwise
    add up to several GB."""
    yield
    import ctypes
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
