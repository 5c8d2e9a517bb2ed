"""Infidelity and sensitivity-max of explanations (Yeh et al., NeurIPS 2019, "On the
(In)fidelity and Sensitivity of Explanations"), with Captum 0.9's definitions
(``captum.metrics.infidelity``, ``captum.metrics.sensitivity_max``), for any model.

* **Infidelity**: how well the map predicts what perturbing the input does to the score.
  For perturbations ``I_n`` (``n = 1 … N``) of ``x``, ``s_n = Σ map · I_n`` (the map's
  prediction) and ``d_n = f_t(x) − f_t(x − I_n)`` (the target logit's actual change):
  ``infidelity = mean_n (s_n − d_n)²``. With ``normalize`` the map is first scaled by the
  ``β = Σ s d / Σ s²`` that fits it best (the definition then ignores the map's scale):
  ``mean_n (β s_n − d_n)²`` (Captum expands the square, which rounding can turn negative);
  ``β = Σ s d`` where ``Σ s² = 0`` (Captum's ``safe_div``).
  Lower is better.
* **Sensitivity-max**: how much the map changes under small input perturbations:
  ``max_n ‖Φ(x + δ_n) − Φ(x)‖ / ‖Φ(x)‖`` over ``N`` perturbations ``δ_n`` drawn uniformly from
  the L∞ ball of radius ``radius`` (Captum's ``default_perturb_func``); norms over the whole
  map (``norm_ord='fro'``: L2, Captum's default), ``‖Φ(x)‖ = 0`` counted as 1. Lower is
  better.

Maps come either per input value (the shape of ``x``) or per position, the channel axis
reduced (``x.shape[:-1]``, the shape every method of ``fer_jax.attribution`` returns at input
resolution); a perturbation given per position is then the same on every channel, so that
``Σ map · I`` sums what the map predicts for all the channels it stands for (exactly so for
the methods that sum channels: gradient × input, integrated gradients, DeepLIFT, LRP).

Shapes: ``x [B, *positions, C]``; ``maps``: ``x.shape`` or ``x.shape[:-1]``; perturbations
``[N, *maps.shape]``; results ``[B]``. The ``N`` perturbed copies run in compiled chunks of
``batch_size`` perturbations (``jax.lax.map``; the last chunk padded and its extra results
dropped), ``batch_size · B`` clips per forward pass or explanation. Draws for
``sensitivity_max`` come from ``rng`` and are shared by the examples of the batch
(``uniform_perturbations``), so an example's score does not depend on its batch.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fer_jax.attribution.cam_perturbation import chunked
from fer_jax.attribution.core import Target, Variables, inference_variables, target_index
from fer_jax.errors import UserError


def _per_value(perturbations: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """Perturbations ``[N, *x.shape]`` or ``[N, *x.shape[:-1]]`` (the same on every channel)
    → broadcastable against ``x``."""
    if perturbations.shape[1:] == x.shape[:-1]:
        return perturbations[..., None]
    return perturbations


def _check(x: jnp.ndarray, maps: jnp.ndarray, perturbations: jnp.ndarray) -> None:
    if maps.shape not in (x.shape, x.shape[:-1]):
        raise UserError(f"infidelity needs maps of the input's shape {x.shape} or of its "
                        f"positions {x.shape[:-1]}, got {maps.shape} (upsample CAMs first)")
    if perturbations.ndim != maps.ndim + 1 or perturbations.shape[1:] != maps.shape:
        raise UserError(f"infidelity needs perturbations [N, *maps.shape] = [N, "
                        f"{', '.join(map(str, maps.shape))}], got {perturbations.shape}")


def infidelity_of(forward: Callable[[jnp.ndarray], jnp.ndarray], x: jnp.ndarray,
                  maps: jnp.ndarray, target: Target, perturbations: jnp.ndarray,
                  normalize: bool = False, batch_size: int = 1) -> jnp.ndarray:
    """Infidelity ``[B]`` of ``maps`` for ``forward(x) → logits [B, C]`` (Captum's
    ``forward_func``); see the module docstring. ``target``: None (the class predicted for
    ``x``), an int or ``[B]``."""
    maps, perturbations = jnp.asarray(maps), jnp.asarray(perturbations)
    _check(x, maps, perturbations)
    logits = forward(x)
    index = target_index(logits, target)
    score = jnp.take_along_axis(logits, index[:, None], axis=-1)[:, 0]
    axes = tuple(range(1, maps.ndim))

    def changes(chunk):  # [k, *maps.shape] → [k, B]
        k = len(chunk)
        moved = (x - _per_value(chunk, x)).reshape((k * len(x),) + x.shape[1:])
        out = forward(moved)
        out = jnp.take_along_axis(out, jnp.tile(index, k)[:, None], axis=-1)[:, 0]
        return score[None] - out.reshape(k, len(x))

    d = chunked(lambda i: changes(perturbations[i]), len(perturbations),
                batch_size).astype(jnp.float32)  # [N, B]
    s = (maps[None] * perturbations).sum(axis=tuple(a + 1 for a in axes)).astype(jnp.float32)
    if not normalize:
        return ((s - d) ** 2).mean(axis=0)
    ss, sd = (s * s).sum(0), (s * d).sum(0)
    beta = sd / jnp.where(ss == 0, 1.0, ss)
    # Captum expands this into β² Σs² − 2β Σsd + Σd², which rounding can make negative
    return ((beta * s - d) ** 2).mean(axis=0)


def infidelity(model, variables: Variables, x: jnp.ndarray, maps: jnp.ndarray,
               target: Target, perturbations: jnp.ndarray, normalize: bool = False,
               batch_size: int = 1) -> jnp.ndarray:
    """Infidelity ``[B]`` of ``maps`` for a ``flax.linen`` model (``model.apply(variables, x,
    train=False) → logits [B, C]``); ``maps`` ``x.shape`` or ``x.shape[:-1]``,
    ``perturbations [N, *maps.shape]``, ``normalize`` Captum's option, ``batch_size``
    perturbations per forward pass."""
    variables = inference_variables(variables)
    return infidelity_of(lambda inputs: model.apply(variables, inputs, train=False), x, maps,
                         target, perturbations, normalize, batch_size)


def uniform_perturbations(rng: jax.Array, x: jnp.ndarray, radius, samples: int
                          ) -> jnp.ndarray:
    """``samples`` draws from the L∞ ball of ``radius`` (a number or one per example,
    ``[B]``), shared by the examples: ``uniform(rng, (samples, 1, *x.shape[1:]), −1, 1) ·
    radius`` → ``[samples, *x.shape]``."""
    if samples < 1:
        raise UserError(f"sensitivity_max needs samples >= 1, got {samples}")
    radius = jnp.asarray(radius, x.dtype)
    if radius.ndim not in (0, 1) or (radius.ndim == 1 and radius.shape != x.shape[:1]):
        raise UserError(f"radius must be a number or one per example [{len(x)}], got shape "
                        f"{radius.shape}")
    radius = radius.reshape(radius.shape + (1,) * (x.ndim - radius.ndim))
    unit = jax.random.uniform(rng, (samples, 1) + x.shape[1:], x.dtype, -1.0, 1.0)
    return jnp.broadcast_to(unit * radius, (samples,) + x.shape)


def _norm(values: jnp.ndarray, norm_ord) -> jnp.ndarray:
    flat = values.reshape(len(values), -1).astype(jnp.float32)
    return jnp.linalg.norm(flat, ord=None if norm_ord == "fro" else norm_ord, axis=-1)


def sensitivity_max(explain_fn: Callable[[jnp.ndarray], jnp.ndarray], x: jnp.ndarray,
                    radius=0.02, samples: int = 10, *, rng: jax.Array | None = None,
                    perturbations: jnp.ndarray | None = None, norm_ord="fro",
                    batch_size: int = 1) -> jnp.ndarray:
    """Sensitivity-max ``[B]`` of ``explain_fn(x [B, …]) → maps [B, …]`` (which fixes the
    target, e.g. ``lambda x: attribution.saliency(model, variables, x, target)``).

    ``radius``: of the L∞ ball (a number or ``[B]``; Captum's default 0.02), ``samples``
    draws from ``rng`` (default ``PRNGKey(0)``; Captum's default 10), or the
    ``perturbations [N, *x.shape]`` to add instead; ``norm_ord``: 'fro' (L2, Captum's) or
    an order of ``jnp.linalg.norm``; ``batch_size``: perturbations explained per pass
    (``jax.lax.map`` over the chunks; more than 1: ``jax.vmap`` of ``explain_fn`` within a
    chunk).
    """
    if not (norm_ord == "fro" or isinstance(norm_ord, int | float)):
        raise UserError(f"norm_ord must be 'fro' or a number (inf included), got {norm_ord!r}")
    if perturbations is None:
        rng = jax.random.PRNGKey(0) if rng is None else rng
        perturbations = uniform_perturbations(rng, x, radius, samples)
    elif perturbations.shape[1:] != x.shape:
        raise UserError(f"sensitivity_max needs perturbations [N, *x.shape], got "
                        f"{perturbations.shape} for x {x.shape}")
    reference = explain_fn(x)
    scale = _norm(reference, norm_ord)
    scale = jnp.where(scale == 0, 1.0, scale)

    def sensitivities(chunk):  # [k, *x.shape] → [k, B]
        maps = (explain_fn(x + chunk[0])[None] if len(chunk) == 1
                else jax.vmap(explain_fn)(x[None] + chunk))
        return jax.vmap(lambda m: _norm(m - reference, norm_ord) / scale)(maps)

    return chunked(lambda i: sensitivities(perturbations[i]), len(perturbations),
                   batch_size).max(axis=0)
