"""AttnLRP: each rule's conservation on its own (GELU, LayerNorm, softmax, the attention
products), conservation through divided, joint and space-only TimeSformers (bias-free:
``Σ R_x = logit``; with biases: the exact account of what biases, embeddings and softmaxes
absorb), token relevance, the forward pass unchanged, and parity with the authors' ``lxt`` on
HF's PyTorch TimeSformer with the same weights."""
import functools
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fer_jax import attribution, models
from fer_jax.attribution.attn_lrp import (ATTENTION_RULES, AttnLRPRules, attn_lrp,
                                          attn_lrp_relevance, identity_rule, scale_gradient,
                                          token_relevance)
from fer_jax.attribution.core import LayerTaps, target_logits
from fer_jax.errors import UserError
from fer_jax.models import timesformer
from fast import fast_jit

TYPES = ("divided_space_time", "joint_space_time", "space_only")
KWARGS = dict(num_classes=3, patch_size=4, hidden_size=8, num_layers=1, num_heads=2)
SHAPE = (2, 2, 8, 8, 3)  # T = 2 frames, h = w = 2 patches
TARGET = jnp.array([1, 2])
# Additive parameters: they take relevance Σ b ⊙ s (biases of Dense, Conv and LayerNorm, and
# the embeddings). "Bias-free" variables have all of them zero.
SOURCES = ("bias", "cls_token", "position_embeddings", "time_embeddings")


def _random(shapes, seed, scale=0.5):
    """Every parameter of ``shapes`` (from ``jax.eval_shape`` of an init) drawn from
    N(0, scale²) (numpy: no compile per shape)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * scale, p.dtype), shapes)


def _without_sources(params):
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: jnp.zeros_like(p) if k[-1] in SOURCES else p
                                         for k, p in flat.items()})


def _normal(shape, seed, scale=1.0, shift=0.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale + shift,
                       jnp.float32)


def _params(module, *args, seed=1, scale=0.5):
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args))["params"]
    return _random(shapes, seed, scale)


@functools.cache
def _tiny(attention_type):
    """(model, random params, x, qkv paths)."""
    model = models.build("timesformer", **KWARGS, attention_type=attention_type)
    x = _normal(SHAPE, 0)
    params = _params(model, x)
    qkv = [p for p in attribution.module_paths(model, {"params": params}, x)
           if p.endswith("/qkv")]
    return model, params, x, qkv


# --------------------------------------------------------------------------------------------
# Each rule on its own


def test_scale_gradient_and_identity_rule():
    """``scale_gradient``: values unchanged, cotangent scaled. GELU by the identity rule:
    ``R_h = h ⊙ s_h`` equals ``R_a = gelu(h) ⊙ s_a`` elementwise (``h = 0`` included)."""
    z, s_a = _normal((4, 6), 0).at[0, 0].set(0.0), _normal((4, 6), 1)
    factor = jnp.linspace(0.0, 1.0, 6)

    def run(z, s_a):
        scaled, vjp = jax.vjp(lambda z: scale_gradient(z, factor), z)
        gelu = nn.gelu(z, approximate=False)
        ruled, vjp_gelu = jax.vjp(lambda h: identity_rule(h, nn.gelu(h, approximate=False)), z)
        return scaled, vjp(jnp.ones_like(z))[0], gelu, ruled, z * vjp_gelu(s_a)[0]

    scaled, cotangent, gelu, ruled, r_h = fast_jit(run)(z, s_a)
    assert (scaled == z).all() and (ruled == gelu).all()
    np.testing.assert_array_equal(cotangent, jnp.broadcast_to(factor, z.shape))
    np.testing.assert_allclose(r_h, gelu * s_a, rtol=1e-6, atol=1e-7)


def _module_relevance(apply, params, x, rule, s_out):
    """``(Σ R_x, Σ R_biases, Σ R_out, plain output, output under the rules)`` of
    ``apply(params, x)`` (one module) with the output signal ``s_out``."""
    def ruled(params, x):
        with AttnLRPRules(rule):
            return apply(params, x)

    out, vjp = jax.vjp(ruled, params, x)
    g_params, g_x = vjp(s_out)
    flat, grads = traverse_util.flatten_dict(params), traverse_util.flatten_dict(g_params)
    sources = sum(jnp.sum(flat[k] * grads[k]) for k in flat if k[-1] == "bias")
    return jnp.sum(x * g_x), sources, jnp.sum(out * s_out), apply(params, x), out


def test_layer_norm_rule_conserves_up_to_its_shift():
    """LayerNorm with σ held constant: Σ R_x + Σ β ⊙ s_β = Σ R_y, and nothing absorbed
    without β; the input signal is lxt's, ∂/∂x of (x − μ)·γ / stop_gradient(σ) + β."""
    norm = nn.LayerNorm(epsilon=1e-6)
    x, s_y = _normal((3, 5, 8), 0, scale=2.0, shift=1.0), _normal((3, 5, 8), 2)
    params = _params(norm, x)

    def apply(p, x):
        return norm.apply({"params": p}, x)

    def lxt_rule(x):  # lxt.efficient.patches.layer_norm_forward, written out
        mean = x.mean(-1, keepdims=True)
        std = jnp.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-6)
        return (x - mean) / jax.lax.stop_gradient(std) * params["scale"] + params["bias"]

    def run(params, x, s_y):
        with AttnLRPRules():
            ours = jax.vjp(lambda x: norm.apply({"params": params}, x), x)[1](s_y)[0]
        return (_module_relevance(apply, params, x, "attnlrp", s_y),
                _module_relevance(apply, _without_sources(params), x, "attnlrp", s_y),
                ours, jax.vjp(lxt_rule, x)[1](s_y)[0])

    (r_x, r_beta, r_y, plain, ruled), (r_x0, r_beta0, r_y0, _, _), ours, lxt = fast_jit(run)(
        params, x, s_y)
    assert (plain == ruled).all()
    np.testing.assert_allclose(r_x + r_beta, r_y, rtol=1e-5)
    assert abs(float(r_beta)) > 0.1 * abs(float(r_y))  # β takes a real share here
    assert r_beta0 == 0
    np.testing.assert_allclose(r_x0, r_y0, rtol=1e-5)
    np.testing.assert_allclose(ours, lxt, rtol=1e-4, atol=1e-5)


def test_mlp_gelu_identity_rule_conserves_without_biases():
    """timesformer.Mlp (fc1 → GELU → fc2) bias-free: Σ R_x = Σ R_out, the GELU intercepted;
    gradient × input (GELU's own derivative) is not conserving."""
    mlp = timesformer.Mlp(16)
    x, s = _normal((2, 3, 8), 0), _normal((2, 3, 8), 2)
    params = _without_sources(_params(mlp, x, False))

    def apply(p, x):
        return mlp.apply({"params": p}, x, False)

    def run(params, x, s):
        gradient = jnp.sum(x * jax.vjp(lambda x: apply(params, x), x)[1](s)[0])
        return _module_relevance(apply, params, x, "attnlrp", s), gradient

    (r_x, _, r_out, plain, ruled), gradient = fast_jit(run)(params, x, s)
    assert (plain == ruled).all()
    np.testing.assert_allclose(r_x, r_out, rtol=1e-5)
    assert abs(float(gradient - r_out)) > 1e-2 * abs(float(r_out))


@pytest.mark.parametrize("rule", ATTENTION_RULES)
def test_attention_rules_conserve_except_the_softmax_bias_term(rule):
    """One bias-free timesformer.Attention: CP-LRP conserves exactly; AttnLRP's softmax rule
    absorbs Σ_j R_A,j (1 − l_j + Σ_i A_i l_i) per row (paper: Taylor at l with bias), computed
    here independently from the probabilities and their signal (half the ordinary gradient at
    A: the uniform rule on A·V), and its input relevance is l ⊙ (R_A − A Σ R_A)."""
    attention = timesformer.Attention(num_heads=2)
    x, s = _normal((2, 5, 8), 0), _normal((2, 5, 8), 2)
    params = _without_sources(_params(attention, x, False, scale=0.8))

    def run(params, x, s):
        r_x, _, r_out, _, _ = _module_relevance(
            lambda p, x: attention.apply({"params": p}, x, False), params, x, rule, s)
        # The signal at the probabilities: the gradient with respect to their perturbation.
        shapes = jax.eval_shape(lambda: attention.apply({"params": params}, x, False,
                                                        mutable=["perturbations"])[1])
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

        def apply(perturbations):
            with AttnLRPRules(rule):
                out, state = attention.apply({"params": params, **perturbations}, x, False,
                                             mutable=["intermediates"])
            return jnp.sum(out * s), state["intermediates"]["attention_probs"][0]

        grads, probs = jax.grad(apply, has_aux=True)(zeros)
        r_a = probs * grads["perturbations"]["attention_probs"] / 2  # s_A: half the gradient
        logits = jnp.log(probs)  # l up to a per-row shift, which the absorbed term does not see
        r_l = logits * jax.vjp(lambda l: jax.nn.softmax(l, -1), logits)[1](r_a / probs)[0]
        return r_x, r_out, probs, r_a, logits, r_l

    r_x, r_out, probs, r_a, logits, r_l = fast_jit(run)(params, x, s)
    if rule == "cp":
        np.testing.assert_allclose(r_x, r_out, rtol=1e-5)
        return
    absorbed = np.sum(r_a * (1 - logits + np.sum(probs * logits, -1, keepdims=True)))
    assert abs(absorbed) > 1e-2 * abs(float(r_out))  # a real share of the relevance
    np.testing.assert_allclose(r_x + absorbed, r_out, rtol=1e-5, atol=1e-6)
    # The softmax rule is gradient × input: R_l = l ⊙ (R_A − A Σ R_A) (lxt.explicit's).
    np.testing.assert_allclose(r_l, logits * (r_a - probs * r_a.sum(-1, keepdims=True)),
                               rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Through the TimeSformer


@pytest.mark.parametrize("attention_type", TYPES)
def test_conservation_through_timesformer(attention_type):
    """Bias-free (every bias, LayerNorm β and embedding 0) with CP-LRP: Σ R_x = target logit
    per example (``METHODS['attn_lrp']``). With AttnLRP and random biases and embeddings:
    Σ R_x + Σ R_sources + Σ softmax-absorbed (R_V − R_Q − R_K at every qkv output) = the target
    logits, summed over the batch (the module docstring's account; the shares are printed), and
    the forward pass under the rules is the plain one, bit for bit."""
    model, params, x, qkv = _tiny(attention_type)

    def layer_outputs(params, x, deltas):
        with AttnLRPRules(), LayerTaps(qkv, deltas) as taps:
            logits = model.apply({"params": params}, x)
        return logits, taps.outputs(model)

    def account(params, x):
        deltas = {p: jnp.zeros(s.shape, s.dtype) for p, s in jax.eval_shape(
            lambda: layer_outputs(params, x, None)[1]).items()}

        def score(params, x, deltas):
            logits, outputs = layer_outputs(params, x, deltas)
            return target_logits(logits, TARGET).sum(), (logits, outputs)

        (g_params, g_x, g_qkv), (ruled, outputs) = jax.grad(
            score, argnums=(0, 1, 2), has_aux=True)(params, x, deltas)
        flat, grads = traverse_util.flatten_dict(params), traverse_util.flatten_dict(g_params)
        sources = sum(jnp.sum(flat[k] * grads[k]) for k in flat if k[-1] in SOURCES)
        # Totals of the relevance of Q, K and V (the thirds of every qkv output).
        thirds = sum(jnp.sum((outputs[p] * g_qkv[p]).reshape(-1, 3, outputs[p].shape[-1] // 3),
                             axis=(0, 2)) for p in qkv)
        plain = model.apply({"params": params}, x)
        return (jnp.sum(target_logits(plain, TARGET)), (plain == ruled).all(), jnp.sum(x * g_x),
                sources, thirds[2] - thirds[0] - thirds[1])

    def run(free, params, x):
        maps = attribution.METHODS["attn_lrp"](model, {"params": free}, x, TARGET,
                                               attention_rule="cp")
        return maps, target_logits(model.apply({"params": free}, x), TARGET), account(params, x)

    maps, logits, (logit, same, r_x, sources, absorbed) = fast_jit(run)(
        _without_sources(params), params, x)
    assert maps.shape == SHAPE[:4]
    np.testing.assert_allclose(maps.sum(axis=(1, 2, 3)), logits, rtol=1e-5, atol=1e-6)

    assert same
    scale = max(abs(float(r_x)), abs(float(sources)), abs(float(absorbed)))
    assert abs(float(absorbed)) > 1e-3 * scale and abs(float(sources)) > 1e-3 * scale
    residual = abs(float(r_x + sources + absorbed - logit))
    print(f"{attention_type}: target logits {logit:.4f} = input {r_x:.4f} + biases and "
          f"embeddings {sources:.4f} + softmax {absorbed:.4f}; residual {residual:.1e}; "
          f"bias-free CP-LRP: largest |Σ R_x − logit| "
          f"{np.abs(maps.sum(axis=(1, 2, 3)) - logits).max():.1e} of {np.abs(logits).max():.2f}")
    assert residual <= 1e-5 * scale


def test_token_relevance_is_the_input_relevance_of_each_patch():
    """Bias-free, CP-LRP: the cls and patch token relevance at the first block sum to the
    logit; without embeddings the tokens are the patch embedding's output, whose relevance
    (``attn_lrp_relevance(layers=...)``) is the same, and each token's is that of its patch's
    pixels (the patch embedding is LRP-0 and bias-free)."""
    model, params, x, _ = _tiny("divided_space_time")
    variables = {"params": _without_sources(params)}

    def run(variables, x):
        cls, tokens = token_relevance(model, variables, x, TARGET, attention_rule="cp")
        pixels, layers = attn_lrp_relevance(model, variables, x, TARGET, attention_rule="cp",
                                            layers=["patch_embeddings"])
        return (cls, tokens, pixels.sum(-1), layers["patch_embeddings"].sum(-1),
                target_logits(model.apply(variables, x), TARGET))

    cls, tokens, pixels, embedded, logit = fast_jit(run)(variables, x)
    assert tokens.shape == (2, 2, 2, 2) and embedded.shape == (4, 2, 2)  # [B·T, h, w]
    np.testing.assert_allclose(cls + tokens.sum(axis=(1, 2, 3)), logit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tokens, embedded.reshape(tokens.shape), rtol=1e-5, atol=1e-7)
    per_patch = pixels.reshape(2, 2, 2, 4, 2, 4).sum(axis=(3, 5))
    np.testing.assert_allclose(tokens, per_patch, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Errors


class _Dense(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_rules_reach_every_module_and_bad_options_and_models_are_refused():
    model, params, x, _ = _tiny("joint_space_time")
    rules = AttnLRPRules()
    with rules:  # one block: 2 LayerNorms, its attention and MLP; the final LayerNorm
        jax.eval_shape(lambda x: model.apply({"params": params}, x), x)
    assert rules.counts == {"attention": 1, "norms": 3, "activations": 1}
    with pytest.raises(UserError, match="attention_rule"):
        attn_lrp(model, {"params": params}, x, attention_rule="softmax")
    with pytest.raises(UserError, match="level"):
        attn_lrp(model, {"params": params}, x, level="pixels")
    dense = _Dense()
    small = jnp.ones((2, 2, 2))
    with pytest.raises(UserError, match="use lrp"):
        jax.eval_shape(lambda x: attn_lrp(dense, dense.init(jax.random.PRNGKey(0), x), x),
                       small)


# --------------------------------------------------------------------------------------------
# Parity with lxt (the authors' library) on HF's PyTorch TimeSformer


@pytest.fixture
def lxt(monkeypatch):
    """lxt 2.1's ``efficient`` rules and patches. Its package imports zennit (whose __init__
    imports torchvision.models.resnet) and, for its model zoo, torchvision's ViT and
    transformers internals that transformers 5 removed; torchvision cannot be installed here,
    and only the rules and patches are used, so minimal stand-ins take those modules' places
    (transformers is imported first: it checks for torchvision's real package)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    stand_ins = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.models", "torchvision.models.resnet",
        "torchvision.models.vision_transformer", "lxt.efficient.models")}
    stand_ins["torchvision.models.resnet"].BasicBlock = type("BasicBlock", (), {})
    stand_ins["torchvision.models.resnet"].Bottleneck = type("Bottleneck", (), {})
    stand_ins["torchvision.models.vision_transformer"].nn = torch.nn
    stand_ins["lxt.efficient.models"].get_default_map = None
    for name, module in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in [n for n in sys.modules if n == "lxt" or n.startswith("lxt.efficient.")]:
        if name != "lxt.efficient.models":
            monkeypatch.delitem(sys.modules, name)
    patches = pytest.importorskip("lxt.efficient.patches")
    return patches


def _lxt_timesformer(patches, model):
    """Applies lxt's AttnLRP patches to an HF TimeSformer in place: ``layer_norm_forward``
    on every LayerNorm, ``non_linear_forward`` (identity rule) on the GELU, and lxt's attention
    wrapper (``divide_gradient`` of query, key, value by 4, 4, 2) around HF's eager attention."""
    import torch
    from transformers.models.timesformer import modeling_timesformer as hf

    def eager(module, query, key, value):
        return ((query @ key.transpose(-2, -1)) * module.scale).softmax(dim=-1) @ value

    attend = patches.wrap_attention_forward(eager)

    def attention_forward(self, hidden_states, output_attentions=False):
        b, s, d = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(b, s, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        return (attend(self, q, k, v).transpose(1, 2).reshape(b, s, d),)

    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.forward = types.MethodType(patches.layer_norm_forward, module)
        elif isinstance(module, hf.TimesformerIntermediate):
            act = module.intermediate_act_fn
            act.original_forward = act.forward
            act.forward = types.MethodType(patches.non_linear_forward, act)
        elif isinstance(module, hf.TimesformerSelfAttention):
            module.forward = types.MethodType(attention_forward, module)


def test_lxt_parity_on_hf_divided_timesformer(lxt):
    """Input relevance against lxt's rules patched into HF's PyTorch TimeSformer (divided
    space-time attention, every parameter random) with the same weights."""
    import torch
    import transformers
    from fer_jax.models import convert

    torch.manual_seed(0)
    config = transformers.TimesformerConfig(
        image_size=8, patch_size=4, num_frames=2, hidden_size=8, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=16, num_labels=3,
        attention_type="divided_space_time")
    hf = transformers.TimesformerForVideoClassification(config).eval()
    with torch.no_grad():  # HF zero-initialises some tensors; randomise all
        for p in hf.parameters():
            p.normal_(0.0, 0.3)
    module, variables = convert.timesformer_from_hf(
        {k: v.numpy() for k, v in hf.state_dict().items()}, hf.config.to_dict())
    _lxt_timesformer(lxt, hf)
    video = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    pixels = torch.from_numpy(video).permute(0, 1, 4, 2, 3).requires_grad_(True)
    torch.gather(hf(pixels).logits, 1, torch.tensor(np.asarray(TARGET))[:, None]).sum() \
        .backward()
    reference = (pixels * pixels.grad).sum(2).detach().numpy()  # [B, T, H, W]
    ours = np.asarray(fast_jit(lambda v, x: attn_lrp(module, v, x, TARGET))(
        variables, jnp.asarray(video)))
    difference = np.abs(ours - reference).max() / np.abs(reference).max()
    print(f"lxt parity: largest difference / largest |R| {difference:.1e}")
    assert difference <= 1e-5
