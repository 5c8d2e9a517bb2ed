"""What checkpoint verification costs on the default run (configs/synthetic.py).

Times, on the default experiment's train state (TimeSformer, AdamW state included):
  * one checkpoint save, the way the trainer saves (asynchronous Orbax save + wait), with the
    array fingerprints it now computes;
  * the fingerprints alone (one jitted reduction and a transfer of one integer per array);
  * the check for NaN / infinity done before each save;
  * a restore of the newest checkpoint, with and without its verification.
Prints seconds per call and the ratios to the save.

    python benchmarks/checkpoint_integrity.py [--config=configs/synthetic.py] [--repeats=10]
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import seconds_per_call  # noqa: E402

from fer_jax import checkpointing, experiment, train  # noqa: E402


def _config(path: str):
    spec = importlib.util.spec_from_file_location("config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path(
            "/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/synthetic.py")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    config = _config(args.config)
    workdir = Path(tempfile.mkdtemp(prefix="integrity_"))
    try:
        run = experiment.Run(config, str(workdir))
        tx, _ = train.make_optimizer(config, 100)
        params, model_state = jax.jit(run.init_variables)(jax.random.PRNGKey(0))
        state = train.TrainState(jnp.int32(0), params, model_state, tx.init(params),
                                 jax.random.PRNGKey(1))
        arrays = len(jax.tree.leaves(state))
        size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
        checkpoints = checkpointing.Checkpoints(workdir, 2)
        progress = {"epoch": 0, "history": [], "best": None, "best_epoch": None,
                    "epochs_without_improvement": 0, "stopped": None, "train_sums": None}
        steps = iter(range(1, 10 ** 6))

        def save():
            checkpoints.save(next(steps), state, {"position": 1}, progress)
            checkpoints.wait()

        timings = {
            "checkpoint save (with fingerprints)": seconds_per_call(save, args.repeats),
            "fingerprints alone": seconds_per_call(lambda: checkpointing.fingerprints(state),
                                                   args.repeats),
            "NaN / infinity check": seconds_per_call(
                lambda: checkpointing.all_finite((state.params, state.model_state,
                                                  state.opt_state)), args.repeats),
        }
        newest = max(checkpoints.latest.all_steps())
        import orbax.checkpoint as ocp
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)

        def restore(verify: bool):
            restored = checkpoints.latest.restore(newest, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()))
            if verify:
                checkpointing._verify(restored.state, restored.progress["fingerprints"])

        timings["restore"] = seconds_per_call(lambda: restore(False), args.repeats)
        timings["restore + verification"] = seconds_per_call(lambda: restore(True),
                                                             args.repeats)
        checkpoints.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{config.model.name} train state: {arrays} arrays, {size / 2**20:.2f} MiB; "
          f"{jax.devices()[0].platform} ({_cpu()}), {args.repeats} repeats")
    save_time = timings["checkpoint save (with fingerprints)"]
    for name, seconds in timings.items():
        print(f"  {name:<38s} {seconds * 1e3:9.2f} ms   {seconds / save_time:6.3f} × save")


if __name__ == "__main__":
    main()
