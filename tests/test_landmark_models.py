"""TCN/SCN of Gund et al. and early-fusion CNN of Forsman & Singh: parameter counts, shapes,
jit + grad, bf16, dropout, sown feature maps."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import models
from fer_jax.models.landmark import stack_frames_as_channels

# Tiny configurations: (constructor kwargs, input shape).
TINY = {
    "tcn": (dict(num_classes=7, features=(8, 16, 8), hidden_units=16), (2, 8, 12, 2)),
    "scn": (dict(num_classes=5, features=(4, 8, 8), hidden_units=16), (2, 3, 16, 16, 1)),
    "early_fusion_cnn": (dict(num_classes=8, features=(4, 8), hidden_units=16),
                         (2, 4, 12, 12, 1)),
}
# The papers' configurations: (constructor kwargs, input shape, sown ``features`` shape).
FULL = {
    "tcn": (dict(num_classes=7), (1, 20, 68, 2), (1, 33, 9, 64)),
    "scn": (dict(num_classes=7), (1, 20, 224, 224, 1), (1, 56, 56, 256)),
    "early_fusion_cnn": (dict(num_classes=8), (1, 16, 100, 100, 1), (1, 96, 96, 64)),
}
SCN_STATED = 5_647_943


def key(seed: int) -> jax.Array:
    """RBG keys: on CPU, initialisers and dropout masks compile several times faster than with
    threefry keys; the models take any key."""
    return jax.random.key(seed, impl="rbg")


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _abstract_variables(name, kwargs, shape):
    model = models.build(name, **kwargs)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(shape, jnp.float32))


class Tiny:
    """A tiny model with dropout 0.5, its input, variables and jitted entry points (compiled
    once per model and shared by the tests)."""

    def __init__(self, name):
        kwargs, shape = TINY[name]
        self.kwargs = kwargs
        self.model = model = models.build(name, **kwargs, dropout=0.5)
        self.x = jnp.asarray(np.random.default_rng(0).standard_normal(shape, np.float32))
        self.variables = jax.jit(model.init)(key(1), self.x)
        self.evaluate = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))
        labels = jnp.arange(shape[0]) % model.num_classes

        @jax.jit
        def train_step(variables, rng):
            state = {k: v for k, v in variables.items() if k != "params"}

            def loss(params):
                logits, new_state = model.apply({"params": params, **state}, self.x, train=True,
                                                rngs={"dropout": rng}, mutable=["batch_stats"])
                logp = jax.nn.log_softmax(logits)
                nll = -jnp.take_along_axis(logp, labels[:, None], 1).mean()
                return nll, (logits, new_state)

            return jax.value_and_grad(loss, has_aux=True)(variables["params"])

        self.train_step = train_step


_TINY_CACHE: dict[str, Tiny] = {}


def get_tiny(name: str) -> Tiny:
    if name not in _TINY_CACHE:
        _TINY_CACHE[name] = Tiny(name)
    return _TINY_CACHE[name]


@pytest.fixture(params=sorted(TINY))
def tiny(request) -> Tiny:
    return get_tiny(request.param)


@pytest.mark.parametrize("name, kwargs, expected, names", [
    ("tcn", dict(num_classes=7), 330_119,
     {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "dense1", "classifier"}),
    ("scn", dict(num_classes=7), 1_224_583,
     {f"conv{i}" for i in range(1, 7)} | {f"bn{i}" for i in range(1, 7)}
     | {"dense1", "classifier"}),
    ("scn", dict(num_classes=7, head="flatten"), 52_539_271,
     {f"conv{i}" for i in range(1, 7)} | {f"bn{i}" for i in range(1, 7)}
     | {"dense1", "classifier"}),
    ("early_fusion_cnn", dict(num_classes=8), 75_525_224,
     {"conv1", "conv2", "dense1", "classifier"}),
])
def test_full_size_trainable_parameter_counts(name, kwargs, expected, names):
    shape = FULL[name][1]
    variables = _abstract_variables(name, kwargs, shape)
    assert set(variables["params"]) == names
    assert _count(variables["params"]) == expected
    # BatchNorm moving statistics are state, not trainable parameters.
    assert _count(variables.get("batch_stats", {})) == sum(
        2 * v["scale"].shape[0] for k, v in variables["params"].items() if k.startswith("bn"))


def test_scn_documented_differences_from_stated_count():
    counts = {head: _count(_abstract_variables("scn", dict(num_classes=7, head=head),
                                               FULL["scn"][1])["params"])
              for head in ("gap", "flatten")}
    assert SCN_STATED - counts["gap"] == 4_423_360
    assert counts["flatten"] - SCN_STATED == 46_891_328


def test_tcn_layer_shapes_at_full_size():
    params = _abstract_variables("tcn", dict(num_classes=7), FULL["tcn"][1])["params"]
    assert params["conv1"]["kernel"].shape == (3, 3, 2, 64)
    assert params["conv2"]["kernel"].shape == (2, 2, 64, 128)
    assert params["conv3"]["kernel"].shape == (2, 2, 128, 64)
    assert params["dense1"]["kernel"].shape == (16 * 4 * 64, 64)


@pytest.mark.parametrize("name", sorted(FULL))
def test_sown_features_at_full_size(name):
    kwargs, shape, expected = FULL[name]
    model = models.build(name, **kwargs)
    x = jnp.zeros(shape, jnp.float32)

    def run():
        variables = model.init(jax.random.PRNGKey(0), x)
        return model.apply(variables, x, mutable=["intermediates"])

    logits, state = jax.eval_shape(run)
    assert logits.shape == (1, kwargs["num_classes"]) and logits.dtype == jnp.float32
    (features,) = state["intermediates"]["features"]
    assert features.shape == expected


def test_jit_forward_backward_at_tiny_size(tiny):
    (value, (logits, new_state)), grads = tiny.train_step(tiny.variables, key(2))
    assert logits.shape == (tiny.x.shape[0], tiny.model.num_classes)
    assert logits.dtype == jnp.float32
    assert np.isfinite(value) and np.isfinite(logits).all()
    assert jax.tree.structure(grads) == jax.tree.structure(tiny.variables["params"])
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["classifier"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["conv1"]["kernel"]).sum()) > 0
    if "batch_stats" in tiny.variables:  # running statistics move in training mode
        assert not np.allclose(new_state["batch_stats"]["bn1"]["mean"],
                               tiny.variables["batch_stats"]["bn1"]["mean"])
    eval_logits, _ = tiny.evaluate(tiny.variables, tiny.x)
    assert eval_logits.shape == logits.shape and np.isfinite(eval_logits).all()


def test_bfloat16_forward_is_finite_and_close(tiny):
    bf16 = tiny.model.clone(dtype=jnp.bfloat16)
    reference, _ = tiny.evaluate(tiny.variables, tiny.x)
    logits = jax.jit(bf16.apply)(tiny.variables, tiny.x)
    assert logits.dtype == jnp.float32 and np.isfinite(logits).all()
    scale = float(jnp.abs(reference).max()) + 1e-3
    np.testing.assert_allclose(logits, reference, atol=0.05 * scale)


def test_dropout_is_active_only_in_training(tiny):
    def train(seed):
        (_, (logits, _)), _ = tiny.train_step(tiny.variables, key(seed))
        return logits

    a, b, c = train(0), train(0), train(7)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # Evaluation draws no rng (Dropout would fail without one) and is deterministic.
    e, _ = tiny.evaluate(tiny.variables, tiny.x)
    np.testing.assert_array_equal(e, tiny.evaluate(tiny.variables, tiny.x)[0])


def test_frames_stack_frame_major_into_channels():
    x = jnp.arange(2 * 3 * 4 * 5 * 2).reshape(2, 3, 4, 5, 2)
    stacked = stack_frames_as_channels(x)
    assert stacked.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(stacked[1, 2, 3], x[1, :, 2, 3, :].reshape(-1))


def test_tcn_map_is_landmarks_by_frames():
    """The sown map is ``[B, landmarks', frames', C]``: changing the last frame changes the last
    frame column but not the first; changing the last landmark likewise acts on rows."""
    tcn = get_tiny("tcn")  # x [2, T=8, L=12, 2]
    x = np.asarray(tcn.x)

    def features(inputs):
        _, state = tcn.evaluate(tcn.variables, jnp.asarray(inputs))
        return np.asarray(state["intermediates"]["features"][0])

    base = features(x)
    assert base.shape == (2, (12 - 1) // 2, (8 - 1) // 2, 8)
    frame = x.copy()
    frame[:, -1] += 1.0
    last_frame = features(frame)
    np.testing.assert_array_equal(last_frame[:, :, 0], base[:, :, 0])
    assert not np.allclose(last_frame[:, :, -1], base[:, :, -1])
    landmark = x.copy()
    landmark[:, :, -1] += 1.0
    last_landmark = features(landmark)
    np.testing.assert_array_equal(last_landmark[:, 0], base[:, 0])
    assert not np.allclose(last_landmark[:, -1], base[:, -1])


@pytest.mark.parametrize("name, shape", [
    ("tcn", (2, 20, 68)), ("tcn", (2, 5, 68, 2)), ("scn", (2, 20, 224, 224)),
    ("scn", (2, 2, 6, 6, 1)), ("early_fusion_cnn", (2, 2, 4, 4, 1)),
])
def test_bad_input_shapes_are_rejected(name, shape):
    model = models.build(name, num_classes=3)
    with pytest.raises(ValueError):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(shape))


def test_registered_names():
    assert {"tcn", "scn", "early_fusion_cnn"} <= set(models.names())


def test_scn_rejects_unknown_head():
    model = models.build("scn", num_classes=3, head="max")
    with pytest.raises(ValueError, match="head"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 2, 8, 8, 1)))
