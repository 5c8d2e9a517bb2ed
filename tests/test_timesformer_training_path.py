"""TimeSformer's faster CPU computations (``PatchEmbedding`` for the patch convolution,
``qkv_attention`` with its hand-written backward pass, GELU through ``erf``) give the logits
and gradients of the plain formulation (``nn.Conv``, autodiff through the explicit attention,
``jax.nn.gelu``), keep the parameters, and leave the probabilities readable."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fast import fast_jit
from fer_jax import models
from fer_jax.models import timesformer

KWARGS = dict(num_classes=5, patch_size=8, hidden_size=16, num_layers=2, num_heads=2)


def _plain(monkeypatch):
    """The formulation before the faster computations, in the same module paths."""
    monkeypatch.setattr(timesformer, "PatchEmbedding", nn.Conv)
    monkeypatch.setattr(timesformer, "qkv_attention",
                        lambda qkv, scale: timesformer._qkv_attention_forward(qkv, scale)[0])
    monkeypatch.setattr(timesformer.Mlp, "activation",
                        lambda self, x: nn.gelu(x, approximate=self.approximate))


def _logits_and_grads(model, variables, x):
    def loss(params):
        logits = model.apply({"params": params}, x, train=True,
                             rngs={"dropout": jax.random.PRNGKey(2)})
        return jnp.sum(logits * jnp.arange(1.0, 1 + logits.shape[-1])), logits

    return fast_jit(jax.grad(loss, has_aux=True))(variables["params"])


def _assert_close(got, expected, rtol=1e-5):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        scale = float(jnp.abs(b).max()) or 1.0  # relative to the array's largest entry
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time",
                                            "space_only"])
def test_logits_and_gradients_equal_the_plain_formulation(attention_type, monkeypatch):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 16, 24, 3))
    model = models.build("timesformer", **KWARGS, attention_type=attention_type,
                         drop_path_rate=0.1, dropout=0.1)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(1), x)  # shapes only
    rng = np.random.default_rng(0)  # every parameter nonzero (temporal_dense starts at zero)
    variables = jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape) * 0.3, v.dtype),
                             variables)
    got = _logits_and_grads(model, variables, x)
    with monkeypatch.context() as patch:
        _plain(patch)
        expected = _logits_and_grads(model, variables, x)
    _assert_close(got, expected)
    assert float(jnp.abs(expected[1]).max()) > 0.1


def test_parameters_are_those_of_the_convolution(monkeypatch):
    x = jnp.zeros((1, 2, 16, 16, 3))
    model = models.build("timesformer", **KWARGS)
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    with monkeypatch.context() as patch:
        _plain(patch)
        plain = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    assert jax.tree.structure(variables) == jax.tree.structure(plain)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(a, b)
    assert variables["params"]["patch_embeddings"]["kernel"].shape == (8, 8, 3, 16)


def test_qkv_attention_gradient_equals_autodiff_on_any_leading_axes():
    qkv = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5, 3, 2, 4))  # [..., S, 3, h, d]
    g = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 5, 2, 4))
    plain = lambda qkv: timesformer._qkv_attention_forward(qkv, 0.5)[0]  # noqa: E731
    fast = lambda qkv: timesformer.qkv_attention(qkv, 0.5)  # noqa: E731
    np.testing.assert_array_equal(fast(qkv), plain(qkv))
    (expected,) = jax.vjp(plain, qkv)[1](g)
    (got,) = jax.vjp(fast, qkv)[1](g)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_probabilities_are_still_formed_sown_and_perturbable(monkeypatch):
    """Whoever reads the probabilities gets the explicit computation (never qkv_attention),
    and the perturbation gradient is still defined."""
    calls = []
    original = timesformer.qkv_attention
    monkeypatch.setattr(timesformer, "qkv_attention",
                        lambda *a: calls.append(1) or original(*a))
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 2, 16, 16, 3))
    model = models.build("timesformer", **KWARGS)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(1), x)
    assert not calls
    _, state = jax.eval_shape(lambda v: model.apply({"params": v["params"]}, x,
                                                    mutable=["intermediates"]), variables)
    assert len(jax.tree.leaves(state)) == 2 * KWARGS["num_layers"] and not calls
    _, perturbations = jax.eval_shape(lambda v: model.apply(
        {"params": v["params"]}, x, mutable=["perturbations"]), variables)
    assert len(jax.tree.leaves(perturbations)) == 2 * KWARGS["num_layers"] and not calls
    jax.eval_shape(lambda v: model.apply({"params": v["params"]}, x), variables)
    assert len(calls) == 2 * KWARGS["num_layers"]


def test_gelu_is_the_exact_gelu():
    x = jnp.linspace(-9.0, 9.0, 2001)
    mlp = timesformer.Mlp(hidden_dim=4)
    np.testing.assert_allclose(mlp.activation(x), jax.nn.gelu(x, approximate=False),
                               rtol=1e-6, atol=1e-6)
