"""LRP composites: every Zennit preset (and a composite of path patterns, ``ignore_bias``, w²
and γ) against Zennit 0.5.1 on the same weights, conservation on a bias-free network, which
rule each layer gets (types, 'first', globs, their order; the legacy arguments; the zoo's
defaults), the pass rule analytically, and the errors."""
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import attribution, models
from fer_jax.attribution.lrp_rules import (AlphaBeta, Epsilon, Flat, Gamma, Layer, Pass,
                                           WSquare, ZBox, ZPlus)
from fer_jax.errors import UserError
from fer_jax.evaluation import explainers
from fer_jax.models.pooling import TemporalPooling
from fast import fast_jit

PRESETS = tuple(attribution.LRP_PRESETS)
LOW, HIGH = -1.0, 1.0  # the inputs' bounds (uniform in [-1, 1]) for epsilon_gamma_box
# A composite of path patterns, with biases ignored by z⁺, the w² rule's b² and γ = 0.5.
CUSTOM = attribution.Composite({"conv1": WSquare(), "conv[2-9]": Gamma(0.5),
                                "conv": ZPlus(ignore_bias=True), "dense": Epsilon(0.25)})


class Twin(nn.Module):
    """conv → BN → ReLU → max-pool → conv (bias) → ReLU → mean → dense → ReLU → dense: the
    flax twin of ``torch_twin``'s ``nn.Sequential``. BatchNorm's epsilon is 0 because Zennit
    leaves a merged BatchNorm as an identity that still divides by √(1 + eps)."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(4, (3, 3), padding=1, use_bias=False, name="conv1")(x)
        x = nn.BatchNorm(use_running_average=not train, epsilon=0.0, name="bn1")(x)
        x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(6, (3, 3), padding=1, name="conv2")(x)).mean(axis=(1, 2))
        x = nn.relu(nn.Dense(8, name="fc1")(x))
        return nn.Dense(3, name="fc2")(x)


def torch_twin(torch):
    from torch_reference import randomise
    tn = torch.nn
    net = tn.Sequential(tn.Conv2d(3, 4, 3, padding=1, bias=False), tn.BatchNorm2d(4, eps=0.0),
                        tn.ReLU(), tn.MaxPool2d(2), tn.Conv2d(4, 6, 3, padding=1), tn.ReLU(),
                        tn.AdaptiveAvgPool2d(1), tn.Flatten(), tn.Linear(6, 8), tn.ReLU(),
                        tn.Linear(8, 3))
    return randomise(net, seed=1).double()


def flax_variables(net):
    """The twin's variables from the torch network's state."""
    from torch_reference import state
    s = {k: v.astype(np.float32) for k, v in state(net).items()}
    conv = lambda w: w.transpose(2, 3, 1, 0)  # noqa: E731 ([O, I, kh, kw] → [kh, kw, I, O])
    return {"params": {"conv1": {"kernel": conv(s["0.weight"])},
                       "bn1": {"scale": s["1.weight"], "bias": s["1.bias"]},
                       "conv2": {"kernel": conv(s["4.weight"]), "bias": s["4.bias"]},
                       "fc1": {"kernel": s["8.weight"].T, "bias": s["8.bias"]},
                       "fc2": {"kernel": s["10.weight"].T, "bias": s["10.bias"]}},
            "batch_stats": {"bn1": {"mean": s["1.running_mean"], "var": s["1.running_var"]}}}


X = np.random.default_rng(0).uniform(LOW, HIGH, (2, 8, 8, 3)).astype(np.float32)
TARGET = np.array([0, 2])


@pytest.fixture(scope="module")
def explain():
    """``variables → ({composite: relevance [2, 8, 8, 3]}, target logits [2])`` for every
    preset and ``CUSTOM``, compiled once."""
    model = Twin()

    def run(variables, x):
        maps = {name: attribution.lrp_relevance(model, variables, x, TARGET, composite=name,
                                                low=LOW, high=HIGH) for name in PRESETS}
        maps["custom"] = attribution.lrp_relevance(model, variables, x, TARGET,
                                                   composite=CUSTOM)
        logits = model.apply(variables, x)
        return maps, logits[jnp.arange(len(x)), TARGET]

    return fast_jit(run)


@pytest.fixture(scope="module")
def zennit():
    """``(torch, zennit)``, or a skip without them (``pip install --no-deps zennit==0.5.1``)."""
    torch = pytest.importorskip("torch")
    with pytest.MonkeyPatch.context() as patch:
        try:
            import torchvision  # noqa: F401
        except (ImportError, RuntimeError):
            # zennit/__init__ imports zennit.torchvision, whose ResNet canonizer imports the
            # block classes of torchvision.models.resnet; torchvision does not install next to
            # this CPU torch and these tests never use that canonizer, so stand-ins do.
            resnet = types.ModuleType("torchvision.models.resnet")
            resnet.BasicBlock = type("BasicBlock", (torch.nn.Module,), {})
            resnet.Bottleneck = type("Bottleneck", (torch.nn.Module,), {})
            tv_models = types.ModuleType("torchvision.models")
            tv_models.resnet = resnet
            torchvision = types.ModuleType("torchvision")
            torchvision.models = tv_models
            for name, module in (("torchvision", torchvision),
                                 ("torchvision.models", tv_models),
                                 ("torchvision.models.resnet", resnet)):
                patch.setitem(sys.modules, name, module)
        zennit = pytest.importorskip("zennit")
        import zennit.canonizers  # noqa: F401, F811 (bound to the module while the stand-ins exist)
        import zennit.composites  # noqa: F401
    return torch, zennit


def zennit_composite(zennit, name):
    """Zennit's composite ``name`` (or the twin of ``CUSTOM``), merging BatchNorm."""
    import torch
    zc, rules, ztypes = zennit.composites, zennit.rules, zennit.types
    canonizers = [zennit.canonizers.SequentialMergeBatchNorm()]
    if name == "epsilon_gamma_box":
        return zc.EpsilonGammaBox(low=LOW, high=HIGH, canonizers=canonizers)
    if name in zc.COMPOSITES:
        return zc.COMPOSITES[name](canonizers=canonizers)
    return zc.NameLayerMapComposite(
        name_map=[(("0",), rules.WSquare()), (("4",), rules.Gamma(gamma=0.5))],
        layer_map=[(ztypes.Activation, rules.Pass()), (ztypes.AvgPool, rules.Norm()),
                   (ztypes.Convolution, rules.ZPlus(zero_params=["bias"])),
                   (torch.nn.Linear, rules.Epsilon(epsilon=0.25))],
        canonizers=canonizers)


@pytest.fixture(scope="module")
def parity(zennit, explain):
    """``({composite: (ours, Zennit's)}, (our logits, Zennit's))``, float64 in torch."""
    torch, zennit = zennit
    net = torch_twin(torch)
    ours, logits = explain(flax_variables(net), X)
    x = torch.tensor(X.transpose(0, 3, 1, 2), dtype=torch.float64)
    reference = {}
    for name in ours:
        x.requires_grad_(True)
        with zennit_composite(zennit, name).context(net) as modified:
            out = modified(x)
            relevance = torch.zeros_like(out)  # the target logit at the output, as ours
            relevance[torch.arange(len(x)), torch.tensor(TARGET)] = out.detach()[
                torch.arange(len(x)), torch.tensor(TARGET)]
            (grad,) = torch.autograd.grad(out, x, relevance)
        reference[name] = grad.numpy().transpose(0, 2, 3, 1)
    torch_logits = net(x).detach().numpy()[np.arange(len(X)), TARGET]
    return {k: (np.asarray(ours[k]), reference[k]) for k in ours}, (np.asarray(logits),
                                                                    torch_logits)


@pytest.mark.parametrize("name", PRESETS + ("custom",))
def test_composites_match_zennit_on_the_same_weights(parity, name):
    """Largest difference measured 4.2e-6 of the map's maximum: Zennit's ``Norm`` rule on the
    average pool stabilises by 1e-6 (with that ε at 1e-30, 1.1e-7), so 1e-5 is asked."""
    maps, (logits, torch_logits) = parity
    np.testing.assert_allclose(logits, torch_logits, rtol=1e-5)
    ours, reference = maps[name]
    assert np.abs(reference).max() > 1e-3 and (reference < 0).any()  # signed, not vanishing
    np.testing.assert_allclose(ours, reference, atol=1e-5 * np.abs(reference).max())


def bias_free(variables):
    """``variables`` with every bias, BatchNorm shift and mean 0."""
    params = jax.tree.map_with_path(
        lambda p, v: jnp.zeros_like(v) if p[-1].key == "bias" else v, variables["params"])
    stats = {"bn1": {**variables["batch_stats"]["bn1"],
                     "mean": jnp.zeros_like(variables["batch_stats"]["bn1"]["mean"])}}
    return {"params": params, "batch_stats": stats}


def test_composites_conserve_relevance_without_biases(explain):
    rng = np.random.default_rng(3)
    shapes = jax.eval_shape(Twin().init, jax.random.PRNGKey(0), X)
    variables = bias_free(jax.tree.map(
        lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype), shapes))
    variables["params"] = jax.tree.map_with_path(
        lambda p, v: v * rng.choice([-1, 1], v.shape) if p[-1].key == "kernel" else v,
        variables["params"])
    maps, logits = explain(variables, X)
    assert np.all(np.abs(logits) > 1e-2)  # precondition of a relative check
    for name, relevance in maps.items():
        if name == "custom":  # its ε = 0.25 absorbs relevance
            continue
        np.testing.assert_allclose(np.asarray(relevance).sum(axis=(1, 2, 3)), logits,
                                   rtol=1e-4, err_msg=name)
    # Biases absorb relevance in Zennit's z⁺ (its denominator has b⁺): no conservation.
    variables["params"] = jax.tree.map_with_path(
        lambda p, v: v + 0.3 if p[-1].key == "bias" else v, variables["params"])
    maps, logits = explain(variables, X)
    assert np.abs(np.asarray(maps["epsilon_plus"]).sum(axis=(1, 2, 3)) - logits).max() > 1e-3


class Unit(nn.Module):
    """conv → BN (folded) → ReLU."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(3, (3, 3, 3), use_bias=False, name="conv")(x)
        return nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(x))


class Nested(nn.Module):
    """Two units, a standalone BatchNorm after a ReLU, a mean and a dense head."""

    @nn.compact
    def __call__(self, x, train=False):
        x = Unit(name="block2")(Unit(name="block1")(x))
        x = nn.BatchNorm(use_running_average=True, name="norm")(x)
        return nn.Dense(3, name="head")(x.mean(axis=(1, 2, 3)))


VIDEO = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 5, 5, 2), np.float32))


def test_selectors_pick_the_right_layers():
    model = Nested()
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), VIDEO)

    def rules(**kwargs):
        return attribution.lrp_layer_rules(model, variables, VIDEO, **kwargs)

    # Folded BatchNorms take their convolution's rule and are not listed.
    assert rules(composite={"block2/*": "gamma", "first": "flat", "batch_norm": "pass",
                            "linear": "epsilon"}, epsilon=0.5, gamma=0.1) == {
        "block1/conv": Flat(), "block2/conv": Gamma(0.1), "norm": Pass(),
        "head": Epsilon(0.5)}
    # The first matching selector wins: a glob before 'first' overrides it; '*' crosses '/';
    # classes select by isinstance; unmatched layers get None (LRP-0).
    assert rules(composite=[("block1/*", ZPlus()), ("first", Flat()), ("*conv", AlphaBeta()),
                            (nn.Dense, Epsilon(0.1))]) == {
        "block1/conv": ZPlus(), "block2/conv": AlphaBeta(), "norm": None,
        "head": Epsilon(0.1)}
    # The legacy arguments: one rule for every layer, biases ignored; LRP-ε by default.
    legacy = ZPlus(1e-9, ignore_bias=True)
    assert rules(rule="zplus", input_rule="w2") == {
        "block1/conv": WSquare(1e-9, ignore_bias=True), "block2/conv": legacy, "norm": legacy,
        "head": legacy}
    assert set(rules().values()) == {Epsilon(1e-6)}
    # A preset with layers of its own first.
    preset = attribution.LRP_PRESETS["epsilon_plus_flat"](layers={"head": Epsilon(0.3)})
    assert rules(composite=preset) == {"block1/conv": Flat(), "block2/conv": ZPlus(),
                                       "norm": Pass(), "head": Epsilon(0.3)}
    # That the forward pass applies them: CUSTOM's globs against Zennit's names, above.
    # Reports pass composites as literal options.
    explainer = explainers.parse("lrp(composite={'conv': 'zplus', 'dense': 'epsilon'})")
    assert explainer.options == {"composite": {"conv": "zplus", "dense": "epsilon"}}


def test_zoo_models_default_composites():
    xception = models.build("mini_xception", num_classes=4, base_filters=2,
                            block_filters=(4, 4))
    x = jnp.zeros((1, 1, 16, 16, 1))
    found = attribution.lrp_layer_rules(
        xception, jax.eval_shape(xception.init, jax.random.PRNGKey(0), x), x, epsilon=0.1)
    paths = list(found)
    assert paths[0] == "stem1/conv" and found[paths[0]] == Flat()
    assert paths[-1] == "head" and found["head"] == Epsilon(0.1)  # its classifier is a conv
    assert {found[p] for p in paths[1:-1]} == {ZPlus()} and len(paths) == 9
    tcn = models.build("tcn", num_classes=4, features=(4, 8, 4), hidden_units=8)
    x = jnp.zeros((1, 8, 10, 2))
    found = attribution.lrp_layer_rules(tcn, jax.eval_shape(tcn.init, jax.random.PRNGKey(0), x),
                                        x)
    assert found == {"conv1": WSquare(), "bn1": Pass(), "conv2": ZPlus(), "bn2": Pass(),
                     "conv3": ZPlus(), "bn3": Pass(), "dense1": Epsilon(),
                     "classifier": Epsilon()}
    assert models.build("i3d", num_classes=4).lrp_composite["conv3d_0c_1x1"] == "epsilon"
    for name in ("vgg16_3d", "c3d", "resnet3d_18", "resnext3d_101", "resnet2d_50", "scn",
                 "early_fusion_cnn"):
        assert models.build(name, num_classes=4).lrp_composite == "epsilon_plus_flat", name
    backbone = models.build("c3d", num_classes=4, dense=True)
    assert TemporalPooling(backbone).lrp_composite == "epsilon_plus_flat"
    assert getattr(models.build("timesformer", num_classes=4), "lrp_composite", None) is None


def test_pass_rule_analytically():
    a = jnp.array([[2.0, 0.0, -0.5]])
    relevance = jnp.array([[0.3, 0.7, -0.2]])
    layer = Layer(lambda w, v: v * w, jnp.ones(3), None, a, 2 * a)
    signal = Pass().backward(layer, relevance)
    # R_a = R_z where a ≠ 0; dropped where a = 0 (see lrp_rules.Pass)
    np.testing.assert_allclose(a * signal, [[0.3, 0.0, -0.2]])


def test_bad_composites_raise_user_errors():
    model = Nested()
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), VIDEO)
    cases = [
        (dict(composite="epsilon_minus"), "unknown LRP composite 'epsilon_minus'"),
        (dict(composite={"conv": "zminus"}), "unknown LRP rule 'zminus'"),
        (dict(composite={"conv": 0.5}), "must be a rule name or a rule"),
        (dict(composite={3: "zplus"}), "neither a layer type"),
        (dict(composite={"blok1/*": "zplus"}), "'blok1/\\*' matches no nn.Conv"),
        (dict(composite={"conv": "flat"}), "can only explain the first layer"),
        (dict(composite="epsilon_gamma_box"), "needs the input bounds"),
        (dict(composite={"first": "zbox"}, low=0.0), "needs the input bounds"),
        (dict(composite={"linear": "pass"}), "input and output have one shape"),
        (dict(rule="zplus", composite="epsilon_plus"), "either rule=/input_rule= or"),
        (dict(rule="gamma"), "epsilon, zplus, alpha_beta"),
        (dict(composite={"conv": "alpha_beta"}, alpha=2.0, beta=0.5), "alpha - beta = 1"),
        (dict(composite="epsilon_plus", epsilon=0.0), "epsilon must be positive"),
        (dict(composite={"conv": "gamma"}, gamma=-1.0), "gamma >= 0"),
        (dict(composite="epsilon_gamma_box", low=1.0, high=0.0), "low <= high"),
        (dict(composite="epsilon_gamma_box", low=np.zeros(3), high=1.0), "do not broadcast"),
    ]
    for kwargs, message in cases:  # raised while tracing at the latest: nothing computed
        with pytest.raises(UserError, match=message):
            jax.eval_shape(lambda v, x: attribution.lrp(model, v, x, **kwargs), variables,
                           VIDEO)
    with pytest.raises(UserError, match="stabilizer must be positive"):
        ZBox(0.0, 1.0, stabilizer=0.0)
