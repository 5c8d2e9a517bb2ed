"""Chapter-4 attention modules: exact identity at initialisation, gradients, the structure of
the masks, self-attention against a NumPy reference, STN transformations, a short training run
and the registry."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import config_files
from fast import fast_jit
from fer_jax.errors import UserError
from fer_jax.models import attention
from fer_jax.models.attention import (CONTEXTS, KINDS, MaskAttention, SelfAttention,
                                      TransformerNetwork)

B, T, H, W, D = 2, 4, 3, 3, 8
MAPS = jax.random.normal(jax.random.PRNGKey(0), (B, T, H, W, D))
FRAMES = MAPS.mean(axis=(2, 3))  # [B, T, D]

mask = functools.partial(MaskAttention, hidden=16, context_dim=8)
self_attention = functools.partial(SelfAttention, num_heads=2, head_dim=4)
stn = functools.partial(TransformerNetwork, hidden=8, pooled=(2, 2, 2))

# (module, input, name of the zero-initialised layer producing the gate / residual / offset)
CASES = {
    **{f"mask-{k}-{c or 'plain'}": (mask(kind=k, context=c), MAPS, "w2")
       for k in KINDS for c in CONTEXTS},
    **{f"mask-frames-{c or 'plain'}": (mask(kind="temporal", context=c), FRAMES, "w2")
       for c in ("", "multiplicative")},
    **{f"self_attention-{k}": (self_attention(kind=k), MAPS, "out") for k in KINDS},
    "self_attention-frames": (self_attention(kind="temporal"), FRAMES, "out"),
    **{f"stn-{k}": (stn(kind=k), MAPS, "loc3") for k in KINDS},
}
SOWN = {MaskAttention: "mask", SelfAttention: "attention", TransformerNetwork: "theta"}


def _random_params(module, x, scale=0.5, seed=3):
    """Parameters of ``module`` for input ``x``, every one scaled standard normal (no layer at
    zero, so the module is away from the identity)."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]
    leaves, tree = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(tree, [scale * jax.random.normal(k, leaf.shape)
                                     for k, leaf in zip(keys, leaves)])


def _sown(module, params, x):
    """``(y, the sown value)`` of ``module`` (one jit-compiled apply)."""

    def run(p, inputs):
        y, state = module.apply({"params": p}, inputs, mutable=["intermediates"])
        return y, state["intermediates"][SOWN[type(module)]][0]

    return fast_jit(run)(params, x)


@pytest.mark.parametrize("case", list(CASES))
def test_identity_at_init_and_gradients(case):
    module, x, gate = CASES[case]
    r = jax.random.normal(jax.random.PRNGKey(2), x.shape)

    def loss(params):
        y, state = module.apply({"params": params}, x, mutable=["intermediates"])
        return (y * r).sum(), (y, state["intermediates"][SOWN[type(module)]][0])

    @fast_jit
    def run(key):
        return jax.grad(loss, has_aux=True)(module.init(key, x)["params"])

    grads, (y, sown) = run(jax.random.PRNGKey(1))
    assert y.shape == x.shape and y.dtype == x.dtype and sown.dtype == jnp.float32
    np.testing.assert_array_equal(y, x)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    # Only the zero-initialised last layer sees a gradient at the identity.
    assert np.abs(grads[gate]["kernel"]).max() > 0 and np.abs(grads[gate]["bias"]).max() > 0
    assert not any(np.any(g) for name, layer in grads.items() if name != gate
                   for g in jax.tree.leaves(layer))


@pytest.mark.parametrize("context", ["", "multiplicative"])
@pytest.mark.parametrize("kind", KINDS)
def test_mask_structure_after_perturbing(kind, context):
    module = mask(kind=kind, context=context)
    params = _random_params(module, MAPS)
    y, gate = _sown(module, params, MAPS)
    gate = np.asarray(gate)
    assert gate.shape == (B, T, H, W)
    assert (gate > 0).all() and (gate < 2).all() and np.abs(gate - 1).max() > 1e-3
    np.testing.assert_allclose(y, gate[..., None] * np.asarray(MAPS), rtol=1e-6, atol=1e-6)
    varies_over_time = np.ptp(gate, axis=1).max() > 1e-4
    varies_over_space = np.ptp(gate.reshape(B, T, -1), axis=2).max() > 1e-4
    if kind == "temporal":
        np.testing.assert_array_equal(gate, np.broadcast_to(gate[:, :, :1, :1], gate.shape))
        assert varies_over_time
    elif kind == "spatial":
        np.testing.assert_array_equal(gate, np.broadcast_to(gate[:, :1], gate.shape))
        assert varies_over_space
    else:
        assert varies_over_time and varies_over_space


def _reference_attention(qk_tokens, v_tokens, p):
    """Multi-head attention with loops over heads: queries and keys from ``qk_tokens [N, D]``,
    values from ``v_tokens [N, M, D]`` (M positions sharing the N×N weights) →
    (output ``[N, M, D]``, probabilities ``[heads, N, N]``)."""
    heads, probs = [], []
    for h in range(p["query"]["kernel"].shape[1]):
        q = qk_tokens @ p["query"]["kernel"][:, h] + p["query"]["bias"][h]
        k = qk_tokens @ p["key"]["kernel"][:, h] + p["key"]["bias"][h]
        v = v_tokens @ p["value"]["kernel"][:, h] + p["value"]["bias"][h]
        logits = q @ k.T / np.sqrt(q.shape[-1])
        a = np.exp(logits - logits.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        probs.append(a)
        heads.append(np.einsum("ns,sme->nme", a, v))
    w_o = p["out"]["kernel"].reshape(-1, p["out"]["kernel"].shape[-1])
    return np.concatenate(heads, axis=-1) @ w_o + p["out"]["bias"], np.stack(probs)


def _reference_self_attention(x, p, kind):
    """``(y, probabilities)`` of ``SelfAttention`` computed per example in float64."""
    x = np.asarray(x, np.float64)
    outputs, probs = [], []
    for example in x:
        if kind == "temporal" and example.ndim == 2:  # per-frame features [T, D]
            out, a = _reference_attention(example, example[:, None], p)
            out = out[:, 0]
        elif kind == "temporal":
            t, h, w, d = example.shape
            out, a = _reference_attention(example.mean(axis=(1, 2)),
                                          example.reshape(t, h * w, d), p)
        elif kind == "spatial":
            frames = [_reference_attention(frame.reshape(-1, frame.shape[-1]),
                                           frame.reshape(-1, 1, frame.shape[-1]), p)
                      for frame in example]
            out, a = np.stack([o for o, _ in frames]), np.stack([a for _, a in frames])
        else:
            tokens = example.reshape(-1, example.shape[-1])
            out, a = _reference_attention(tokens, tokens[:, None], p)
        outputs.append(example + out.reshape(example.shape))
        probs.append(a)
    return np.stack(outputs), np.stack(probs)


@pytest.mark.parametrize("case", ["temporal", "frames", "spatial", "3d"])
def test_self_attention_matches_numpy_reference(case):
    kind, x = ("temporal", FRAMES) if case == "frames" else (case, MAPS)
    module = self_attention(kind=kind)
    params = _random_params(module, x, scale=0.3)  # W_o non-zero: a non-zero residual
    y, probs = _sown(module, params, x)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    expected_y, expected_probs = _reference_self_attention(x, p, kind)
    np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probs, expected_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(probs).sum(axis=-1), 1.0, rtol=1e-6)
    assert np.abs(np.asarray(y) - np.asarray(x)).max() > 1e-3


def test_temporal_self_attention_on_single_position_maps_equals_per_frame():
    module = self_attention(kind="temporal")
    params = _random_params(module, FRAMES)
    y_frames, probs_frames = _sown(module, params, FRAMES)
    y_maps, probs_maps = _sown(module, params, FRAMES[:, :, None, None])
    assert y_maps.shape == (B, T, 1, 1, D)
    np.testing.assert_allclose(y_maps[:, :, 0, 0], y_frames, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(probs_maps, probs_frames, rtol=1e-6, atol=1e-7)


VIDEO = jax.random.normal(jax.random.PRNGKey(4), (1, 5, 5, 5, 2))  # T = H = W = 5: step 0.5
warp = fast_jit(attention.affine_warp, static_argnums=2)


def _translation(kind, axis, shift):
    """θ translating the normalised coordinate of ``axis`` (0: t, 1: y, 2: x) by ``shift``."""
    if kind == "temporal":
        return jnp.array([[1.0, shift]])
    if kind == "spatial":
        theta = np.eye(2, 3, dtype=np.float32)
        theta[axis - 1, 2] = shift
        return jnp.broadcast_to(theta, (1, 5, 2, 3))
    theta = np.eye(3, 4, dtype=np.float32)
    theta[axis, 3] = shift
    return jnp.asarray(theta[None])


@pytest.mark.parametrize("kind, axis", [("spatial", 1), ("spatial", 2), ("temporal", 0),
                                        ("3d", 0), ("3d", 2)])
def test_translation_by_one_pixel_step_moves_content_by_one_pixel(kind, axis):
    x = np.asarray(VIDEO)
    forward = np.asarray(warp(VIDEO, _translation(kind, axis, 0.5), kind))
    backward = np.asarray(warp(VIDEO, _translation(kind, axis, -0.5), kind))
    take = functools.partial(np.take, axis=axis + 1)
    np.testing.assert_array_equal(take(forward, range(4)), take(x, range(1, 5)))
    np.testing.assert_array_equal(take(backward, range(1, 5)), take(x, range(4)))
    # Beyond the border the sampler repeats the edge pixel.
    np.testing.assert_array_equal(take(forward, [4]), take(x, [4]))
    np.testing.assert_array_equal(take(backward, [0]), take(x, [0]))


def test_scale_half_resamples_the_central_half():
    x = np.asarray(VIDEO)
    spatial = warp(VIDEO, jnp.broadcast_to(0.5 * np.eye(2, 3), (1, 5, 2, 3)), "spatial")
    np.testing.assert_array_equal(np.asarray(spatial)[:, :, ::2, ::2], x[:, :, 1:4, 1:4])
    np.testing.assert_allclose(np.asarray(spatial)[:, :, 1, 1],
                               x[:, :, 1:3, 1:3].mean(axis=(2, 3)), rtol=1e-6, atol=1e-6)
    # Frame positions -1, -0.5, 0, 0.5, 1 sample frames 1, 1.5, 2, 2.5, 3.
    temporal = np.asarray(warp(VIDEO, jnp.array([[0.5, 0.0]]), "temporal"))
    expected = np.stack([x[:, 1], (x[:, 1] + x[:, 2]) / 2, x[:, 2], (x[:, 2] + x[:, 3]) / 2,
                         x[:, 3]], axis=1)
    np.testing.assert_allclose(temporal, expected, rtol=1e-6, atol=1e-6)


def _set_raw(params, raw):
    """Localisation output fixed to ``raw`` for every input (zero kernel, bias = raw)."""
    params = dict(params)
    params["loc3"] = {"kernel": jnp.zeros_like(params["loc3"]["kernel"]),
                      "bias": jnp.asarray(raw, jnp.float32)}
    return params


def test_stn_module_applies_the_regressed_theta():
    x = np.asarray(VIDEO)
    module = stn(kind="spatial")
    params = _random_params(module, VIDEO)
    # θ = identity + tanh(raw): shift x by one pixel step (0.5).
    raw = np.zeros(6, np.float32)
    raw[5] = np.arctanh(0.5)
    y, theta = _sown(module, _set_raw(params, raw), VIDEO)
    np.testing.assert_allclose(theta, np.broadcast_to([[1, 0, 0], [0, 1, 0.5]], (1, 5, 2, 3)),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(y)[:, :, :, :4], x[:, :, :, 1:], atol=1e-5)

    module = stn(kind="temporal")
    params = _random_params(module, VIDEO)
    y, theta = _sown(module, _set_raw(params, [np.arctanh(-0.5), 0.0]), VIDEO)
    np.testing.assert_allclose(theta, [[0.5, 0.0]], atol=1e-6)
    np.testing.assert_allclose(np.asarray(y)[:, ::2], x[:, 1:4], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_warp_gradient_matches_finite_differences(kind):
    x = jax.random.normal(jax.random.PRNGKey(5), (1, 4, 5, 6, 2))
    r = jax.random.normal(jax.random.PRNGKey(6), x.shape)
    # Near the identity plus a translation of 0.3 pixel on every transformed axis, every
    # sample lies at least 0.15 pixel from an integer coordinate, so within ±eps the loss is a
    # polynomial in θ (no interpolation kink crossed) and central differences are accurate.
    sizes = {"spatial": (5, 6), "temporal": (4,), "3d": (4, 5, 6)}[kind]
    d = len(sizes)
    theta = np.eye(d, d + 1) + 0.01 * np.asarray(
        jax.random.normal(jax.random.PRNGKey(7), (d, d + 1)))
    theta[:, d] = [0.3 * 2 / (n - 1) for n in sizes]
    theta = np.broadcast_to(theta, (1, 4, d, d + 1) if kind == "spatial" else (1, d, d + 1))
    theta = theta.reshape(1, 2) if kind == "temporal" else theta
    theta = jnp.asarray(theta, jnp.float32)

    def loss(t):
        return (attention.affine_warp(x, t, kind) * r).sum()

    grad = np.asarray(fast_jit(jax.grad(loss))(theta)).ravel()
    loss = fast_jit(loss)
    eps = 1e-2
    numeric = []
    for step in np.eye(grad.size, dtype=np.float32) * eps:
        step = step.reshape(theta.shape)
        numeric.append((loss(theta + step) - loss(theta - step)) / (2 * eps))
    assert np.abs(grad).max() > 1.0
    np.testing.assert_allclose(numeric, grad, rtol=1e-3, atol=1e-3 * np.abs(grad).max())


class _Classifier(nn.Module):
    """Attention module → spatiotemporal average → Dense: ``f [B, T, H, W, D] → [B, classes]``."""

    module: nn.Module

    @nn.compact
    def __call__(self, f):
        return nn.Dense(3)(self.module(f).mean(axis=(1, 2, 3)))


@pytest.mark.parametrize("case", ["mask-3d-multiplicative", "self_attention-temporal",
                                  "stn-spatial"])
def test_short_training_lowers_the_loss(case):
    module, _, gate = CASES[case]
    features = jax.random.normal(jax.random.PRNGKey(8), (16, T, H, W, D))
    labels = jax.random.randint(jax.random.PRNGKey(9), (16,), 0, 3)
    model = _Classifier(module)
    params = fast_jit(model.init)(jax.random.PRNGKey(10), features)["params"]
    optimizer = optax.adam(0.05)

    def loss_fn(p):
        logits = model.apply({"params": p}, features)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @fast_jit
    def step(p, state):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    state = optimizer.init(params)
    losses = []
    for _ in range(30):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]
    assert np.abs(params["module"][gate]["kernel"]).max() > 0  # the module left the identity


def test_levels():
    assert mask(kind="temporal").level == "frames"
    assert self_attention(kind="temporal").level == "frames"
    assert {mask(kind=k).level for k in ("spatial", "3d")} == {"maps"}
    assert {self_attention(kind=k).level for k in ("spatial", "3d")} == {"maps"}
    assert {stn(kind=k).level for k in KINDS} == {"input"}


def test_bad_choices_and_inputs_raise():
    with pytest.raises(ValueError, match="'temporal', 'spatial', '3d'"):
        MaskAttention(kind="channel")
    with pytest.raises(ValueError, match="'concat', 'additive', 'multiplicative'"):
        MaskAttention(context="dot")
    with pytest.raises(ValueError, match="'temporal', 'spatial', '3d'"):
        SelfAttention(kind="4d")
    with pytest.raises(ValueError, match=r"\(T', H', W'\)"):
        TransformerNetwork(pooled=(4, 4))
    with pytest.raises(ValueError, match=r"feature maps \[B, T, H, W, D\]"):
        mask(kind="spatial").init(jax.random.PRNGKey(0), FRAMES)
    with pytest.raises(ValueError, match="unknown transformation kind"):
        attention.affine_warp(VIDEO, jnp.eye(3, 4)[None], "4d")


def test_registry():
    make = attention.build("mask", kind="spatial", context="multiplicative")
    module = make()
    assert isinstance(module, MaskAttention) and module.kind == "spatial"
    assert isinstance(attention.build("stn", pooled=[2, 2, 2])(), TransformerNetwork)
    with pytest.raises(UserError, match="available: mask, self_attention, stn"):
        attention.build("cbam")
    with pytest.raises(UserError, match="cannot build attention module 'self_attention'"):
        attention.build("self_attention", heads=4)
    with pytest.raises(UserError, match="'temporal', 'spatial', '3d'"):
        attention.build("stn", kind="rotation")


# --------------------------------------------------------------------------- inside a 3D CNN
def _thesis_rows():
    small = dict(hidden=8, context_dim=8, head_dim=8)
    return {row: (name, {k: small.get(k, v) for k, v in kwargs.items()})
            for row, (name, kwargs) in config_files.module("thesis_attention").ROWS.items()
            if name}


# a dense 3D ResNet of one block per stage: every placement of a module, half the blocks
THESIS_CNN = dict(num_classes=3, width=1 / 16, dense=True, stage_sizes=(1, 1, 1, 1))
THESIS_X = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 16, 16, 3))


@functools.cache
def _backbone():
    """``(variables, training-mode logits [2, 4, 3])`` of the bare backbone, whose parameters
    every row's network shares (same initialisation key), computed once for all rows."""
    from fer_jax import models
    backbone = models.build("resnet3d_18", **THESIS_CNN)
    variables = backbone.init(jax.random.PRNGKey(1), THESIS_X)  # eager: see below
    logits, _ = fast_jit(functools.partial(backbone.apply, train=True, mutable=["batch_stats"]))(
        variables, THESIS_X)
    return variables, logits


@pytest.mark.parametrize("row", sorted(_thesis_rows()))
def test_every_thesis_module_trains_inside_a_3d_cnn_from_the_identity(row):
    """Each row of the thesis' Tables 4.1–4.4 in a dense 3D ResNet: at initialisation the
    network's output is the backbone's (the module is the identity); a few Adam steps on a
    fixed batch lower the loss and move the module's parameters."""
    from fer_jax import models
    name, kwargs = _thesis_rows()[row]
    model = models.build("resnet3d_18", attention=attention.build(name, **kwargs), **THESIS_CNN)
    bare, backbone_logits = _backbone()
    # Initialised op by op, not compiled: the backbone's draws are the same small programs in
    # every row, compiled once for the file (a compiled init costs each row ~2.5 s of CPU).
    variables = model.init(jax.random.PRNGKey(1), THESIS_X)
    params, stats = variables["params"], variables["batch_stats"]
    # the same initialisation key gives the backbone's layers the bare backbone's values
    shared = {k: v for k, v in params.items() if k != "attention"}
    assert shared.keys() == bare["params"].keys()
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(shared),
                                                    jax.tree.leaves(bare["params"])))
    labels = jnp.array([0, 2])

    def loss_fn(p):
        logits, _ = model.apply({"params": p, "batch_stats": stats}, THESIS_X, train=True,
                                mutable=["batch_stats", "intermediates"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits.mean(1), labels).mean()
        return loss, logits

    tx = optax.adam(1e-2)

    @fast_jit
    def step(p, opt_state):
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, opt_state = tx.update(grads, opt_state, p)
        return loss, logits, optax.apply_updates(p, updates), opt_state

    opt_state = tx.init(params)
    trained, losses = params, []
    for i in range(6):
        loss, logits, trained, opt_state = step(trained, opt_state)
        losses.append(float(loss))
        if i == 0:  # the identity: the backbone's logits, in training mode (batch statistics)
            np.testing.assert_array_equal(logits, backbone_logits)
    assert losses[-1] < losses[0]
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params["attention"],
                         trained["attention"])
    assert max(jax.tree.leaves(moved)) > 0


def test_frozen_features_pass_no_gradient_and_trainable_freezes_the_rest():
    """Two-step training (Table 4.6): with ``freeze_features`` only the module and the
    classifier get gradients; ``optimizer.trainable`` keeps every other weight unchanged."""
    from fer_jax import configs, models, train
    model = models.build("resnet3d_18", num_classes=3, width=1 / 16, dense=True,
                         stage_sizes=(1, 1, 1, 1), freeze_features=True,
                         attention=attention.build("self_attention", head_dim=8))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 16, 16, 3))
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)

    def loss(p):
        logits, _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x,
                                train=True, mutable=["batch_stats"])
        return jnp.sum(logits ** 2)

    grads = fast_jit(jax.grad(loss))(variables["params"])
    for key, tree in grads.items():
        total = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(tree))
        assert (total > 0) == (key in ("attention", "fc")), key
    config = configs.defaults()
    config.optimizer.update(trainable="^(attention|fc)/", weight_decay=0.5)
    config.schedule.name = "step"  # the full learning rate from the first update
    tx, _ = train.make_optimizer(config, steps_per_epoch=10)
    params = variables["params"]
    updates, _ = tx.update(grads, tx.init(params), params)
    for key, tree in updates.items():
        total = sum(float(jnp.abs(u).sum()) for u in jax.tree.leaves(tree))
        assert (total > 0) == (key in ("attention", "fc")), key
    with pytest.raises(UserError, match="matches no parameter"):
        config.optimizer.trainable = "^nothing/"
        tx, _ = train.make_optimizer(config, steps_per_epoch=10)
        tx.init(params)
    with pytest.raises(ValueError, match="freeze_features needs an attention module"):
        models.build("resnet3d_18", num_classes=3, width=1 / 16, freeze_features=True).init(
            jax.random.PRNGKey(0), x)


def test_two_step_video_level_training_starts_from_a_trained_workdir(tmp_path):
    """Table 4.6: stage 1 trains the network with temporal self-attention on short clips;
    stage 2 (``video_level``) loads that workdir, freezes the network and trains only the
    attention module and the head, on longer clips."""
    from fer_jax import checkpointing, train
    first = config_files.load("thesis_attention", "temporal_sa,smoke")
    first.train.epochs = 1
    first.dataset.update(train_videos=16, validation_videos=4)  # compiling costs the time
    train.train_and_evaluate(first, str(tmp_path / "clips"))
    second = config_files.load("thesis_attention", "temporal_sa,video_level,smoke")
    second.train.epochs = 1
    second.dataset.update(train_videos=16, validation_videos=4)
    second.model.init_from = str(tmp_path / "clips")
    assert second.input.clip_frames > first.input.clip_frames
    train.train_and_evaluate(second, str(tmp_path / "video_level"))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    (a, _, _), (b, _, _) = (checkpointing.Checkpoints(tmp_path / d, 2).restore_variables(
        device, prefer_best=False) for d in ("clips", "video_level"))
    for key in a["params"]:
        same = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a["params"][key]),
                                                        jax.tree.leaves(b["params"][key])))
        assert same == (key not in ("attention", "head")), key
