"""LRP: conservation, LRP-0 = gradient × input, BatchNorm folding against an explicitly fused
model, z⁺ non-negativity, α-β, the w²/flat input rules (analytically on one dense layer),
jit/vmap/batch consistency, and every CNN family of the zoo."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import models
from fer_jax.attribution.lrp import lrp, lrp_relevance
from fer_jax.errors import UserError
from fast import fast_jit
from host_variables import random_variables


RULES = ("epsilon", "zplus", "alpha_beta")


class Net(nn.Module):
    """conv3d → [BN] → ReLU → max-pool → conv3d → [BN] → ReLU → mean → dense → [BN].

    ``fold_barrier`` multiplies each conv output by 1 before its BatchNorm, so the BatchNorms
    are not folded (a new array reaches them) although the function is the same.
    """

    bias: bool = False
    batch_norm: bool = False
    fold_barrier: bool = False

    @nn.compact
    def __call__(self, x, train=False):
        def unit(x, layer):
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train)(x * 1 if self.fold_barrier else x)
            return x if layer is None else nn.relu(x)

        x = unit(nn.Conv(4, (3, 3, 3), use_bias=self.bias)(x), "relu")
        x = nn.max_pool(x, (1, 2, 2), strides=(1, 2, 2))
        x = unit(nn.Conv(6, (3, 3, 3), use_bias=False)(x), "relu")
        return unit(nn.Dense(3, use_bias=self.bias)(x.mean(axis=(1, 2, 3))), None)


class Linear(nn.Module):
    """``[B, T, C] → flatten → dense``: one layer, for the analytic input-rule checks."""

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def video(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


X = video((3, 4, 8, 8, 2))


@functools.cache
def jitted(model, **kwargs):
    """``(variables, x, target) → (input relevance per channel, logits)``, compiled once."""
    return fast_jit(lambda v, x, t: (lrp_relevance(model, v, x, t, **kwargs),
                                     model.apply(v, x, train=False)))


def explain(model, variables, x, target=None, **kwargs):
    """``(relevance [shape of x], target logits [B])``."""
    relevance, logits = jitted(model, **kwargs)(variables, x, target)
    index = jnp.argmax(logits, -1) if target is None else jnp.broadcast_to(target, len(x))
    return np.asarray(relevance), np.asarray(logits[jnp.arange(len(x)), index])


def per_example_sum(relevance):
    return relevance.reshape(len(relevance), -1).sum(axis=1)


def assert_conserved(relevance, logits, rtol):
    assert np.all(np.abs(logits) > 1e-2)  # precondition of a relative check
    np.testing.assert_allclose(per_example_sum(relevance), logits, rtol=rtol)


@pytest.mark.parametrize("rule", RULES)
def test_conservation_on_a_bias_free_relu_network(rule):
    model = Net()
    variables = random_variables(model, X, biases=False)
    relevance, logits = explain(model, variables, X, rule=rule, epsilon=1e-9)
    assert relevance.shape == X.shape
    assert_conserved(relevance, logits, rtol=1e-4)
    if rule == "epsilon":
        relevance, _ = explain(model, variables, X, epsilon=1e-4)
        assert_conserved(relevance, logits, rtol=1e-2)
        # A large ε absorbs relevance: conservation is not automatic.
        relevance, _ = explain(model, variables, X, epsilon=1.0)
        assert np.all(np.abs(per_example_sum(relevance)) < 0.9 * np.abs(logits))


@pytest.mark.parametrize("bias", [False, True], ids=["bias_free", "bias"])
def test_lrp0_is_gradient_times_input(bias):
    model = Net(bias=bias)
    variables = random_variables(model, X, seed=1, biases=bias)
    relevance, _ = explain(model, variables, X, epsilon=1e-9)
    target = jnp.argmax(model.apply(variables, X), -1)
    gradient = jax.grad(lambda x: jnp.take_along_axis(
        model.apply(variables, x), target[:, None], 1).sum())(X)
    expected = np.asarray(gradient * X)
    np.testing.assert_allclose(relevance, expected, atol=1e-5 * np.abs(expected).max())
    if bias:  # biases absorb relevance under LRP-0 (= gradient × input)
        assert not np.allclose(per_example_sum(relevance), explain(model, variables, X)[1],
                               rtol=1e-2)


def fused_variables(variables):
    """The variables of ``Net(bias=True)`` equivalent to ``Net(batch_norm=True)``'s: each
    conv/dense kernel scaled by its BatchNorm's scale, bias ``(b − mean)·scale + β``."""
    params, stats = variables["params"], variables["batch_stats"]
    fused = {}
    for layer, bn in (("Conv_0", "BatchNorm_0"), ("Conv_1", "BatchNorm_1"),
                      ("Dense_0", "BatchNorm_2")):
        scale = params[bn]["scale"] / jnp.sqrt(stats[bn]["var"] + 1e-5)
        bias = params[layer].get("bias", 0.0)
        fused[layer] = {"kernel": params[layer]["kernel"] * scale,
                        "bias": (bias - stats[bn]["mean"]) * scale + params[bn]["bias"]}
    return {"params": fused}


class FusedNet(nn.Module):
    """``Net`` with every layer biased: the target of BatchNorm folding."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(4, (3, 3, 3))(x))
        x = nn.max_pool(x, (1, 2, 2), strides=(1, 2, 2))
        x = nn.relu(nn.Conv(6, (3, 3, 3))(x))
        return nn.Dense(3)(x.mean(axis=(1, 2, 3)))


@pytest.mark.parametrize("rule,input_rule", [(r, None) for r in RULES] + [("zplus", "w2")])
def test_batch_norm_folding_equals_the_fused_network(rule, input_rule):
    model = Net(bias=True, batch_norm=True)
    variables = random_variables(model, X, seed=2)
    fused = fused_variables(variables)
    np.testing.assert_allclose(FusedNet().apply(fused, X), model.apply(variables, X),
                               rtol=1e-5, atol=1e-5)
    kwargs = dict(rule=rule, epsilon=0.5, input_rule=input_rule)
    folded, logits = explain(model, variables, X, **kwargs)
    expected, _ = explain(FusedNet(), fused, X, **kwargs)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(folded, expected, atol=1e-5 * scale)
    # The same function with BatchNorm as separate layers explains differently.
    separate, _ = explain(Net(bias=True, batch_norm=True, fold_barrier=True), variables, X,
                          **kwargs)
    assert np.abs(separate - expected).max() > 1e-2 * scale


def test_zplus_relevance_is_nonnegative_for_positive_targets():
    cases = [(Net(), X, 0, False), (Net(bias=True, batch_norm=True), X, 3, True)]
    for name, kwargs, shape in [
            ("tcn", dict(features=(4, 8, 4), hidden_units=8), (3, 8, 10, 2)),
            ("early_fusion_cnn", dict(features=(4, 8), hidden_units=8), (3, 3, 10, 10, 1))]:
        model = models.build(name, num_classes=4, **kwargs)
        cases.append((model, video(shape, 5), 6, True))
    for model, x, seed, biases in cases:
        variables = random_variables(model, x, seed=seed, biases=biases)
        for input_rule in (None, "w2"):
            relevance, logits = explain(model, variables, x, rule="zplus",
                                        input_rule=input_rule)
            assert np.all(logits > 0), type(model).__name__  # precondition
            assert relevance.min() >= -1e-7 * np.abs(relevance).max(), type(model).__name__
            assert relevance.max() > 0
    # The ε rule on the same inputs gives negative relevance: the check can fail.
    assert explain(model, variables, x)[0].min() < 0


def test_alpha_beta():
    model = Net(bias=True)
    variables = random_variables(model, X, seed=3)
    zplus, _ = explain(model, variables, X, rule="zplus")
    ab10, _ = explain(model, variables, X, rule="alpha_beta", alpha=1.0, beta=0.0)
    np.testing.assert_array_equal(ab10, zplus)
    ab21, _ = explain(model, variables, X, rule="alpha_beta", alpha=2.0, beta=1.0)
    assert np.all(np.isfinite(ab21))
    assert ab21.min() < 0 and np.abs(ab21 - zplus).max() > 1e-2 * np.abs(zplus).max()


@pytest.mark.parametrize("input_rule", ["w2", "flat"])
def test_input_rules_conserve_relevance(input_rule):
    model = Net()
    variables = random_variables(model, X, seed=4, biases=False)
    relevance, logits = explain(model, variables, X, epsilon=1e-9, input_rule=input_rule)
    assert_conserved(relevance, logits, rtol=1e-4)
    reference, _ = explain(model, variables, X, epsilon=1e-9)
    assert np.abs(relevance - reference).max() > 1e-2 * np.abs(reference).max()


def test_rules_on_one_dense_layer_analytically():
    """``z = a·W + b`` and ``R_z`` = the target logit, against the formulas in numpy."""
    x = video((2, 3, 4))
    model = Linear()
    variables = random_variables(model, x, seed=5)
    params = variables["params"]["Dense_0"]
    a = np.asarray(x).reshape(2, 12, 1)
    logits = np.asarray(model.apply(variables, x))
    assert logits.min() < 0 < logits.max()  # both signs of z are exercised
    for target in range(3):
        w, z = np.asarray(params["kernel"])[:, target], logits[:, target, None, None]

        def check(expected, **kwargs):
            relevance, _ = explain(model, variables, x, target, **kwargs)
            np.testing.assert_allclose(relevance, expected.reshape(x.shape), rtol=1e-4,
                                       atol=1e-6)

        check(a * w[:, None] * z / (z + 0.5 * np.sign(z)), epsilon=0.5)
        a_pos, a_neg = np.maximum(a, 0), np.minimum(a, 0)
        w_pos, w_neg = np.maximum(w, 0)[:, None], np.minimum(w, 0)[:, None]
        pos = a_pos * w_pos + a_neg * w_neg  # contributions to z⁺, [B, 12, 1]
        neg = a_pos * w_neg + a_neg * w_pos
        check(pos / pos.sum(1, keepdims=True) * z, rule="zplus")
        check((2 * pos / pos.sum(1, keepdims=True) - neg / neg.sum(1, keepdims=True)) * z,
              rule="alpha_beta", alpha=2.0, beta=1.0)
        check(np.broadcast_to(z / 12, a.shape), input_rule="flat")
        check(w[:, None] ** 2 / (w ** 2).sum() * z, input_rule="w2")
    assert lrp(model, variables, x, 1, input_rule="flat").shape == (2, 3)


def test_jit_vmap_and_batch_agree_with_single_examples():
    model = Net(bias=True, batch_norm=True)
    variables = random_variables(model, X, seed=6)
    kwargs = dict(rule="alpha_beta", input_rule="w2")
    target = jnp.array([2, 0, 1])
    xs = jnp.stack([X, X[::-1] * 0.5])  # [V, B, ...]
    batched = fast_jit(jax.vmap(lambda xb: lrp(model, variables, xb, target, **kwargs)))(xs)
    single = fast_jit(lambda x, t: lrp(model, variables, x, t, **kwargs))
    for v in range(2):
        for b in range(3):
            np.testing.assert_allclose(batched[v, b], single(xs[v, b:b + 1], target[b:b + 1])[0],
                                       rtol=1e-5, atol=1e-6)
    eager = lrp(model, variables, X, target, **kwargs)
    np.testing.assert_allclose(batched[0], eager, rtol=1e-5, atol=1e-6)
    assert eager.shape == X.shape[:-1]


ZOO = {
    "vgg16_3d": (dict(width=1 / 16, fc_dim=16, head_dim=8), (2, 2, 32, 32, 3)),
    "c3d": (dict(width=1 / 16, fc_dim=16), (2, 16, 32, 32, 3)),
    "i3d": (dict(width=1 / 16), (2, 4, 32, 32, 3)),
    "resnet3d_18": (dict(width=1 / 16, shortcut="B"), (2, 4, 16, 16, 3)),
    "early_fusion_cnn": (dict(features=(4, 8), hidden_units=16), (2, 3, 10, 10, 1)),
    "tcn": (dict(features=(4, 8, 4), hidden_units=8), (2, 8, 10, 2)),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_models_conserve_relevance_without_biases(name):
    """Without biases and BatchNorm shifts, each model's default LRP composite (its
    ``lrp_composite``: flat or w² first layer, z⁺ convolutions, ε dense layers with ε → 0,
    pass through standalone BatchNorm) conserves the target logit through every layer type of
    the zoo (folded and standalone BatchNorm, pools, concatenations, residual additions, means
    of frame scores). With random biases and BatchNorm statistics the relevance is finite; the
    biases absorb an unknown part of it, so no sum is checked."""
    kwargs, shape = ZOO[name]
    model = models.build(name, num_classes=4, **kwargs)
    x = video(shape, 7)
    relevance, logits = explain(model, random_variables(model, x, 8, biases=False), x,
                                epsilon=1e-9)
    assert relevance.shape == x.shape
    assert_conserved(relevance, logits, rtol=1e-3)
    relevance, logits = explain(model, random_variables(model, x, 8), x, epsilon=1e-9)
    assert np.all(np.isfinite(relevance))


def test_bad_arguments_raise_user_errors():
    model, variables = Net(), random_variables(Net(), X)
    with pytest.raises(UserError, match="epsilon, zplus, alpha_beta"):
        lrp(model, variables, X, rule="gamma")
    with pytest.raises(UserError, match="alpha - beta = 1"):
        lrp(model, variables, X, rule="alpha_beta", alpha=2.0, beta=0.5)
    with pytest.raises(UserError, match="w2, flat"):
        lrp(model, variables, X, input_rule="zb")
    with pytest.raises(UserError, match="positive"):
        lrp(model, variables, X, epsilon=0.0)
