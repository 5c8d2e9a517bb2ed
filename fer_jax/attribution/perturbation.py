"""Perturbation attributions for space-time: occlusion, feature ablation, RISE and KernelSHAP.

Each method scores perturbed copies of every example with the model and returns one value per
input position, ``[B, *positions]`` (``[B, T, H, W]`` for a video ``x [B, T, H, W, C]``; a
perturbation always covers every channel of a position). All ``B · K`` perturbed copies of a
batch (``K`` windows, groups, masks or coalitions per example) run in compiled chunks of
``batch_size`` copies per forward pass (``jax.lax.map`` over the chunks, as Score-CAM; the last
chunk is padded with repeated copies whose scores are dropped), so compilation does not grow
with ``K`` and chunking changes the memory, not the result. No method needs a gradient. The
score is the target's logit (``score='probability'``: its softmax probability); ``target=None``
explains the class predicted for the unperturbed clip. ``baseline`` (a scalar or an array
broadcasting against ``x``, in the model's input space) replaces what is removed.

* ``occlusion`` — Zeiler & Fergus's sliding window, as Captum 0.9's ``Occlusion`` with
  ``sliding_window_shapes = (*window, C)``: a box of ``window`` positions (frames × height ×
  width) starts at every multiple of ``strides`` from 0, ``⌈(n − w) / s⌉ + 1`` starts per axis,
  the last one cut off at the border where the stride does not fit; every position gets the
  mean over the windows covering it of ``f(x) − f(x with the window at baseline)``. As in
  Captum a window may not exceed the input, nor a stride its window (every position must be
  covered). Defaults: Captum has no default window, and its default stride of 1 costs one pass
  per position; here the window is a quarter of each position axis (the spatial extents
  rounded up to a multiple of the model's ``patch_size`` where it has one) and the stride is
  the window (non-overlapping tiles: 64 passes per clip).
* ``feature_ablation`` — Captum's ``FeatureAblation`` with a ``feature_mask``: every position
  of group ``g`` gets ``f(x) − f(x with group g at baseline)``, one pass per group id
  ``0 … G−1``. Groups: ``groups`` (see ``attribution.groups``; default ``default_groups``, the
  same quarter tubes).
* ``rise`` — RISE (Petsiuk et al. 2018), as the authors' ``generate_masks`` / ``RISE``
  (github.com/eclique/RISE) with time as one more axis: ``masks`` binary grids of ``cells``
  cells per position axis, each cell kept with probability ``p``, upsampled linearly to
  ``(cells + 1) · ⌈n / cells⌉`` positions (scikit-image's ``resize(order=1, mode='reflect')``:
  half-pixel centres, mirrored at the border), and cropped to the input at a random shift in
  ``[0, ⌈n / cells⌉)`` per axis; saliency ``Σ_i f(x ⊙ M_i) M_i / (N · p)``. The score is the
  target's softmax probability by default, as the authors' model ends in a softmax. Masks
  are drawn from ``rng`` (or ``PRNGKey(seed)``), mask ``i`` from ``fold_in(rng, i)``, and shared
  by the examples of a batch (as the authors' ``RISEBatch``), so a map does not depend on its
  batch; they are generated chunk by chunk, never all held at once. ``baseline`` blends
  ``M · x + (1 − M) · baseline`` (0: the paper's ``x ⊙ M``). Defaults (the authors' code
  takes ``N``, the cells and ``p`` as arguments): 512 masks of 4 cells along the first
  position axis (time) and 8 along every other, ``p = 0.5``.
* ``kernel_shap`` / ``kernel_shap_values`` — KernelSHAP (Lundberg & Lee 2017) over feature
  groups, as Captum's ``KernelShap``: ``samples`` coalitions ``z ∈ {0, 1}^G`` (1: the group
  is kept, 0: at baseline), the first all ones and the second all zeros, the others of a size
  ``k`` drawn with probability ∝ ``(G − 1) / (k (G − k))`` for ``k = 1 … G − 1`` and then ``k``
  groups drawn uniformly; a weighted linear regression with intercept of ``f`` on ``z``,
  weights ``10⁶`` for the all-ones and all-zeros coalitions and 1 for the sampled ones
  (sampling from the Shapley kernel stands for weighting by it), solved as scikit-learn's
  ``LinearRegression`` does (weighted centring, then the least-norm least-squares solution,
  here by a pseudo-inverse); the coefficients are the groups' values. The 10⁶ weights make
  ``Σ φ = f(x) − f(baseline)`` (efficiency) hold to about ``samples · 10⁻⁶`` of the output's
  scale. Coalitions come from ``rng`` (or ``PRNGKey(seed)``) and are shared by the examples of
  a batch (Captum draws new ones per example). Captum's default of 25 samples cannot
  determine more than 23 groups; the default here is ``4 · G``.

Cost per clip: occlusion one pass per window, feature ablation one per group, RISE one per
mask, KernelSHAP one per sample, plus one pass of the clip itself.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.attribution.cam_perturbation import chunked
from fer_jax.attribution.core import (Target, Variables, broadcast_baseline, inference_variables,
                                      target_index)
from fer_jax.attribution.groups import as_batch_groups, default_box, default_groups, group_maps
from fer_jax.errors import UserError

SCORES = ("logit", "probability")
SHAP_INFINITE_WEIGHT = 1e6
"""Captum's ``KernelShap.inf_weight``: the regression weight of the all-ones and all-zeros
coalitions."""


# --------------------------------------------------------------------------- shared
def _check_score(score: str) -> None:
    if score not in SCORES:
        raise UserError(f"unknown perturbation score {score!r}; use one of {', '.join(SCORES)}")


def _score(logits: jnp.ndarray, index: jnp.ndarray, score: str) -> jnp.ndarray:
    """The target's logit or probability ``[n]`` (float32)."""
    logits = logits.astype(jnp.float32)
    if score == "probability":
        logits = jax.nn.softmax(logits, axis=-1)
    return jnp.take_along_axis(logits, index[:, None], axis=-1)[:, 0]




def _patch(model) -> int | None:
    patch = getattr(model, "patch_size", None)
    return patch if isinstance(patch, int) else None


def _rng(rng, seed: int) -> jax.Array:
    return jax.random.PRNGKey(int(seed)) if rng is None else rng


def _unperturbed(model, variables, x, target, score, batch_size):
    """``(variables for inference, target index [B], target score [B])`` of the clips."""
    _check_score(score)
    if int(batch_size) < 1:
        raise UserError(f"batch_size must be a positive number of copies, got {batch_size}")
    variables = inference_variables(variables)
    logits = model.apply(variables, x, train=False)
    index = target_index(logits, target)
    return variables, index, _score(logits, index, score)


def _scores(model, variables, x: jnp.ndarray, index: jnp.ndarray, count: int,
            perturb: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray], batch_size: int,
            score: str) -> jnp.ndarray:
    """Target scores ``[B, count]`` of ``count`` perturbed copies of every example;
    ``perturb(examples [n], perturbations [n]) → clips [n, *x.shape[1:]]``; the ``B · count``
    copies run ``batch_size`` per forward pass."""
    def scores(pairs):
        example, k = pairs // count, pairs % count
        logits = model.apply(variables, perturb(example, k), train=False)
        return _score(logits, index[example], score)

    return chunked(scores, len(x) * count, batch_size).reshape(len(x), count)


def _per_axis(value, positions: tuple[int, ...], name: str) -> tuple[int, ...]:
    """An int or one positive int per position axis."""
    value = (value,) * len(positions) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(value) != len(positions) or any(int(v) < 1 for v in value):
        raise UserError(f"{name} {value} must be a positive int or one per position axis "
                        f"{positions} of the input")
    return tuple(int(v) for v in value)


# --------------------------------------------------------------------------- occlusion
def occlusion_windows(positions: Sequence[int], window: Sequence[int],
                      strides: Sequence[int]) -> list[np.ndarray]:
    """Per position axis, which window starts cover which positions: bool
    ``[windows along the axis, positions along the axis]`` (Captum's ``Occlusion`` windows)."""
    indicators = []
    for n, w, s in zip(positions, window, strides):
        if w > n:
            raise UserError(f"occlusion window {tuple(window)} exceeds the input's positions "
                            f"{tuple(positions)}")
        if w < n and s > w:
            raise UserError(f"occlusion stride {tuple(strides)} is larger than the window "
                            f"{tuple(window)}: positions between windows would stay uncovered")
        starts = np.arange(-(-(n - w) // s) + 1) * s
        p = np.arange(n)
        indicators.append((p >= starts[:, None]) & (p < starts[:, None] + w))
    return indicators


def occlusion(model, variables: Variables, x: jnp.ndarray, target: Target = None,
              window: int | Sequence[int] | None = None,
              strides: int | Sequence[int] | None = None, baseline=0.0,
              batch_size: int = 16, score: str = "logit") -> jnp.ndarray:
    """Occlusion sensitivity ``[B, *positions]``: per position the mean over the windows
    covering it of ``f(x) − f(x with the window at baseline)``; one pass per window and clip.

    window: positions per axis (frames, height, width for video; an int for every axis);
    default a quarter of each axis. strides: default the window."""
    positions = tuple(x.shape[1:-1])
    window = (default_box(positions, _patch(model)) if window is None
              else _per_axis(window, positions, "occlusion window"))
    strides = window if strides is None else _per_axis(strides, positions, "occlusion strides")
    indicators = occlusion_windows(positions, window, strides)
    counts = tuple(len(i) for i in indicators)
    base = broadcast_baseline(baseline, x, "occlusion")
    variables, index, y = _unperturbed(model, variables, x, target, score, batch_size)
    rows = [jnp.asarray(i, jnp.float32) for i in indicators]

    def perturb(example, k):
        mask = jnp.ones(k.shape, jnp.float32)
        for row, start in zip(rows, jnp.unravel_index(k, counts)):
            mask = mask[..., None] * row[start].reshape(k.shape + (1,) * (mask.ndim - 1)
                                                        + row.shape[1:])
        return jnp.where(mask[..., None] > 0, base[example], x[example])

    scores = _scores(model, variables, x, index, int(np.prod(counts)), perturb, batch_size,
                     score)
    total = (y[:, None] - scores).reshape(len(x), *counts)
    cover = np.ones(counts)
    for row, indicator in zip(rows, indicators):  # Σ over windows of Δ · window indicator
        total = jnp.tensordot(total, row, axes=([1], [0]))
        cover = np.tensordot(cover, indicator.astype(np.float64), axes=([0], [0]))
    return total / jnp.asarray(cover, jnp.float32)


# --------------------------------------------------------------------------- feature ablation
def _groups(model, x, groups, num_groups):
    if groups is None:
        groups = default_groups(x.shape[1:-1], _patch(model))
    return as_batch_groups(groups, x, num_groups)


def feature_ablation(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                     groups=None, num_groups: int | None = None, baseline=0.0,
                     batch_size: int = 16, score: str = "logit") -> jnp.ndarray:
    """Feature ablation ``[B, *positions]``: every position of group ``g`` gets
    ``f(x) − f(x with group g at baseline)``; one pass per group id and clip.

    groups: int ids over ``[*positions]`` or ``[B, *positions]`` (``attribution.groups``),
    default ``default_groups``; num_groups: the number of ids (needed when the groups are
    traced under jit; default the largest id + 1)."""
    groups, count = _groups(model, x, groups, num_groups)
    base = broadcast_baseline(baseline, x, "feature_ablation")
    variables, index, y = _unperturbed(model, variables, x, target, score, batch_size)

    def perturb(example, g):
        removed = groups[example] == g.reshape(g.shape + (1,) * (groups.ndim - 1))
        return jnp.where(removed[..., None], base[example], x[example])

    scores = _scores(model, variables, x, index, count, perturb, batch_size, score)
    return group_maps(y[:, None] - scores, groups)


# --------------------------------------------------------------------------- RISE
def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """NumPy's 'reflect' padding (SciPy's 'mirror') of indices into ``range(n)``."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


def rise_upsampling(cells: int, size: int) -> np.ndarray:
    """``[size, cells]``: linear resizing of ``cells`` values to ``size`` with half-pixel
    centres and mirrored borders (scikit-image's ``resize(order=1, mode='reflect')``)."""
    position = (np.arange(size) + 0.5) * cells / size - 0.5
    low = np.floor(position).astype(int)
    frac = position - low
    matrix = np.zeros((size, cells))
    np.add.at(matrix, (np.arange(size), _mirror(low, cells)), 1 - frac)
    np.add.at(matrix, (np.arange(size), _mirror(low + 1, cells)), frac)
    return matrix


def _rise_cells(cells, positions):
    if cells is None:
        cells = (4,) + (8,) * (len(positions) - 1)
    return _per_axis(cells, positions, "RISE cells")


def rise_grids(rng: jax.Array, indices: jnp.ndarray, positions: Sequence[int],
               cells: int | Sequence[int] | None = None,
               p: float = 0.5) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The random draws of RISE masks ``indices [n]``: ``(grids bool [n, *cells], shifts int32
    [n, axes])``, mask ``i`` from ``fold_in(rng, i)``; shift along an axis in
    ``[0, ⌈positions / cells⌉)``."""
    positions = tuple(positions)
    cells = _rise_cells(cells, positions)
    cell_size = jnp.asarray([-(-n // c) for n, c in zip(positions, cells)], jnp.int32)

    def draw(i):
        grid_key, shift_key = jax.random.split(jax.random.fold_in(rng, i))
        grid = jax.random.uniform(grid_key, cells) < p
        return grid, jax.random.randint(shift_key, (len(cells),), 0, cell_size)

    return jax.vmap(draw)(jnp.asarray(indices, jnp.int32))


def rise_masks(rng: jax.Array, indices: jnp.ndarray, positions: Sequence[int],
               cells: int | Sequence[int] | None = None, p: float = 0.5) -> jnp.ndarray:
    """RISE masks ``indices [n]`` over ``positions``: float32 ``[n, *positions]`` in [0, 1]."""
    positions = tuple(positions)
    cells = _rise_cells(cells, positions)
    if not 0 < p <= 1:
        raise UserError(f"RISE keep probability p must lie in (0, 1], got {p}")
    grids, shifts = rise_grids(rng, indices, positions, cells, p)
    matrices = [jnp.asarray(rise_upsampling(c, (c + 1) * -(-n // c)), jnp.float32)
                for n, c in zip(positions, cells)]

    def mask(grid, shift):
        out = grid.astype(jnp.float32)
        for axis, (n, c, matrix) in enumerate(zip(positions, cells, matrices)):
            rows = jax.lax.dynamic_slice(matrix, (shift[axis], 0), (n, c))  # the crop
            out = jnp.tensordot(out, rows, axes=([0], [1]))  # axis done → appended last
        return out

    return jax.vmap(mask)(grids, shifts)


def rise(model, variables: Variables, x: jnp.ndarray, target: Target = None,
         masks: int = 512, cells: int | Sequence[int] | None = None, p: float = 0.5,
         baseline=0.0, rng: jax.Array | None = None, seed: int = 0, batch_size: int = 16,
         score: str = "probability") -> jnp.ndarray:
    """RISE ``Σ_i f(x ⊙ M_i) M_i / (N · p)`` ``[B, *positions]``; one pass per mask and clip.

    masks: N; cells: grid cells per position axis (default 4 along time, 8 along the others);
    p: the probability a cell is kept; rng / seed: the masks' random key."""
    positions = tuple(x.shape[1:-1])
    cells = _rise_cells(cells, positions)
    if int(masks) < 1:
        raise UserError(f"RISE needs masks >= 1, got {masks}")
    if not 0 < p <= 1:
        raise UserError(f"RISE keep probability p must lie in (0, 1], got {p}")
    count, rng = int(masks), _rng(rng, seed)
    base = broadcast_baseline(baseline, x, "rise")
    variables, index, _ = _unperturbed(model, variables, x, target, score, batch_size)

    def perturb(example, i):
        m = rise_masks(rng, i, positions, cells, p)[..., None].astype(x.dtype)
        return base[example] + m * (x[example] - base[example])

    scores = _scores(model, variables, x, index, count, perturb, batch_size, score)
    chunk = max(1, min(int(batch_size), count))  # masks generated per step of the sum
    steps = -(-count // chunk)
    padded = jnp.pad(scores, ((0, 0), (0, steps * chunk - count)))  # weight 0 for padding
    indices = jnp.arange(steps * chunk, dtype=jnp.int32) % count

    def accumulate(total, step):
        weights, i = step
        return total + jnp.tensordot(weights, rise_masks(rng, i, positions, cells, p),
                                     axes=1), None

    total, _ = jax.lax.scan(accumulate, jnp.zeros((len(x), *positions), jnp.float32),
                            (jnp.moveaxis(padded.reshape(len(x), steps, chunk), 1, 0),
                             indices.reshape(steps, chunk)))
    return total / (count * p)


# --------------------------------------------------------------------------- KernelSHAP
def shap_coalitions(rng: jax.Array, samples: int, num_groups: int) -> jnp.ndarray:
    """Bool ``[samples, G]`` coalitions as Captum's ``KernelShap`` draws them: all ones, all
    zeros, then sizes ``k`` ∝ ``(G − 1) / (k (G − k))`` with ``k`` groups drawn uniformly."""
    if num_groups < 2:
        raise UserError(f"KernelSHAP needs at least 2 feature groups, got {num_groups}")
    if samples < 2:
        raise UserError(f"KernelSHAP needs samples >= 2 (all groups, none, then sampled "
                        f"coalitions), got {samples}")
    size_key, order_key = jax.random.split(rng)
    k = np.arange(1, num_groups)
    logits = jnp.asarray(np.log((num_groups - 1) / (k * (num_groups - k))), jnp.float32)
    sizes = 1 + jax.random.categorical(size_key, logits, shape=(samples - 2,))
    scores = jax.random.uniform(order_key, (samples - 2, num_groups))
    rank = jnp.argsort(jnp.argsort(-scores, axis=1), axis=1)  # 0 for the largest
    sampled = rank < sizes[:, None]
    fixed = jnp.asarray([[True] * num_groups, [False] * num_groups])
    return jnp.concatenate([fixed, sampled])


def weighted_regression(z: jnp.ndarray, y: jnp.ndarray, weights: jnp.ndarray
                        ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(coefficients [B, M], intercepts [B])`` of the weighted least-squares fits of
    ``y [B, N]`` on ``z [N, M]`` with intercept, as scikit-learn's ``LinearRegression``
    (weighted centring, rows scaled by √weight, least-norm solution)."""
    z, y = z.astype(jnp.float32), y.astype(jnp.float32)
    share = weights / weights.sum()
    z_mean, y_mean = share @ z, y @ share
    root = jnp.sqrt(weights)
    coefficients = ((y - y_mean[:, None]) * root) @ jnp.linalg.pinv(
        (z - z_mean) * root[:, None]).T
    return coefficients, y_mean - coefficients @ z_mean


def kernel_shap_values(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                       groups=None, num_groups: int | None = None, samples: int | None = None,
                       baseline=0.0, rng: jax.Array | None = None, seed: int = 0,
                       batch_size: int = 16, score: str = "logit"
                       ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(values [B, G], groups [B, *positions])``: KernelSHAP value of every group; one pass
    per coalition sample and clip (default ``4 · G`` samples)."""
    groups, count = _groups(model, x, groups, num_groups)
    samples = 4 * count if samples is None else int(samples)
    z = shap_coalitions(_rng(rng, seed), samples, count)
    base = broadcast_baseline(baseline, x, "kernel_shap")
    variables, index, _ = _unperturbed(model, variables, x, target, score, batch_size)

    def perturb(example, s):
        kept = jnp.take_along_axis(z[s], groups[example].reshape(len(s), -1), axis=1)
        kept = kept.reshape(groups[example].shape)
        return jnp.where(kept[..., None], x[example], base[example])

    y = _scores(model, variables, x, index, samples, perturb, batch_size, score)
    sizes = z.sum(axis=1)
    weights = jnp.where((sizes == 0) | (sizes == count), SHAP_INFINITE_WEIGHT, 1.0)
    return weighted_regression(z, y, weights)[0], groups


def kernel_shap(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                groups=None, num_groups: int | None = None, samples: int | None = None,
                baseline=0.0, rng: jax.Array | None = None, seed: int = 0,
                batch_size: int = 16, score: str = "logit") -> jnp.ndarray:
    """KernelSHAP ``[B, *positions]``: each position carries its group's value (see
    ``kernel_shap_values``)."""
    values, groups = kernel_shap_values(model, variables, x, target, groups, num_groups,
                                        samples, baseline, rng, seed, batch_size, score)
    return group_maps(values, groups)
