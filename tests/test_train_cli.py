"""End-to-end behaviour of ``python -m fer_jax.main`` on the synthetic smoke config:
artifacts, 1 vs 4 devices, checkpoint fallback, and one-line errors for bad input (exact
resume after SIGKILL / SIGTERM: test_preemption.py)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from fer_jax import checkpointing

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]
# One Grain worker process, as in the default config (:smoke reads in-process).
SMOKE = ["--config=configs/synthetic.py:smoke", "--config.train.epochs=3",
         "--config.input.num_workers=1"]


def _env(devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                        + f" --xla_force_host_platform_device_count={devices}")
    return env


def _command(workdir, *overrides):
    return [sys.executable, "-m", "fer_jax.main", *SMOKE, f"--workdir={workdir}", *overrides]


def _run(workdir, *overrides, devices=1, timeout=240):
    return subprocess.run(_command(workdir, *overrides), cwd=REPO, env=_env(devices),
                          capture_output=True, text=True, timeout=timeout)


def _params(workdir):
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    variables, which, step = checkpointing.Checkpoints(workdir, 2).restore_variables(
        device, prefer_best=False)
    assert which == "latest"
    return step, variables


def _history(workdir):
    return json.loads((Path(workdir) / "metrics.json").read_text())["history"]


def _assert_one_line_error(result, pattern):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.startswith("fer_jax: error:")]
    assert len(lines) == 1 and pattern in lines[0], result.stderr[-2000:]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted smoke run (3 epochs × 6 steps, checkpoints every 2 steps):
    (workdir, completed process)."""
    workdir = tmp_path_factory.mktemp("reference")
    result = _run(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


@pytest.fixture(scope="module")
def reference(reference_run):
    return reference_run[0]


def test_console_shows_steady_state_speed_and_no_warnings(reference_run):
    """The first log line waits for a steady-state measurement (compilation excluded); later
    ones give clips/s and an ETA; the run ends without warnings (no leaked shared memory
    of the Grain worker)."""
    _, result = reference_run
    lines = [line for line in result.stdout.splitlines() if " step " in line]
    assert lines[0].endswith("eta estimating…"), lines
    assert all(" clips/s eta " in line for line in lines[1:]) and len(lines) > 3, lines
    assert "Warning" not in result.stderr and "leaked" not in result.stderr, result.stderr


def test_run_writes_checkpoints_events_and_metrics(reference):
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["stopped"] == "completed" and metrics["epochs_completed"] == 3
    assert metrics["steps"] == 18 and len(metrics["history"]) == 3
    best = metrics["best_validation"]
    assert set(best["per_class_accuracy"]) == {"neutral", "anger", "disgust", "fear",
                                               "happiness", "sadness", "surprise"}
    assert np.asarray(best["confusion"]).sum() == best["count"] == 20
    assert sorted(int(p.name) for p in (reference / "checkpoints").iterdir()) == [16, 18]
    assert len(list((reference / "best").iterdir())) == 1
    assert list((reference / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((reference / "config.json").read_text())["train"]["epochs"] == 3


def test_eval_mode_reports_the_test_split(reference):
    result = subprocess.run(
        [sys.executable, "-m", "fer_jax.main", *SMOKE, f"--workdir={reference}", "--mode=eval"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((reference / "eval_test.json").read_text())
    assert report["split"] == "test" and report["checkpoint"] == "best"
    assert report["count"] == 20 and "test: accuracy" in result.stdout


def test_four_devices_match_one_device(reference, tmp_path):
    result = _run(tmp_path, devices=4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 4 cpu device(s)" in result.stdout
    (_, one), (_, four) = _params(reference), _params(tmp_path)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_corrupted_latest_checkpoint_falls_back_to_the_previous(reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    for f in (workdir / "checkpoints" / "18" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    result = _run(workdir, "--config.train.epochs=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint step 18 is unreadable" in result.stdout
    assert "Resumed from step 16" in result.stdout
    assert (workdir / "corrupt_checkpoints" / "18").is_dir()
    assert json.loads((workdir / "metrics.json").read_text())["epochs_completed"] == 4


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    result = _run(workdir, "--config.train.epochs=4", "--config.optimizer.learning_rate=1e30",
                  "--config.optimizer.grad_clip_norm=0")
    _assert_one_line_error(result, "non-finite loss")
    assert "last good checkpoint (step 18) is kept" in result.stderr
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before
    step, params = _params(workdir)
    assert step == 18 and all(np.isfinite(p).all() for p in jax.tree.leaves(params))


@pytest.mark.parametrize("flag, message", [
    ("--config.train.epochz=3", "--config.train.epochz: the config has no field 'epochz' (did "
                                 "you mean 'epochs'?)"),
    ("--config.train.epochs=three", "three"),
    ("--config=configs/missing.py", "config file configs/missing.py not found; config files "
                                    "in configs/: au_guided_synthetic.py, "),
    ("--config=configs", "--config=configs is a folder"),
    ("--config=fer_jax/__init__.py", "config file fer_jax/__init__.py defines no get_config()"),
    ("--config=configs/synthetic.py:huge", "unknown config argument 'huge'"),
    ("--mode=explode", "explode"),
])
def test_bad_command_line_is_one_line(tmp_path, flag, message):
    command = _command(tmp_path, flag)
    if flag.startswith("--config="):  # replaces the smoke config and its override
        command = [sys.executable, "-m", "fer_jax.main", flag, f"--workdir={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=120)
    _assert_one_line_error(result, message)


def test_unwritable_workdir_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    _assert_one_line_error(_run(blocker / "run"), "cannot write to workdir")


def test_fewer_videos_than_the_batch_size_is_one_line(tmp_path):
    _assert_one_line_error(_run(tmp_path, "--config.dataset.train_videos=5"),
                           "has 5 videos but train.batch_size is 8")


def test_resuming_with_another_experiment_is_refused(reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    _assert_one_line_error(_run(workdir, "--config.model.kwargs.hidden_size=64"),
                           "different experiment (differs in model)")


def test_resuming_with_another_worker_count_names_the_one_to_use(reference, tmp_path):
    """Grain's saved iterator position depends on the worker count."""
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    _assert_one_line_error(_run(workdir, "--config.train.epochs=4", "--config.input.num_workers=0"),
                           "were written with input.num_workers=1; resume with "
                           "--config.input.num_workers=1")
