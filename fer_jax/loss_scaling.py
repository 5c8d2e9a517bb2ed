"""Dynamic loss scaling for float16 training (``model.precision='float16'``), with jmp's
``DynamicLossScale``.

float16 has 5 exponent bits: gradients below ~6e-8 flush to zero and values above 65504
overflow. The loss is multiplied by a scale S before the backward pass (so small gradients
stay representable in the float16 activations' backward) and the float32 parameter
gradients are divided by S after it. When any gradient is non-finite the step is skipped —
parameters, optimiser state and model state (BatchNorm statistics) stay as they were — and S
is halved (``factor``); after ``period`` finite steps in a row S is doubled. This is the
standard dynamic loss scaling (Micikevicius et al., "Mixed precision training", 2018; jmp's
``DynamicLossScale``, PyTorch's ``GradScaler``).

The state is part of ``train.TrainState`` (``loss_scale``), so a resumed run continues with
the scale it had; it is a dict of two scalars,

  scale    float32 []  the current loss scale S
  counter  int32 []    finite steps since S last changed (jmp's ``counter``)

carried unchanged by float32 and bfloat16 runs (so any run may be resumed in another
precision; a float32 run resumed in float16 starts from the ``initial`` scale the run was
created with). The settings are
``config.optimizer.loss_scale``: ``initial`` (2**15), ``period`` (2000), ``factor`` (2).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import jmp
import numpy as np

from fer_jax.errors import UserError

# jmp's documented defaults (DynamicLossScale's docstring: 2**15, period 2000, factor 2).
DEFAULTS = {"initial": 2.0 ** 15, "period": 2000, "factor": 2}


def settings(config) -> dict:
    """``config.optimizer.loss_scale`` with ``DEFAULTS`` for fields a config lacks (one
    written before float16 training existed), checked: one-line UserError for bad values."""
    given = dict(config.optimizer.get("loss_scale") or {})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise UserError(f"unknown optimizer.loss_scale field {sorted(unknown)[0]!r}; use "
                        f"{', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **given}
    initial, period, factor = merged["initial"], merged["period"], merged["factor"]
    if not (np.isfinite(initial) and 1 <= initial <= 2.0 ** 64):
        raise UserError(f"optimizer.loss_scale.initial must be a number in [1, 2**64], got "
                        f"{initial}")
    if int(period) != period or period < 1:
        raise UserError(f"optimizer.loss_scale.period must be a positive integer, got {period}")
    if int(factor) != factor or factor < 2:
        raise UserError(f"optimizer.loss_scale.factor must be an integer >= 2, got {factor}")
    return {"initial": float(initial), "period": int(period), "factor": int(factor)}


def enabled(config) -> bool:
    """Whether ``config`` trains with loss scaling (``model.precision='float16'``)."""
    return config.model.get("precision", "float32") == "float16"


def initial_state(config=None) -> dict:
    """The loss-scale state of a fresh run: ``{'scale': float32 [], 'counter': int32 []}``
    (``DEFAULTS['initial']`` without a config)."""
    initial = settings(config)["initial"] if config is not None else DEFAULTS["initial"]
    return {"scale": jnp.float32(initial), "counter": jnp.int32(0)}


def _dynamic(state: dict, config) -> jmp.DynamicLossScale:
    s = settings(config)
    return jmp.DynamicLossScale(state["scale"], state["counter"], period=s["period"],
                                factor=s["factor"])


def value_and_grad(loss_fn: Callable, params, state: dict, config):
    """``jax.value_and_grad(loss_fn, has_aux=True)(params)`` with the loss scaled by
    ``state['scale']`` before the backward pass and the gradients unscaled after it →
    ``((loss, aux), grads, finite)``: ``loss`` unscaled, ``grads`` float32 like ``params``,
    ``finite`` bool [] — whether every gradient is finite."""
    scale = _dynamic(state, config)

    def scaled(p):
        loss, aux = loss_fn(p)
        return scale.scale(loss), (loss, aux)

    (_, (loss, aux)), grads = jax.value_and_grad(scaled, has_aux=True)(params)
    grads = scale.unscale(grads)
    return (loss, aux), grads, jmp.all_finite(grads)


def next_state(state: dict, finite: jnp.ndarray, config) -> dict:
    """The loss-scale state after a step whose gradients were ``finite`` (bool []): the
    scale halved on a non-finite step, doubled after ``period`` finite steps in a row (not
    past float32's range), else kept."""
    adjusted = _dynamic(state, config).adjust(finite)
    return {"scale": adjusted.loss_scale.astype(jnp.float32),
            "counter": adjusted.counter.astype(jnp.int32)}


def keep_if_finite(finite: jnp.ndarray, updated, previous):
    """``updated`` where ``finite`` (bool []) is true, else ``previous`` (same pytree
    structure): a skipped step leaves parameters and optimiser state unchanged."""
    return jmp.select_tree(finite, updated, previous)
