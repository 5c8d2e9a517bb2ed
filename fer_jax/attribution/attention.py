"""Attention-based explanations of transformers: attention rollout, gradient-weighted rollout
and Chefer et al.'s relevance propagation, for TimeSformer (divided, joint and space-only
attention) and for generic ViT-style models.

Every method reads the attention probabilities ``A`` the model sows into its
``intermediates`` collection (one ``[..., heads, S, S]`` map per attention module, rows are
queries), turns each into a token-mixing matrix ``M`` and multiplies the matrices of all layers,
reading the row of the cls token::

    row = e_clsᵀ · M_L · M_{L-1} ··· M_1          (layer 1 is the first, nearest the input)

The product is never formed: the cls *row vector* is propagated from the last layer down, so
divided attention never materialises a ``(1+N·T)²`` matrix.

Per-layer matrices (heads on axis ``-3``; ``fuse`` is the mean, min or max over heads):

* ``rollout`` (Abnar & Zuidema 2020, as in Gildenblat's vit-explain):
  ``F = fuse_h(A)``; optionally the lowest ``discard_ratio`` fraction of the entries of each
  fused map is zeroed (the entry ``[0, 0]``, cls → cls, never is; vit-explain takes the
  ``int(S²·ratio)`` lowest entries and then spares index 0, so one fewer is dropped when it is
  among them); ``M = (F + I) / rowsum(F + I)``. Every ``M`` is row-stochastic, so is the product,
  and the cls row (cls entry included) sums to 1.
* ``rollout_grad`` (vit-explain's ``grad_rollout``): the same with ``F = max(fuse_h(∇A ⊙ A), 0)``,
  ``∇A = d target logit / d A``. vit-explain fuses (mean over heads) *and then* clamps at 0;
  this follows its code (with ``head_fusion='mean'`` the default).
* ``chefer_relevance`` (Chefer, Gur & Wolf 2021, "Generic attention-model explainability",
  rule for self-attention): ``Ā = mean_h[max(∇A ⊙ A, 0)]`` (clamped *before* the head mean),
  ``R ← R + Ā·R`` from ``R = I``, i.e. ``R = (I + Ā_L) ··· (I + Ā_1)``, ``M = I + Ā``; the row
  form is ``r ← r + r·Ā`` from the last layer down. No normalisation, no discarding; with zero
  gradients the cls row is ``e_cls`` (only the cls token is relevant).

Deliberate differences from vit-explain: rows are normalised by their own sums (its
``a / a.sum(dim=-1)`` broadcasts the row sums over columns, a known bug), gradients are paired
with the attention of their own layer (its backward hooks record them last layer first, so its
``zip`` pairs layer l with layer L+1-l), the cls → cls entry is also spared by the gradient
variant's discarding, every example of the batch is discarded in (it only discards example 0),
and the maps are returned unnormalised (it divides by the maximum).

TimeSformer layouts (``models.timesformer``; N = h·w patches, row-major; T frames):

* divided space-time: a block applies temporal attention (``[B, N, heads, T, T]``, one sequence
  per patch position, the cls token untouched), then spatial attention (``[B, T, heads, 1+N,
  1+N]``, one sequence [cls, N patches] per frame, the cls token replicated per frame and its T
  outputs averaged). Its token mixing is spatial ∘ temporal, so going down, the row meets the
  spatial operator first and the temporal one second. The row is kept as ``r_cls [B]`` and
  ``r_tok [B, N, T]``. Spatial operator with per-frame matrices ``M_t [1+N, 1+N]``:
  ``v_t = [r_cls / T, r_tok[:, t]]``, ``u_t = v_t · M_t``, ``r_cls ← Σ_t u_t[0]``,
  ``r_tok[:, t] ← u_t[1:]`` — exactly the row times the ``(1+N·T)²`` matrix whose cls row is
  the mean over frames of the ``M_t`` cls rows and whose frame-t rows are those of ``M_t`` (the
  replicate-and-average of the model); identity addition, normalisation and discarding are
  applied to each per-frame (and each per-patch temporal) matrix, which keeps the lifted
  operators row-stochastic for rollout and equal to ``I + lift(Ā)`` for Chefer. Temporal
  operator with per-patch ``M_n [T, T]``: ``r_tok[n, :] ← r_tok[n, :] · M_n``. Temporal maps
  have no cls token, so their discarding spares no entry. ``mode`` chooses the attention used:
  ``'both'`` (default), ``'spatial'`` (temporal attention taken as the identity; Du Toit's
  TimeSformer explanations apply Chefer's rule to the spatial maps only, which is this mode)
  or ``'temporal'`` (spatial attention as the identity: the cls row only reaches the tokens
  through the mean of the per-frame cls entries, so relevance flows cls → cls and the maps
  are zero — useful mostly as a control).
* joint space-time: ``[B, heads, 1+N·T, 1+N·T]``, token ``1 + n·T + t``; a plain row product.
* space-only: every frame is its own sequence with its own cls token and the final cls is the
  mean over frames, so the row starts at ``1/T`` on each frame's cls and each frame propagates
  independently with its ``[1+N, 1+N]`` maps.

Joint and space-only attention have no temporal maps: ``mode='spatial'`` and ``'both'`` are the
same there and ``'temporal'`` is an error.

TimeSformer maps are ``[B, T, h, w]`` (the relevance of each frame's patch tokens for the cls
token; ``h, w = H // patch, W // patch``). A generic model (anything but TimeSformer) must sow
``[B, heads, S, S]`` maps with the cls token at index 0 (``self.sow('intermediates', name,
probs)``) in modules called once per forward pass; its maps are ``[B, S-1]``. Layers are
ordered by the natural sort of their module paths (``blocks_10`` after ``blocks_2``).

Gradient methods get ``d target logit / d A`` with one forward and one backward pass for the
whole batch: the attention modules add a ``perturbations`` variable to the probabilities
(``if not self.is_initializing(): probs = self.perturb(name, probs)``), which is set to zero
and differentiated. All functions are pure and jit- and vmap-compatible.
"""
from __future__ import annotations

import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct, traverse_util

from fer_jax.attribution.core import Target, Variables, inference_variables, target_logits
from fer_jax.errors import UserError
from fer_jax.naturalsort import natural_key

HEAD_FUSIONS = ("mean", "min", "max")
DEFAULT_HEAD_FUSION = "mean"  # vit-explain's; Du Toit's Rollout takes "min" (explainers.py)
MODES = ("spatial", "temporal", "both")
HIGHEST = jax.lax.Precision.HIGHEST


@struct.dataclass
class AttentionMap:
    """One attention module's sown probabilities (and d score / d probabilities); a pytree
    whose ``path`` and ``kind`` are static, so ``collect`` can be jitted.

    ``kind``: ``'joint'`` ``[B, heads, S, S]`` (cls at 0), ``'spatial'`` (divided)
    ``[B, T, heads, 1+N, 1+N]``, ``'temporal'`` ``[B, N, heads, T, T]`` or ``'frames'``
    (space-only) ``[B, T, heads, 1+N, 1+N]``.
    """

    path: str = struct.field(pytree_node=False)
    kind: str = struct.field(pytree_node=False)
    probs: jnp.ndarray
    grads: jnp.ndarray | None = None


# --------------------------------------------------------------------------------------------
# Collecting the maps


def _paths(tree: dict) -> str:
    return ", ".join(sorted(("/".join(k) for k in tree), key=natural_key))


TOKEN_LAYOUTS = ("divided_space_time", "joint_space_time", "space_only")


def _layout(model: nn.Module) -> str:
    """The token layout the model declares: a TimeSformer-like model has an
    ``attention_type`` in ``TOKEN_LAYOUTS`` and a ``patch_size`` (its maps are read back as
    ``[B, T, h, w]``); any other model is ``'generic'``."""
    layout = getattr(model, "attention_type", None)
    if layout in TOKEN_LAYOUTS and hasattr(model, "patch_size"):
        return layout
    return "generic"


def _missing(model: nn.Module, name: str, gradients: bool) -> UserError:
    how = f"self.sow('intermediates', {name!r}, probs)"
    if gradients:
        how += (f" and, for gradient methods, `if not self.is_initializing(): probs = "
                f"self.perturb({name!r}, probs)`")
    return UserError(f"{type(model).__name__} sows no attention maps named {name!r} in its "
                     f"'intermediates' collection; in each attention module add {how} right "
                     "after the softmax (probabilities [..., heads, S, S])")


def _by_name(tree: Any, name: str) -> dict[tuple[str, ...], Any]:
    """``{module path: leaf}`` of the entries called ``name`` of a (nested) collection."""
    if not tree:
        return {}
    flat = traverse_util.flatten_dict(tree)
    return {k[:-1]: v for k, v in flat.items() if k[-1] == name}


def _single_call(path: str, sown: Any) -> jnp.ndarray:
    if isinstance(sown, tuple):
        if len(sown) != 1:
            raise UserError(f"attention module {path!r} is called {len(sown)} times in one "
                            "forward pass; every attention module must be called once")
        sown = sown[0]
    return sown


def _kind(layout: str, path: str) -> str:
    if layout == "divided_space_time":
        return "temporal" if path.rsplit("/", 1)[-1] == "temporal_attention" else "spatial"
    return {"joint_space_time": "joint", "space_only": "frames", "generic": "joint"}[layout]


def _check_shape(model, layout: str, kind: str, path: str, probs: jnp.ndarray) -> None:
    ndim = 4 if kind == "joint" else 5
    if probs.ndim != ndim or probs.shape[-1] != probs.shape[-2]:
        expected = ("[B, heads, S, S]" if kind == "joint" else "[B, *, heads, S, S]")
        extra = (" (generic models need one sequence per example with the cls token at 0)"
                 if layout == "generic" else "")
        raise UserError(f"attention map {path!r} of {type(model).__name__} has shape "
                        f"{probs.shape}; expected {expected}{extra}")


def collect(model: nn.Module, variables: Variables, x: jnp.ndarray, target: Target = None, *,
            gradients: bool = False, name: str = "attention_probs"
            ) -> tuple[list[list[AttentionMap]], jnp.ndarray]:
    """``(blocks, logits [B, C])``: the sown attention maps grouped by block in forward order
    (layers in natural order of their paths; a divided block is ``[temporal, spatial]``, every
    other block holds one map), with ``d target logit / d probs`` when ``gradients`` (one
    forward and one backward pass for the batch)."""
    variables = inference_variables(variables)
    layout = _layout(model)

    if gradients:
        shapes = jax.eval_shape(
            lambda x: model.apply(variables, x, train=False, mutable=["perturbations"])[1], x)
        shapes = shapes.get("perturbations", {})
        if not _by_name(shapes, name):
            raise _missing(model, name, gradients=True)
        # Every perturbation the model makes must be passed (flax rejects a partial
        # collection); only those called `name` are kept.
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def score(perturbations):
            logits, state = model.apply({**variables, "perturbations": perturbations}, x,
                                        train=False, mutable=["intermediates"])
            return target_logits(logits, target).sum(), (state, logits)

        grads, (state, logits) = jax.grad(score, has_aux=True)(zeros)
        grads = _by_name(grads, name)
    else:
        logits, state = model.apply(variables, x, train=False, mutable=["intermediates"])
        grads = {}
    sown = _by_name(state.get("intermediates", {}), name)
    if not sown:
        raise _missing(model, name, gradients)
    if gradients and set(grads) != set(sown):
        raise UserError(f"attention maps named {name!r} are sown by {_paths(sown)} but "
                        f"perturbed by {_paths(grads)}; perturb every sown map "
                        f"(probs = self.perturb({name!r}, probs))")

    blocks: dict[str, list[AttentionMap]] = {}
    for key in sown:
        path = "/".join(key)
        probs = _single_call(path, sown[key])
        kind = _kind(layout, path)
        _check_shape(model, layout, kind, path, probs)
        block = "/".join(key[:-1]) if layout == "divided_space_time" else path
        blocks.setdefault(block, []).append(AttentionMap(path, kind, probs, grads.get(key)))
    ordered = [blocks[b] for b in sorted(blocks, key=natural_key)]
    if layout == "divided_space_time":
        for block in ordered:
            kinds = [m.kind for m in block]
            if sorted(kinds) != ["spatial", "temporal"]:
                raise UserError(f"divided block {block[0].path.rsplit('/', 1)[0]!r} has "
                                f"attention maps {kinds}; expected one spatial and one temporal")
            block.sort(key=lambda m: m.kind != "temporal")  # forward order: temporal, spatial
    return ordered, logits


# --------------------------------------------------------------------------------------------
# Per-layer matrices


def _fuse(a: jnp.ndarray, head_fusion: str) -> jnp.ndarray:
    return {"mean": jnp.mean, "min": jnp.min, "max": jnp.max}[head_fusion](a, axis=-3)


def discard_lowest(fused: jnp.ndarray, ratio: float, spare_first: bool) -> jnp.ndarray:
    """Zeroes the ``int(S²·ratio)`` lowest entries of every ``[..., S, S]`` map (vit-explain),
    sparing entry ``[0, 0]`` (cls → cls) when ``spare_first``."""
    *lead, s, _ = fused.shape
    k = int(s * s * ratio)
    if k == 0:
        return fused
    flat = fused.reshape(*lead, s * s)
    _, index = jax.lax.top_k(-flat, k)
    drop = jnp.put_along_axis(jnp.zeros(flat.shape, bool), index, True, axis=-1,
                              inplace=False)
    if spare_first:
        drop = drop.at[..., 0].set(False)
    return jnp.where(drop, 0.0, flat).reshape(fused.shape)


def _rollout_matrix(fused: jnp.ndarray, discard_ratio: float, spare_first: bool) -> jnp.ndarray:
    fused = discard_lowest(fused, discard_ratio, spare_first)
    a = fused + jnp.eye(fused.shape[-1], dtype=fused.dtype)
    return a / a.sum(axis=-1, keepdims=True)


def layer_matrix(amap: AttentionMap, method: str, head_fusion: str = "mean",
                 discard_ratio: float = 0.0) -> jnp.ndarray:
    """The token-mixing matrices ``M [..., S, S]`` of one attention map (heads fused):
    ``method`` is ``'rollout'``, ``'rollout_grad'`` or ``'chefer'`` (module docstring)."""
    spare_first = amap.kind != "temporal"
    if method == "rollout":
        return _rollout_matrix(_fuse(amap.probs, head_fusion), discard_ratio, spare_first)
    weighted = amap.grads * amap.probs
    if method == "rollout_grad":
        fused = jnp.maximum(_fuse(weighted, head_fusion), 0.0)
        return _rollout_matrix(fused, discard_ratio, spare_first)
    if method == "chefer":
        cam = jnp.maximum(weighted, 0.0).mean(axis=-3)
        return cam + jnp.eye(cam.shape[-1], dtype=cam.dtype)
    raise ValueError(f"unknown method {method!r}")


def _used(kind: str, mode: str) -> bool:
    """Whether ``mode`` uses maps of ``kind`` (the others are taken as the identity)."""
    if kind == "temporal":
        return mode in ("temporal", "both")
    if kind == "spatial":
        return mode in ("spatial", "both")
    return True


def layer_matrices(blocks: list[list[AttentionMap]], method: str, head_fusion: str = "mean",
                   discard_ratio: float = 0.0, mode: str = "both"
                   ) -> list[list[tuple[str, jnp.ndarray | None]]]:
    """``[[(kind, M or None), ...] per block]`` in forward order; ``None`` is the identity (a map
    ``mode`` leaves out)."""
    return [[(m.kind, layer_matrix(m, method, head_fusion, discard_ratio)
              if _used(m.kind, mode) else None) for m in block] for block in blocks]


# --------------------------------------------------------------------------------------------
# Row-vector propagation


def _mix(row: jnp.ndarray, m: jnp.ndarray) -> jnp.ndarray:
    """``row [..., S] · m [..., S, S]`` per leading index."""
    return jnp.einsum("...j,...jk->...k", row, m, precision=HIGHEST)


def spatial_op(r_cls: jnp.ndarray, r_tok: jnp.ndarray, m: jnp.ndarray
               ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Row times the lifted divided spatial operator: ``r_cls [B], r_tok [B, N, T]``, per-frame
    ``m [B, T, 1+N, 1+N]`` (cls replicated per frame, averaged back)."""
    frames = r_tok.shape[-1]
    cls = jnp.broadcast_to((r_cls / frames)[:, None, None], (r_cls.shape[0], frames, 1))
    u = _mix(jnp.concatenate([cls, jnp.swapaxes(r_tok, 1, 2)], axis=-1), m)  # [B, T, 1+N]
    return u[:, :, 0].sum(axis=1), jnp.swapaxes(u[:, :, 1:], 1, 2)


def temporal_op(r_tok: jnp.ndarray, m: jnp.ndarray) -> jnp.ndarray:
    """Row times the lifted temporal operator: ``r_tok [B, N, T]``, per-patch ``m [B, N, T, T]``
    (the cls entry is unchanged)."""
    return _mix(r_tok, m)


def cls_row(layout: str, matrices: list[list[tuple[str, jnp.ndarray | None]]],
            shape: tuple[int, ...]) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(cls entry [B], token entries)`` of ``e_clsᵀ M_L ··· M_1``.

    ``shape`` is that of a map of the first layer. Token entries: divided ``[B, N, T]``,
    joint/generic ``[B, S-1]`` (joint order ``n·T + t``), space-only ``[B, T, N]`` (the cls
    entry summed over frames).
    """
    batch = shape[0]
    if layout == "divided_space_time":
        # A divided block's first map is the temporal one, [B, N, heads, T, T].
        r_cls = jnp.ones((batch,), jnp.float32)
        r_tok = jnp.zeros((batch, shape[1], shape[-1]), jnp.float32)
        for block in reversed(matrices):
            for kind, m in reversed(block):
                if m is None:
                    continue
                if kind == "spatial":
                    r_cls, r_tok = spatial_op(r_cls, r_tok, m)
                else:
                    r_tok = temporal_op(r_tok, m)
        return r_cls, r_tok
    if layout == "space_only":
        frames, size = shape[1], shape[-1]
        row = jnp.zeros((batch, frames, size), jnp.float32).at[:, :, 0].set(1.0 / frames)
    else:
        size = shape[-1]
        row = jnp.zeros((batch, size), jnp.float32).at[:, 0].set(1.0)
    for block in reversed(matrices):
        for _, m in reversed(block):
            row = _mix(row, m)
    if layout == "space_only":
        return row[:, :, 0].sum(axis=1), row[:, :, 1:]
    return row[:, 0], row[:, 1:]


def to_maps(model: nn.Module, layout: str, tokens: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """Token entries of the cls row (``cls_row``) as maps: TimeSformer ``[B, T, h, w]``,
    generic ``[B, S-1]``."""
    if layout == "generic":
        return tokens
    batch, frames, height, width = x.shape[:4]
    h, w = height // model.patch_size, width // model.patch_size
    if layout == "space_only":  # [B, T, N]
        return tokens.reshape(batch, frames, h, w)
    # divided [B, N, T]; joint [B, N·T] (token 1 + n·T + t): the same order
    return jnp.moveaxis(tokens.reshape(batch, h, w, frames), 3, 1)


# --------------------------------------------------------------------------------------------
# Public API


def _check(model, head_fusion: str, discard_ratio: float, mode: str) -> None:
    if head_fusion not in HEAD_FUSIONS:
        raise UserError(f"unknown head_fusion {head_fusion!r}; use one of "
                        f"{', '.join(HEAD_FUSIONS)}")
    if isinstance(discard_ratio, jax.Array) or not isinstance(discard_ratio, numbers.Real):
        raise UserError(f"discard_ratio must be a Python number in [0, 1) (it sets how many "
                        f"entries are dropped, a static size), got {discard_ratio!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise UserError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    layout = _layout(model)
    if mode == "temporal" and layout != "divided_space_time":
        raise UserError(f"mode='temporal' needs divided space-time attention (temporal "
                        f"attention maps); this model's attention is {layout!r}: use "
                        "mode='both'")


def _explain(method: str, model, variables, x, target, head_fusion, discard_ratio, mode, name,
             with_cls: bool = False):
    _check(model, head_fusion, discard_ratio, mode)
    layout = _layout(model)
    blocks, _ = collect(model, variables, x, target, gradients=method != "rollout", name=name)
    matrices = layer_matrices(blocks, method, head_fusion, discard_ratio, mode)
    r_cls, tokens = cls_row(layout, matrices, blocks[0][0].probs.shape)
    maps = to_maps(model, layout, tokens, x)
    return (r_cls, maps) if with_cls else maps


def rollout(model: nn.Module, variables: Variables, x: jnp.ndarray,
            head_fusion: str = DEFAULT_HEAD_FUSION, discard_ratio: float = 0.0, *,
            mode: str = "both", name: str = "attention_probs") -> jnp.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): the cls row of ``Π_l (F_l + I)/rowsum``.

    ``x [B, T, H, W, C]`` → maps ``[B, T, h, w]`` (TimeSformer) or ``[B, S-1]`` (generic ViT
    sowing ``[B, heads, S, S]`` under ``name``); unnormalised: with the cls entry they sum to 1
    per example. ``head_fusion``: ``'mean'`` (default, vit-explain's), ``'min'`` or ``'max'``
    over heads (Du Toit takes the minimum: "For the standard Rollout method, the minimum
    attention head is used because the other 2, namely the maximum or average, produced noisy
    outputs." — the default of the report for attention models, ``evaluation/explainers.py``);
    ``discard_ratio`` (a Python float in [0, 1)): fraction of the lowest fused entries of each
    map zeroed (cls → cls spared); ``mode`` (divided attention): ``'both'``, ``'spatial'`` or
    ``'temporal'`` attention. One forward pass; no target (attention is class-agnostic).
    """
    return _explain("rollout", model, variables, x, None, head_fusion, discard_ratio, mode, name)


def rollout_grad(model: nn.Module, variables: Variables, x: jnp.ndarray, target: Target = None,
                 head_fusion: str = DEFAULT_HEAD_FUSION, discard_ratio: float = 0.0, *,
                 mode: str = "both", name: str = "attention_probs") -> jnp.ndarray:
    """Gradient-weighted rollout (vit-explain's ``grad_rollout``): rollout of
    ``max(fuse_h(∇A ⊙ A), 0)``, ``∇A = d target logit / d A``.

    Shapes and options as ``rollout``; ``target``: None (predicted class), an int or int
    ``[B]``. One forward and one backward pass for the batch.
    """
    return _explain("rollout_grad", model, variables, x, target, head_fusion, discard_ratio,
                    mode, name)


def chefer_relevance(model: nn.Module, variables: Variables, x: jnp.ndarray,
                     target: Target = None, *, mode: str = "both",
                     name: str = "attention_probs") -> jnp.ndarray:
    """Chefer et al. 2021 relevance: the cls row of ``(I + Ā_L) ··· (I + Ā_1)``,
    ``Ā = mean_h[max(∇A ⊙ A, 0)]``.

    ``x [B, T, H, W, C]`` → maps ``[B, T, h, w]`` (TimeSformer) or ``[B, S-1]`` (generic).
    ``mode`` (divided attention): ``'both'`` (default), ``'spatial'`` (Du Toit's choice) or
    ``'temporal'``. One forward and one backward pass for the batch.
    """
    return _explain("chefer", model, variables, x, target, "mean", 0.0, mode, name)
