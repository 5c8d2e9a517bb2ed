"""Eager calls of the attribution methods compile each method as a whole
(fer_jax/attribution/compiled.py): the same maps as operation by operation, a handful of
compilations instead of hundreds, calls inside a trace passed straight through, and a logged,
counted eager fallback for options that cannot be fixed."""
import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import attribution
from fer_jax.attribution import compiled  # the module (EAGER_FALLBACKS)

X = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 8, 8, 3))  # [B, T, H, W, C]


class TinyVideoNet(nn.Module):
    """A 3D convolution, ReLU, global average and a classifier: what the methods need."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        features = nn.relu(nn.Conv(4, (3, 3, 3), name="conv")(x))
        return nn.Dense(5, name="head")(features.mean(axis=(1, 2, 3)))


@pytest.fixture(scope="module")
def tiny():
    model = TinyVideoNet()
    return model, model.init(jax.random.PRNGKey(1), X)


@contextlib.contextmanager
def counted_compilations():
    """Counts XLA compilations inside the block: ``with ... as count: ...; count[0]``."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_an_eager_call_is_one_program_with_the_maps_of_the_operation_by_operation_call(tiny):
    model, variables = tiny
    jax.clear_caches()
    with counted_compilations() as by_operation:
        expected = attribution.grad_cam.eager(model, variables, X, 3, "conv")
    with counted_compilations() as whole:
        maps = attribution.grad_cam(model, variables, X, 3, "conv")
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    assert whole[0] <= 2 < 10 <= by_operation[0], (whole, by_operation)
    # New input values and another target of the same shape reuse the program.
    other = X[::-1] + 1
    with counted_compilations() as again:
        attribution.grad_cam(model, variables, other, 4, "conv")
    assert again[0] == 0


def test_calls_inside_a_trace_go_straight_to_the_method(tiny):
    model, variables = tiny
    inside = jax.jit(lambda v, x: attribution.saliency(model, v, x, 1))(variables, X)
    np.testing.assert_allclose(inside, attribution.saliency(model, variables, X, 1),
                               rtol=1e-5, atol=1e-7)
    per_example = jax.vmap(lambda x: attribution.saliency(model, variables, x[None], 1)[0])(X)
    np.testing.assert_allclose(per_example, inside, rtol=1e-5, atol=1e-7)


def test_numpy_options_are_fixed_and_arrays_are_inputs(tiny):
    model, variables = tiny
    groups = attribution.tube_groups(X.shape[1:4], (4, 4), frames=2)  # NumPy: sets the group count
    before = sum(compiled.EAGER_FALLBACKS.values())
    maps = attribution.feature_ablation(model, variables, X, 0, groups=np.asarray(groups))
    assert sum(compiled.EAGER_FALLBACKS.values()) == before
    np.testing.assert_allclose(maps, attribution.feature_ablation.eager(
        model, variables, X, 0, groups=np.asarray(groups)), rtol=1e-5, atol=1e-6)
    key = jax.random.PRNGKey(5)  # a jax.Array option: traced
    np.testing.assert_allclose(attribution.smoothgrad(model, variables, X, 0, rng=key),
                               attribution.smoothgrad.eager(model, variables, X, 0, rng=key),
                               rtol=1e-4, atol=1e-6)


def test_an_option_that_cannot_be_fixed_runs_eagerly_once_logged_and_counted(tiny):
    model, variables = tiny
    rules = {nn.Conv: "epsilon", nn.Dense: "epsilon"}  # a dict composite: unhashable
    key = ("lrp", "an option that cannot be fixed (unhashable)")
    before = compiled.EAGER_FALLBACKS[key]
    relevance = attribution.lrp(model, variables, X, 0, composite=rules)
    assert compiled.EAGER_FALLBACKS[key] == before + 1
    np.testing.assert_allclose(relevance, attribution.lrp.eager(
        model, variables, X, 0, composite=rules), rtol=1e-5, atol=1e-6)
    assert jnp.isfinite(relevance).all()
