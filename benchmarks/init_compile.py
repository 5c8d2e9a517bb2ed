"""Compile and run time of a model's initialisation: XLA's default CPU optimisation against the
options of ``fer_jax.run_once`` (programs that run once), in the same process.

    python benchmarks/init_compile.py                    # the zoo at its benchmark sizes
    python benchmarks/init_compile.py --models i3d timesformer_base

For each model it lowers ``model.init`` once, then compiles it with XLA's defaults and with
``run_once.RUN_ONCE_OPTIONS`` (the order alternating between models, so that a slower or
busier half of the run does not favour one side) and runs each compiled program once. Times
are CPU seconds of this process (``time.process_time``: compilation is mostly one thread,
other jobs on the machine disturb it less than wall time). Prints one row per model and the
ratio default / run-once of compile + run. Run it without ``XLA_FLAGS`` (the test suite's
flags would change the baseline).
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp

from fer_jax import models, run_once
from models import ZOO
from timing import cpu_name

SIZES = {**ZOO, "timesformer_base": (dict(), (8, 224, 224, 3))}


def _init_times(model, x, options) -> tuple[float, float]:
    """(compile, first run) CPU seconds of ``jit(model.init)`` under ``options``."""
    lowered = jax.jit(model.init, compiler_options=options).lower(jax.random.PRNGKey(0), x)
    start = time.process_time()
    compiled = lowered.compile()
    compiled_at = time.process_time()
    jax.block_until_ready(compiled(jax.random.PRNGKey(0), x))
    return compiled_at - start, time.process_time() - compiled_at


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    if "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", ""):
        raise SystemExit("unset XLA_FLAGS: it sets the optimisation level of both sides")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; jax {jax.__version__}; "
          f"run-once options {run_once.RUN_ONCE_OPTIONS}")
    print(f"{'model':18s} {'default compile':>15s} {'run':>6s} {'run-once compile':>16s} "
          f"{'run':>6s} {'ratio':>6s}")
    totals = [0.0, 0.0]
    for i, name in enumerate(args.models):
        kwargs, shape = SIZES[name]
        model = models.build(name.removesuffix("_base"), num_classes=7, **kwargs)
        x = jnp.zeros((1,) + shape, jnp.float32)
        if i % 2 == 0:
            default = _init_times(model, x, None)
            once = _init_times(model, x, run_once.RUN_ONCE_OPTIONS)
        else:
            once = _init_times(model, x, run_once.RUN_ONCE_OPTIONS)
            default = _init_times(model, x, None)
        totals[0] += sum(default)
        totals[1] += sum(once)
        print(f"{name:18s} {default[0]:14.2f}s {default[1]:5.2f}s {once[0]:15.2f}s "
              f"{once[1]:5.2f}s {sum(default) / sum(once):5.2f}x")
    print(f"{'all':18s} {totals[0]:21.2f}s {totals[1]:22.2f}s {totals[0] / totals[1]:5.2f}x")


if __name__ == "__main__":
    main()
