"""Attention rollout, gradient rollout and Chefer relevance: row-stochastic rollout, the
row-vector propagation against explicit dense products, vit-explain's rollout in numpy, exact
gradients, the perturbation guard of TimeSformer, jit and vmap."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import attribution, models
from fer_jax.attribution import attention
from fer_jax.errors import UserError
from fast import fast_jit


TYPES = ("divided_space_time", "joint_space_time", "space_only")
KWARGS = dict(num_classes=5, patch_size=8, hidden_size=32, num_layers=2, num_heads=2)
SHAPE = (2, 4, 32, 32, 3)  # T = 4 frames, h = w = 4, N = 16
TARGET = jnp.array([1, 3])


@functools.cache
def _tiny(attention_type):
    """(model, variables, x, blocks with gradients for TARGET)."""
    model = models.build("timesformer", **KWARGS, attention_type=attention_type)
    x = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    # Sharper attention than at init, so that the maps are far from uniform, and nonzero
    # zero-initialised parameters (temporal_dense, time embeddings: at init temporal attention
    # gets no gradient).
    rng = np.random.default_rng(2)  # numpy: eager JAX ops compile once per shape
    params = jax.tree.map(lambda p: p * 4.0 if p.ndim == 2 and p.any() else
                          jnp.asarray(rng.normal(size=p.shape) * 0.3, jnp.float32)
                          if p.ndim == 2 else p, variables["params"])
    variables = {"params": params}
    blocks, _ = _collect(model)(variables, x)
    return model, variables, x, blocks


@functools.cache
def _collect(model):
    return fast_jit(lambda v, x: attention.collect(model, v, x, TARGET, gradients=True))


@functools.cache
def _propagate(layout, method, head_fusion="mean", ratio=0.0, mode="both"):
    """Jitted ``blocks → (matrices [[M or None per map] per block], cls entry, token entries)``."""
    def fn(blocks):
        mats = attention.layer_matrices(blocks, method, head_fusion, ratio, mode)
        row = attention.cls_row(layout, mats, blocks[0][0].probs.shape)
        return ([[m for _, m in block] for block in mats], *row)
    return fast_jit(fn)


# --------------------------------------------------------------------------------------------
# TimeSformer: perturbation guard and attribution grid


def test_init_has_no_perturbations_and_apply_takes_any_batch():
    model, variables, x, blocks = _tiny("divided_space_time")
    assert set(jax.eval_shape(model.init, jax.random.PRNGKey(1), x)) == {"params"}
    # Batch 3 with the variables of an init at batch 2 (a perturbation made at init would
    # have batch 2 and break this).
    init = jax.eval_shape(model.init, jax.random.PRNGKey(1), x)
    x3 = jax.ShapeDtypeStruct((3,) + x.shape[1:], x.dtype)
    assert jax.eval_shape(model.apply, init, x3).shape == (3, 5)
    _, state = jax.eval_shape(
        lambda x: model.apply(variables, x, mutable=["perturbations", "intermediates"]), x)
    assert jax.tree.map(lambda s: s.shape, state["perturbations"]) == \
        jax.tree.map(lambda s: s[0].shape, state["intermediates"],
                     is_leaf=lambda t: isinstance(t, tuple))
    # The row sums of the sown maps are those of probabilities; grads are present.
    for block in blocks:
        for amap in block:
            np.testing.assert_allclose(amap.probs.sum(-1), 1.0, rtol=1e-5)
            assert amap.grads.shape == amap.probs.shape and np.abs(amap.grads).max() > 0


@pytest.mark.parametrize("attention_type", TYPES)
def test_attribution_grid_on_unbound_model(attention_type):
    model = models.build("timesformer", **KWARGS, attention_type=attention_type)
    assert model.attribution_layer == "blocks_1/layernorm_before"
    b, t, n, d = 2, 4, 16, 3
    x = jnp.zeros(SHAPE)
    tokens = jnp.arange(b * n * t * d, dtype=jnp.float32).reshape(b, n, t, d)
    if attention_type == "divided_space_time":
        output = (jnp.zeros((b, d)), tokens)
    elif attention_type == "joint_space_time":
        output = jnp.concatenate([jnp.zeros((b, 1, d)), tokens.reshape(b, n * t, d)], axis=1)
    else:
        output = jnp.concatenate([jnp.zeros((b, t, 1, d)), jnp.swapaxes(tokens, 1, 2)], axis=2)
    grid = model.attribution_grid(output, x)
    assert grid.shape == (b, t, 4, 4, d)
    # frame 2, patch row 1, column 3 is patch n = 1·4 + 3
    np.testing.assert_array_equal(grid[:, 2, 1, 3], tokens[:, 7, 2])
    if attention_type == "divided_space_time":  # the spatial layernorm_before: [B, T, 1+N, D]
        frames = jnp.concatenate([jnp.zeros((b, t, 1, d)), jnp.swapaxes(tokens, 1, 2)], axis=2)
        np.testing.assert_array_equal(model.attribution_grid(frames, x), grid)


@pytest.mark.parametrize("attention_type", TYPES)
def test_grad_cam_default_layer_reaches_the_logits(attention_type):
    """The last block's output tokens never reach the cls token; the default layer (its
    attention LayerNorm) does, so Grad-CAM maps are not identically zero."""
    model, variables, x, _ = _tiny(attention_type)
    maps = fast_jit(functools.partial(attribution.grad_cam, model))(variables, x)
    assert maps.shape == (x.shape[0], x.shape[1], 4, 4)
    assert float(jnp.abs(maps).max()) > 0


# --------------------------------------------------------------------------------------------
# Rollout is row-stochastic


@pytest.mark.parametrize("attention_type", TYPES)
def test_rollout_matrices_and_cls_row_are_stochastic(attention_type):
    model, variables, x, blocks = _tiny(attention_type)
    for method in ("rollout", "rollout_grad"):
        for head_fusion in attention.HEAD_FUSIONS:
            for ratio in (0.0, 0.5):
                mats, r_cls, tokens = _propagate(attention_type, method, head_fusion,
                                                 ratio)(blocks)
                for block in mats:
                    for m in block:
                        assert (m >= 0).all()
                        np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-5)
                total = r_cls + tokens.reshape(len(r_cls), -1).sum(-1)
                np.testing.assert_allclose(total, 1.0, rtol=1e-5)
                assert (tokens >= 0).all() and (r_cls < 1).all()
    # Discarding zeroes the lowest int(S²·ratio) entries of each fused map, the cls → cls
    # entry excepted.
    for amap in (m for block in blocks for m in block):
        fused = np.asarray(amap.probs.max(axis=-3))
        size = fused.shape[-1] ** 2
        flat = fused.reshape(-1, size)
        kept = np.asarray(fast_jit(attention.discard_lowest, static_argnums=(1, 2))(
            fused, 0.5, amap.kind != "temporal")).reshape(-1, size)
        for f, d in zip(flat, kept):
            lowest = np.argsort(f)[:size // 2]
            if amap.kind != "temporal":
                lowest = lowest[lowest != 0]
            expected = f.copy()
            expected[lowest] = 0
            np.testing.assert_array_equal(d, expected)


# --------------------------------------------------------------------------------------------
# Divided attention: row propagation == explicit (1+N·T)² products


def _dense_spatial(m):
    """The ``(1+N·T)²`` lift of per-frame matrices ``m [T, 1+N, 1+N]`` (token 1 + n·T + t)."""
    t_, s, _ = m.shape
    n_ = s - 1
    out = np.zeros((1 + n_ * t_,) * 2)
    for t in range(t_):
        idx = 1 + np.arange(n_) * t_ + t
        out[0, 0] += m[t, 0, 0] / t_
        out[0, idx] = m[t, 0, 1:] / t_
        out[idx, 0] = m[t, 1:, 0]
        out[np.ix_(idx, idx)] = m[t, 1:, 1:]
    return out


def _dense_temporal(m):
    """The ``(1+N·T)²`` lift of per-patch matrices ``m [N, T, T]``; cls unchanged."""
    n_, t_, _ = m.shape
    out = np.zeros((1 + n_ * t_,) * 2)
    out[0, 0] = 1.0
    for n in range(n_):
        idx = 1 + n * t_ + np.arange(t_)
        out[np.ix_(idx, idx)] = m[n]
    return out


@pytest.mark.parametrize("mode", attention.MODES)
@pytest.mark.parametrize("method", ["rollout", "chefer"])
def test_divided_row_propagation_equals_dense_product(method, mode):
    _, _, _, blocks = _tiny("divided_space_time")
    mats, r_cls, tokens = _propagate("divided_space_time", method, "max",
                                     0.3 if method == "rollout" else 0.0, mode)(blocks)
    for b in range(2):
        total = np.eye(1 + 16 * 4)
        for block, (tm, sm) in zip(blocks, mats):  # forward order; x_out = spatial·temporal·x
            assert [m.kind for m in block] == ["temporal", "spatial"]
            temporal = np.eye(len(total)) if tm is None else _dense_temporal(np.asarray(tm[b]))
            spatial = np.eye(len(total)) if sm is None else _dense_spatial(np.asarray(sm[b]))
            total = spatial @ temporal @ total
        np.testing.assert_allclose(r_cls[b], total[0, 0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(tokens[b].reshape(-1), total[0, 1:], rtol=1e-4, atol=1e-7)
    if mode == "temporal":  # the cls row reaches the patches only through spatial attention
        np.testing.assert_array_equal(tokens, 0.0)
    else:
        assert np.abs(tokens).max() > 1e-4


# --------------------------------------------------------------------------------------------
# Joint attention == vit-explain's rollout (with per-row normalisation)


def vit_explain_rollout(attentions, discard_ratio, head_fusion):
    """vit-explain's ``rollout`` for one example: ``attentions`` [heads, S, S] per layer."""
    result = np.eye(attentions[0].shape[-1])
    for a in attentions:
        fused = {"mean": np.mean, "min": np.min, "max": np.max}[head_fusion](a, axis=0)
        flat = fused.reshape(-1).copy()
        indices = np.argsort(flat, kind="stable")[:int(flat.size * discard_ratio)]
        flat[indices[indices != 0]] = 0
        fused = flat.reshape(fused.shape)
        a = (fused + np.eye(len(fused))) / 2
        a = a / a.sum(axis=-1, keepdims=True)  # vit-explain: a.sum(dim=-1), i.e. by column
        result = a @ result
    return result[0, 1:]


@pytest.mark.parametrize("head_fusion", attention.HEAD_FUSIONS)
def test_joint_rollout_matches_vit_explain(head_fusion):
    model, variables, x, _ = _tiny("joint_space_time")
    _, state = fast_jit(functools.partial(model.apply, mutable=["intermediates"]))(variables, x)
    layers = [np.asarray(state["intermediates"][f"blocks_{i}"]["attention"]
                         ["attention_probs"][0]) for i in range(2)]
    ratios = (0.0, 0.9)
    maps = fast_jit(lambda v, x: [attention.rollout(model, v, x, head_fusion, r)
                                  for r in ratios])(variables, x)
    for ratio, m in zip(ratios, maps):
        for b in range(2):
            expected = vit_explain_rollout([a[b] for a in layers], ratio, head_fusion)
            expected = expected.reshape(16, 4).T.reshape(4, 4, 4)  # token 1 + n·T + t
            np.testing.assert_allclose(m[b], expected, rtol=1e-4, atol=1e-7)
    assert not np.allclose(maps[0], maps[1])


def test_joint_gradient_methods_match_numpy():
    """Chefer: R ← R + Ā·R with Ā = mean_h[max(∇A ⊙ A, 0)]; gradient rollout: vit-explain's
    grad_rollout (fuse, then clamp at 0) with gradients paired with their own layer."""
    _, _, _, blocks = _tiny("joint_space_time")
    _, chefer_cls, chefer = _propagate("joint_space_time", "chefer")(blocks)
    _, _, grad_rollout = _propagate("joint_space_time", "rollout_grad", "mean", 0.5)(blocks)
    probs = [np.asarray(block[0].probs, np.float64) for block in blocks]
    grads = [np.asarray(block[0].grads, np.float64) for block in blocks]
    for b in range(2):
        relevance = np.eye(65)
        for a, g in zip(probs, grads):
            relevance = relevance + np.maximum(g[b] * a[b], 0).mean(0) @ relevance
        np.testing.assert_allclose(chefer_cls[b], relevance[0, 0], rtol=1e-5)
        np.testing.assert_allclose(chefer[b], relevance[0, 1:], rtol=1e-4, atol=1e-7)
        weighted = [np.maximum((g[b] * a[b]).mean(0), 0)[None] for a, g in zip(probs, grads)]
        np.testing.assert_allclose(grad_rollout[b], vit_explain_rollout(weighted, 0.5, "mean"),
                                   rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Chefer: zero gradients give the identity row; gradients are exact


@pytest.mark.parametrize("attention_type", TYPES)
def test_chefer_with_zero_gradients_is_the_identity_row(attention_type):
    model, variables, x, blocks = _tiny(attention_type)
    params = dict(variables["params"])
    params["classifier"] = jax.tree.map(np.zeros_like, params["classifier"])
    zero_blocks, _ = _collect(model)({"params": params}, x)  # constant logits
    assert not any(np.any(m.grads) for block in zero_blocks for m in block)
    modes = attention.MODES if attention_type == "divided_space_time" else ("spatial", "both")
    for mode in modes:
        _, r_cls, tokens = _propagate(attention_type, "chefer", mode=mode)(zero_blocks)
        np.testing.assert_array_equal(r_cls, 1.0)
        np.testing.assert_array_equal(tokens, 0.0)
    # With real gradients relevance leaves the cls token.
    _, r_cls, tokens = _propagate(attention_type, "chefer")(blocks)
    assert (r_cls > 1).all() and np.abs(tokens).max() > 1e-4


def test_attention_gradients_equal_finite_differences():
    model, variables, x, blocks = _tiny("divided_space_time")

    def explicit_score(perturbations):
        logits = model.apply({**variables, "perturbations": perturbations}, x)
        return jnp.take_along_axis(logits, TARGET[:, None], 1).sum()

    score = fast_jit(explicit_score)
    zeros = {f"blocks_{i}": {m: {"attention_probs": np.zeros(s, np.float32)} for m, s in (
        ("attention", (2, 4, 2, 17, 17)), ("temporal_attention", (2, 16, 2, 4, 4)))}
        for i in range(2)}
    autodiff = fast_jit(jax.grad(explicit_score))(zeros)
    rng = np.random.default_rng(0)
    eps = 2e-3
    for i, block in enumerate(blocks):
        for amap in block:
            block_name, module = amap.path.split("/")
            assert block_name == f"blocks_{i}"
            np.testing.assert_allclose(amap.grads, autodiff[block_name][module]["attention_probs"],
                                       rtol=1e-4, atol=1e-6)
            v = rng.normal(size=amap.probs.shape).astype(np.float32)
            numeric = []
            for sign in (1, -1):
                delta = jax.tree.map(np.copy, zeros)
                delta[block_name][module]["attention_probs"] = sign * eps * v
                numeric.append(score(delta))
            np.testing.assert_allclose(float((amap.grads * v).sum()),
                                       (numeric[0] - numeric[1]) / (2 * eps), rtol=1e-2,
                                       atol=1e-3)


# --------------------------------------------------------------------------------------------
# jit, vmap, batch independence


def test_jit_vmap_and_batch_independence():
    model, variables, x, _ = _tiny("divided_space_time")
    xs = jnp.stack([x, x[::-1] * 0.5])  # [2, B, T, H, W, C]

    def explain(xb):
        return (attention.rollout(model, variables, xb, "min", 0.5),
                attention.chefer_relevance(model, variables, xb, mode="spatial"),
                attention.rollout_grad(model, variables, xb))

    batched = fast_jit(jax.vmap(explain))(xs)
    single = fast_jit(explain)
    for i in range(2):
        for b, s in zip(batched, single(xs[i])):
            assert b.shape == (2, 2, 4, 4, 4)
            np.testing.assert_allclose(b[i], s, rtol=1e-5, atol=1e-8)
    for b, s in zip(batched, single(x[1:])):  # examples do not interact
        np.testing.assert_allclose(b[0, 1:], s, rtol=1e-5, atol=1e-8)
        assert not np.allclose(b[0, 0], b[0, 1])


# --------------------------------------------------------------------------------------------
# Generic ViT-style models: natural layer order, errors


class ToyAttention(nn.Module):
    heads: int = 2
    use_perturb: bool = True

    @nn.compact
    def __call__(self, x):
        b, s, d = x.shape
        q, k = (nn.Dense(self.heads * d)(x).reshape(b, s, self.heads, d) for _ in range(2))
        probs = nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k), axis=-1)
        self.sow("intermediates", "probs", probs)
        if self.use_perturb and not self.is_initializing():
            probs = self.perturb("probs", probs)
        return x + 0.1 * jnp.einsum("bhqk,bkd->bqd", probs, x)


class ToyViT(nn.Module):
    """11 layers: ``blocks_10`` must come after ``blocks_9``, not after ``blocks_1``."""

    use_perturb: bool = True
    use_sow: bool = True

    @nn.compact
    def __call__(self, x, train=False):
        for i in range(11):
            if self.use_sow:
                x = ToyAttention(use_perturb=self.use_perturb, name=f"blocks_{i}")(x)
            else:
                x = x + nn.Dense(x.shape[-1], name=f"blocks_{i}")(x)
        return nn.Dense(3)(x[:, 0])


def test_generic_model_layers_in_natural_order_and_errors():
    model = ToyViT()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 4)), jnp.float32)
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    assert set(variables) == {"params"}

    @fast_jit
    def run(variables, x):
        _, state = model.apply(variables, x, mutable=["intermediates"])
        return (state, attention.rollout(model, variables, x, name="probs"),
                attention.chefer_relevance(model, variables, x, 0, name="probs"))

    state, maps, relevance = run(variables, x)
    layers = [np.asarray(state["intermediates"][f"blocks_{i}"]["probs"][0]) for i in range(11)]
    assert maps.shape == relevance.shape == (2, 4)
    for b in range(2):
        np.testing.assert_allclose(maps[b], vit_explain_rollout([a[b] for a in layers], 0.0,
                                                                "mean"), rtol=1e-4, atol=1e-7)
    assert np.isfinite(relevance).all() and np.abs(relevance).max() > 0

    with pytest.raises(UserError, match=r"sows no attention maps named 'attention_probs'.*"
                                        r"self.sow\('intermediates'"):
        jax.eval_shape(lambda x: attention.rollout(model, variables, x), x)
    with pytest.raises(UserError, match=r"self.perturb\('probs', probs\)"):
        jax.eval_shape(lambda x: attention.rollout_grad(ToyViT(use_perturb=False), variables, x,
                                                        name="probs"), x)
    plain = ToyViT(use_sow=False)
    with pytest.raises(UserError, match="sows no attention maps"):
        jax.eval_shape(lambda x: attention.rollout(
            plain, plain.init(jax.random.PRNGKey(1), x), x, name="probs"), x)
    for kwargs, match in ((dict(head_fusion="median"), "head_fusion"),
                          (dict(discard_ratio=1.0), r"discard_ratio must be in \[0, 1\)"),
                          (dict(discard_ratio=jnp.float32(0.5)), "Python number"),
                          (dict(mode="spacetime"), "unknown mode"),
                          (dict(mode="temporal"), "needs divided space-time attention")):
        with pytest.raises(UserError, match=match):
            attention.rollout(model, variables, x, name="probs", **kwargs)
