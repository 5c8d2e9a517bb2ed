"""Gradient and CAM attributions: mathematics (finite differences, completeness, CAM identity),
jit/vmap batching, layer taps and post-processing."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import attribution, models
from fer_jax.errors import UserError
from fast import fast_jit
from host_variables import random_variables


class ConvAct(nn.Module):
    """3×3×3 convolution followed by an activation."""

    features: int
    relu: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (3, 3, 3))(x)
        return nn.relu(x) if self.relu else nn.gelu(x)


class GapNet(nn.Module):
    """A user-defined video CNN: two conv+activation layers → GAP → linear classifier."""

    num_classes: int = 4
    relu: bool = False

    @nn.compact
    def __call__(self, x, train=False):
        x = ConvAct(6, self.relu, name="conv1")(x)
        x = ConvAct(8, self.relu, name="features")(x)
        return nn.Dense(self.num_classes, name="classifier")(x.mean(axis=(1, 2, 3)))


def _video(key, batch=3, shape=(4, 8, 8, 3)):
    return jax.random.normal(jax.random.PRNGKey(key), (batch, *shape))


@pytest.fixture(scope="module")
def gapnet():
    model = GapNet()
    x = _video(0)
    return model, model.init(jax.random.PRNGKey(1), x), x


def test_input_gradients_match_finite_differences(gapnet):
    model, variables, x = gapnet
    grads, logits = attribution.input_gradients(model, variables, x, target=2)
    direction = jax.random.normal(jax.random.PRNGKey(5), x.shape)
    h = 1e-2

    def f(x):
        return model.apply(variables, x)[:, 2]

    numeric = (f(x + h * direction) - f(x - h * direction)) / (2 * h)
    analytic = (grads * direction).reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-4)
    # saliency and input × gradient are reductions of the same gradient
    np.testing.assert_allclose(attribution.saliency(model, variables, x, 2),
                               jnp.abs(grads).max(-1), rtol=1e-6)
    np.testing.assert_allclose(attribution.input_x_gradient(model, variables, x, 2),
                               (x * grads).sum(-1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("relu", [False, True], ids=["gelu", "relu"])
def test_integrated_gradients_completeness(relu):
    model = GapNet(relu=relu)
    x = _video(2)
    variables = model.init(jax.random.PRNGKey(3), x)
    baseline = 0.1 * _video(4)
    ig = attribution.integrated_gradients(model, variables, x, target=1, baseline=baseline,
                                          steps=32, internal_batch_size=8)
    gap = model.apply(variables, x)[:, 1] - model.apply(variables, baseline)[:, 1]
    total = ig.reshape(len(x), -1).sum(axis=1)
    tolerance = 5e-3 if not relu else 3e-2
    np.testing.assert_array_less(np.abs(total - gap), tolerance * np.abs(gap).max() + 1e-5)


def test_smoothgrad_zero_noise_is_saliency_and_noise_changes_it(gapnet):
    model, variables, x = gapnet
    plain = attribution.saliency(model, variables, x)
    np.testing.assert_allclose(attribution.smoothgrad(model, variables, x, noise_level=0.0,
                                                      samples=2), plain, rtol=1e-5)
    noisy = attribution.smoothgrad(model, variables, x, samples=4)
    assert not np.allclose(noisy, plain)


def test_grad_cam_on_linear_gap_head_equals_cam(gapnet):
    model, variables, x = gapnet
    cam = attribution.cam(model, variables, x, layer="features", classifier="classifier")
    grad_cam = attribution.grad_cam(model, variables, x, layer="features")
    positions = np.prod(cam.shape[1:])
    assert cam.shape == (3, 4, 8, 8) and (cam < 0).any()
    np.testing.assert_allclose(grad_cam * positions, jax.nn.relu(cam), rtol=1e-4, atol=1e-5)


def test_grad_cam_equals_cam_on_zoo_resnet():
    model = models.build("resnet3d_18", num_classes=3, width=0.125)
    x = _video(6, batch=2, shape=(8, 64, 64, 3))
    variables = fast_jit(model.init)(jax.random.PRNGKey(7), x)
    cam, grad_cam = fast_jit(lambda v, x, t: (attribution.cam(model, v, x, t),
                                              attribution.grad_cam(model, v, x, t)))(
        variables, x, jnp.array([0, 2]))
    assert cam.shape == (2, 1, 2, 2)
    np.testing.assert_allclose(grad_cam * 4, jax.nn.relu(cam), rtol=1e-4, atol=1e-6)


def test_cam_family_formulas(gapnet):
    model, variables, x = gapnet
    a, g, logits = attribution.activations_and_gradients(model, variables, x, 0, "features")
    a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
    # Grad-CAM++ as pytorch-grad-cam computes it (per example, loops for clarity)
    expected = []
    for ai, gi in zip(a, g):
        s = ai.sum(axis=(0, 1, 2))
        alpha = gi**2 / (2 * gi**2 + s * gi**3 + 1e-6)
        alpha = np.where(gi != 0, alpha, 0)
        w = (alpha * np.maximum(gi, 0)).sum(axis=(0, 1, 2))
        expected.append(np.maximum((w * ai).sum(-1), 0))
    np.testing.assert_allclose(attribution.grad_cam_pp(model, variables, x, 0, "features"),
                               expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(attribution.layer_cam(model, variables, x, 0, "features"),
                               np.maximum((np.maximum(g, 0) * a).sum(-1), 0), rtol=1e-4,
                               atol=1e-7)
    # Eigen-CAM: first principal direction of the centred activations, sign towards the mean
    eigen = np.asarray(attribution.eigen_cam(model, variables, x, layer="features"))
    for ai, ei in zip(a, eigen):
        flat = ai.reshape(-1, ai.shape[-1])
        centred = flat - flat.mean(0)
        v = np.linalg.svd(centred)[2][0]
        p = centred @ v
        p = p if p @ flat.sum(-1) >= 0 else -p
        np.testing.assert_allclose(ei.reshape(-1), np.maximum(p, 0), rtol=1e-3, atol=1e-4)
    signed = np.asarray(attribution.eigen_cam(model, variables, x, layer="features", clip=False))
    assert (signed < 0).any()
    np.testing.assert_allclose(np.maximum(signed, 0), eigen, rtol=1e-6, atol=1e-7)


class FlatNet(nn.Module):
    """Conv features → flatten → linear: the gradient of a logit with respect to the features
    changes sign over positions and channels (a GAP head gives one gradient per channel)."""

    @nn.compact
    def __call__(self, x, train=False):
        x = ConvAct(6, False, name="conv1")(x)
        x = ConvAct(8, False, name="features")(x)
        return nn.Dense(4, name="classifier")(x.reshape(len(x), -1))


def _reference_cams(a: np.ndarray, g: np.ndarray) -> dict[str, np.ndarray]:
    """pytorch-grad-cam's formulas transcribed for activations and gradients ``[B, *pos, D]``
    (its ``[B, D, *pos]`` moved channels-last): the methods' weights, the weighted sum over
    channels, then BaseCAM's ``np.maximum(cam, 0)``."""
    axes = tuple(range(1, a.ndim - 1))
    expand = (slice(None),) + (None,) * len(axes)
    # GradCAM.get_cam_weights: np.mean(grads, axis=(2, 3))
    grad_cam = np.maximum((g.mean(axis=axes)[expand] * a).sum(-1), 0)
    # GradCAMPlusPlus.get_cam_weights
    grads_power_2 = g**2
    grads_power_3 = grads_power_2 * g
    sum_activations = a.sum(axis=axes)
    aij = grads_power_2 / (2 * grads_power_2 + sum_activations[expand] * grads_power_3 + 1e-6)
    aij = np.where(g != 0, aij, 0)
    weights = (np.maximum(g, 0) * aij).sum(axis=axes)
    grad_cam_pp = np.maximum((weights[expand] * a).sum(-1), 0)
    # LayerCAM.get_cam_image: spatial_weighted_activations = np.maximum(grads, 0) * activations
    layer_cam = np.maximum((np.maximum(g, 0) * a).sum(-1), 0)
    return {"grad_cam": grad_cam, "grad_cam_pp": grad_cam_pp, "layer_cam": layer_cam}


def test_cam_family_matches_the_reference_with_mixed_sign_gradients():
    model = FlatNet()
    x = _video(11)
    variables = model.init(jax.random.PRNGKey(12), x)
    a, g, _ = attribution.activations_and_gradients(model, variables, x, 1, "features")
    a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
    for gi in g:  # the fixture the inner ReLUs act on: both signs in every example
        assert (gi < 0).mean() > 0.2 and (gi > 0).mean() > 0.2
    expected = _reference_cams(a, g)
    for name, reference in expected.items():
        ours = getattr(attribution, name)(model, variables, x, 1, "features")
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6, err_msg=name)
    # Without their inner ReLU of the gradients, Grad-CAM++ and LayerCAM would differ here.
    assert not np.allclose(expected["layer_cam"], np.maximum((g * a).sum(-1), 0), atol=1e-5)
    axes = (1, 2, 3)
    alpha = np.where(g != 0, g**2 / (2 * g**2 + a.sum(axis=axes)[:, None, None, None] * g**3
                                     + 1e-6), 0)
    without = np.maximum(((alpha * g).sum(axis=axes)[:, None, None, None] * a).sum(-1), 0)
    assert not np.allclose(expected["grad_cam_pp"], without, atol=1e-5)


def test_layer_cam_equals_grad_cam_for_positive_constant_gradients():
    model = GapNet(num_classes=2)
    x = _video(8)
    variables = model.init(jax.random.PRNGKey(9), x)
    params = variables["params"]
    kernel = jnp.abs(params["classifier"]["kernel"])
    variables = {"params": {**params, "classifier": {**params["classifier"], "kernel": kernel}}}
    np.testing.assert_allclose(attribution.layer_cam(model, variables, x, 1, "features"),
                               attribution.grad_cam(model, variables, x, 1, "features"),
                               rtol=1e-4, atol=1e-7)


BATCHED = ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "cam",
           "grad_cam", "grad_cam_pp", "layer_cam", "eigen_cam", "layer_attention", "hires_cam",
           "xgrad_cam", "eigen_grad_cam", "score_cam", "ablation_cam", "full_grad"]


@pytest.mark.parametrize("name", BATCHED)
def test_jit_and_vmap_give_per_example_maps(gapnet, name):
    model, variables, x = gapnet
    options = {"layer": "features"} if "cam" in name or name == "layer_attention" else {}
    if name == "cam":
        options["classifier"] = "classifier"
    if name in ("integrated_gradients", "smoothgrad"):
        options["internal_batch_size"] = 4 if name == "integrated_gradients" else 2
    if name in ("score_cam", "ablation_cam"):  # chunks of masked copies across examples
        options["batch_size"] = 5
    method = attribution.METHODS[name]
    target = jnp.array([0, 3, 1])
    explain = fast_jit(lambda x, t: method(model, variables, x, t, **options))
    batched = explain(x, target)
    singles = [explain(x[i:i + 1], target[i:i + 1])[0] for i in range(len(x))]
    np.testing.assert_allclose(batched, np.stack(singles), rtol=2e-4, atol=1e-5)
    stacked = jnp.stack([x, x[::-1]])  # [V=2, B, ...]
    vmapped = fast_jit(jax.vmap(lambda xb: method(model, variables, xb, None, **options)))(
        stacked)
    unbatched = fast_jit(lambda x: method(model, variables, x, None, **options))
    np.testing.assert_allclose(vmapped[0], unbatched(x), rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(vmapped[1], unbatched(x[::-1]), rtol=2e-4, atol=1e-5)


def test_target_default_is_prediction(gapnet):
    model, variables, x = gapnet
    predicted = jnp.argmax(model.apply(variables, x), -1)
    # (two compiled programs: equal up to float32 rounding of their different fusions)
    np.testing.assert_allclose(attribution.grad_cam(model, variables, x, None, "features"),
                               attribution.grad_cam(model, variables, x, predicted, "features"),
                               rtol=1e-4, atol=1e-7)


def test_layer_errors_are_actionable(gapnet):
    model, variables, x = gapnet
    with pytest.raises(UserError, match="not called by GapNet; module paths: conv1, conv1/Conv_0, features"):
        attribution.grad_cam(model, variables, x, layer="conv9")
    with pytest.raises(UserError, match="no default attribution layer"):
        attribution.grad_cam(model, variables, x)
    with pytest.raises(UserError, match="takes 8 features but layer 'conv1' has 6"):
        attribution.cam(model, variables, x, layer="conv1", classifier="classifier")
    with pytest.raises(UserError, match="target must be"):
        attribution.saliency(model, variables, x, jnp.zeros((3, 1), jnp.int32))

    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            dense = nn.Dense(2, name="shared")
            return dense(dense(x.mean(axis=(1, 2, 3))[..., :2]))

    twice = Twice()
    v = twice.init(jax.random.PRNGKey(0), x)
    with pytest.raises(UserError, match="called 2 times"):
        attribution.grad_cam(twice, v, x, layer="shared")


@pytest.mark.parametrize("name,kwargs,shape,grid", [
    ("vgg16_3d", dict(width=1 / 16, fc_dim=16, head_dim=8), (4, 32, 32, 3), (4, 2, 2)),
    ("c3d", dict(width=1 / 16, fc_dim=16), (16, 32, 32, 3), (2, 2, 2)),
    ("i3d", dict(width=1 / 16), (8, 64, 64, 3), (1, 2, 2)),
    ("scn", dict(features=(4, 8), hidden_units=8), (4, 16, 16, 1), (8, 8)),
    ("early_fusion_cnn", dict(features=(4, 8), hidden_units=8), (4, 12, 12, 1), (8, 8)),
    ("tcn", dict(features=(8, 8, 8), hidden_units=8), (20, 68, 2), (33, 9)),
])
def test_zoo_default_layers(name, kwargs, shape, grid):
    model = models.build(name, num_classes=3, **kwargs)
    x = _video(10, batch=2, shape=shape)
    variables = random_variables(model, x, seed=11)  # drawn in NumPy: no init to compile
    maps = fast_jit(lambda v, x: attribution.grad_cam(model, v, x))(variables, x)
    assert maps.shape == (2, *grid) and np.isfinite(maps).all() and (maps >= 0).all()


def test_landmark_cam_postprocessing():
    model = models.build("tcn", num_classes=7, features=(8, 8, 8), hidden_units=8)
    x = jax.random.uniform(jax.random.PRNGKey(12), (2, 20, 68, 2))
    variables = fast_jit(model.init)(jax.random.PRNGKey(13), x)
    changes = fast_jit(lambda v, x: attribution.landmark_cam(model, v, x, target=3))(
        variables, x)
    assert changes.shape == (2, 19, 68)
    kept = np.abs(np.asarray(changes))
    assert ((kept == 0) | (kept > 75)).all() and kept.max() <= 255
    raw = fast_jit(lambda v, x: attribution.grad_cam(model, v, x, 3))(variables, x)
    grid = np.swapaxes(np.asarray(attribution.upsample(raw, (68, 20))), 1, 2)
    scaled = 255 * (grid - grid.min((1, 2), keepdims=True)) / np.ptp(grid, (1, 2))[:, None, None]
    diff = np.diff(scaled, axis=1)
    np.testing.assert_allclose(changes, np.where(np.abs(diff) <= 75, 0, diff), atol=1e-3)


def test_postprocessing_helpers():
    maps = jnp.array([[[0.0, 1.0], [2.0, 4.0]], [[-2.0, 0.0], [1.0, 0.0]]])  # [B=2, T=2, 2]
    np.testing.assert_allclose(attribution.normalise(maps)[0], [[0, .25], [.5, 1]])
    np.testing.assert_allclose(attribution.normalise(maps, "maxabs")[1], [[-1, 0], [.5, 0]])
    np.testing.assert_allclose(attribution.normalise(jnp.ones((1, 3))), [[0, 0, 0]])
    robust = attribution.normalise(jnp.array([[1.0] * 99 + [100.0]]), "percentile", 50)
    assert robust.max() == 1 and robust[0, 0] == 1
    np.testing.assert_array_equal(attribution.hotspots(maps, 0.3),
                                  [[[0, 0], [1, 1]], [[0, 0], [1, 0]]])
    np.testing.assert_array_equal(attribution.hotspot_counts(maps, 0.3), [[0, 2], [0, 1]])
    np.testing.assert_allclose(attribution.per_frame_sums(maps), [[1, 6], [-2, 1]])
    up = attribution.upsample(jnp.arange(4.0).reshape(1, 2, 2), (4, 4))
    assert up.shape == (1, 4, 4) and up[0, 0, 0] == 0 and up[0, -1, -1] == 3
    with pytest.raises(UserError, match="one length per position axis"):
        attribution.upsample(maps, (4,))
    with pytest.raises(UserError, match="unknown normalisation"):
        attribution.normalise(maps, "zscore")


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time",
                                            "space_only"])
def test_grad_cam_on_transformer_tokens(attention_type):
    model = models.build("timesformer", num_classes=3, patch_size=8, hidden_size=16,
                         num_layers=1, num_heads=2, attention_type=attention_type)
    x = _video(14, batch=2, shape=(3, 16, 24, 3))
    variables = fast_jit(model.init)(jax.random.PRNGKey(15), x)
    maps = fast_jit(lambda v, x: (attribution.grad_cam(model, v, x),
                                  attribution.eigen_cam(model, v, x)))(variables, x)
    for m in maps:  # frames × (16/8) × (24/8) patches
        assert m.shape == (2, 3, 2, 3) and np.isfinite(m).all()
