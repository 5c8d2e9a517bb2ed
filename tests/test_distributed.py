"""Several processes, one run: a 2-process CPU run on localhost (JAX's distributed runtime,
Gloo collectives) ends with the parameters of a 1-process run with the same global batch —
with the score-table sampler, whose updates every process applies, so the clips drawn (and
hence the parameters) only match when the tables stay identical across processes."""
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import shared_runs
from fer_jax import checkpointing, distributed
from fer_jax.data import pipeline, sources
from fer_jax.errors import UserError

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]
# Stochastic softmax, 3 epochs: warm-up, exploration, exploitation (draws from the table); the
# 2-process run saves at the epoch ends only.
SMOKE = shared_runs.SAMPLER_SMOKE + ["--config.train.checkpoint_every_steps=0"]
_env = shared_runs.one_device_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_together(commands: list[list[str]], logs: Path, timeout: float
                  ) -> list[tuple[str, str]]:
    """Runs ``commands`` at once and returns each one's (stdout, stderr); fails the test if
    any exits non-zero, or if they have not all ended ``timeout`` seconds after the start —
    then with the Python stack of every thread of each process that was still running
    (``shared_runs.abort_for_stacks``), so that a hang says where each process waited. Output
    goes to files, never to pipes that a blocked reader could fill."""
    logs.mkdir(parents=True, exist_ok=True)
    files = [(logs / f"{i}.out", logs / f"{i}.err") for i in range(len(commands))]
    processes = []
    for command, (out, err) in zip(commands, files):
        with open(out, "w") as stdout, open(err, "w") as stderr:
            processes.append(subprocess.Popen(command, cwd=REPO, env=_env(), stdout=stdout,
                                              stderr=stderr, text=True))
    deadline, hung = time.monotonic() + timeout, []
    for i, process in enumerate(processes):
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            hung.append(i)
    for i in hung:  # every thread's Python stack to its stderr file, then the end
        shared_runs.abort_for_stacks(processes[i])
    outputs = [(out.read_text(), err.read_text()) for out, err in files]
    report = "\n".join(f"--- process {i} (exit {p.returncode}): stdout\n{out[-1500:]}\n"
                       f"--- process {i}: stderr\n{err[-6000:]}"
                       for i, (p, (out, err)) in enumerate(zip(processes, outputs)))
    assert not hung, f"processes {hung} still ran after {timeout:g} s\n{report}"
    assert all(p.returncode == 0 for p in processes), report
    return outputs


def _params(workdir):
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    variables, _, step = checkpointing.Checkpoints(workdir, 2).restore_variables(
        device, prefer_best=False)
    return step, variables


# One case: the sampler run uses every part of a plain multi-process run (distributed start-up,
# each process loading its rows of the global batch, collective checkpoints and metrics) and
# adds the score tables that every process must keep identical; how the rows of a plain batch
# are split is tested on its own below.
@pytest.mark.parametrize("smoke, steps", [pytest.param(SMOKE, 9, id="stochastic softmax")])
def test_two_processes_match_one_process(tmp_path, tmp_path_factory, smoke, steps):
    # The one-process run is the sampler tests' reference (a checkpoint every 2 steps, which
    # resumes bit-identically, so it ends with the same parameters as saving at epoch ends).
    one = shared_runs.sampler_reference(tmp_path_factory)
    command = [sys.executable, "-m", "fer_jax.main", *smoke]
    address = f"localhost:{_free_port()}"
    outputs = _run_together([
        command + [f"--workdir={tmp_path / 'two'}", f"--coordinator_address={address}",
                   "--num_processes=2", f"--process_id={i}"] for i in range(2)],
        tmp_path / "logs", timeout=300)
    assert "on 2 cpu device(s)" in outputs[0][0]
    (step_one, a), (step_two, b) = _params(one), _params(tmp_path / "two")
    assert step_one == step_two == steps
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (one, tmp_path / "two")]
    assert metrics[0]["final_validation"]["count"] == metrics[1]["final_validation"]["count"]
    assert metrics[1]["final_validation"]["accuracy"] == pytest.approx(
        metrics[0]["final_validation"]["accuracy"])
    if "sampler" in metrics[0]:
        tables = [m["sampler"]["table_vs_intensity"] for m in metrics]
        assert tables[1] == pytest.approx(tables[0])  # the learned score tables agree


def test_processes_load_the_rows_of_the_one_process_batches():
    from fer_jax import configs
    config = configs.defaults()
    configs.smoke(config, model_kwargs={})
    source = sources.build(config, "train")

    def batches(**kw):
        dataset = pipeline.train_dataset(source, config, 1, seed=3, **kw)
        return [b for b, _ in zip(dataset, range(2))]

    whole = batches()
    parts = [batches(process_index=i, process_count=2) for i in range(2)]
    for g, batch in enumerate(whole):
        for key in ("video", "label", "index"):
            np.testing.assert_array_equal(
                batch[key], np.concatenate([parts[0][g][key], parts[1][g][key]]))
    with pytest.raises(UserError, match="not divisible by the 3 processes"):
        pipeline.train_dataset(source, config, 1, seed=3, process_index=0, process_count=3)


def test_orbax_synchronises_through_the_coordination_service():
    """Orbax's barriers are no XLA collective in a multi-process run (they could interleave
    with the training step's all-reduce in opposite orders on two processes)."""
    from absl import flags
    from orbax.checkpoint._src.multihost import multihost
    before = flags.FLAGS.experimental_orbax_use_distributed_barrier
    try:
        distributed.use_coordination_barriers()
        assert multihost.EXPERIMENTAL_ORBAX_USE_DISTRIBUTED_BARRIER.value is True
    finally:
        flags.FLAGS.experimental_orbax_use_distributed_barrier = before


def test_flag_combinations_are_checked():
    with pytest.raises(UserError, match="need --coordinator_address"):
        distributed.initialize(None, 2, 0)
    with pytest.raises(UserError, match="needs --num_processes and --process_id"):
        distributed.initialize("localhost:1234", None, None)
    with pytest.raises(UserError, match="must lie in 0..1"):
        distributed.initialize("localhost:1234", 2, 2)
    distributed.initialize(None, None, None)  # one process: nothing to do
