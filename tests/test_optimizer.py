"""train.make_optimizer: learning-rate schedules; parameter groups at a scaled learning rate
(``optimizer.scaled``) against torch.optim."""
import flax.traverse_util
import jax
import numpy as np
import optax
import pytest

from fast import fast_jit
from fer_jax import configs, train
from fer_jax.errors import UserError

torch = pytest.importorskip("torch", reason="needs torch (pip install '.[interop]')")


def test_step_schedule_is_pytorch_steplr_counted_in_epochs():
    config = configs.defaults()
    config.optimizer.update(learning_rate=0.002, accumulation_steps=2)
    config.schedule.update(name="step", step_epochs=4, step_factor=0.9)
    _, schedule = train.make_optimizer(config, steps_per_epoch=10)  # 5 updates per epoch
    assert float(schedule(0)) == pytest.approx(0.002)
    assert float(schedule(19)) == pytest.approx(0.002)        # epoch 4 not finished
    assert float(schedule(20)) == pytest.approx(0.002 * 0.9)  # after 4 epochs
    assert float(schedule(45)) == pytest.approx(0.002 * 0.9**2)


def test_unknown_schedule_names_the_choices():
    config = configs.defaults()
    config.schedule.name = "linear"
    with pytest.raises(UserError, match="inverse_time or step"):
        train.make_optimizer(config, steps_per_epoch=10)


# --------------------------------------------------------------------------- optimizer.scaled
# Parameters of three groups: 'conv1' pretrained (scaled), 'fc' a new classifier (full
# rate), 'frozen' outside optimizer.trainable. Weight decay applies to matrices only.
SHAPES = {"conv1": {"kernel": (3, 4), "bias": (4,)}, "fc": {"kernel": (4, 2), "bias": (2,)},
          "frozen": {"kernel": (2, 2)}}
SCALE, DECAY, STEPS = 0.05, 0.3, 4


def _params_and_grads():
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s).astype(np.float32), SHAPES,
                          is_leaf=lambda s: isinstance(s, tuple))
    grads = [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)
             for _ in range(STEPS)]
    return params, grads


def _optax_run(config, params, grads):
    tx, _ = train.make_optimizer(config, steps_per_epoch=10)
    state = tx.init(params)

    @fast_jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for g in grads:
        params, state = step(params, state, g)
    return params


def _torch_run(make, params, grads, lr, clip):
    """torch.optim with one parameter group per (rate, decay); 'frozen' left out."""
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    tensors = {k: torch.tensor(np.array(v), requires_grad=True) for k, v in flat.items()}
    groups = [{"params": [tensors[k]], "lr": lr * (SCALE if k.startswith("conv1/") else 1.0),
               "weight_decay": DECAY if tensors[k].ndim > 1 else 0.0}
              for k in tensors if not k.startswith("frozen/")]
    optimizer = make(groups)
    for g in grads:
        for k, v in flax.traverse_util.flatten_dict(g, sep="/").items():
            tensors[k].grad = torch.tensor(v)
        # over the trained parameters, as optax clips inside optimizer.trainable's branch
        # (torch: frozen parameters have requires_grad=False, hence no gradient)
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], clip)
        optimizer.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


def _config(name, lr, **optimizer):
    config = configs.defaults()
    config.optimizer.update({"name": name, "learning_rate": lr, "weight_decay": DECAY,
                             "trainable": "^(conv1|fc)/", "scaled": "^conv1/", "scale": SCALE,
                             **optimizer})
    config.schedule.update(name="step", step_epochs=100)  # the full rate from the first update
    return config


# AdamW at 0.01: optax's float32 bias correction 1 - 0.999^t (relative error ~1e-5 at t = 1)
# would put a rate of 0.1 a few 1e-6 off torch's float64 one after four steps.
@pytest.mark.parametrize("name, nesterov, lr", [("adamw", False, 0.01), ("sgd", False, 0.1),
                                                ("sgd", True, 0.1)])
def test_scaled_parameters_train_as_a_pytorch_parameter_group(name, nesterov, lr):
    """``optimizer.scaled`` at ``scale`` = a torch parameter group with lr = scale · lr (AdamW's
    decoupled decay, SGD's momentum and coupled decay), with global-norm clipping of the
    trained parameters' gradients; ``optimizer.trainable`` freezes the third group."""
    params, grads = _params_and_grads()
    clip = 2.5  # below the gradients' global norm (about 4): clipping acts
    config = _config(name, lr, momentum=0.9, nesterov=nesterov, grad_clip_norm=clip)
    got = flax.traverse_util.flatten_dict(_optax_run(config, params, grads), sep="/")
    if name == "adamw":
        make = lambda groups: torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)  # noqa
    else:
        make = lambda groups: torch.optim.SGD(groups, momentum=0.9, nesterov=nesterov)  # noqa
    expected = _torch_run(make, params, grads, lr, clip)
    start = flax.traverse_util.flatten_dict(params, sep="/")
    for key, value in got.items():
        np.testing.assert_allclose(value, expected[key], atol=1e-6, rtol=0, err_msg=key)
        moved = np.abs(value - start[key]).max()
        assert (moved == 0) == key.startswith("frozen/"), key
    # The scale matters: the scaled group moved far less than it would at the full rate.
    full = flax.traverse_util.flatten_dict(
        _optax_run(_config(name, lr, momentum=0.9, nesterov=nesterov, grad_clip_norm=clip,
                           scaled=""), params, grads), sep="/")
    assert np.abs(full["conv1/kernel"] - start["conv1/kernel"]).max() > \
        5 * np.abs(got["conv1/kernel"] - start["conv1/kernel"]).max()


def test_empty_scaled_keeps_the_optimiser_state_of_configs_without_it():
    """Checkpoints written before ``optimizer.scaled`` existed still restore."""
    params, _ = _params_and_grads()
    config = configs.defaults()
    old = configs.defaults()
    del old.optimizer["scaled"], old.optimizer["scale"]
    for c in (config, old):
        c.optimizer.update(trainable="^(conv1|fc)/", accumulation_steps=2)
    new_tx, _ = train.make_optimizer(config, steps_per_epoch=10)
    old_tx, _ = train.make_optimizer(old, steps_per_epoch=10)
    assert jax.tree.structure(new_tx.init(params)) == jax.tree.structure(old_tx.init(params))
    config.optimizer.scaled = "^conv1/"
    scaled_tx, _ = train.make_optimizer(config, steps_per_epoch=10)
    assert jax.tree.structure(scaled_tx.init(params)) != jax.tree.structure(old_tx.init(params))


@pytest.mark.parametrize("settings, message", [
    (dict(scaled="conv1/(", scale=0.1), "optimizer.scaled='conv1/\\(' is not a regular exp"),
    (dict(scaled="^nothing/", scale=0.1), "optimizer.scaled='\\^nothing/' matches no parameter"),
    (dict(scaled="^frozen/", scale=0.1, trainable="^fc/"), "matches no parameter that "
                                                           "optimizer.trainable"),
    (dict(scaled="^conv1/", scale=0.0), "optimizer.scale must be a finite number > 0, got 0"),
    (dict(scaled="^conv1/", scale=-0.5), "optimizer.scale must be a finite number > 0"),
    (dict(scaled="^conv1/", scale=float("nan")), "optimizer.scale must be a finite number"),
])
def test_scaled_settings_errors_are_one_line(settings, message):
    params, _ = _params_and_grads()
    config = configs.defaults()
    config.optimizer.update(**settings)
    with pytest.raises(UserError, match=message) as error:
        tx, _ = train.make_optimizer(config, steps_per_epoch=10)
        tx.init(params)
    assert "\n" not in str(error.value)
