"""Pooling functions against their definitions; the TemporalPooling wrapper."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax.models import pooling

SCORES = jax.random.normal(jax.random.PRNGKey(0), (3, 10, 4))  # [B, T, C]


def test_softmax_pool_limits_and_definition():
    np.testing.assert_allclose(pooling.softmax_pool(SCORES, 0.0, axis=1), SCORES.mean(1),
                               rtol=1e-6)
    np.testing.assert_allclose(pooling.softmax_pool(SCORES, 1e6, axis=1), SCORES.max(1),
                               rtol=1e-6)
    s = np.asarray(SCORES, np.float64)
    w = np.exp(2.0 * s)
    w /= w.sum(1, keepdims=True)
    np.testing.assert_allclose(pooling.softmax_pool(SCORES, 2.0, axis=1), (w * s).sum(1),
                               rtol=1e-5)


def test_softmax_pool_is_monotone_in_gamma():
    values = [pooling.softmax_pool(SCORES, g, axis=1) for g in (0.0, 0.5, 2.0, 10.0)]
    for lower, higher in zip(values, values[1:]):
        assert (np.asarray(higher) >= np.asarray(lower) - 1e-6).all()


def test_clip_max_pool_matches_sliding_window():
    pooled = pooling.clip_max_pool(SCORES, 4)
    assert pooled.shape == (3, 7, 4)
    for n in range(7):
        np.testing.assert_array_equal(pooled[:, n], SCORES[:, n:n + 4].max(1))
    with pytest.raises(ValueError, match="fewer than the clip length"):
        pooling.clip_max_pool(SCORES, 11)


def test_feature_pools():
    feats = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 4, 5, 6))
    np.testing.assert_allclose(pooling.spatiotemporal_pool(feats, "max"),
                               feats.reshape(2, -1, 6).max(1))
    head = lambda f: f @ jnp.ones((6, 2))  # noqa: E731  per-frame linear scores
    expected = (feats.max(axis=(2, 3)) @ jnp.ones((6, 2))).mean(1)
    np.testing.assert_allclose(pooling.two_step_pool(feats, head), expected, rtol=1e-6)


class _Dense(nn.Module):
    """Per-frame linear scores ``[B, T, H, W, C] → [B, T, 3]``."""

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(3, name="head")(x.mean(axis=(2, 3)))


@pytest.mark.parametrize("method", pooling.POOLING_METHODS)
def test_temporal_pooling_wrapper(method):
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 4, 4, 3))
    model = pooling.TemporalPooling(_Dense(), method=method, gamma=2.0)
    variables = model.init(jax.random.PRNGKey(0), x)
    # The backbone's parameters stay at the top level: they load into the bare backbone.
    assert "head" in variables["params"]
    scores = _Dense().apply({"params": {"head": variables["params"]["head"]}}, x)
    out = model.apply(variables, x)
    assert out.shape == (2, 3)
    if method == "adaptive":
        np.testing.assert_array_equal(variables["params"]["adaptive_pool"]["beta"], 1.0)
        np.testing.assert_allclose(out, pooling.softmax_pool(scores, 1.0, axis=1), rtol=1e-6)
        grads = jax.grad(lambda p: model.apply({"params": p}, x).sum())(variables["params"])
        assert np.abs(grads["adaptive_pool"]["beta"]).sum() > 0
    elif method == "softmax":
        np.testing.assert_allclose(out, pooling.softmax_pool(scores, 2.0, axis=1), rtol=1e-6)
    else:
        np.testing.assert_allclose(out, pooling.temporal_pool(scores, method), rtol=1e-6)


def test_wrapper_rejects_clip_level_backbones():
    class Clip(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(3)(x.mean(axis=(1, 2, 3)))

    with pytest.raises(ValueError, match="dense=True"):
        pooling.TemporalPooling(Clip()).init(jax.random.PRNGKey(0), jnp.ones((1, 2, 2, 2, 3)))


def test_masked_softmax_pool_ignores_masked_clips():
    mask = jnp.arange(10)[None, :, None] < jnp.array([3, 7, 10])[:, None, None]  # [B, N, 1]
    pooled = pooling.softmax_pool(SCORES, 2.0, axis=1, mask=mask)
    for b, n in enumerate((3, 7, 10)):
        np.testing.assert_allclose(pooled[b], pooling.softmax_pool(SCORES[b:b + 1, :n], 2.0,
                                                                   axis=1)[0], rtol=1e-6)
    np.testing.assert_allclose(pooling.softmax_pool(SCORES, 1e6, axis=1, mask=mask)[0],
                               SCORES[0, :3].max(0), rtol=1e-6)
