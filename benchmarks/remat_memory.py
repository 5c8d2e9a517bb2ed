"""Peak temporary memory of a compiled training step with and without rematerialisation.

    python benchmarks/remat_memory.py                       # TimeSformer, 64 frames
    python benchmarks/remat_memory.py --model resnet3d_18 --frames 32 --image-size 64
    python benchmarks/remat_memory.py --precision bfloat16 --policies nothing_saveable
    python benchmarks/remat_memory.py --keep-barriers      # the CPU compiler keeping remat

Compiles (never runs) one training step — forward, backward, AdamW update, donated parameters
and optimiser state — for ``model.remat=''`` and for ``model.remat='block'`` with each
``--policies`` entry, and prints XLA's ``compiled.memory_analysis()``: the temporary buffers
of the step (activations kept for the backward pass and scratch space; deterministic for a
given program and XLA version, unlike the process's resident memory) and the arguments
(parameters, optimiser state, batch). The ratio compares each temporary size with the one
without rematerialisation.

On the CPU backend XLA's ``cse_barrier_expander`` pass removes the optimisation barriers that
``jax.checkpoint`` places around a recomputed block (its ``prevent_cse``); without them the
compiler may merge the recomputation into the forward pass or run it early, and the compiled
step needs no less memory than without remat. ``--keep-barriers`` disables that pass
(``XLA_FLAGS=--xla_disable_hlo_passes=cse_barrier_expander``, set before JAX starts), which
shows the memory of the program remat asks for.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import sys

if "--keep-barriers" in sys.argv:  # before JAX reads XLA_FLAGS
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_disable_hlo_passes=cse_barrier_expander")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from fer_jax import experiment, models  # noqa: E402
from fer_jax.train import apply_model  # noqa: E402

MODELS = {  # small widths: the memory that remat saves grows with the clip, not the width
    "timesformer": dict(patch_size=8, hidden_size=64, num_layers=4, num_heads=4),
    "resnet3d_18": dict(width=0.25),
    "vgg16_3d": dict(width=0.125, fc_dim=256),
    "i3d": dict(width=0.25),
}


def memory(name: str, kwargs: dict, shape: tuple[int, ...], num_classes: int,
           precision: str) -> dict[str, int]:
    """``memory_analysis()`` sizes (bytes) of the compiled training step of a model."""
    model = models.build(name, num_classes=num_classes,
                         dtype=experiment.compute_dtype(precision), **kwargs)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = dict(jax.eval_shape(functools.partial(model.init, train=False),
                                    jax.random.PRNGKey(0), x))
    params = variables.pop("params")
    model_state = {k: v for k, v in variables.items() if k != "intermediates"}
    tx = optax.adamw(1e-4)
    labels = jnp.arange(shape[0]) % num_classes

    def step(params, opt_state, model_state, x):
        def loss_fn(p):
            logits, state = apply_model(model, p, model_state, x, train=True,
                                        rng=jax.random.PRNGKey(1))
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, state
        grads, state = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state

    compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(
        params, jax.eval_shape(tx.init, params), model_state, x).compile()
    analysis = compiled.memory_analysis()
    return {"temp": analysis.temp_size_in_bytes, "arguments": analysis.argument_size_in_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="timesformer", choices=sorted(MODELS))
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--precision", default="float32", choices=sorted(experiment.PRECISIONS))
    parser.add_argument("--policies", default="nothing_saveable,dots_saveable",
                        help="comma-separated jax.checkpoint_policies names for remat='block'")
    parser.add_argument("--keep-barriers", action="store_true",
                        help="keep jax.checkpoint's optimisation barriers on the CPU backend "
                             "(module docstring)")
    args = parser.parse_args()
    channels = 3
    shape = (args.batch, args.frames, args.image_size, args.image_size, channels)
    print(f"{args.model} {MODELS[args.model]}, input {shape}, {args.precision}; "
          f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()}), "
          f"JAX {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    settings = [("", "nothing_saveable")] + [("block", p) for p in args.policies.split(",")
                                             if p]
    baseline = None
    print(f"{'remat':<8s}{'policy':<34s}{'temp MiB':>10s}{'ratio':>8s}{'arguments MiB':>15s}")
    for remat, policy in settings:
        sizes = memory(args.model, dict(MODELS[args.model], remat=remat, remat_policy=policy),
                       shape, 7, args.precision)
        baseline = baseline or sizes["temp"]
        label = remat or "''"
        print(f"{label:<8s}{policy if remat else '-':<34s}"
              f"{sizes['temp'] / 2**20:>10.1f}{sizes['temp'] / baseline:>8.3f}"
              f"{sizes['arguments'] / 2**20:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
