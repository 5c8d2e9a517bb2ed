"""Command-line runs that several test files need, trained once per test run.

The test workers (pytest-xdist) share a directory next to their own temporary directories; the
first worker that asks for a run trains it there while holding a file lock, the others wait
for it and reuse it. A shared workdir is read-only for the tests: a test that writes (resumes,
kills, evaluates into it) makes its own run.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from filelock import FileLock

from fer_jax import checkpointing

REPO = Path(__file__).resolve().parents[1]

# Stochastic softmax at smoke size: 24 videos, batch 8, 3 steps per epoch; warm-up epoch 1,
# exploration epoch 2, exploitation epoch 3 (draws from the score tables); a checkpoint every
# 2 steps.
SAMPLER_SMOKE = ["--config=configs/sampler_synthetic.py:smoke"]
# The synthetic TimeSformer at smoke size for one epoch (6 steps; checkpoints 4 and 6).
SYNTHETIC_SMOKE = ["--config=configs/synthetic.py:smoke", "--config.train.epochs=1"]


def abort_for_stacks(process: subprocess.Popen, grace: float = 30):
    """Ends a hung ``process`` with SIGABRT, on which Python's fault handler (conftest.py sets
    PYTHONFAULTHANDLER for every run the tests start) writes the stack of each of its
    threads to its stderr; killed if it is still there after ``grace`` seconds. Returns
    what ``communicate`` returns (None, None for output sent to files)."""
    process.send_signal(signal.SIGABRT)
    try:
        return process.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """``process.communicate(timeout)``; a process still running after ``timeout`` seconds
    fails the test with the Python stack of each of its threads (``abort_for_stacks``), so
    that a hang says where it waited."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = abort_for_stacks(process)
        raise AssertionError(f"{' '.join(map(str, process.args))} still ran after "
                             f"{timeout:g} s; its output:\n{(out or '')[-1500:]}\n"
                             f"its threads:\n{(err or '')[-8000:]}") from None


def one_device_env() -> dict:
    """The environment of a command-line run on one CPU device."""
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
                + " --xla_force_host_platform_device_count=1")


def shared_workdir(tmp_path_factory, name: str, flags: list[str], timeout: float = 400
                   ) -> Path:
    """The workdir of ``python -m fer_jax.main *flags``, trained once per test run (on one
    CPU device) and shared by the test workers; a failed run fails every test that asks for
    it, with the run's error output."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared_runs"
    root.mkdir(exist_ok=True)
    workdir, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # what a failed attempt left
            result = subprocess.run(
                [sys.executable, "-m", "fer_jax.main", *flags, f"--workdir={workdir}"],
                cwd=REPO, env=one_device_env(), capture_output=True, text=True,
                timeout=timeout)
            assert result.returncode == 0, result.stderr[-3000:]
            done.touch()
    return workdir


def sampler_reference(tmp_path_factory) -> Path:
    """The uninterrupted one-process run of ``SAMPLER_SMOKE`` (9 steps)."""
    return shared_workdir(tmp_path_factory, "sampler_reference", SAMPLER_SMOKE)


def final_state(workdir: Path) -> tuple[int, dict, dict, list]:
    """``(step, variables, score tables as NumPy arrays, metrics history)`` of the newest
    checkpoint of a finished run of the score-table sampler (e.g. ``SAMPLER_SMOKE``)."""
    manager = checkpointing.Checkpoints(workdir, 2)
    step = manager.latest.latest_step()
    sampler = manager.latest.restore(step, args=ocp.args.Composite(
        sampler=ocp.args.StandardRestore())).sampler
    variables, _, _ = manager.restore_variables(
        jax.sharding.SingleDeviceSharding(jax.devices()[0]), prefer_best=False)
    history = json.loads((Path(workdir) / "metrics.json").read_text())["history"]
    return step, variables, {k: np.asarray(v) for k, v in sampler.items()}, history


def synthetic_smoke(tmp_path_factory, dest: Path) -> Path:
    """A private copy at ``dest`` of the one-epoch ``SYNTHETIC_SMOKE`` run (trained once per
    test run), for a test that writes into its workdir (reports, predictions, damage)."""
    shared = shared_workdir(tmp_path_factory, "synthetic_smoke", SYNTHETIC_SMOKE)
    shutil.copytree(shared, dest, dirs_exist_ok=True)
    return dest
