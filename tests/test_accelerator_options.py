"""The computation settings of ``config.model``: ``precision`` (bfloat16 compute, float32
parameters, optimiser state and logits), ``attention_implementation`` (fused attention with the
probabilities still formed for explanations) and ``remat`` (the same gradients)."""
import glob

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import config_files
from fast import fast_jit
from fer_jax import attribution, configs, experiment, models, train
from fer_jax.errors import UserError
from fer_jax.attribution import attention as attention_maps
from fer_jax.models import attention as attention_modules

TIMESFORMER = dict(num_classes=5, patch_size=8, hidden_size=16, num_layers=1, num_heads=2)


def _config(name: str, **model):
    config = configs.defaults()
    config.model.name = name
    config.model.kwargs = {}
    config.model.update(model)
    return config


# --------------------------------------------------------------------------------------------
# Precision


def test_bfloat16_training_is_close_to_float32_and_keeps_float32_state(tmp_path):
    """One epoch of the synthetic smoke config in bfloat16: the final training loss lies
    within 2 % of float32's; parameters and optimiser state are float32 in the checkpoint;
    the two runs are the same experiment (one may resume or evaluate the other)."""
    small = {"dataset.train_videos": 16, "dataset.validation_videos": 8}
    losses = {}
    for precision in ("float32", "bfloat16"):
        config = config_files.smoke(**small, **{"model.precision": precision})
        result = train.train_and_evaluate(config, str(tmp_path / precision))
        losses[precision] = result["history"][-1]["train"]["loss"]
    assert abs(losses["bfloat16"] - losses["float32"]) <= 0.02 * losses["float32"], losses

    (step,) = glob.glob(str(tmp_path / "bfloat16" / "checkpoints" / "*"))
    saved = ocp.StandardCheckpointer().metadata(f"{step}/state").item_metadata.tree
    floats = {str(m.dtype) for m in jax.tree.leaves(
        {"params": saved["params"], "opt_state": saved["opt_state"]})
        if jnp.issubdtype(m.dtype, jnp.floating)}
    assert floats == {"float32"}

    bf16 = config_files.smoke(**small, **{"model.precision": "bfloat16"})
    assert experiment.Run(bf16, str(tmp_path / "bfloat16")).model.dtype == jnp.bfloat16
    explaining = experiment.Run(bf16, str(tmp_path / "bfloat16"), explaining=True)
    assert explaining.model.dtype == jnp.float32
    experiment.check_same_experiment(bf16, tmp_path / "float32")  # no error
    other = config_files.smoke(**small, **{"model.kwargs.num_heads": 4})
    with pytest.raises(UserError, match="different experiment"):
        experiment.check_same_experiment(other, tmp_path / "float32")


def test_precision_reaches_every_zoo_model_and_its_attention_module():
    for name in models.names():
        model = experiment.build_model(_config(name, precision="bfloat16"))
        assert model.dtype == jnp.bfloat16, name
    config = _config("vgg16_3d", precision="bfloat16",
                     attention=dict(name="self_attention", kwargs=dict(kind="3d")))
    assert experiment.build_model(config).attention.keywords["dtype"] == jnp.bfloat16
    assert experiment.build_model(config, explaining=True).dtype == jnp.float32


@pytest.mark.parametrize("name, kwargs, shape", [
    ("timesformer", TIMESFORMER, (2, 2, 16, 16, 3)),
    ("resnet2d_50", dict(num_classes=5, stage_sizes=(1, 1, 1, 1), width=0.125),
     (2, 1, 32, 32, 3)),
    ("mini_xception", dict(num_classes=5, base_filters=4, block_filters=(8, 8)),
     (2, 1, 24, 24, 1)),
])
def test_bfloat16_forward_is_close_to_float32(name, kwargs, shape):
    """The zoo models without a bfloat16 test of their own (3D CNNs: test_cnn3d.py; landmark
    models: test_landmark_models.py)."""
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    model = models.build(name, **kwargs)
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    reference = fast_jit(model.apply)(variables, x)
    low = fast_jit(model.clone(dtype=jnp.bfloat16).apply)(variables, x)
    assert low.dtype == jnp.float32 and np.isfinite(low).all()
    relative = np.linalg.norm(low - reference) / np.linalg.norm(reference)
    assert relative < 0.05, relative


@pytest.mark.parametrize("model, message", [
    (dict(precision="float16"), "needs loss scaling"),
    (dict(precision="half"), "unknown model.precision"),
    (dict(attention_implementation="flash"), "unknown attention implementation"),
    (dict(attention_implementation="cudnn"), "needs model.precision='bfloat16'"),
    (dict(remat="layer"), "unknown remat"),
    (dict(remat="block", remat_policy="all"), "unknown remat_policy"),
    (dict(kwargs=dict(dtype="bfloat16")), "set config.model.precision"),
])
def test_bad_settings_are_one_line_errors(model, message):
    with pytest.raises(UserError, match=message):
        experiment.build_model(_config("timesformer", **model))


def test_settings_a_model_lacks_are_refused():
    with pytest.raises(UserError, match="remat='block' applies to .*tcn does not"):
        experiment.build_model(_config("tcn", remat="block"))
    with pytest.raises(UserError, match="attention_implementation='xla' applies to"):
        experiment.build_model(_config("c3d", attention_implementation="xla"))
    # A 3D CNN takes it for its self-attention module.
    config = _config("vgg16_3d", attention_implementation="xla",
                     attention=dict(name="self_attention", kwargs=dict(kind="spatial")))
    assert experiment.build_model(config).attention.keywords["implementation"] == "xla"


def test_remat_is_refused_with_au_guidance(tmp_path):
    config = _config("resnet2d_50", remat="block")
    config.au_guidance.measure = True
    with pytest.raises(UserError, match="model.remat cannot be combined with AU guidance"):
        experiment.Run(config, str(tmp_path))
    experiment.Run(config, str(tmp_path), explaining=True)  # explanations build it without


# --------------------------------------------------------------------------------------------
# Attention implementation


def _spy(monkeypatch) -> list:
    """Records the calls of ``jax.nn.dot_product_attention`` (at trace time)."""
    calls, original = [], jax.nn.dot_product_attention
    monkeypatch.setattr(jax.nn, "dot_product_attention",
                        lambda *a, **k: calls.append(k["implementation"]) or original(*a, **k))
    return calls


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time",
                                            "space_only"])
def test_fused_timesformer_attention_equals_explicit(attention_type, monkeypatch):
    calls = _spy(monkeypatch)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 16, 16, 3))
    model = models.build("timesformer", **TIMESFORMER, attention_type=attention_type)
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    assert not calls
    explicit = fast_jit(model.apply)(variables, x)
    fused = model.clone(attention_implementation="xla")
    np.testing.assert_allclose(fast_jit(fused.apply)(variables, x), explicit,
                               rtol=1e-5, atol=1e-6)
    per_block = 2 if attention_type == "divided_space_time" else 1
    assert calls == ["xla"] * per_block * TIMESFORMER["num_layers"]
    # Whoever can read the probabilities gets them, from the explicit computation.
    _, state = jax.eval_shape(lambda: fused.apply(variables, x, mutable=["intermediates"]))
    assert len(jax.tree.leaves(state)) == per_block * TIMESFORMER["num_layers"]
    assert len(calls) == per_block * TIMESFORMER["num_layers"]


def test_attention_explanations_of_a_fused_model_read_its_probabilities(monkeypatch):
    """Rollout-Grad and Chefer's relevance trace the explicit computation of a fused model
    (shapes only: the values are those of the explicit model, tested in
    test_attention_attribution.py)."""
    calls = _spy(monkeypatch)
    x = jax.ShapeDtypeStruct((2, 2, 16, 16, 3), jnp.float32)
    fused = models.build("timesformer", **TIMESFORMER, attention_implementation="auto")
    variables = jax.eval_shape(fused.init, jax.random.PRNGKey(1), x)
    blocks, _ = jax.eval_shape(lambda v, x: attention_maps.collect(
        fused, v, x, jnp.array([1, 3]), gradients=True), variables, x)
    assert [[(m.kind, m.probs.shape == m.grads.shape) for m in block] for block in blocks] \
        == [[("temporal", True), ("spatial", True)]] * TIMESFORMER["num_layers"]
    maps = jax.eval_shape(lambda v, x: attribution.chefer_relevance(fused, v, x), variables, x)
    assert maps.shape == (2, 2, 2, 2)
    assert not calls


@pytest.mark.parametrize("kind, shape, fused", [
    ("temporal", (2, 4, 8), True), ("temporal", (2, 4, 3, 3, 8), False),
    ("spatial", (2, 2, 3, 3, 8), True), ("3d", (2, 2, 3, 3, 8), True)])
def test_fused_self_attention_module_equals_explicit(kind, shape, fused, monkeypatch):
    calls = _spy(monkeypatch)
    module = attention_modules.SelfAttention(kind=kind, num_heads=2, head_dim=4)
    f = jax.random.normal(jax.random.PRNGKey(0), shape)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(1), f)
    rng = np.random.default_rng(0)  # every parameter nonzero (`out` starts at zero)
    variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype),
                             variables)
    expected = fast_jit(module.apply)(variables, f)
    xla = module.clone(implementation="xla")
    np.testing.assert_allclose(fast_jit(xla.apply)(variables, f), expected,
                               rtol=1e-5, atol=1e-5)
    assert calls == (["xla"] if fused else [])
    _, state = jax.eval_shape(lambda: xla.apply(variables, f, mutable=["intermediates"]))
    assert "attention" in state["intermediates"] and len(calls) == fused


# --------------------------------------------------------------------------------------------
# Rematerialisation


@pytest.mark.parametrize("name, kwargs, shape", [
    ("timesformer", dict(TIMESFORMER, dropout=0.1, drop_path_rate=0.2), (2, 2, 16, 16, 3)),
    ("c3d", dict(num_classes=5, width=1 / 32, fc_dim=4, dense=True), (1, 1, 32, 32, 3)),
    ("resnet3d_18", dict(num_classes=5, width=1 / 8, stage_sizes=(1, 1, 1, 1)),
     (2, 4, 16, 16, 3)),
])
def test_remat_gives_the_same_variables_and_gradients(name, kwargs, shape):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    model = models.build(name, **kwargs)
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def grads(m):
        def loss(p):
            logits, new_state = m.apply({"params": p, **state}, x, train=True,
                                        rngs={"dropout": jax.random.PRNGKey(2)},
                                        mutable=list(state))
            return jnp.sum(logits * jnp.arange(logits.shape[-1])), new_state
        return fast_jit(jax.grad(loss, has_aux=True))(params)

    rematerialised = model.clone(remat="block", remat_policy="nothing_saveable")
    assert jax.tree.map(jnp.shape, jax.eval_shape(rematerialised.init, jax.random.PRNGKey(1),
                                                  x)) == jax.tree.map(jnp.shape, variables)
    (expected, expected_state), (got, got_state) = grads(model), grads(rematerialised)
    for a, b in zip(jax.tree.leaves((expected, expected_state)),
                    jax.tree.leaves((got, got_state)), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
