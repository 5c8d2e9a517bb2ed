"""TimeSformer: shapes, sown attention, structure of the divided block, jit + grad."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fast import fast_jit
from fer_jax import models
from fer_jax.errors import UserError

KWARGS = dict(num_classes=5, patch_size=8, hidden_size=32, num_layers=2, num_heads=4)


def _init(model, shape=(2, 4, 32, 32, 3), seed=0):
    x = jax.random.normal(jax.random.PRNGKey(seed), shape)
    return x, fast_jit(model.init)(jax.random.PRNGKey(1), x)


def test_logits_and_sown_attention_shapes():
    model = models.build("timesformer", **KWARGS)
    x, variables = _init(model)
    logits, state = fast_jit(functools.partial(model.apply, mutable=["intermediates"]))(
        {"params": variables["params"]}, x)
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    inter = state["intermediates"]["blocks_1"]
    (spatial,) = inter["attention"]["attention_probs"]
    (temporal,) = inter["temporal_attention"]["attention_probs"]
    assert spatial.shape == (2, 4, 4, 17, 17)   # [B, T, heads, 1+N, 1+N], N = (32/8)^2
    assert temporal.shape == (2, 16, 4, 4, 4)   # [B, N, heads, T, T]
    np.testing.assert_allclose(spatial.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(temporal.sum(-1), 1.0, rtol=1e-5)


def test_embeddings_follow_input_size():
    model = models.build("timesformer", **KWARGS)
    _, variables = _init(model, shape=(1, 6, 48, 32, 3))
    params = variables["params"]
    assert params["position_embeddings"].shape == (1 + 6 * 4, 32)
    assert params["time_embeddings"].shape == (6, 32)


def test_at_init_the_model_ignores_frame_order():
    """The time embedding starts at zero, and attention without positions is permutation
    equivariant, so at init logits are invariant to frame order; the time embedding is what
    tells frames apart."""
    model = models.build("timesformer", **KWARGS)
    x, variables = _init(model)
    permuted = x[:, ::-1]
    np.testing.assert_allclose(model.apply(variables, x), model.apply(variables, permuted),
                               atol=1e-5)
    params = dict(variables["params"])
    params["time_embeddings"] = jax.random.normal(jax.random.PRNGKey(2),
                                                  params["time_embeddings"].shape)
    assert not np.allclose(model.apply({"params": params}, x),
                           model.apply({"params": params}, permuted), atol=1e-4)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time",
                                            "space_only"])
def test_jit_forward_backward_and_dropout_rng(attention_type):
    model = models.build("timesformer", **KWARGS, dropout=0.1, drop_path_rate=0.2,
                         attention_type=attention_type)
    x, variables = _init(model)
    labels = jnp.array([0, 3])

    @jax.jit
    def loss_and_grad(params, rng):
        def loss(p):
            logits = model.apply({"params": p}, x, train=True, rngs={"dropout": rng})
            return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1).mean()
        return jax.value_and_grad(loss)(params)

    value, grads = loss_and_grad(variables["params"], jax.random.PRNGKey(0))
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    same, _ = loss_and_grad(variables["params"], jax.random.PRNGKey(0))
    other, _ = loss_and_grad(variables["params"], jax.random.PRNGKey(5))
    assert value == same and value != other
    # Evaluation mode is deterministic and needs no rng.
    a = model.apply(variables, x, train=False)
    np.testing.assert_array_equal(a, model.apply(variables, x, train=False))


def test_registry_errors_are_actionable():
    with pytest.raises(UserError, match="unknown model 'nope'.*timesformer"):
        models.build("nope")
    with pytest.raises(UserError, match="cannot build model 'timesformer'"):
        models.build("timesformer", num_classes=3, not_a_field=1)
    model = models.build("timesformer", **KWARGS)
    with pytest.raises(ValueError, match="not divisible by patch size"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 30, 32, 3)))


def test_joint_and_space_only_sown_attention_shapes():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 32, 32, 3))
    for attention_type, shape in (("joint_space_time", (2, 4, 65, 65)),
                                  ("space_only", (2, 4, 4, 17, 17))):
        model = models.build("timesformer", **KWARGS, attention_type=attention_type)
        variables = model.init(jax.random.PRNGKey(1), x)
        assert ("time_embeddings" in variables["params"]) == (attention_type != "space_only")
        _, state = model.apply({"params": variables["params"]}, x, mutable=["intermediates"])
        (probs,) = state["intermediates"]["blocks_1"]["attention"]["attention_probs"]
        assert probs.shape == shape  # joint: [B, heads, 1+N·T, 1+N·T]
        assert "temporal_attention" not in state["intermediates"]["blocks_1"]
    with pytest.raises(ValueError, match="unknown attention_type"):
        models.build("timesformer", **KWARGS, attention_type="axial").init(
            jax.random.PRNGKey(1), x)
