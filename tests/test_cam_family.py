"""HiResCAM, XGrad-CAM, EigenGrad-CAM, Score-CAM, Ablation-CAM and FullGrad: pytorch-grad-cam's
formulas transcribed to NumPy on a network with mixed-sign gradients, chunking, and parity
with pytorch-grad-cam itself on the same weights (needs torch and grad-cam)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import attribution, models
from fer_jax.errors import UserError
from fast import fast_jit


class FlatNet(nn.Module):
    """conv → GELU → conv (``features``) → GELU → flatten → linear: gradients with respect to
    the features change sign over positions and channels, and activations are negative in
    places."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.gelu(nn.Conv(6, (3, 3, 3), name="conv1")(x))
        x = nn.gelu(nn.Conv(8, (3, 3, 3), name="features")(x))
        return nn.Dense(4, name="classifier")(x.reshape(len(x), -1))


@pytest.fixture(scope="module")
def flatnet():
    model = FlatNet()
    x = jax.random.normal(jax.random.PRNGKey(11), (3, 4, 6, 6, 3))
    variables = fast_jit(model.init)(jax.random.PRNGKey(12), x)
    return model, variables, x


def _project(m: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's ``get_2d_projection`` for ``[B, *positions, D]``."""
    out = []
    for mi in m:
        flat = mi.reshape(-1, mi.shape[-1])
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=True)
        out.append((flat @ vt[0]).reshape(mi.shape[:-1]))
    return np.array(out)


def _resize(m: np.ndarray, size, align_corners: bool) -> np.ndarray:
    """Separable linear resizing of ``m [B, *positions]``: PyTorch's ``align_corners=True``
    rule, or OpenCV's ``INTER_LINEAR`` (half-pixel centres, clamped at the edges)."""
    for axis, n_out in enumerate(size, start=1):
        n_in = m.shape[axis]
        if align_corners:
            src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        else:
            src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        low = np.minimum(np.floor(src).astype(int), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        frac = (src - low)[(slice(None),) + (None,) * (m.ndim - axis - 1)]
        m = np.take(m, low, axis) * (1 - frac) + np.take(m, high, axis) * frac
    return m


def test_gradient_cams_match_the_reference_with_mixed_sign_gradients(flatnet):
    model, variables, x = flatnet
    m = attribution.METHODS
    got = fast_jit(lambda v, x: {
        "ag": attribution.activations_and_gradients(model, v, x, 1, "features")[:2],
        "hires_cam": m["hires_cam"](model, v, x, 1, "features"),
        "xgrad_cam": m["xgrad_cam"](model, v, x, 1, "features"),
        "eigen_grad_cam": m["eigen_grad_cam"](model, v, x, 1, "features"),
        "signed": m["eigen_grad_cam"](model, v, x, 1, "features", clip=False)})(variables, x)
    a, g = (np.asarray(t, np.float64) for t in got["ag"])
    for gi, ai in zip(g, a):  # both signs of the gradients and of the activations
        assert (gi < 0).mean() > 0.2 and (gi > 0).mean() > 0.2 and (ai < 0).mean() > 0.2
    axes = (1, 2, 3)
    # HiResCAM.get_cam_image: (grads * activations).sum(axis=1), then BaseCAM's maximum(·, 0)
    hires = np.maximum((g * a).sum(-1), 0)
    # XGradCAM.get_cam_weights: (grads * activations / (sum_activations + 1e-7)).sum(spatial)
    weights = (g * a / (a.sum(axis=axes, keepdims=True) + 1e-7)).sum(axis=axes)
    xgrad = np.maximum((weights[:, None, None, None] * a).sum(-1), 0)
    for name, reference in (("hires_cam", hires), ("xgrad_cam", xgrad)):
        np.testing.assert_allclose(got[name], reference, rtol=1e-4, atol=1e-6, err_msg=name)
    # a ReLU on the gradients (LayerCAM) or none on the map would differ here
    assert not np.allclose(hires, np.maximum((np.maximum(g, 0) * a).sum(-1), 0), atol=1e-4)
    assert (g * a).sum(-1).min() < -1e-3
    # EigenGradCAM.get_cam_image: get_2d_projection(grads * activations), sign of the SVD's
    # choosing; ours points it towards the channel sum of G ⊙ A
    signed = np.asarray(got["signed"])
    for ours, theirs, product in zip(signed, _project(g * a), (g * a).sum(-1)):
        sign = 1 if (theirs * product).sum() >= 0 else -1
        np.testing.assert_allclose(ours, sign * theirs, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(got["eigen_grad_cam"], np.maximum(signed, 0), atol=1e-7)


def _score_cam_reference(model, variables, x, a, target, score="logit"):
    """ScoreCAM.get_cam_weights: corner-aligned upsampling of each channel to the input,
    ``(u − min) / (max − min + 1e-8)``, input × mask, target score, softmax over channels."""
    by_channel = np.moveaxis(a, -1, 1)  # [B, D, *positions]
    batch, channels = by_channel.shape[:2]
    up = _resize(by_channel.reshape(batch * channels, *by_channel.shape[2:]), x.shape[1:-1],
                 True).reshape(batch, channels, *x.shape[1:-1])
    low = up.min(axis=(2, 3, 4), keepdims=True)
    high = up.max(axis=(2, 3, 4), keepdims=True)
    up = (up - low) / (high - low + 1e-8)
    masked = np.asarray(x)[:, None] * up[..., None]  # [B, D, T, H, W, C]
    logits = np.asarray(fast_jit(model.apply)(variables, jnp.asarray(
        masked.reshape(-1, *x.shape[1:]), jnp.float32)), np.float64)
    if score == "probability":
        logits = np.exp(logits - logits.max(-1, keepdims=True))
        logits /= logits.sum(-1, keepdims=True)
    scores = logits.reshape(batch, channels, -1)[np.arange(batch), :, target]
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.maximum((weights[:, None, None, None] * a).sum(-1), 0)


def test_score_cam_matches_its_formula_and_chunking_changes_nothing(flatnet):
    model, variables, x = flatnet
    target = np.array([1, 3, 0])

    def explain(v, x):
        maps = {(score, batch): attribution.score_cam(model, v, x, target, "features",
                                                     batch_size=batch, score=score)
                for score, batch in (("logit", 7), ("probability", 7), ("logit", 1),
                                     ("logit", 24))}
        return attribution.activations_and_gradients(model, v, x, 0, "features")[0], maps

    a, maps = fast_jit(explain)(variables, x)
    a = np.asarray(a, np.float64)
    for score in ("logit", "probability"):
        np.testing.assert_allclose(maps[score, 7], _score_cam_reference(model, variables, x, a,
                                                                        target, score),
                                   rtol=1e-4, atol=1e-6, err_msg=score)
    for batch_size in (1, 24):  # one masked input per forward pass; all B · D = 24 in one
        np.testing.assert_allclose(maps["logit", batch_size], maps["logit", 7], rtol=1e-5,
                                   atol=1e-7)
    with pytest.raises(UserError, match="unknown Score-CAM score"):
        attribution.score_cam(model, variables, x, target, "features", score="softmax")


def test_ablation_cam_matches_its_formula_and_chunking_changes_nothing(flatnet):
    model, variables, x = flatnet
    a, chunked, whole = fast_jit(lambda v, x: (
        attribution.activations_and_gradients(model, v, x, 0, "features")[0],
        attribution.ablation_cam(model, v, x, layer="features", batch_size=5),
        attribution.ablation_cam(model, v, x, layer="features", batch_size=100)))(variables, x)
    a = np.asarray(a, np.float64)
    params = variables["params"]["classifier"]
    kernel, bias = np.asarray(params["kernel"], np.float64), np.asarray(params["bias"])

    def classify(features):  # the layers after `features`: GELU (tanh form), flatten, linear
        gelu = 0.5 * features * (1 + np.tanh(np.sqrt(2 / np.pi)
                                             * (features + 0.044715 * features**3)))
        return gelu.reshape(len(features), -1) @ kernel + bias

    logits = classify(a)
    target = logits.argmax(-1)  # target=None explains the prediction
    y = logits[np.arange(len(a)), target]
    ablated = np.empty((len(a), a.shape[-1]))
    for k in range(a.shape[-1]):  # channel k of the layer zeroed, the rest of the net rerun
        zeroed = a.copy()
        zeroed[..., k] = 0
        ablated[:, k] = classify(zeroed)[np.arange(len(a)), target]
    weights = (y[:, None] - ablated) / y[:, None]  # AblationCAM.get_cam_weights
    reference = np.maximum((weights[:, None, None, None] * a).sum(-1), 0)
    assert (weights < 0).any() and (weights > 0).any()
    # float32 against float64: the weights divide by the score, which amplifies rounding (an
    # absolute 3e-6 on maps of up to 0.3 on a CPU without AVX-512)
    np.testing.assert_allclose(chunked, reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="batch_size must be a positive"):
        attribution.ablation_cam(model, variables, x, layer="features", batch_size=0)


class BiasNet(nn.Module):
    """A small ReLU video CNN with a strided convolution, BatchNorm and a dense head."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(4, (3, 3, 3), (1, 2, 2), padding=1, name="conv1")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(x))
        x = nn.relu(nn.Conv(5, (3, 3, 3), name="conv2")(x))
        return nn.Dense(3, name="classifier")(x.reshape(len(x), -1))


def _randomised(variables, seed=0):
    """Random biases and BatchNorm statistics (the defaults are 0 and 1: no bias terms)."""
    rng = np.random.default_rng(seed)

    def leaf(path, value):
        name = path[-1].key
        if name in ("bias", "mean"):
            return jnp.asarray(rng.normal(0, 0.3, value.shape), value.dtype)
        if name in ("var", "scale"):
            return jnp.asarray(rng.uniform(0.5, 1.5, value.shape), value.dtype)
        return value

    return jax.tree_util.tree_map_with_path(leaf, variables)


def test_full_grad_matches_its_formula():
    model = BiasNet()
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 8, 8, 3))
    variables = _randomised(fast_jit(model.init)(jax.random.PRNGKey(4), x))
    target = jnp.array([2, 0])
    layers = ("conv1", "bn1", "conv2")  # not the classifier, on flattened features
    ours, input_grads, layer_grads = fast_jit(lambda v, x: (
        attribution.full_grad(model, v, x, target),
        attribution.input_gradients(model, v, x, target)[0],
        [attribution.layer_gradients(model, v, x, target, layer)[1] for layer in layers]))(
        variables, x)
    assert ours.shape == (2, 4, 8, 8)

    def scale(m, axes):
        m = m - m.min(axis=axes, keepdims=True)
        return m / (m.max(axis=axes, keepdims=True) + 1e-7)

    expected = scale(np.abs(np.asarray(x * input_grads, np.float64)), (1, 2, 3)).sum(-1)
    params, stats = variables["params"], variables["batch_stats"]["bn1"]
    bn_bias = (np.asarray(params["bn1"]["bias"]) - np.asarray(stats["mean"])
               * np.asarray(params["bn1"]["scale"]) / np.sqrt(np.asarray(stats["var"]) + 1e-5))
    biases = (params["conv1"]["bias"], bn_bias, params["conv2"]["bias"])
    for bias, g in zip(biases, layer_grads):
        m = scale(np.abs(np.asarray(bias) * np.asarray(g, np.float64)), (1, 2, 3))  # per channel
        m = np.moveaxis(m, -1, 1).reshape(-1, *m.shape[1:-1])
        m = _resize(m, x.shape[1:4], False).reshape(2, -1, *x.shape[1:4]).sum(1)
        expected = expected + m
    np.testing.assert_allclose(ours, scale(expected, (1, 2, 3)), rtol=1e-4, atol=1e-5)


def test_full_grad_refuses_layer_norm():
    class Normed(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.LayerNorm(name="norm")(nn.Conv(4, (3, 3, 3), name="conv")(x))
            return nn.Dense(2)(x.mean(axis=(1, 2, 3)))

    x = jnp.ones((1, 2, 4, 4, 3))
    model = Normed()
    with pytest.raises(UserError, match="has LayerNorm at 'norm' .attention or LayerNorm"):
        attribution.full_grad(model, fast_jit(model.init)(jax.random.PRNGKey(0), x), x)


def test_input_axes():
    tcn = models.build("tcn", num_classes=3, features=(4, 4, 4), hidden_units=4)
    landmarks = jnp.zeros((1, 20, 68, 2))
    assert attribution.core.input_axes(tcn, landmarks, 2) == (2, 1)
    assert attribution.core.input_axes(FlatNet(), jnp.zeros((1, 4, 6, 6, 3)), 3) == (1, 2, 3)
    with pytest.raises(UserError, match="pass input_axes"):
        attribution.core.input_axes(FlatNet(), jnp.zeros((1, 4, 6, 6, 3)), 2)
    with pytest.raises(UserError, match="distinct position axes"):
        attribution.core.input_axes(FlatNet(), jnp.zeros((1, 4, 6, 6, 3)), 2, (1, 4))
    maps = jnp.arange(6.0).reshape(1, 2, 3)  # [B, L'=2, T'=3] along x's (L, T) = axes (2, 1)
    placed = attribution.core.on_input_axes(maps, (2, 1), 4)
    assert placed.shape == (1, 3, 2, 1)
    np.testing.assert_array_equal(placed[0, :, :, 0], np.asarray(maps[0]).T)


class ConvReLU(nn.Module):
    """A convolution and its ReLU, so that the ReLU's output is a layer."""

    features: int
    strides: tuple = (1, 1)

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(self.features, (3, 3), self.strides, padding=1, name="conv")(x))


class ImageNet(nn.Module):
    """A 2D CNN on images ``[B, H, W, C]`` for the comparison with pytorch-grad-cam (whose
    Score-CAM and FullGrad take 4-D activations only)."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(4, (3, 3), padding=1, name="conv1")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(x))
        x = ConvReLU(6, (2, 2), name="features")(x)
        return nn.Dense(3, name="classifier")(x.reshape(len(x), -1))


def test_parity_with_pytorch_grad_cam():
    torch = pytest.importorskip("torch", reason="parity tests need torch (pip install "
                                "'.[interop]')")
    from torch_reference import import_pytorch_grad_cam

    gradcam = import_pytorch_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = ImageNet()
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 8, 8, 3))
    variables = _randomised(fast_jit(model.init)(jax.random.PRNGKey(6), x), seed=1)
    p, stats = variables["params"], variables["batch_stats"]["bn1"]
    t = {k: torch.from_numpy(np.array(v)) for k, v in {
        "c1w": p["conv1"]["kernel"].transpose(3, 2, 0, 1), "c1b": p["conv1"]["bias"],
        "c2w": p["features"]["conv"]["kernel"].transpose(3, 2, 0, 1),
        "c2b": p["features"]["conv"]["bias"],
        "fw": p["classifier"]["kernel"].T, "fb": p["classifier"]["bias"]}.items()}

    class Channels(torch.nn.Module):  # NCHW → NHWC, so flatten matches ours
        def forward(self, z):
            return z.permute(0, 2, 3, 1).flatten(1)

    conv1, conv2 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 6, 3, 2, 1)
    bn = torch.nn.BatchNorm2d(4)
    fc = torch.nn.Linear(6 * 16, 3)
    with torch.no_grad():
        for module, weight, bias in ((conv1, "c1w", "c1b"), (conv2, "c2w", "c2b"),
                                     (fc, "fw", "fb")):
            module.weight.copy_(t[weight])
            module.bias.copy_(t[bias])
        bn.weight.copy_(torch.from_numpy(np.array(p["bn1"]["scale"])))
        bn.bias.copy_(torch.from_numpy(np.array(p["bn1"]["bias"])))
        bn.running_mean.copy_(torch.from_numpy(np.array(stats["mean"])))
        bn.running_var.copy_(torch.from_numpy(np.array(stats["var"])))
    target_layer = torch.nn.ReLU()
    net = torch.nn.Sequential(conv1, bn, torch.nn.ReLU(), conv2, target_layer, Channels(),
                              fc).eval()
    images = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        np.testing.assert_allclose(net(images).numpy(), model.apply(variables, x), atol=1e-5)
    target = np.array([2, 1])
    targets = [ClassifierOutputTarget(int(c)) for c in target]
    names = ("hires_cam", "xgrad_cam", "score_cam", "ablation_cam", "eigen_grad_cam")
    ours = fast_jit(lambda v, x: dict(
        {name: attribution.METHODS[name](model, v, x, target, "features") for name in names},
        full_grad=attribution.full_grad(model, v, x, target)))(variables, x)

    def theirs(cam_class, **options):
        cam = cam_class(model=net, target_layers=[target_layer], **options)
        cam(input_tensor=images, targets=targets)
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = ([g.numpy() for g in cam.activations_and_grads.gradients] or [None])[0]
        raw = cam.get_cam_image(images, target_layer, targets, acts, grads, False)
        cam.activations_and_grads.release()
        return raw, acts

    differences = {}
    for name, cam_class, options in (
            ("hires_cam", gradcam.HiResCAM, {}), ("xgrad_cam", gradcam.XGradCAM, {}),
            ("score_cam", gradcam.ScoreCAM, {}),
            ("ablation_cam", gradcam.AblationCAM, {"batch_size": 4}),
            ("eigen_grad_cam", gradcam.EigenGradCAM, {})):
        raw, acts = theirs(cam_class, **options)
        if name == "ablation_cam":  # zeroing, as the paper: the layer's minimum must be 0
            assert acts.min() == 0
        if name == "eigen_grad_cam":  # the SVD's sign is arbitrary there
            raw = raw * np.sign((raw * ours[name]).sum(axis=(1, 2)))[:, None, None]
        reference = np.maximum(raw, 0)  # BaseCAM.compute_cam_per_layer
        assert reference.max() > 0, name
        differences[name] = np.abs(ours[name] - reference).max() / reference.max()
    # FullGrad end to end: maps at the image size, min-max scaled
    full = gradcam.FullGrad(model=net, target_layers=[])
    reference = full(input_tensor=images, targets=targets)
    full.activations_and_grads.release()
    differences["full_grad"] = np.abs(ours["full_grad"] - reference).max()
    print({k: f"{v:.1e}" for k, v in differences.items()})
    assert all(v < 1e-5 for v in differences.values()), differences
