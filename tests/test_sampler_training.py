"""Score-table sampling inside training: artifacts, test-time pooling, exact resume."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import shared_runs
from fer_jax import checkpointing

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]
SMOKE = shared_runs.SAMPLER_SMOKE


def _command(workdir, *overrides):
    return [sys.executable, "-m", "fer_jax.main", *SMOKE, f"--workdir={workdir}", *overrides]


_env = shared_runs.one_device_env


def _final_state(workdir: Path):
    """(parameters, sampler state) of the newest checkpoint."""
    manager = checkpointing.Checkpoints(workdir, 2)
    step = manager.latest.latest_step()
    sampler = manager.latest.restore(step, args=ocp.args.Composite(
        sampler=ocp.args.StandardRestore())).sampler
    variables, _, _ = manager.restore_variables(
        jax.sharding.SingleDeviceSharding(jax.devices()[0]), prefer_best=False)
    return step, variables, {k: np.asarray(v) for k, v in sampler.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return shared_runs.sampler_reference(tmp_path_factory)


def test_run_writes_sampler_results_and_maps(reference):
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["sampler"]["name"] == "stochastic_softmax"
    assert metrics["sampler"]["maps"] == 2
    correlation = metrics["sampler"]["table_vs_intensity"]
    assert correlation["videos"] > 0 and -1 <= correlation["spearman_mean"] <= 1
    maps = sorted((reference / "sampling_maps").glob("video_*.png"))
    assert len(maps) == 2 and all(p.stat().st_size > 5000 for p in maps)
    # Test-time pooling over every clip of the full videos evaluated every video.
    assert metrics["final_validation"]["count"] == 20
    step, _, sampler = _final_state(reference)
    assert step == 9
    assert any(np.ptp(v) > 0 for k, v in sampler.items() if v.dtype == np.float32)


def test_sigkill_in_exploitation_then_resume_is_bit_identical(reference, tmp_path):
    process = subprocess.Popen(_command(tmp_path), cwd=REPO, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mid_epoch_3 = tmp_path / "checkpoints" / "8"  # steps 7-9 are epoch 3
    deadline = time.time() + 300
    while not mid_epoch_3.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    result = subprocess.run(_command(tmp_path), cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from step" in result.stdout
    step_a, params_a, sampler_a = _final_state(reference)
    step_b, params_b, sampler_b = _final_state(tmp_path)
    assert step_a == step_b
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_array_equal(a, b)
    assert sampler_a.keys() == sampler_b.keys()
    for key in sampler_a:
        np.testing.assert_array_equal(sampler_a[key], sampler_b[key])
    history = lambda w: json.loads((w / "metrics.json").read_text())["history"]  # noqa: E731
    assert history(reference) == history(tmp_path)
