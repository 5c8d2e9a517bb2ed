"""Preemption safety of ``python -m fer_jax.main``: SIGKILL at three random points of a tiny
run, each followed by a resume, then SIGTERM (checkpoint saved, exit status 143) and a last
resume — the run ends bit-identical to an uninterrupted one."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import shared_runs
from fer_jax import checkpointing

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]
# 4 epochs × 6 steps, checkpoints every 2 steps (and at every epoch end).
COMMAND = [sys.executable, "-m", "fer_jax.main", "--config=configs/synthetic.py:smoke",
           "--config.train.epochs=4"]


def _env():
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
                + " --xla_force_host_platform_device_count=1")


def _start(workdir):
    return subprocess.Popen(COMMAND + [f"--workdir={workdir}"], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _steps(workdir) -> list[int]:
    folder = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
        if folder.exists() else []


def _wait_for_checkpoint(process, workdir, after: int, timeout: float = 200) -> None:
    """Until a checkpoint newer than step ``after`` exists (or the process ends)."""
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        if any(s > after for s in _steps(workdir)):
            return
        time.sleep(0.005)


def _final(workdir):
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    variables, _, step = checkpointing.Checkpoints(workdir, 2).restore_variables(
        device, prefer_best=False)
    history = json.loads((Path(workdir) / "metrics.json").read_text())["history"]
    return step, variables, history


def test_killed_three_times_and_terminated_once_ends_bit_identical(tmp_path):
    reference = _start(tmp_path / "reference")
    out, err = shared_runs.finish(reference, 300)
    assert reference.returncode == 0, err[-3000:]

    workdir = tmp_path / "interrupted"
    rng = np.random.default_rng(0)
    for kill in range(3):
        latest = max(_steps(workdir), default=0)
        process = _start(workdir)
        _wait_for_checkpoint(process, workdir, latest)
        time.sleep(rng.uniform(0, 0.05))  # anywhere in the next step or save
        process.send_signal(signal.SIGKILL)
        process.communicate()
        assert process.returncode == -signal.SIGKILL, f"run {kill + 1} ended before the kill"
        assert not (workdir / "metrics.json").exists()

    latest = max(_steps(workdir))
    process = _start(workdir)
    _wait_for_checkpoint(process, workdir, latest)
    process.send_signal(signal.SIGTERM)
    out, err = shared_runs.finish(process, 120)
    assert process.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    stopped = [line for line in err.splitlines() if "stopped by SIGTERM after step" in line]
    assert len(stopped) == 1, err[-3000:]
    step = int(stopped[0].split("after step ")[1].split(";")[0])
    assert step in _steps(workdir)  # the checkpoint of the step it stopped at

    process = _start(workdir)
    out, err = shared_runs.finish(process, 300)
    assert process.returncode == 0, err[-3000:]
    assert f"Resumed from step {step}" in out
    step_a, params_a, history_a = _final(tmp_path / "reference")
    step_b, params_b, history_b = _final(workdir)
    assert step_a == step_b == 24
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_array_equal(a, b)
    assert history_a == history_b
