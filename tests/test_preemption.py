"""Preemption safety of ``python -m fer_jax.main`` on the score-table sampler's smoke run
(warm-up, exploration, exploitation; a checkpoint every 2 steps and at each epoch end):
SIGKILL at random points of the warm-up and the exploration, SIGTERM (checkpoint saved, exit
status 143), SIGKILL again in the middle of the exploitation, each followed by a resume — the
run ends with the parameters, score tables and metrics of the uninterrupted run, bit for bit."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import shared_runs

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "fer_jax.main", *shared_runs.SAMPLER_SMOKE]
EXPLOITATION_MIDDLE = 8  # steps 7-9 are epoch 3, the exploitation of the score tables


def _start(workdir):
    # unbuffered: what a run printed before it was killed still reaches the test
    env = dict(shared_runs.one_device_env(), PYTHONUNBUFFERED="1")
    return subprocess.Popen(COMMAND + [f"--workdir={workdir}"], cwd=REPO, env=env,
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


def _kill_after_checkpoint(workdir, after: int, delay: float) -> str:
    """Starts (resumes) the run, SIGKILLs it ``delay`` seconds after a checkpoint newer than
    ``after`` appears; returns its standard output."""
    process = _start(workdir)
    _wait_for_checkpoint(process, workdir, after)
    time.sleep(delay)  # anywhere in the next step or save
    process.send_signal(signal.SIGKILL)
    out, _ = process.communicate()
    assert process.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{out}"
    assert not (Path(workdir) / "metrics.json").exists()
    return out


def test_killed_three_times_and_terminated_once_ends_bit_identical(tmp_path_factory, tmp_path):
    reference = shared_runs.sampler_reference(tmp_path_factory)
    workdir = tmp_path / "interrupted"
    rng = np.random.default_rng(0)
    for _ in range(2):  # the warm-up, then the exploration
        _kill_after_checkpoint(workdir, max(_steps(workdir), default=0), rng.uniform(0, 0.05))

    process = _start(workdir)
    _wait_for_checkpoint(process, workdir, max(_steps(workdir)))
    process.send_signal(signal.SIGTERM)
    out, err = shared_runs.finish(process, 120)
    assert process.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    stopped = [line for line in err.splitlines() if "stopped by SIGTERM after step" in line]
    assert len(stopped) == 1, err[-3000:]
    step = int(stopped[0].split("after step ")[1].split(";")[0])
    assert step in _steps(workdir)  # the checkpoint of the step it stopped at

    out = _kill_after_checkpoint(workdir, max(step, EXPLOITATION_MIDDLE - 1), 0.0)
    assert f"Resumed from step {step}" in out
    resumed_from = max(_steps(workdir))
    assert resumed_from >= EXPLOITATION_MIDDLE
    process = _start(workdir)
    out, err = shared_runs.finish(process, 300)
    assert process.returncode == 0, err[-3000:]
    assert f"Resumed from step {resumed_from}" in out

    step_a, params_a, tables_a, history_a = shared_runs.final_state(reference)
    step_b, params_b, tables_b, history_b = shared_runs.final_state(workdir)
    assert step_a == step_b == 9
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_array_equal(a, b)
    assert tables_a.keys() == tables_b.keys() and tables_a
    for key in tables_a:
        np.testing.assert_array_equal(tables_a[key], tables_b[key])
    assert history_a == history_b
