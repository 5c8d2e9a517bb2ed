"""Robustness corpus, workdirs: one writer per workdir (real processes), readers that change
nothing, checkpoints verified before they are trusted, atomic files, a full disk, Ctrl-C,
and the bad weights and converter inputs that used to give tracebacks."""
import errno
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import config_files
import shared_runs
from fast import fast_jit
from fer_jax import atomic_files, checkpointing, experiment, explain, predict, train
from fer_jax.errors import UserError
from fer_jax.models import pretrained
from fer_jax.models.convert import __main__ as convert_cli
from fer_jax.workdir_lock import LOCK_FILE, WorkdirLock

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]
SMOKE = "--config=configs/synthetic.py:smoke"


_smoke = config_files.smoke


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch smoke run: checkpoints 4 and 6, best 6."""
    workdir = tmp_path_factory.mktemp("trained")
    train.train_and_evaluate(_smoke(), str(workdir))
    return workdir


def _copy(trained, tmp_path) -> Path:
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


# ``python -m fer_jax.main`` with Ctrl-C handled as in a terminal, even where the tests run
# with SIGINT ignored (a background job, nohup), which the run would otherwise keep ignoring.
_AS_FROM_A_TERMINAL = ("import runpy, signal; signal.signal(signal.SIGINT, "
                       "signal.default_int_handler); runpy.run_module('fer_jax.main', "
                       "run_name='__main__', alter_sys=True)")


def _cli(workdir, *args, terminal: bool = False, **popen):
    start = ["-c", _AS_FROM_A_TERMINAL] if terminal else ["-m", "fer_jax.main"]
    return subprocess.Popen([sys.executable, *start, SMOKE, f"--workdir={workdir}", *args],
                            cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def _wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- one writer
def test_one_writer_ctrl_c_saves_and_a_killed_writer_releases_the_lock(tmp_path):
    workdir = tmp_path / "run"
    first = _cli(workdir, "--config.train.epochs=200", terminal=True)
    lock = WorkdirLock(workdir)
    checkpoints = workdir / "checkpoints"
    _wait_for(lambda: checkpoints.is_dir() and any(p.name.isdigit() for p in
                                                    checkpoints.iterdir()), "a checkpoint")
    assert lock.holder()["pid"] == first.pid
    # Paused (SIGSTOP) while the other runs look at its workdir: it keeps its lock and its
    # half-written files, and leaves the two cores to them.
    first.send_signal(signal.SIGSTOP)
    # A second training of the same workdir is refused at once, naming the holder.
    second = _cli(workdir, "--config.train.epochs=200")
    _, err = shared_runs.finish(second, 300)
    assert second.returncode == 2, err[-2000:]
    assert f"is being written by another run (pid {first.pid}" in _last_line(err)
    assert "Traceback" not in err
    # A reader may look while it trains: it leaves Orbax's temporary folders alone.
    in_progress = checkpoints / "999.orbax-checkpoint-tmp"
    in_progress.mkdir()
    reader = _cli(workdir, "--mode=eval")
    _, err = shared_runs.finish(reader, 300)
    assert reader.returncode == 0, err[-2000:]
    assert in_progress.is_dir()
    # Ctrl-C: a checkpoint at the end of the step in progress, one line, status 130.
    first.send_signal(signal.SIGCONT)
    first.send_signal(signal.SIGINT)
    _, err = shared_runs.finish(first, 300)
    assert first.returncode == 130, err[-2000:]
    assert "stopped by Ctrl-C after step" in _last_line(err) and "Traceback" not in err
    step = int(_last_line(err).split("after step ")[1].split(";")[0])
    assert (checkpoints / str(step)).is_dir()
    # A writer killed with SIGKILL leaves no lock behind: the next run resumes.
    killed = _cli(workdir, "--config.train.epochs=200")
    _wait_for(lambda: lock.holder().get("pid") == killed.pid, "the lock to change hands")
    killed.kill()
    killed.wait()
    # (a run already past train.epochs=1 is refused on its merits, not for the lock)
    again = subprocess.run([sys.executable, "-m", "fer_jax.main", SMOKE,
                            f"--workdir={workdir}", "--config.train.epochs=1"], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    if again.returncode == 2:
        assert "past train.epochs=1; raise --config.train.epochs" in _last_line(again.stderr)
    else:
        assert again.returncode == 0 and "Resumed from step" in again.stdout, again.stderr


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    with WorkdirLock(tmp_path):
        with pytest.raises(UserError, match=f"pid {os.getpid()}"):
            WorkdirLock(tmp_path).acquire()
    WorkdirLock(tmp_path).acquire().release()  # released on exit
    assert (tmp_path / LOCK_FILE).is_file()


# --------------------------------------------------------------------------- readers
def test_readers_create_move_and_delete_nothing(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    for folder in ("checkpoints", "best"):
        (workdir / folder / "8.orbax-checkpoint-tmp").mkdir()
    config = _smoke(**{"explain.videos": "0", "explain.methods": "grad_cam"})
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                    if p.parts[-2] in ("checkpoints", "best") or "orbax" in p.name)
    experiment.evaluate(config, str(workdir))
    explain.explain(config, str(workdir))
    after = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                   if p.parts[-2] in ("checkpoints", "best") or "orbax" in p.name)
    assert before == after


def test_init_from_relative_workdir_and_folders_that_are_not_runs(trained, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained, tmp_path / "pretrained_run")
    result = train.train_and_evaluate(_smoke(**{"model.init_from": "pretrained_run"}),
                                      str(tmp_path / "fine_tuned"))
    assert result["stopped"] == "completed"
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(UserError, match="no readable checkpoint in"):
        train.train_and_evaluate(_smoke(**{"model.init_from": "not_a_run"}),
                                 str(tmp_path / "w1"))
    assert list((tmp_path / "not_a_run").iterdir()) == []  # nothing created inside


def test_init_from_weights_that_are_not_usable(tmp_path):
    listed = tmp_path / "list.msgpack"
    listed.write_bytes(flax.serialization.msgpack_serialize(
        {"model": {"name": "timesformer", "kwargs": "{}"}, "variables": [1, 2, 3]}))
    with pytest.raises(UserError, match="is not a converted-weights file"):
        pretrained.load(listed)
    config = _smoke()
    run = experiment.Run(config, str(tmp_path / "w"))
    params, state = fast_jit(run.init_variables)(jax.random.PRNGKey(0))
    variables = jax.device_get({"params": params, **state})
    kernel = variables["params"]["classifier"]["kernel"]
    variables["params"]["classifier"]["kernel"] = np.full_like(kernel, np.nan)
    path = pretrained.save(tmp_path / "nan.msgpack", variables, "timesformer", {})
    with pytest.raises(UserError, match="NaN or infinite values in 1 array"):
        train.train_and_evaluate(_smoke(**{"model.init_from": str(path)}),
                                 str(tmp_path / "w2"))


# --------------------------------------------------------------------------- checkpoints
def _newest(workdir: Path) -> int:
    return max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_flipped_bytes_in_an_array_are_caught_and_quarantined(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    step = _newest(workdir)
    chunks = workdir / "checkpoints" / str(step) / "state" / "ocdbt.process_0" / "d"
    largest = max(chunks.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    largest.write_bytes(bytes(data))
    result = train.train_and_evaluate(_smoke(**{"train.epochs": 2}), str(workdir))
    assert result["stopped"] == "completed"
    assert (workdir / "corrupt_checkpoints" / str(step)).is_dir()


@pytest.mark.parametrize("item, content", [("progress", {}), ("data", {"bad": 1})])
def test_json_items_with_the_wrong_content_are_unreadable(trained, tmp_path, item, content):
    workdir = _copy(trained, tmp_path)
    step = _newest(workdir)
    (workdir / "checkpoints" / str(step) / item / "metadata").write_text(json.dumps(content))
    result = train.train_and_evaluate(_smoke(**{"train.epochs": 2}), str(workdir))
    assert result["stopped"] == "completed"
    assert (workdir / "corrupt_checkpoints" / str(step)).is_dir()


def test_a_diverging_state_is_never_checkpointed(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    steps = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    config = _smoke(**{"train.epochs": 3, "optimizer.learning_rate": 1e30,
                       "optimizer.grad_clip_norm": 0.0, "train.log_every_steps": 100})
    with pytest.raises(train.TrainingDiverged, match=r"the last good checkpoint \(step 6\)"):
        train.train_and_evaluate(config, str(workdir))
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == steps
    restored = checkpointing.Checkpoints(workdir, 2, read_only=True).restore_variables(
        None)[0]
    assert checkpointing.all_finite(restored)


def test_config_json_of_a_refused_run_is_not_written(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    saved = (workdir / "config.json").read_bytes()
    with pytest.raises(UserError, match="different experiment"):
        train.train_and_evaluate(_smoke(**{"seed": 7}), str(workdir))
    assert (workdir / "config.json").read_bytes() == saved


# --------------------------------------------------------------------------- disk full
def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_checkpoints(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    (workdir / "metrics.json").unlink()
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    # A file-size limit of 60 kB stands in for a full disk: the checkpoint's array files
    # cannot be written (EFBIG; SIGXFSZ ignored so that the write fails instead of the process).
    command = " ".join([sys.executable, "-m", "fer_jax.main", SMOKE, f"--workdir={workdir}",
                        "--config.train.epochs=3"])
    result = subprocess.run(["bash", "-c", f"trap '' XFSZ; ulimit -f 59; exec {command}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fer_jax: error: disk full"), lines[:5]
    assert "previous checkpoints" in lines[0]
    kept = [p for p in sorted(p.name for p in (workdir / "checkpoints").iterdir())
            if p.isdigit()]
    assert set(before) <= set(kept)
    # and the same command resumes once there is room
    resumed = train.train_and_evaluate(_smoke(**{"train.epochs": 3}), str(workdir))
    assert resumed["stopped"] == "completed"


def test_json_files_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_files.write_json(path, {"best": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match="disk full: cannot write"):
        atomic_files.write_json(path, {"best": 2})
    assert json.loads(path.read_text()) == {"best": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_a_sweep_treats_an_unreadable_metrics_file_as_not_done(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "launch"))
    import sweep

    run = sweep.plan(["configs/synthetic.py:smoke"], ["0"], [])[0]
    workdir = tmp_path / run.name
    workdir.mkdir(parents=True)
    (workdir / "metrics.json").write_text("")  # what a full disk used to leave
    calls = []
    runner = sweep.Runner(tmp_path, [sweep.TRAIN], [], 1, False)
    monkeypatch.setattr(runner, "_call", lambda argv, log: calls.append(argv) or 0)
    runner.execute(1, run)
    assert calls and "--mode=eval" not in calls[0]
    assert sweep.run_metrics(workdir)["best val acc"] is None


# --------------------------------------------------------------------------- converters
def test_converter_inputs_that_used_to_give_tracebacks(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"patch_size": 16}))
    (hf / "model.safetensors").write_bytes(b"garbage" * 10)
    no_hidden = tmp_path / "hf2"
    no_hidden.mkdir()
    (no_hidden / "config.json").write_text(json.dumps({"patch_size": 16}))
    from safetensors.numpy import save_file
    save_file({"x": np.zeros(2, np.float32)}, str(no_hidden / "model.safetensors"))
    for argv, fragment in ((["vgg16", str(tensor)], "a state dict"),
                           (["hf", str(hf)], "cannot read"),
                           (["hf", str(no_hidden)], "lacks hidden_size")):
        assert convert_cli.main([*argv, str(tmp_path / "out.msgpack")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and fragment in err, err


def test_predictions_of_a_workdir_do_not_need_its_lock(trained, tmp_path):
    """``--mode=predict`` is a reader: it runs while the workdir's writer lock is held."""
    workdir = _copy(trained, tmp_path)
    media = Path(importlib.util.find_spec("feat").origin).parent
    config = _smoke(**{"explain.methods": "grad_cam"})
    config.predict.update(input=str(media / "tests" / "data" / "single_face.jpg"), upsample=0,
                          overlay=False)
    with WorkdirLock(workdir):
        summary = predict.run(config, str(workdir))["results"][0]
    assert summary["status"] == "ok"


def test_fingerprints_computed_in_host_memory_equal_the_compiled_ones():
    """Arrays in host memory are summed by NumPy; the values are those of the jitted sums that
    arrays on accelerators get (and that checkpoints already hold), for every dtype a state
    has, 64-bit NumPy leaves narrowed as JAX narrows them."""
    rng = np.random.default_rng(0)
    tree = {"f32": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
            "bf16": jnp.asarray(rng.normal(size=7), jnp.bfloat16),
            "f16": jnp.asarray(rng.normal(size=(4, 4)), jnp.float16),
            "i8": jnp.asarray(rng.integers(-100, 100, 9), jnp.int8),
            "u8": jnp.asarray(rng.integers(0, 255, 9), jnp.uint8),
            "flags": jnp.asarray(rng.random(6) > 0.5),
            "i32": jnp.asarray(rng.integers(-2**31, 2**31 - 1, 5), jnp.int32),
            "step": jnp.int32(7), "numpy_f64": rng.normal(size=3), "numpy_i64": np.arange(4),
            "large": jnp.asarray(rng.normal(size=70_000), jnp.float32)}
    host = checkpointing.fingerprints(tree)
    assert host == checkpointing.fingerprints(tree, compiled=False)
    assert host == checkpointing.fingerprints(tree, compiled=True)
    assert len(set(host.values())) == len(host)  # distinct arrays, distinct sums
    flipped = np.asarray(tree["large"]).copy()
    flipped.view(np.uint32)[12_345] ^= 1 << 7  # one bit
    assert checkpointing.fingerprints({"large": flipped})["large"] != host["large"]
    assert checkpointing.all_finite(tree)
    assert not checkpointing.all_finite({"x": jnp.array([1.0, np.inf])})
