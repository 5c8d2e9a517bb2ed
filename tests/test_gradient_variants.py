"""DeepLIFT, GradientSHAP, SmoothGrad² and VarGrad: DeepLIFT's summation-to-delta through every
rule (and through a zoo model), batching, refusals, and parity with Captum 0.9 on the same
weights and, for the sampling methods, the same random draws (needs torch and captum)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import attribution, models
from fer_jax.errors import UserError
from fast import fast_jit
import host_variables

# Captum's DeepLift warns that it sets requires_grad and hooks on the reference network.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")


class Block(nn.Module):
    """conv → ReLU6 (a max and a min), rematerialised in ``RuleNet``."""

    @nn.compact
    def __call__(self, x):
        return jnp.minimum(nn.relu(nn.Conv(4, (3, 3, 3), name="conv")(x)), 0.5)


class RuleNet(nn.Module):
    """Every nonlinearity DeepLIFT has a rule for, in one network: ReLU, ReLU6, sigmoid, tanh,
    overlapping zero-padded max pooling and a max over time, next to BatchNorm, average
    pooling, a residual sum, biases and a rematerialised block (a nested call)."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(4, (3, 3, 3), name="conv1")(x))
        x = nn.BatchNorm(use_running_average=True, name="bn")(x)
        x = nn.max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding="SAME")  # overlapping
        x = jax.nn.sigmoid(x + nn.remat(Block)(name="block")(x))
        x = nn.avg_pool(jnp.tanh(nn.Conv(5, (1, 1, 1), name="conv3")(x)), (1, 2, 2),
                        strides=(1, 2, 2))
        return nn.Dense(3, name="fc")(x.max(axis=1).reshape(len(x), -1))


def random_variables(model, x, seed):
    """Random biases and BatchNorm statistics too, so that every rule sees both signs."""
    return host_variables.random_variables(model, x, seed, bias_scale=0.3, var_high=1.5)


def video(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


def test_deeplift_sums_to_the_difference_through_every_rule():
    model = RuleNet()
    x, baseline = video((2, 4, 8, 8, 3), 0), 0.5 * video((2, 4, 8, 8, 3), 1)
    variables = random_variables(model, x, 2)
    target = jnp.array([2, 0])
    maps, logits, reference, grads = fast_jit(lambda v, x, b: (
        attribution.deeplift(model, v, x, target, b), model.apply(v, x), model.apply(v, b),
        attribution.input_gradients(model, v, x, target)[0]))(variables, x, baseline)
    assert maps.shape == x.shape[:-1]
    delta = logits[[0, 1], target] - reference[[0, 1], target]
    assert np.abs(delta).min() > 1e-2  # a difference worth explaining
    np.testing.assert_allclose(maps.sum(axis=(1, 2, 3)), delta, rtol=1e-4,
                               atol=1e-5 * np.abs(delta).max())
    # gradient × (x − x') is another thing: the check can fail
    assert np.abs(((x - baseline) * grads).sum(axis=(1, 2, 3, 4)) - delta).max() > 1e-2


def test_deeplift_takes_the_zoo_cnns_and_refuses_what_it_has_no_rule_for():
    """Traced only (``jax.eval_shape``): a 3D ResNet with rematerialised blocks, shortcuts by
    slicing and padding and the two-step (max) pooling is accepted; a swish, GELU / softmax /
    LayerNorm (TimeSformer) are refused with one line."""
    x = jax.ShapeDtypeStruct((2, 2, 8, 8, 3), jnp.float32)
    resnet = models.build("resnet3d_18", num_classes=4, width=1 / 16, stage_sizes=(1, 1),
                          pooling="two_step", remat="block")
    shapes = jax.eval_shape(resnet.init, jax.random.PRNGKey(0), x)
    maps = jax.eval_shape(lambda v, x: attribution.deeplift(resnet, v, x), shapes, x)
    assert maps.shape == x.shape[:-1]

    class Swish(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.Dense(4)(x.reshape(len(x), -1))
            return nn.Dense(2)(x * jax.nn.sigmoid(x))

    tsf = models.build("timesformer", num_classes=3, hidden_size=8, num_layers=1,
                       num_heads=2, patch_size=4)
    swish = (r"deeplift: Swish applies 'mul' to input-dependent values .* linear layers, "
             r"ReLU, sigmoid, tanh and max")
    for model, pattern in ((Swish(), swish), (tsf, "deeplift: TimeSformer applies")):
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
        with pytest.raises(UserError, match=pattern):
            jax.eval_shape(lambda v, x, model=model: attribution.deeplift(model, v, x),
                           shapes, x)
    with pytest.raises(UserError, match="eps must be >= 0"):
        attribution.deeplift(Swish(), shapes, x, eps=-1.0)
    with pytest.raises(UserError, match=r"baseline of shape \(5,\) does not broadcast"):
        attribution.deeplift(Swish(), shapes, x, baseline=jnp.zeros(5))


def test_sampling_methods_check_their_options():
    model, x = RuleNet(), jnp.ones((2, 2, 4, 4, 3))
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    for name in ("smoothgrad", "smoothgrad_sq", "vargrad", "gradient_shap"):
        method = attribution.METHODS[name]
        with pytest.raises(UserError, match="noise_level .* or stdevs .*, not both"):
            method(model, variables, x, noise_level=0.1, stdevs=0.1)
        with pytest.raises(UserError, match=f"{name} needs samples >= 1"):
            method(model, variables, x, samples=0)
        with pytest.raises(UserError, match="stdevs must be >= 0"):
            method(model, variables, x, stdevs=-0.1)
    with pytest.raises(UserError, match=r"baselines of shape \(3, 5\) do not match"):
        attribution.gradient_shap(model, variables, x, baselines=jnp.zeros((3, 5)))


# --------------------------------------------------------------------------- Captum parity
class TwinNet(nn.Module):
    """conv → ReLU → BatchNorm → max pool → conv → tanh → linear, as the PyTorch twin of
    ``_torch_twin``. (A BatchNorm sits between ReLU and pool because Captum 0.9 with torch 2.13
    passes the plain max-pool gradient instead of its rule when the pool is next to a hooked
    ReLU; its attributions then miss the summation-to-delta,
    ``test_captums_pool_rule_needs_a_layer_between``.)"""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(4, (3, 3, 3), padding=1, name="conv1")(x))
        x = nn.BatchNorm(use_running_average=True, name="bn")(x)
        x = nn.max_pool(x, (1, 2, 2), strides=(1, 2, 2))
        x = jnp.tanh(nn.Conv(5, (3, 3, 3), padding=1, name="conv2")(x))
        return nn.Dense(3, name="fc")(x.reshape(len(x), -1))


def _torch_twin(torch, variables):
    p, stats = variables["params"], variables["batch_stats"]["bn"]

    def t(a):
        return torch.from_numpy(np.array(a))

    class Channels(torch.nn.Module):  # NCDHW → NDHWC before flattening, as ours
        def forward(self, z):
            return z.permute(0, 2, 3, 4, 1).flatten(1)

    conv1, conv2 = torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.Conv3d(4, 5, 3, padding=1)
    bn, fc = torch.nn.BatchNorm3d(4), torch.nn.Linear(5 * 4 * 4 * 4, 3)
    with torch.no_grad():
        for conv, name in ((conv1, "conv1"), (conv2, "conv2")):
            conv.weight.copy_(t(p[name]["kernel"].transpose(4, 3, 0, 1, 2)))
            conv.bias.copy_(t(p[name]["bias"]))
        bn.weight.copy_(t(p["bn"]["scale"]))
        bn.bias.copy_(t(p["bn"]["bias"]))
        bn.running_mean.copy_(t(stats["mean"]))
        bn.running_var.copy_(t(stats["var"]))
        fc.weight.copy_(t(p["fc"]["kernel"].T))
        fc.bias.copy_(t(p["fc"]["bias"]))
    return torch.nn.Sequential(conv1, torch.nn.ReLU(), bn, torch.nn.MaxPool3d((1, 2, 2)), conv2,
                               torch.nn.Tanh(), Channels(), fc).eval()


def _channels_first(torch, a):
    return torch.from_numpy(np.asarray(a, np.float32).transpose(0, 4, 1, 2, 3).copy())


def _channels_last(t):
    return t.detach().numpy().transpose(0, 2, 3, 4, 1)


@pytest.fixture(scope="module")
def twins():
    torch = pytest.importorskip("torch", reason="parity tests need torch (pip install "
                                "'.[interop]')")
    pytest.importorskip("captum", reason="parity tests need `pip install --no-deps "
                        "captum==0.9.0`")
    model, x = TwinNet(), video((2, 4, 8, 8, 3), 5)
    variables = random_variables(model, x, 6)
    net = _torch_twin(torch, variables)
    with torch.no_grad():
        np.testing.assert_allclose(net(_channels_first(torch, x)).numpy(),
                                   model.apply(variables, x), atol=1e-5)
    return torch, model, variables, net, x


def test_deeplift_matches_captum(twins):
    torch, model, variables, net, x = twins
    from captum.attr import DeepLift

    target = np.array([2, 1])
    zero, noise = jnp.zeros_like(x), 0.5 * video(x.shape, 8)
    # The rescale rule divides g(z) − g(z') by z − z', which amplifies float32 rounding (tanh's
    # differs by an ulp between XLA and PyTorch) where z barely changes: 1.5e-6 of the maximum
    # here, up to 7e-5 seen on other random weights.
    ours = fast_jit(lambda b: (x - b) * attribution.deeplift_multipliers(
        model, variables, x, target, b))
    differences = {}
    for name, baseline in (("zero baseline", zero), ("random baseline", noise)):
        theirs, delta = DeepLift(net).attribute(
            _channels_first(torch, x), _channels_first(torch, baseline), target=target.tolist(),
            return_convergence_delta=True)
        assert np.abs(delta.numpy()).max() < 1e-5  # Captum's own summation-to-delta holds
        theirs = _channels_last(theirs)
        differences[name] = np.abs(ours(baseline) - theirs).max() / np.abs(theirs).max()
    print({k: f"{v:.1e}" for k, v in differences.items()})
    assert max(differences.values()) < 1e-4, differences
    np.testing.assert_allclose(  # the map is the channel sum
        fast_jit(lambda b: attribution.deeplift(model, variables, x, target, b))(noise),
        ours(noise).sum(-1), rtol=1e-5, atol=1e-7)


def test_captums_pool_rule_needs_a_layer_between(twins):
    """Why ``TwinNet`` separates ReLU and max pool: on ``[1, 2]`` against the reference
    ``[3, −1]`` (ReLU then a pool of both, f = max), the difference −1 belongs to the first
    element (the reference's maximum), which DeepLIFT's rule gives it here; Captum 0.9
    (torch 2.13) gives ``[0, 2]``, summing to 2. Captum without the ReLU is right. If this
    test fails, Captum has changed and the twin need not work around it any more."""
    torch, *_ = twins
    from captum.attr import DeepLift

    class Flat(torch.nn.Module):
        def forward(self, z):
            return z.flatten(1)

    x, reference = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[3.0, -1.0]]])
    with_relu = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.MaxPool1d(2), Flat()).eval()
    theirs = DeepLift(with_relu).attribute(x, reference, target=0).detach().numpy()
    np.testing.assert_allclose(theirs.ravel(), [0.0, 2.0])

    class Pair(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.max_pool(nn.relu(x), (2,), strides=(2,)).reshape(len(x), 1)

    ours = fast_jit(lambda x, b: attribution.deeplift(Pair(), {}, x, 0, b))(
        jnp.array([[[1.0], [2.0]]]), jnp.array([[[3.0], [-1.0]]]))
    np.testing.assert_allclose(ours.ravel(), [-1.0, 0.0])


def _patch_draws(monkeypatch, torch, noise=None, picks=None, alphas=None):
    """Captum draws with ``torch.normal`` (noise), ``np.random.choice`` (baselines) and
    ``np.random.uniform`` (path points), one value per example and sample in the order
    ``example · samples + sample``; these return ours instead."""
    if noise is not None:
        monkeypatch.setattr(torch, "normal", lambda mean, std: noise.clone())
    if picks is not None:
        monkeypatch.setattr(np.random, "choice", lambda n, size: picks.copy())
    if alphas is not None:
        monkeypatch.setattr(np.random, "uniform", lambda low, high, size: alphas.copy())


def _per_example(draws: np.ndarray, batch: int) -> np.ndarray:
    """Draws shared by the examples ``[N, …]`` → Captum's order ``[B · N, …]``."""
    return np.concatenate([draws] * batch)


def test_noise_tunnel_variants_match_captum_on_the_same_noise(twins, monkeypatch):
    torch, model, variables, net, x = twins
    from captum.attr import NoiseTunnel, Saliency

    samples, stdevs, rng, target = 4, 0.3, jax.random.PRNGKey(9), np.array([0, 2])
    ours = fast_jit(lambda: {name: attribution.METHODS[name](
        model, variables, x, target, samples=samples, stdevs=stdevs, rng=rng,
        internal_batch_size=2) for name in ("smoothgrad", "smoothgrad_sq", "vargrad")})()
    # our draws: normal(rng, (samples, 1, *x.shape[1:])), shared by the examples
    noise = jax.random.normal(rng, (samples, 1) + x.shape[1:]) * stdevs
    noise = _channels_first(torch, _per_example(np.asarray(noise[:, 0]), len(x)))
    differences = {}
    for name, reduce in (("smoothgrad", lambda a: np.abs(a).max(-1)),
                         ("smoothgrad_sq", lambda a: a.max(-1)),
                         ("vargrad", lambda a: a.max(-1))):
        _patch_draws(monkeypatch, torch, noise=noise)
        theirs = NoiseTunnel(Saliency(net)).attribute(
            _channels_first(torch, x), nt_type=name, nt_samples=samples, stdevs=stdevs,
            target=target.tolist(), abs=False)
        theirs = reduce(_channels_last(theirs))
        differences[name] = np.abs(ours[name] - theirs).max() / np.abs(theirs).max()
    print({k: f"{v:.1e}" for k, v in differences.items()})
    assert max(differences.values()) < 1e-5, differences


def test_gradient_shap_matches_captum_on_the_same_draws(twins, monkeypatch):
    torch, model, variables, net, x = twins
    from captum.attr import GradientShap

    samples, stdevs, rng, target = 6, 0.2, jax.random.PRNGKey(10), np.array([1, 0])
    baselines = 0.5 * video((3,) + x.shape[1:], 11)
    ours = fast_jit(lambda b: attribution.gradient_shap(
        model, variables, x, target, b, samples=samples, stdevs=stdevs, rng=rng,
        internal_batch_size=3))(baselines)
    # our draws (module docstring of attribution/gradients.py), shared by the examples
    pick, mix, draw = jax.random.split(rng, 3)
    picks = np.asarray(jax.random.randint(pick, (samples,), 0, len(baselines)))
    alphas = np.asarray(jax.random.uniform(mix, (samples,) + (1,) * x.ndim)).ravel()
    noise = np.asarray(jax.random.normal(draw, (samples, 1) + x.shape[1:])[:, 0]) * stdevs
    assert len(set(picks.tolist())) > 1  # more than one baseline drawn
    _patch_draws(monkeypatch, torch, noise=_channels_first(torch, _per_example(noise, len(x))),
                 picks=_per_example(picks, len(x)), alphas=_per_example(alphas, len(x)))
    theirs = GradientShap(net).attribute(
        _channels_first(torch, x), _channels_first(torch, baselines), n_samples=samples,
        stdevs=stdevs, target=target.tolist())
    theirs = _channels_last(theirs).sum(-1)
    difference = np.abs(ours - theirs).max() / np.abs(theirs).max()
    print(f"gradient_shap: {difference:.1e}")
    assert difference < 1e-5
