"""3D CNNs: shapes (dense and clip-level), jit forward + backward, BatchNorm state, parameter
counts at full size, bf16, and the structural properties the thesis relies on."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import models
from fast import fast_jit
from host_variables import random_variables

# Small widths and inputs; the architectures (depth, kernels, strides, pools) are the real ones
# except ResNeXt's stage depths.
TINY = {
    "vgg16_3d": (dict(width=1 / 16, fc_dim=32, head_dim=8), (2, 4, 32, 32, 3)),
    "c3d": (dict(width=1 / 16, fc_dim=32), (2, 16, 32, 32, 3)),
    "i3d": (dict(width=1 / 8), (2, 8, 32, 32, 3)),
    "resnet3d_18": (dict(width=1 / 8), (2, 8, 32, 32, 3)),
    "resnext3d_101": (dict(width=1 / 4, cardinality=4, stage_sizes=(2, 1, 1, 1)),
                      (2, 8, 32, 32, 3)),
}

# Full-size trainable parameter counts (num_classes in brackets), each checked independently:
# vgg16_3d (7): torchvision's VGG-16 has 138,357,544 parameters (published), of which
#   14,710,464 conv weights gain two more temporal taps, the 4,097,000 of its 1000-way classifier
#   are dropped, and the head adds 4096·128 + 128 + 128·7 + 7 — the thesis' "164M".
# c3d (487, Sports-1M), resnet3d_18 (400), resnext3d_101 (400): equal to the PyTorch
#   references in test_pytorch_references_have_the_same_counts; ResNet-18 matches Hara et
#   al.'s published 33.2M, ResNeXt-101 has 47.5M without its 400-way fc (the thesis' "47M").
# i3d (400): equal to hassony2/kinetics_i3d_pytorch's I3D (test_convert_cnn3d.py).
VGG16_3D_PARAMS = 138_357_544 + 2 * 14_710_464 - 4_097_000 + (4096 * 128 + 128) + (128 * 7 + 7)
FULL_SIZE = {
    "vgg16_3d": (7, (1, 16, 112, 112, 3), VGG16_3D_PARAMS),
    "c3d": (487, (1, 16, 112, 112, 3), 79_991_015),
    "i3d": (400, (1, 64, 224, 224, 3), 12_697_264),
    "resnet3d_18": (400, (1, 16, 112, 112, 3), 33_235_280),
    "resnext3d_101": (400, (1, 16, 112, 112, 3), 48_340_816),
}
HAS_BATCH_NORM = {"i3d", "resnet3d_18", "resnext3d_101"}


def _count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@functools.cache
def _tiny(name):
    """(kwargs, input, variables) of the clip-level tiny model; dense shares the variables."""
    kwargs, shape = TINY[name]
    model = models.build(name, num_classes=5, **kwargs)
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    return kwargs, x, random_variables(model, x, seed=1)  # drawn in NumPy: no init to compile


@pytest.mark.parametrize("dense", [False, True], ids=["clip", "dense"])
@pytest.mark.parametrize("name", list(TINY))
def test_jit_train_step_shapes_and_batch_stats(name, dense):
    kwargs, x, variables = _tiny(name)
    model = models.build(name, num_classes=5, dense=dense, **kwargs)
    assert jax.tree.map(np.shape, jax.eval_shape(model.init, jax.random.PRNGKey(1), x)) == \
        jax.tree.map(np.shape, variables)  # dense and clip-level models share their weights
    labels = jnp.array([0, 3])

    @fast_jit
    def train_step(params, state, rng):
        def loss(p):
            logits, new_state = model.apply({"params": p, **state}, x, train=True,
                                            rngs={"dropout": rng}, mutable=["batch_stats"])
            if dense:  # per-frame scores, every frame labelled with its video's class
                logits = logits.reshape(-1, logits.shape[-1])
            targets = jnp.repeat(labels, len(logits) // len(labels))
            log_probs = jax.nn.log_softmax(logits)
            value = -jnp.take_along_axis(log_probs, targets[:, None], 1).mean()
            return value, (logits, new_state)
        return jax.value_and_grad(loss, has_aux=True)(params)

    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    (value, (logits, new_state)), grads = train_step(params, state, jax.random.PRNGKey(2))
    batch, frames = x.shape[:2]
    assert logits.dtype == jnp.float32
    assert logits.shape == ((batch * frames, 5) if dense else (batch, 5))
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert jax.tree.map(np.shape, grads) == jax.tree.map(np.shape, params)
    if name in HAS_BATCH_NORM:  # training updates the running statistics
        before, after = jax.tree.leaves(state), jax.tree.leaves(new_state)
        assert any(not np.allclose(a, b) for a, b in zip(before, after))
    else:
        assert set(variables) == {"params"}


@pytest.mark.parametrize("name", list(FULL_SIZE))
def test_full_size_parameter_counts_and_shapes(name):
    num_classes, shape, expected = FULL_SIZE[name]
    model = models.build(name, num_classes=num_classes)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    assert _count(variables["params"]) == expected
    logits = jax.eval_shape(model.apply, variables, x)
    assert logits.shape == (1, num_classes) and logits.dtype == jnp.float32
    # No temporal stride anywhere when dense: one score vector per input frame, same weights.
    dense = models.build(name, num_classes=num_classes, dense=True)
    assert jax.eval_shape(dense.apply, variables, x).shape == (1, shape[1], num_classes)


@pytest.mark.parametrize("name", list(TINY))
def test_bfloat16_forward_is_finite_and_close(name):
    kwargs, x, variables = _tiny(name)
    outputs = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        model = models.build(name, num_classes=5, dtype=dtype, **kwargs)
        outputs[dtype] = fast_jit(model.apply)(variables, x)
    reference, low = outputs[jnp.float32], outputs[jnp.bfloat16]
    assert low.dtype == jnp.float32 and np.isfinite(low).all()
    relative = np.linalg.norm(low - reference) / np.linalg.norm(reference)
    assert relative < 0.05, relative


def test_vgg16_3d_temporal_receptive_field_is_27_frames():
    """13 convolutions with k_t = 3 and no temporal pooling: a change in frame 0 reaches output
    frames 0..13 and no further."""
    kwargs, _, variables = _tiny("vgg16_3d")
    model = models.build("vgg16_3d", num_classes=5, dense=True, **kwargs)
    x = jax.random.normal(jax.random.PRNGKey(3), (1, 16, 32, 32, 3))
    apply = fast_jit(model.apply)
    changed = np.abs(apply(variables, x.at[:, 0].add(1.0)) - apply(variables, x)).max(-1)[0]
    assert (changed[:14] > 0).all() and (changed[14:] == 0).all(), changed


def test_vgg16_3d_clip_output_is_the_time_average_of_frame_scores():
    kwargs, x, variables = _tiny("vgg16_3d")
    dense = models.build("vgg16_3d", num_classes=5, dense=True, **kwargs)
    clip = models.build("vgg16_3d", num_classes=5, **kwargs)
    np.testing.assert_allclose(fast_jit(clip.apply)(variables, x),
                               fast_jit(dense.apply)(variables, x).mean(1), atol=1e-6)


def test_resnet_shortcuts():
    """Type A (ResNet-18) is parameter-free; type B (ResNeXt) projects with conv + BN."""
    params = _tiny("resnet3d_18")[2]["params"]
    assert all("shortcut" not in block for block in params.values() if isinstance(block, dict))
    params = _tiny("resnext3d_101")[2]["params"]
    assert set(params["layer2_0"]["shortcut"]["downsample"]) == {"conv", "bn"}
    assert "shortcut" not in params["layer1_1"]  # same shape: identity
    grouped = params["layer1_0"]["conv2"]["conv"]["kernel"]
    assert grouped.shape == (3, 3, 3, 1, 4)  # 4 groups of 1 channel: cardinality 4, planes 32


def test_pytorch_references_have_the_same_counts():
    """C3D (the common PyTorch port, Sports-1M's 487 classes) and kenshohara's 3D ResNet-18
    and ResNeXt-101 (400 Kinetics classes), built on the meta device and counted."""
    torch = pytest.importorskip("torch", reason="reference counts need torch")
    nn = torch.nn

    def conv(i, o, k=3, stride=1, groups=1, bias=False):
        return nn.Conv3d(i, o, k, stride, k // 2, groups=groups, bias=bias)

    def c3d(num_classes=487):
        widths = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512),
                  (512, 512), (512, 512)]
        return nn.ModuleList([conv(i, o, bias=True) for i, o in widths] + [
            nn.Linear(8192, 4096), nn.Linear(4096, 4096), nn.Linear(4096, num_classes)])

    def resnet(block_convs, expansion, layers, planes, shortcut_b, num_classes=400):
        modules, inplanes = [conv(3, 64, 7), nn.BatchNorm3d(64)], 64
        for stage, (num_blocks, p) in enumerate(zip(layers, planes)):
            for i in range(num_blocks):
                modules += block_convs(inplanes, p)
                if i == 0 and shortcut_b and (stage > 0 or inplanes != p * expansion):
                    modules += [conv(inplanes, p * expansion, 1), nn.BatchNorm3d(p * expansion)]
                inplanes = p * expansion
        return nn.ModuleList(modules + [nn.Linear(inplanes, num_classes)])

    def basic(i, p):
        return [conv(i, p), nn.BatchNorm3d(p), conv(p, p), nn.BatchNorm3d(p)]

    def resnext(i, p, cardinality=32):
        mid = cardinality * p // 32
        return [conv(i, mid, 1), nn.BatchNorm3d(mid), conv(mid, mid, groups=cardinality),
                nn.BatchNorm3d(mid), conv(mid, 2 * p, 1), nn.BatchNorm3d(2 * p)]

    with torch.device("meta"):
        references = {
            "c3d": c3d(),
            "resnet3d_18": resnet(basic, 1, (2, 2, 2, 2), (64, 128, 256, 512), False),
            "resnext3d_101": resnet(resnext, 2, (3, 4, 23, 3), (128, 256, 512, 1024), True),
        }
    for name, reference in references.items():
        assert sum(p.numel() for p in reference.parameters()) == FULL_SIZE[name][2], name


def test_bad_options_raise():
    x = jax.ShapeDtypeStruct((1, 8, 32, 32, 3), jnp.float32)
    with pytest.raises(ValueError, match="shortcut type"):
        model = models.build("resnet3d_18", num_classes=2, shortcut="C")
        jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="block must be"):
        model = models.build("resnet3d_18", num_classes=2, block="dense")
        jax.eval_shape(model.init, jax.random.PRNGKey(0), x)


def test_resnet_pooling_variants_of_table_2_1():
    """With a linear classifier, averaging features equals averaging scores; 2-step pooling is
    the temporal mean of the dense model's per-frame scores; max of scores bounds their mean."""
    kwargs, _, variables = _tiny("resnet3d_18")
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 8, 64, 64, 3))  # 2×2 final feature map

    def run(pooling, dense=False):
        model = models.build("resnet3d_18", num_classes=5, **kwargs, pooling=pooling,
                             dense=dense)
        return np.asarray(fast_jit(model.apply)(variables, x))

    np.testing.assert_allclose(run("avg_features"), run("avg_scores"), rtol=1e-4, atol=1e-5)
    two_step = run("two_step")
    per_frame = run("two_step", dense=True)  # [B, T, C]; dense keeps time unstrided
    assert per_frame.shape == (2, 8, 5) and two_step.shape == (2, 5)
    assert (run("max_scores") >= run("avg_scores") - 1e-5).all()
    assert not np.allclose(two_step, run("avg_features"), atol=1e-4)
    with pytest.raises(ValueError, match="pooling must be one of"):
        run("median")
