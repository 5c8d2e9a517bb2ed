"""The computation settings of ``config.model``: ``precision`` (bfloat16 or float16 compute,
float32 parameters, optimiser state and logits; float16 with dynamic loss scaling),
``attention_implementation`` (fused attention with the probabilities still formed for
explanations) and ``remat`` (the same gradients)."""
import dataclasses
import functools
import glob

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import config_files
from fast import fast_jit
from host_variables import random_variables
from fer_jax import attribution, checkpointing, configs, experiment, loss_scaling, models, train
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


def test_16_bit_training_is_close_to_float32_and_keeps_float32_state(tmp_path):
    """One epoch of the synthetic smoke config in bfloat16 and in float16 (dynamic loss
    scaling): the final training loss lies within 2 % of float32's; parameters and optimiser
    state are float32 in the checkpoint; the runs are the same experiment (one may resume or
    evaluate another). The float16 run then resumes for a second epoch and continues with
    the loss scale it saved (``period=1``: the scale doubles at every finite step, 4 in all)."""
    small = {"dataset.train_videos": 16, "dataset.validation_videos": 8}
    scaling = {"optimizer.loss_scale": {"initial": 2.0 ** 10, "period": 1, "factor": 2}}
    losses = {}
    for precision in ("float32", "bfloat16", "float16"):
        config = config_files.smoke(**small, **scaling, **{"model.precision": precision})
        result = train.train_and_evaluate(config, str(tmp_path / precision))
        losses[precision] = result["history"][-1]["train"]["loss"]
    for precision in ("bfloat16", "float16"):
        assert abs(losses[precision] - losses["float32"]) <= 0.02 * losses["float32"], losses
    assert result["history"][-1]["train"]["skipped_steps"] == 0
    assert result["loss_scale"] == 2.0 ** 12  # two finite steps

    for precision in ("bfloat16", "float16"):
        (step,) = glob.glob(str(tmp_path / precision / "checkpoints" / "*"))
        saved = ocp.StandardCheckpointer().metadata(f"{step}/state").item_metadata.tree
        floats = {str(m.dtype) for m in jax.tree.leaves(
            {"params": saved["params"], "opt_state": saved["opt_state"]})
            if jnp.issubdtype(m.dtype, jnp.floating)}
        assert floats == {"float32"}, precision

    resumed = config_files.smoke(**small, **scaling, **{"model.precision": "float16",
                                                        "train.epochs": 2})
    result = train.train_and_evaluate(resumed, str(tmp_path / "float16"))
    assert [r["epoch"] for r in result["history"]] == [1, 2]
    assert result["history"][-1]["train"]["skipped_steps"] == 0
    assert result["loss_scale"] == 2.0 ** 14  # the saved 2**12, doubled at both new steps

    bf16 = config_files.smoke(**small, **{"model.precision": "bfloat16"})
    assert experiment.Run(bf16, str(tmp_path / "bfloat16")).model.dtype == jnp.bfloat16
    explaining = experiment.Run(bf16, str(tmp_path / "bfloat16"), explaining=True)
    assert explaining.model.dtype == jnp.float32
    experiment.check_same_experiment(bf16, tmp_path / "float32")  # no error
    other = config_files.smoke(**small, **{"model.kwargs.num_heads": 4})
    with pytest.raises(UserError, match="different experiment"):
        experiment.check_same_experiment(other, tmp_path / "float32")


@functools.cache
def _float16_step():
    """A jit-compiled float16 training step of a tiny TimeSformer (loss scale 2**8 at first,
    doubled after 3 finite steps), its initial state and a batch."""
    config = _config("timesformer", precision="float16",
                     kwargs={k: v for k, v in TIMESFORMER.items() if k != "num_classes"})
    config.dataset.num_classes = TIMESFORMER["num_classes"]
    config.optimizer.loss_scale = dict(initial=2.0 ** 8, period=3, factor=2)
    config.schedule.warmup_epochs = 0.0  # a nonzero learning rate from the first step
    model = experiment.build_model(config)
    tx, _ = train.make_optimizer(config, steps_per_epoch=10)
    video = jax.random.randint(jax.random.PRNGKey(0), (2, 2, 16, 16, 3), 0, 256).astype(jnp.uint8)
    batch = {"video": video, "label": jnp.array([1, 3])}
    variables = fast_jit(functools.partial(model.init, train=False))(
        jax.random.PRNGKey(1), video.astype(jnp.float32))
    state = train.TrainState(jnp.int32(0), variables["params"], {},
                             tx.init(variables["params"]), jax.random.PRNGKey(2),
                             loss_scaling.initial_state(config))
    step = fast_jit(functools.partial(train.train_step, model=model, tx=tx, config=config))
    return step, state, batch


def test_float16_step_with_overflowing_gradients_is_skipped_and_halves_the_scale():
    step, state, batch = _float16_step()
    state = state.replace(loss_scale={"scale": jnp.float32(2.0 ** 60), "counter": jnp.int32(2)})
    new, sums, _ = step(state, batch, train.zero_train_sums())
    # 2**60 times the loss overflows float16 in the backward pass: nothing is updated.
    for before, after in zip(jax.tree.leaves((state.params, state.opt_state)),
                             jax.tree.leaves((new.params, new.opt_state)), strict=True):
        np.testing.assert_array_equal(after, before)
    assert float(new.loss_scale["scale"]) == 2.0 ** 59 and int(new.loss_scale["counter"]) == 0
    assert int(sums["skipped"]) == 1 and bool(sums["finite"])  # the loss itself is finite
    assert int(new.step) == 1


def test_float16_scale_grows_after_the_configured_number_of_finite_steps():
    step, state, batch = _float16_step()
    sums, scales = train.zero_train_sums(), []
    for _ in range(4):
        previous = state.params
        state, sums, _ = step(state, batch, sums)
        scales.append((float(state.loss_scale["scale"]), int(state.loss_scale["counter"])))
        changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool((a != b).any()),
                                               previous, state.params))
        assert any(changed)  # a finite step updates the parameters
    assert scales == [(2.0 ** 8, 1), (2.0 ** 8, 2), (2.0 ** 9, 0), (2.0 ** 9, 1)]
    assert int(sums["skipped"]) == 0


def test_loss_scale_is_checkpointed_and_older_checkpoints_restore_with_a_fresh_one(tmp_path):
    """A checkpoint restores the saved loss scale; one written before ``TrainState`` had the
    field (``ADDED_STATE_FIELDS``) restores with the fresh state's."""
    progress = {"epoch": 0, "history": [], "best": None, "best_epoch": None,
                "epochs_without_improvement": 0, "stopped": None, "train_sums": None}
    fresh = train.TrainState(jnp.int32(0), {"w": jnp.zeros(3)}, {}, {"m": jnp.zeros(3)},
                             jax.random.PRNGKey(0), loss_scaling.initial_state())
    saved = fresh.replace(step=jnp.int32(7), params={"w": jnp.ones(3)},
                          loss_scale={"scale": jnp.float32(64.0), "counter": jnp.int32(5)})
    checkpoints = checkpointing.Checkpoints(tmp_path / "new", 2)
    checkpoints.save(7, saved, {"position": 7}, progress)
    checkpoints.wait()
    state, *_ = checkpoints.restore_latest(fresh, None, train.ADDED_STATE_FIELDS)
    assert (float(state.loss_scale["scale"]), int(state.loss_scale["counter"])) == (64.0, 5)
    checkpoints.close()

    older = {k: getattr(saved, k) for k in ("step", "params", "model_state", "opt_state", "rng")}
    checkpoints = checkpointing.Checkpoints(tmp_path / "old", 2)
    checkpoints.save(7, older, {"position": 7}, progress)
    checkpoints.wait()
    state, *_ = checkpoints.restore_latest(fresh, None, train.ADDED_STATE_FIELDS)
    assert int(state.step) == 7 and float(state.params["w"][0]) == 1.0
    assert float(state.loss_scale["scale"]) == 2.0 ** 15
    with pytest.raises(UserError, match="loss_scale/counter, which is not saved"):
        checkpoints.restore_latest(fresh)  # without the field named: another structure
    checkpoints.close()


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
    variables = random_variables(model, x)  # any weights of the right scale
    reference = fast_jit(model.apply)(variables, x)
    low = fast_jit(model.clone(dtype=jnp.bfloat16).apply)(variables, x)
    assert low.dtype == jnp.float32 and np.isfinite(low).all()
    relative = np.linalg.norm(low - reference) / np.linalg.norm(reference)
    assert relative < 0.05, relative


@pytest.mark.parametrize("model, message", [
    (dict(precision="half"), "unknown model.precision"),
    (dict(attention_implementation="flash"), "unknown attention implementation"),
    (dict(attention_implementation="cudnn"), "needs model.precision='bfloat16' or 'float16'"),
    (dict(remat="layer"), "unknown remat"),
    (dict(remat="block", remat_policy="all"), "unknown remat_policy"),
    (dict(kwargs=dict(dtype="bfloat16")), "set config.model.precision"),
])
def test_bad_settings_are_one_line_errors(model, message):
    with pytest.raises(UserError, match=message):
        experiment.build_model(_config("timesformer", **model))


@pytest.mark.parametrize("loss_scale, message", [
    (dict(period=0), "period must be a positive integer"),
    (dict(factor=1), "factor must be an integer >= 2"),
    (dict(initial=float("inf")), "initial must be a number"),
    (dict(growth=2), "unknown optimizer.loss_scale field 'growth'"),
])
def test_bad_loss_scale_settings_are_one_line_errors(loss_scale, message):
    config = config_files.smoke(**{"model.precision": "float16"})
    config.optimizer.loss_scale = loss_scale
    with pytest.raises(UserError, match=message):
        train.check_train_config(config)


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
        # recomputed activations are summed in another order by XLA's CPU code (a relative
        # 1.5e-6 seen on a CPU without AVX-512): float32 rounding, not another gradient
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_the_computation_settings_are_the_models_computation_fields():
    """config.model's computation settings (precision is the modules' dtype) are the module
    fields the converter leaves out of a weight file's kwargs and resumes may change."""
    names = {"dtype" if k == "precision" else k for k in experiment.COMPUTATION_FIELDS}
    assert names == set(models.COMPUTATION_KWARGS)
    tsf = models.build("timesformer", num_classes=3, hidden_size=8, num_layers=1, num_heads=2)
    assert set(models.COMPUTATION_KWARGS) <= {f.name for f in dataclasses.fields(tsf)}
