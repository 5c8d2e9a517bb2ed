"""DeepLIFT with the rescale rule (Shrikumar et al. 2017), as Captum's ``DeepLift``.

DeepLIFT explains the difference ``f(x) − f(x')`` of the target logit between the input and a
reference ``x'`` (``baseline``, default zeros). Its *multipliers* ``m`` are a backward pass in
which every nonlinearity ``y = g(z)`` passes ``m_z = m_y · (g(z) − g(z')) / (z − z')`` (the
rescale rule, ``z'`` the value at the reference) and every linear layer its ordinary
gradient; the attribution is ``(x − x') · m``, channels summed, and it sums to the
difference: ``Σ deeplift = f(x) − f(x')`` (summation-to-delta), exactly for the networks
covered below, whatever their biases.

How, without touching the model
-------------------------------
The zoo's models call activations as functions (``nn.relu(x)``), which module interception
cannot reach. So the model's computation is traced once to a jaxpr (``jax.make_jaxpr`` of
``model.apply(variables, x, train=False)``) and evaluated here, equation by equation, on
``x`` and ``x'`` side by side: every value that depends on the input is held at both; a
nonlinearity applied to one is evaluated through a ``jax.custom_vjp`` whose backward is the
rule; everything else is evaluated by JAX itself and differentiated as usual. One forward
pass of each and one backward pass for the whole batch, under ``jax.jit`` and ``jax.vmap``.
Nested ``jit``, ``custom_jvp`` / ``custom_vjp`` functions (``nn.relu`` is one) and
``nn.remat`` blocks are evaluated inside.

Rules (Captum 0.9's, where the paper leaves a choice):

* elementwise ``max(z, c)`` / ``min(z, c)`` with ``c`` independent of the input (ReLU is
  ``max(z, 0)``), ``logistic`` (sigmoid) and ``tanh``: the rescale rule; where
  ``|z − z'| < eps`` the ordinary gradient (ReLU's is 0 at 0, as PyTorch's);
* max pooling (``reduce_window_max``: ``nn.max_pool``) and max reductions (``reduce_max``:
  ``jnp.max``, e.g. a global max pool): Captum's ``maxpool`` rule. With ``y``, ``y'`` the
  pooled values and ``u = max(y, y')``, the difference ``y − y'`` is split into ``u − y'``,
  sent to the window's maximum at ``x``, and ``y − u``, sent to the maximum at ``x'``
  (each by the pool's own gradient), and divided by ``z − z'`` (the ordinary gradient where
  ``|z − z'| < eps``). It conserves the difference like the rescale rule.
* linear operations (additions, products with values independent of the input, dot products,
  convolutions, reductions by sum, average pooling, reshapes, slices, padding, concatenation,
  BatchNorm in inference mode): their gradient.

Captum overrides only ``nn.Module`` nonlinearities it knows (functional ones silently get
plain gradients); here every nonlinearity applied to an input-dependent value must have a
rule, else ``UserError`` names it. Supported: networks of linear layers, ReLU, sigmoid, tanh
and max pooling — the zoo's ``c3d``, ``vgg16_3d``, ``i3d``, ``resnet3d_18`` (every
``pooling``), ``resnext3d_101``, ``resnet2d_50``, ``mini_xception``, ``scn``,
``early_fusion_cnn`` and ``tcn``, without an attention module. Refused: ``timesformer`` (GELU,
softmax attention and LayerNorm act on input-dependent values together) and the chapter-4
attention modules (a mask or attention weights multiply the features, the STN samples them).

Shapes: ``x`` the model's input ``[B, *positions, C]`` (``[B, T, H, W, C]`` video, ``[B, T, L,
2]`` landmarks); ``baseline`` broadcasts against it; ``deeplift`` returns ``[B, *positions]``
(the channel axis summed, so that the summation-to-delta holds on the map),
``deeplift_multipliers`` the multipliers ``m`` with the shape of ``x``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

from fer_jax.attribution.core import (Target, Variables, broadcast_baseline, inference_variables,
                                      target_logits)
from fer_jax.errors import UserError

# Nonlinear primitives with a rule: elementwise in one input-dependent operand ...
ELEMENTWISE = ("max", "min", "logistic", "tanh")
# ... and max pooling / reduction (Captum's maxpool rule).
POOLS = ("reduce_window_max", "reduce_max")
# Linear in their input-dependent operands (with the conditions of ``_linear_ok``).
LINEAR = frozenset((
    "add", "add_any", "sub", "neg", "mul", "div", "dot_general", "conv_general_dilated",
    "reduce_sum", "reduce_window_sum", "cumsum", "reshape", "transpose", "broadcast_in_dim",
    "squeeze", "expand_dims", "concatenate", "pad", "slice", "dynamic_slice",
    "dynamic_update_slice", "gather", "select_n", "convert_element_type", "copy", "copy_p",
    "rev", "reduce_precision", "split", "sharding_constraint"))
# Call-like primitives evaluated inside, and the parameter holding their jaxpr.
CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr",
         "core_call": "call_jaxpr", "custom_jvp_call": "call_jaxpr",
         "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
         "checkpoint": "jaxpr", "remat": "jaxpr", "remat2": "jaxpr"}
# Operands that must not depend on the input, by primitive (the rest may).
INDEPENDENT_OPERANDS = {"div": (1,), "select_n": (0,), "gather": (1,)}


def deeplift(model, variables: Variables, x: jnp.ndarray, target: Target = None,
             baseline: jnp.ndarray | float = 0.0, eps: float = 1e-10) -> jnp.ndarray:
    """DeepLIFT (rescale) ``Σ_c (x − x') · m`` ``[B, *positions]``; sums to
    ``f_t(x) − f_t(x')`` per example.

    ``baseline`` x' broadcasts against ``x`` (default zeros, Captum's); ``eps``: below this
    ``|z − z'|`` a nonlinearity passes its ordinary gradient (Captum's 1e-10). The target
    defaults to the class predicted for ``x``.
    """
    baseline = broadcast_baseline(baseline, x, "deeplift")
    multipliers = deeplift_multipliers(model, variables, x, target, baseline, eps)
    return ((x - baseline) * multipliers).sum(axis=-1)


def deeplift_multipliers(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                         baseline: jnp.ndarray | float = 0.0,
                         eps: float = 1e-10) -> jnp.ndarray:
    """DeepLIFT's multipliers ``m`` of the target logit with respect to ``x`` (shape of ``x``):
    the backward pass with the rescale and max-pooling rules, arguments as in ``deeplift``.
    Captum's ``DeepLift(model, multiply_by_inputs=False)`` returns these."""
    if not eps >= 0:
        raise UserError(f"deeplift eps must be >= 0, got {eps}")
    variables = inference_variables(variables)
    x = jnp.asarray(x)
    baseline = broadcast_baseline(baseline, x, "deeplift")
    leaves, tree = jax.tree.flatten(variables)
    shapes = [jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)) for a in leaves]
    closed = jax.make_jaxpr(
        lambda leaves, x: model.apply(jax.tree.unflatten(tree, leaves), x, train=False))(
        shapes, jax.ShapeDtypeStruct(x.shape, x.dtype))
    name = type(model).__name__

    def score(x):
        # The barrier ties the baseline to x: with the baseline and the variables constants
        # of a jit (closed over), XLA would otherwise fold the whole reference pass at
        # compile time, which takes minutes for a video CNN.
        reference = jax.lax.stop_gradient(jax.lax.optimization_barrier((x, baseline))[1])
        inputs = [(leaf, None) for leaf in leaves] + [(x, reference)]
        outputs = _evaluate(closed.jaxpr, closed.consts, inputs, eps, name)
        if len(outputs) != 1:
            raise UserError(f"deeplift needs a model returning one logits array, {name} "
                            f"returns {len(outputs)} arrays")
        return target_logits(outputs[0][0], target).sum()

    return jax.grad(score)(x)




Pair = tuple[Any, Any]  # (value at x, value at x' — None where it does not depend on x)


def _evaluate(jaxpr, consts: Sequence, inputs: Sequence[Pair], eps: float,
              name: str) -> list[Pair]:
    """``jaxpr`` on value pairs; returns the output pairs."""
    env: dict = {}

    def read(var) -> Pair:
        if isinstance(var, jax_core.Literal):
            return var.val, None
        return env[var]

    for var, value in zip(jaxpr.constvars, consts):
        env[var] = (value, None)
    for var, pair in zip(jaxpr.invars, inputs):
        env[var] = pair
    for eqn in jaxpr.eqns:
        pairs = [read(v) for v in eqn.invars]
        if all(ref is None for _, ref in pairs):
            outs = [(out, None) for out in _bind(eqn, [v for v, _ in pairs])]
        else:
            outs = _dependent(eqn, pairs, eps, name)
        for var, pair in zip(eqn.outvars, outs):
            env[var] = pair
    return [read(v) for v in jaxpr.outvars]


def _bind(eqn, values: Sequence) -> list:
    """The equation evaluated by JAX on ``values`` (its outputs as a list)."""
    params = eqn.primitive.get_bind_params(eqn.params)
    # JAX < 0.7 returned (subfuns, params); later versions keep the subfunctions in params
    subfuns, params = params if isinstance(params, tuple) else ((), params)
    out = eqn.primitive.bind(*subfuns, *values, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _dependent(eqn, pairs: list[Pair], eps: float, name: str) -> list[Pair]:
    """An equation with at least one input-dependent operand."""
    prim = eqn.primitive.name
    dependent = [i for i, (_, ref) in enumerate(pairs) if ref is not None]
    if prim in CALLS:
        inner = eqn.params[CALLS[prim]]
        consts = getattr(inner, "consts", [])
        return _evaluate(getattr(inner, "jaxpr", inner), consts, pairs, eps, name)
    at_ref = _bind(eqn, [v if ref is None else ref for v, ref in pairs])
    if prim in LINEAR and _linear_ok(prim, dependent):
        return list(zip(_bind(eqn, [v for v, _ in pairs]), at_ref))
    if (prim in ELEMENTWISE or prim in POOLS) and len(dependent) == 1 \
            and not eqn.primitive.multiple_results:
        (z, z_ref), index = pairs[dependent[0]], dependent[0]
        others = [v for i, (v, _) in enumerate(pairs) if i != index]

        def apply(z, *others):
            values = list(others)
            values.insert(index, z)
            return _bind(eqn, values)[0]

        if prim in ELEMENTWISE and at_ref[0].shape != jnp.shape(z):
            raise UserError(f"deeplift: {name} broadcasts an input-dependent value in "
                            f"{prim}, which the rescale rule does not cover")
        rule = _pool_rule if prim in POOLS else _rescale_rule
        y = rule(apply, prim, eps)(z, jax.lax.stop_gradient(z_ref), *others)
        return [(y, at_ref[0])]
    raise UserError(
        f"deeplift: {name} applies {prim!r} to input-dependent values (as GELU, softmax "
        "attention, LayerNorm, gating or attention masks do), which DeepLIFT's rescale rule "
        "does not cover; it explains networks of linear layers, ReLU, sigmoid, tanh and max "
        "pooling (the zoo's CNNs)")


def _linear_ok(prim: str, dependent: list[int]) -> bool:
    """Whether the primitive is linear in its input-dependent operands ``dependent``."""
    if prim in ("mul", "dot_general", "conv_general_dilated"):
        return len(dependent) == 1
    if prim in ("dynamic_slice", "dynamic_update_slice"):
        return all(i < (1 if prim == "dynamic_slice" else 2) for i in dependent)
    return not set(dependent) & set(INDEPENDENT_OPERANDS.get(prim, ()))


def _zeros(values):
    return [jnp.zeros_like(v) for v in values]


def _rescale_rule(apply, prim: str, eps: float):
    """``apply(z, *others)`` elementwise in ``z``, with the rescale rule as its backward."""

    @jax.custom_vjp
    def rescaled(z, z_ref, *others):
        return apply(z, *others)

    def forward(z, z_ref, *others):
        return apply(z, *others), (z, z_ref, others)

    def backward(residuals, g):
        z, z_ref, others = residuals
        if prim in ("max", "min"):  # ReLU-like: gradient 0 at the kink, as PyTorch's
            (c,) = others
            ordinary = jnp.where(z > c if prim == "max" else z < c, g, 0)
        else:
            ordinary = jax.vjp(lambda z: apply(z, *others), z)[1](g)[0]
        delta = z - z_ref
        safe = jnp.where(jnp.abs(delta) < eps, 1, delta)
        difference = apply(z, *others) - apply(z_ref, *others)
        m = jnp.where(jnp.abs(delta) < eps, ordinary, g * difference / safe)
        return (m.astype(z.dtype), jnp.zeros_like(z_ref), *_zeros(others))

    rescaled.defvjp(forward, backward)
    return rescaled


def _pool_rule(apply, prim: str, eps: float):
    """``apply(z, *others)`` a max pool / reduction of ``z``, with Captum's maxpool rule as
    its backward."""

    @jax.custom_vjp
    def pooled(z, z_ref, *others):
        return apply(z, *others)

    def forward(z, z_ref, *others):
        return apply(z, *others), (z, z_ref, others)

    def backward(residuals, g):
        z, z_ref, others = residuals
        y, pull = jax.vjp(lambda z: apply(z, *others), z)
        y_ref, pull_ref = jax.vjp(lambda z: apply(z, *others), z_ref)
        top = jnp.maximum(y, y_ref)
        unpooled = pull(g * (top - y_ref))[0] + pull_ref(g * (y - top))[0]
        delta = z - z_ref
        safe = jnp.where(jnp.abs(delta) < eps, 1, delta)
        m = jnp.where(jnp.abs(delta) < eps, pull(g)[0], unpooled / safe)
        return (m.astype(z.dtype), jnp.zeros_like(z_ref), *_zeros(others))

    pooled.defvjp(forward, backward)
    return pooled
