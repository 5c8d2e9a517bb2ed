"""Sanity checks of explanation methods, for any ``flax.linen`` model: does a map depend on
what the model learned, and only on that?

* **Cascading model-parameter randomisation** (Adebayo et al., NeurIPS 2018, "Sanity Checks
  for Saliency Maps"): the parameters are re-initialised from the top (output) down, one
  stage at a time, and the maps of each randomised model are compared with those of the
  trained one. A map that stays the same explains the input, not the model. ``stages`` lists
  a model's stages in the order they run, ``initial_variables`` draws the model's own
  initialisation, ``randomise_top_down`` / ``randomise`` swap stages in, ``cascade`` gives
  the stages randomised at every depth (for ``jax.lax.map``).
* **Input invariance** (Kindermans et al., 2019, "The (Un)reliability of Saliency
  Methods"): a constant shift of the input that the model absorbs in its first layer
  (``first_layer``, ``absorb_shift``) leaves the logits, and so every gradient of them,
  unchanged; a method whose map changes (gradient × input, integrated gradients from a zero
  baseline) reacts to something the model does not see.
* **Data randomisation** (Adebayo et al.): the maps of a model trained on permuted labels
  against those of the real model (the ``data_randomisation`` measurement; the permuted
  training is ``config.train.shuffle_labels``).

Maps are compared with ``similarities``: per example, over all positions of ``[B, ...]`` maps
(the report uses the occlusion-grid cells ``[B, T, g, g]``), on absolute values:

* ``spearman``: Spearman rank correlation (ties: average ranks, as ``scipy.stats.spearmanr``;
  NaN where either map is constant);
* ``ssim``: structural similarity of the maps min-max normalised per example to [0, 1]
  (data range 1): per frame, the mean over uniform ``window × window`` windows (valid
  positions only; a frame smaller than the window is one window, i.e. a global SSIM), with
  Wang et al.'s constants C1 = 0.01², C2 = 0.03² and population (co)variances; then the mean
  over frames;
* ``top_k``: the share of the ``k`` largest positions (``k`` = 10 % of them, at least 1; ties
  go to the first in order) that the two maps share.

All similarity functions are pure ``jax.numpy``, batched and jit-compatible.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import run_once
from fer_jax.attribution.postprocess import normalise

SCORES = ("spearman", "ssim", "top_k")
SCORE_NAMES = {"spearman": "Spearman ρ", "ssim": "SSIM", "top_k": "top-10 % overlap"}
TOP_FRACTION = 0.1      # top_k: share of the positions compared
SSIM_WINDOW = 7         # ssim: window side (cells)
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


# --------------------------------------------------------------------------- stages
def parameter_order(model, x: jnp.ndarray, **kwargs) -> list[tuple[str, ...]]:
    """Paths of every leaf of ``model``'s ``params`` in the order ``model.init`` creates them,
    which for ``flax.linen`` is the order the model runs (a module's parameters are made on
    its first call). ``x``: an input of the model's shape (e.g. ``[1, T, H, W, C]``; only the
    shape counts); ``kwargs`` go to ``model.init`` (e.g. ``train=False``).

    The order is read inside an abstract ``model.init`` (``jax.eval_shape``: nothing is
    computed), because a params tree that went through a JAX transformation or a checkpoint
    has its keys sorted by name ('blocks_10' before 'blocks_2', 'classifier' before
    'layernorm')."""
    order: list[tuple[str, ...]] = []

    def walk(tree, path):
        for key, value in tree.items():
            if isinstance(value, Mapping):
                walk(value, path + (str(key),))
            else:
                order.append(path + (str(key),))

    def init(rng):
        variables = model.init(rng, x, **kwargs)
        walk(variables.get("params", {}), ())
        return variables

    jax.eval_shape(init, jax.random.key(0))
    return order


def stages(model, x: jnp.ndarray, **kwargs) -> list[str]:
    """The stages of ``model``, first to run first: the top-level entries of its ``params``
    tree (submodules such as ``patch_embeddings``, ``blocks_0`` … ``blocks_11``,
    ``classifier`` of a TimeSformer, ``conv1``, ``layer1_0`` … ``fc`` of a ResNet, and
    parameters of the model itself, e.g. ``cls_token``), in the order ``parameter_order``
    gives. Cascading randomisation goes through them in reverse: the classifier first.
    ``x``, ``kwargs``: as ``parameter_order``."""
    names: list[str] = []
    for path in parameter_order(model, x, **kwargs):
        if path[0] not in names:
            names.append(path[0])
    return names


def initial_variables(model, x: jnp.ndarray, seed: int = 0, collections: Sequence[str] | None
                      = None, **kwargs) -> dict:
    """``model.init(PRNGKey(seed), x, **kwargs)`` (jit-compiled): the model's own initialisers
    with a fixed seed, every collection (batch statistics at their initial mean 0, variance
    1). ``collections``: keep only these (e.g. those of the trained variables); the
    ``intermediates`` a model sows are always dropped."""
    variables = dict(run_once.jit_once(functools.partial(model.init, **kwargs))(
        jax.random.PRNGKey(seed), x))
    variables.pop("intermediates", None)
    if collections is not None:
        variables = {c: variables[c] for c in collections if c in variables}
    return variables


def randomise(variables: Mapping, random: Mapping, chosen: Mapping[str, Any]) -> dict:
    """``variables`` with the stages where ``chosen[stage]`` is true taken from ``random``
    (same structure, e.g. ``initial_variables``), in every collection, so that a stage's
    batch statistics follow its parameters. ``chosen``: stage → bool, a Python bool (the
    subtree is picked) or a traced scalar (``jnp.where`` per leaf, e.g. inside
    ``jax.lax.map`` over ``cascade``'s rows). Stages not in ``chosen`` stay trained."""
    out = {}
    for collection, tree in variables.items():
        out[collection] = {}
        for stage, subtree in tree.items():
            flag = chosen.get(stage, False)
            other = random[collection][stage] if stage in chosen else subtree
            if isinstance(flag, (bool, np.bool_)):
                out[collection][stage] = other if flag else subtree
            else:
                out[collection][stage] = jax.tree.map(
                    lambda t, r, flag=flag: jnp.where(flag, r.astype(t.dtype), t), subtree,
                    other)
    return out


def randomise_top_down(variables: Mapping, random: Mapping, order: Sequence[str],
                       depth: int) -> dict:
    """``variables`` with the last ``depth`` stages of ``order`` (``stages``: first to run
    first) re-initialised from ``random``: depth 1 the classifier only, ``len(order)`` the
    whole model."""
    count = len(order)
    return randomise(variables, random, {stage: count - 1 - i < depth
                                         for i, stage in enumerate(order)})


def cascade(order: Sequence[str]) -> np.ndarray:
    """bool ``[S, S]``: row ``s`` (a stage of ``order``, first to run first), column ``d``:
    whether that stage is randomised at depth ``d + 1`` (the last ``d + 1`` stages)."""
    count = len(order)
    position_from_top = count - 1 - np.arange(count)
    return position_from_top[:, None] <= np.arange(count)[None, :]


# --------------------------------------------------------------------------- input shift
@dataclasses.dataclass(frozen=True)
class FirstLayer:
    """Where a constant input shift is absorbed: ``kernel`` (path in ``params``) of the
    model's first Conv or Dense layer, and ``offset`` (collection and path) of the array that
    compensates it: the layer's own bias (``sign`` −1: b' = b − c·ΣW) or, for a layer without
    bias, the running mean of the batch normalisation right after it (``sign`` +1: μ' = μ +
    c·ΣW; exact in evaluation mode, which uses the running statistics)."""

    kernel: tuple[str, ...]
    offset: tuple[str, ...]
    sign: float

    @property
    def name(self) -> str:
        return "/".join(self.kernel[:-1])

    def describe(self) -> str:
        how = "its bias" if self.sign < 0 else "the running mean of the batch norm after it"
        return f"{self.name} (shift absorbed by {how})"


def _get(tree: Mapping, path: Sequence[str]):
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def first_layer(model, x: jnp.ndarray, variables: Mapping, **kwargs) -> FirstLayer:
    """The first layer of ``model`` (the first ``kernel`` in ``parameter_order``) and how its
    output can absorb a constant input shift; ``ValueError`` with the reason where it cannot
    (no kernel, a kernel whose last axis is not its outputs, neither a bias nor a batch
    normalisation after it). Whether the layer really is the first thing applied to the input
    is not known from the parameters: check the logits (``absorb_shift``)."""
    order = parameter_order(model, x, **kwargs)
    params = variables.get("params", {})
    index = next((i for i, p in enumerate(order) if p[-1] == "kernel"), None)
    if index is None:
        raise ValueError("the model has no Conv or Dense layer (no 'kernel' parameter)")
    kernel_path = order[index]
    layer = kernel_path[:-1]
    kernel = _get(params, kernel_path)
    outputs = kernel.shape[-1]
    bias = _get(params, layer + ("bias",))
    if bias is not None and bias.shape == (outputs,):
        return FirstLayer(kernel_path, ("params", *layer, "bias"), -1.0)
    following = next((p[:-1] for p in order[index + 1:] if p[:-1] != layer), None)
    if following is not None:
        for collection, tree in variables.items():
            mean = _get(tree, following + ("mean",)) if collection != "params" else None
            if mean is not None and mean.shape == (outputs,):
                return FirstLayer(kernel_path, (collection, *following, "mean"), 1.0)
    raise ValueError(f"its first layer {'/'.join(layer)} has no bias and no batch "
                     f"normalisation right after it to absorb a shift")


def absorb_shift(variables: Mapping, layer: FirstLayer, shift: float) -> dict:
    """``variables`` changed so that the model gives the same logits for ``x + shift`` as
    before for ``x`` (``shift``: a scalar added to every input value): the layer's output
    grows by ``shift · ΣW`` (the kernel summed over all but its output axis), which the bias
    (or the following running mean) takes back. Exact for a Dense layer and for a Conv
    without padding; a zero-padded ('SAME') convolution sees the shift only on its taps
    inside the input, so outputs at the borders keep a difference (measure the logits)."""
    kernel = _get(variables["params"], layer.kernel)
    total = shift * jnp.sum(kernel.astype(jnp.float32), axis=tuple(range(kernel.ndim - 1)))

    def replace(tree, path):
        if not path:
            return (tree + layer.sign * total).astype(tree.dtype)
        return {k: replace(v, path[1:]) if k == path[0] else v for k, v in tree.items()}

    return replace(dict(variables), layer.offset)


# --------------------------------------------------------------------------- similarity
def _flat(maps: jnp.ndarray) -> jnp.ndarray:
    return maps.reshape(maps.shape[0], -1).astype(jnp.float32)


def _average_ranks(values: jnp.ndarray) -> jnp.ndarray:
    """Ranks (0-based) of ``values [n]``, ties sharing their average rank."""
    ordered = jnp.sort(values)
    low = jnp.searchsorted(ordered, values, side="left")
    high = jnp.searchsorted(ordered, values, side="right")
    return (low + high - 1).astype(jnp.float32) / 2


def spearman(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Spearman rank correlation ``[B]`` between ``a`` and ``b`` (``[B, ...]``, same shape),
    over all positions of each example; NaN where either is constant."""
    ra, rb = jax.vmap(_average_ranks)(_flat(a)), jax.vmap(_average_ranks)(_flat(b))
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    norm = jnp.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return jnp.where(norm > 0, (ra * rb).sum(1) / jnp.where(norm > 0, norm, 1.0), jnp.nan)


def ssim(a: jnp.ndarray, b: jnp.ndarray, window: int = SSIM_WINDOW) -> jnp.ndarray:
    """Mean SSIM ``[B]`` of maps ``a``, ``b`` ``[B, T, h, w]`` with values in [0, 1] (data
    range 1): per frame over the valid ``window × window`` windows (one window of the whole
    frame where it is smaller), then over the frames (module docstring)."""
    wh, ww = min(window, a.shape[-2]), min(window, a.shape[-1])
    frames = a.shape[:-2]
    a = a.reshape((-1,) + a.shape[-2:]).astype(jnp.float32)
    b = b.reshape((-1,) + b.shape[-2:]).astype(jnp.float32)

    def mean(v):
        return jax.lax.reduce_window(v, 0.0, jax.lax.add, (1, wh, ww), (1, 1, 1),
                                     "VALID") / (wh * ww)

    ma, mb = mean(a), mean(b)
    va, vb, cov = mean(a * a) - ma**2, mean(b * b) - mb**2, mean(a * b) - ma * mb
    index = ((2 * ma * mb + SSIM_C1) * (2 * cov + SSIM_C2)
             / ((ma**2 + mb**2 + SSIM_C1) * (va + vb + SSIM_C2)))
    return index.mean(axis=(1, 2)).reshape(frames).reshape(frames[0], -1).mean(1)


def top_k_overlap(a: jnp.ndarray, b: jnp.ndarray, fraction: float = TOP_FRACTION
                  ) -> jnp.ndarray:
    """Share ``[B]`` of the ``k = max(1, round(fraction · n))`` largest of the ``n`` positions
    of ``a`` that are also among the ``k`` largest of ``b`` (``[B, ...]``)."""
    fa, fb = _flat(a), _flat(b)
    n = fa.shape[1]
    k = max(1, round(fraction * n))

    def members(values):
        return jnp.zeros(n, bool).at[jax.lax.top_k(values, k)[1]].set(True)

    shared = jax.vmap(members)(fa) & jax.vmap(members)(fb)
    return shared.sum(1).astype(jnp.float32) / k


def similarities(reference: jnp.ndarray, other: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """The three scores of ``SCORES`` (each ``[B]``) between two batches of maps
    ``[B, T, h, w]``, on absolute values (module docstring)."""
    a, b = jnp.abs(reference), jnp.abs(other)
    return {"spearman": spearman(a, b),
            "ssim": ssim(normalise(a), normalise(b)),
            "top_k": top_k_overlap(a, b)}


def normalised_difference(reference: jnp.ndarray, other: jnp.ndarray) -> jnp.ndarray:
    """Mean absolute difference ``[B]`` of the absolute maps, each min-max normalised per
    example to [0, 1]: 0 for maps equal up to scale, at most 1."""
    a, b = normalise(jnp.abs(reference)), normalise(jnp.abs(other))
    return jnp.abs(_flat(a) - _flat(b)).mean(1)


def score_sums(scores: Mapping[str, jnp.ndarray], mask: jnp.ndarray) -> jnp.ndarray:
    """float ``[2, len(SCORES)]``: sums and counts of each score of ``similarities`` over the
    examples where ``mask`` ``[B]`` is true and the score is defined (not NaN)."""
    values = jnp.stack([scores[name] for name in SCORES])          # [S, B]
    valid = mask[None, :] & jnp.isfinite(values)
    return jnp.stack([jnp.where(valid, values, 0.0).sum(1), valid.sum(1).astype(jnp.float32)])


def score_means(sums: np.ndarray) -> dict[str, float | None]:
    """``score_sums`` totals (``[2, S]``, host) → each score's mean, None where undefined."""
    sums = np.asarray(sums)
    return {name: float(sums[0, i] / sums[1, i]) if sums[1, i] > 0 else None
            for i, name in enumerate(SCORES)}


def finite(value: float | None) -> float | None:
    """``value`` as a JSON-ready float, None for None or NaN."""
    return None if value is None or not math.isfinite(value) else float(value)
