"""Input-gradient attributions: saliency, input × gradient, integrated gradients, SmoothGrad.

All take ``x [B, *positions, C]`` (video ``[B, T, H, W, C]``, landmarks ``[B, T, L, 2]``) and
return one value per position, ``[B, *positions]``: the channel axis is reduced by the maximum
of absolute values (saliency, SmoothGrad) or by the sum (the signed methods, so that sums over
positions keep their meaning, e.g. integrated gradients' completeness).

* saliency (Simonyan et al. 2014): ``max_c |∂y_t/∂x|``.
* input × gradient (Shrikumar et al. 2016): ``Σ_c x · ∂y_t/∂x``.
* integrated gradients (Sundararajan et al. 2017): ``Σ_c (x − x') · ∫₀¹ ∂y_t/∂x(x' + α(x − x')) dα``
  with the integral by Gauss–Legendre quadrature on ``steps`` nodes, which is exact for
  polynomials of degree ``2·steps − 1`` along the path; completeness
  ``Σ IG = y_t(x) − y_t(x')`` holds to the quadrature error.
* SmoothGrad (Smilkov et al. 2017): saliency of the mean gradient over ``samples`` copies of ``x``
  with Gaussian noise of standard deviation ``noise_level · (max x − min x)`` per example. The
  noise draws come from ``rng`` and are shared by the examples of the batch, so an example's map
  does not depend on which batch it is in.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.attribution.core import (Target, Variables, inference_variables, input_gradients,
                                     target_index)
from fer_jax.errors import UserError


def saliency(model, variables: Variables, x: jnp.ndarray, target: Target = None) -> jnp.ndarray:
    """``max_c |∂y_t/∂x|`` ``[B, *positions]``."""
    grads, _ = input_gradients(model, variables, x, target)
    return jnp.abs(grads).max(axis=-1)


def input_x_gradient(model, variables: Variables, x: jnp.ndarray,
                     target: Target = None) -> jnp.ndarray:
    """``Σ_c x · ∂y_t/∂x`` ``[B, *positions]``."""
    grads, _ = input_gradients(model, variables, x, target)
    return (x * grads).sum(axis=-1)


def _path_gradients(model, variables, points: jnp.ndarray, target: jnp.ndarray,
                    chunk: int | None) -> jnp.ndarray:
    """Gradients at ``points [K, B, ...]`` for targets ``[B]``: ``[K, B, ...]``.

    The K·B inputs run as one batch, or ``chunk`` points (of B examples each) at a time. The
    chunks are unrolled when traced (XLA's CPU backend runs a ``lax.map`` loop of the same
    work about 1.6× slower), so compile time grows with their number.
    """
    num, batch = points.shape[:2]
    chunk = num if chunk is None else max(1, min(chunk, num))
    if num % chunk:
        raise UserError(f"internal_batch_size {chunk} must divide the number of points {num}")
    grouped = points.reshape(num // chunk, chunk * batch, *points.shape[2:])
    targets = jnp.tile(target, chunk)
    grads = jnp.stack([input_gradients(model, variables, p, targets)[0] for p in grouped])
    return grads.reshape(points.shape)


def integrated_gradients(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                         baseline: jnp.ndarray | float = 0.0, steps: int = 16,
                         internal_batch_size: int | None = None) -> jnp.ndarray:
    """Integrated gradients ``Σ_c (x − x') · mean path gradient`` ``[B, *positions]``.

    ``baseline`` x' broadcasts against ``x`` (default black video). ``steps`` Gauss–Legendre
    nodes; the ``steps · B`` path points run as one batch, or ``internal_batch_size`` nodes at a
    time (must divide ``steps``) to bound memory. The target defaults to the class predicted
    for ``x`` (not for the path points).
    """
    if steps < 1:
        raise UserError(f"integrated gradients needs steps >= 1, got {steps}")
    target = target_index(model.apply(inference_variables(variables), x, train=False), target)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = jnp.asarray((nodes + 1) / 2, x.dtype)  # nodes on [0, 1]
    weights = jnp.asarray(weights / 2, x.dtype)  # sum to 1
    baseline = jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
    shape = (steps,) + (1,) * x.ndim
    points = baseline + alphas.reshape(shape) * (x - baseline)  # [steps, B, ...]
    grads = _path_gradients(model, variables, points, target, internal_batch_size)
    mean_grad = jnp.tensordot(weights, grads, axes=1)
    return ((x - baseline) * mean_grad).sum(axis=-1)


def smoothgrad(model, variables: Variables, x: jnp.ndarray, target: Target = None,
               samples: int = 16, noise_level: float = 0.15, rng: jax.Array | None = None,
               internal_batch_size: int | None = None) -> jnp.ndarray:
    """SmoothGrad ``max_c |mean_noise ∂y_t/∂x(x + noise)|`` ``[B, *positions]``.

    ``noise_level`` is the noise standard deviation relative to each example's value range;
    ``rng`` defaults to ``PRNGKey(0)``. The target defaults to the class predicted for ``x``.
    """
    if samples < 1:
        raise UserError(f"smoothgrad needs samples >= 1, got {samples}")
    rng = jax.random.PRNGKey(0) if rng is None else rng
    target = target_index(model.apply(inference_variables(variables), x, train=False), target)
    axes = tuple(range(1, x.ndim))
    spread = (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True)) * noise_level
    noise = jax.random.normal(rng, (samples, 1) + x.shape[1:], x.dtype)
    grads = _path_gradients(model, variables, x + spread * noise, target, internal_batch_size)
    return jnp.abs(grads.mean(axis=0)).max(axis=-1)

