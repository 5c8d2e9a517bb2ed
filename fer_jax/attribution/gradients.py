"""Input-gradient attributions: saliency, input × gradient, integrated gradients, SmoothGrad
and its noise-tunnel variants, GradientSHAP.

All take ``x [B, *positions, C]`` (video ``[B, T, H, W, C]``, landmarks ``[B, T, L, 2]``) and
return one value per position, ``[B, *positions]``: the channel axis is reduced by the maximum
of absolute values (saliency, the SmoothGrad family) or by the sum (the signed methods, so that
sums over positions keep their meaning, e.g. integrated gradients' completeness).

* saliency (Simonyan et al. 2014): ``max_c |∂y_t/∂x|``.
* input × gradient (Shrikumar et al. 2016): ``Σ_c x · ∂y_t/∂x``.
* integrated gradients (Sundararajan et al. 2017): ``Σ_c (x − x') · ∫₀¹ ∂y_t/∂x(x' + α(x − x')) dα``
  with the integral by Gauss–Legendre quadrature on ``steps`` nodes, which is exact for
  polynomials of degree ``2·steps − 1`` along the path; completeness
  ``Σ IG = y_t(x) − y_t(x')`` holds to the quadrature error.
* SmoothGrad (Smilkov et al. 2017): saliency of the mean gradient over ``samples`` noisy copies
  of ``x``, ``max_c |mean_n g_n|`` with ``g_n = ∂y_t/∂x(x + ε_n)``.
* SmoothGrad² (Hooker et al. 2019's SG-SQ) ``max_c mean_n g_n²`` and VarGrad (Adebayo et al.
  2018) ``max_c var_n g_n`` (the population variance, ``mean g² − (mean g)²``): Captum's
  ``NoiseTunnel(Saliency(model, abs=False), nt_type='smoothgrad_sq' / 'vargrad')`` per channel
  (with Saliency's default ``abs=True`` Captum's VarGrad is the variance of ``|g|`` instead),
  then the channel maximum.
* GradientSHAP (Lundberg & Lee 2017, as Captum's ``GradientShap``): expected gradients
  ``Σ_c mean_n (x̃_n − b_n) · ∂y_t/∂x(α_n x̃_n + (1 − α_n) b_n)`` with a baseline ``b_n`` drawn
  from ``baselines`` (uniformly among its K clips), ``α_n ~ U(0, 1)`` and
  ``x̃_n = x + ε_n``; it approximates SHAP values, ``Σ ≈ y_t(x) − mean_b y_t(b)`` in
  expectation for noise-free draws.

Noise ``ε_n`` (the SmoothGrad family, GradientSHAP): Gaussian with standard deviation
``noise_level · (max x − min x)`` per example (Smilkov et al.'s convention; SmoothGrad's
default 0.15, GradientSHAP's 0) or, given ``stdevs``, that absolute standard deviation
(Captum's ``stdevs`` convention: equal to ``noise_level`` on inputs spanning [0, 1]); not both.
Every draw comes from ``rng`` (default ``PRNGKey(0)``) and is shared by the examples of the
batch, so an example's map does not depend on which batch it is in (Captum draws them per
example): SmoothGrad's noise is ``normal(rng, (samples, 1, *x.shape[1:]))``; GradientSHAP
splits ``rng`` into three keys for the baseline indices ``randint(k₀, (samples,), 0, K)``, the
``α = uniform(k₁, (samples,))`` and the noise ``normal(k₂, (samples, 1, *x.shape[1:]))``.
The ``samples · B`` gradients run as one batch, or ``internal_batch_size`` samples at a time.
The target defaults to the class predicted for ``x`` (not for the noisy or path points).
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


def _noise_scale(x: jnp.ndarray, noise_level: float | None, stdevs: float | None,
                 default_level: float) -> jnp.ndarray:
    """Standard deviation of the noise: ``stdevs`` (absolute) or ``noise_level`` times each
    example's value range ``[B, 1, …]``."""
    if noise_level is not None and stdevs is not None:
        raise UserError("give noise_level (relative to each example's value range) or stdevs "
                        "(absolute, Captum's convention), not both")
    if stdevs is not None:
        if not stdevs >= 0:
            raise UserError(f"stdevs must be >= 0, got {stdevs}")
        return jnp.asarray(stdevs, x.dtype)
    level = default_level if noise_level is None else noise_level
    if not level >= 0:
        raise UserError(f"noise_level must be >= 0, got {level}")
    axes = tuple(range(1, x.ndim))
    return (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True)) * level


def _check_samples(name: str, samples: int) -> None:
    if samples < 1:
        raise UserError(f"{name} needs samples >= 1, got {samples}")


def _noisy_gradients(model, variables, x, target, samples, noise_level, stdevs, rng,
                     internal_batch_size) -> jnp.ndarray:
    """Gradients at ``samples`` noisy copies of ``x``: ``[samples, *x.shape]``."""
    scale = _noise_scale(x, noise_level, stdevs, 0.15)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    target = target_index(model.apply(inference_variables(variables), x, train=False), target)
    noise = jax.random.normal(rng, (samples, 1) + x.shape[1:], x.dtype)
    return _path_gradients(model, variables, x + scale * noise, target, internal_batch_size)


def smoothgrad(model, variables: Variables, x: jnp.ndarray, target: Target = None,
               samples: int = 16, noise_level: float | None = None,
               rng: jax.Array | None = None, internal_batch_size: int | None = None,
               stdevs: float | None = None) -> jnp.ndarray:
    """SmoothGrad ``max_c |mean_noise ∂y_t/∂x(x + noise)|`` ``[B, *positions]``.

    ``noise_level``: the noise standard deviation relative to each example's value range
    (default 0.15), or ``stdevs`` absolute; ``rng`` defaults to ``PRNGKey(0)``.
    """
    _check_samples("smoothgrad", samples)
    grads = _noisy_gradients(model, variables, x, target, samples, noise_level, stdevs, rng,
                             internal_batch_size)
    return jnp.abs(grads.mean(axis=0)).max(axis=-1)


def smoothgrad_sq(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                  samples: int = 16, noise_level: float | None = None,
                  rng: jax.Array | None = None, internal_batch_size: int | None = None,
                  stdevs: float | None = None) -> jnp.ndarray:
    """SmoothGrad² ``max_c mean_noise (∂y_t/∂x(x + noise))²`` ``[B, *positions]``; options
    as ``smoothgrad``'s."""
    _check_samples("smoothgrad_sq", samples)
    grads = _noisy_gradients(model, variables, x, target, samples, noise_level, stdevs, rng,
                             internal_batch_size)
    return jnp.square(grads).mean(axis=0).max(axis=-1)


def vargrad(model, variables: Variables, x: jnp.ndarray, target: Target = None,
            samples: int = 16, noise_level: float | None = None, rng: jax.Array | None = None,
            internal_batch_size: int | None = None,
            stdevs: float | None = None) -> jnp.ndarray:
    """VarGrad ``max_c var_noise ∂y_t/∂x(x + noise)`` ``[B, *positions]`` (population
    variance over the ``samples``); options as ``smoothgrad``'s."""
    _check_samples("vargrad", samples)
    grads = _noisy_gradients(model, variables, x, target, samples, noise_level, stdevs, rng,
                             internal_batch_size)
    return grads.var(axis=0).max(axis=-1)


def _baseline_clips(baselines, x: jnp.ndarray) -> jnp.ndarray:
    """GradientSHAP's baselines as ``[K, *x.shape[1:]]``: a scalar or one clip (K = 1), or K
    clips (each broadcast against one example)."""
    given = jnp.asarray(baselines, x.dtype)
    clips = given[None] if given.ndim < x.ndim else given
    try:
        return jnp.broadcast_to(clips, clips.shape[:1] + x.shape[1:])
    except ValueError:
        raise UserError(f"gradient_shap baselines of shape {given.shape} do not match "
                        f"inputs {x.shape}: give a number, one clip {x.shape[1:]} or K clips "
                        f"[K, {', '.join(map(str, x.shape[1:]))}]") from None


def gradient_shap(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                  baselines: jnp.ndarray | float = 0.0, samples: int = 5,
                  stdevs: float | None = None, noise_level: float | None = None,
                  rng: jax.Array | None = None,
                  internal_batch_size: int | None = None) -> jnp.ndarray:
    """GradientSHAP ``Σ_c mean_n (x̃_n − b_n) · ∂y_t/∂x(α_n x̃_n + (1 − α_n) b_n)``
    ``[B, *positions]``.

    ``baselines``: the distribution the baselines are drawn from — a number, one clip
    ``x.shape[1:]`` or K clips ``[K, *x.shape[1:]]`` (default: the black clip); ``samples``:
    Captum's ``n_samples`` (default 5); noise ``stdevs`` (absolute, Captum's, default 0) or
    ``noise_level`` (relative to each example's value range).
    """
    _check_samples("gradient_shap", samples)
    clips = _baseline_clips(baselines, x)
    scale = _noise_scale(x, noise_level, stdevs, 0.0)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    target = target_index(model.apply(inference_variables(variables), x, train=False), target)
    pick, mix, draw = jax.random.split(rng, 3)
    chosen = clips[jax.random.randint(pick, (samples,), 0, len(clips))][:, None]  # [N, 1, …]
    alphas = jax.random.uniform(mix, (samples,) + (1,) * x.ndim, x.dtype)
    noisy = x + scale * jax.random.normal(draw, (samples, 1) + x.shape[1:], x.dtype)
    points = alphas * noisy + (1 - alphas) * chosen  # [N, B, …]
    grads = _path_gradients(model, variables, points, target, internal_batch_size)
    return ((noisy - chosen) * grads).mean(axis=0).sum(axis=-1)
