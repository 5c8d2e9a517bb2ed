"""Infidelity and sensitivity-max (fer_jax.evaluation.fidelity) against Captum 0.9's metrics on
the same model, maps and perturbation draws (Captum calls our JAX functions through thin
wrappers, so only the metrics differ); sparseness and complexity (evaluation.complexity)
against their NumPy formulas; the sensitivity-max measurement on a linear model."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import attribution
from fer_jax.data import synthetic
from fer_jax.errors import UserError
from fer_jax.evaluation import complexity, explainers, fidelity, suite
from fast import fast_jit


class SmallNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(4, (3, 3, 3), name="conv")(x))
        return nn.Dense(3, name="fc")(x.mean(axis=(1, 2, 3)))


def _video(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


@pytest.fixture(scope="module")
def small():
    torch = pytest.importorskip("torch", reason="parity tests need torch (pip install "
                                "'.[interop]')")
    pytest.importorskip("captum", reason="parity tests need `pip install --no-deps "
                        "captum==0.9.0`")
    model, x = SmallNet(), _video((2, 4, 8, 8, 3), 0)
    rng = np.random.default_rng(1)
    variables = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape) * 0.5, s.dtype),
                             jax.eval_shape(model.init, jax.random.PRNGKey(0), x))
    return torch, model, variables, x


def _captum_order(draws) -> np.ndarray:
    """Our draws ``[N, B, …]`` → Captum's ``[B · N, …]`` (``repeat_interleave`` order)."""
    draws = np.asarray(draws)
    return np.swapaxes(draws, 0, 1).reshape((-1,) + draws.shape[2:])


def test_infidelity_matches_captum(small):
    torch, model, variables, x = small
    from captum.metrics import infidelity

    samples, target = 5, np.array([2, 0])
    maps = _video(x.shape, 2)  # any map: the metric does not care where it comes from
    perturbations = 0.3 * _video((samples,) + x.shape, 3)
    positions, cell_noise = maps.sum(-1), perturbations.mean(-1)  # the same on every channel
    apply = fast_jit(lambda x: model.apply(variables, x))
    ours = fast_jit(lambda: {
        (normalize, kind): fidelity.infidelity(model, variables, x, m, target, p, normalize,
                                               batch_size=2)
        for normalize in (False, True)
        for kind, m, p in (("values", maps, perturbations),
                           ("positions", positions, cell_noise))})()

    def forward(inputs):
        return torch.from_numpy(np.array(apply(inputs.numpy())))

    def captum(attributions, noise, normalize):
        noise = torch.from_numpy(_captum_order(noise))
        return infidelity(forward, lambda inputs: (noise, inputs - noise),
                          torch.from_numpy(np.array(x)),
                          torch.from_numpy(np.array(attributions)),
                          target=target.tolist(), n_perturb_samples=samples,
                          normalize=normalize).numpy()

    differences = {}
    for normalize in (False, True):
        reference = captum(maps, perturbations, normalize)
        differences[normalize] = np.abs(ours[normalize, "values"] - reference).max() \
            / np.abs(reference).max()
        # a map per position stands for all channels: Captum's with map / C on each channel
        spread = np.broadcast_to(positions[..., None] / x.shape[-1], x.shape)
        noise = np.broadcast_to(cell_noise[..., None], perturbations.shape)
        np.testing.assert_allclose(ours[normalize, "positions"],
                                   captum(spread, noise, normalize), rtol=1e-4)
    # the perturbed logits come from two compiled programs (ours chunked): their rounding,
    # about 1e-7 of a logit, is what the squared changes differ by
    print({f"normalize={k}": f"{v:.1e}" for k, v in differences.items()})
    assert max(differences.values()) < 1e-4, differences
    assert (ours[True, "values"] < ours[False, "values"]).all()  # β fits better than 1
    with pytest.raises(UserError, match=r"maps of the input's shape .* \(upsample CAMs first\)"):
        fidelity.infidelity(model, variables, x, maps[:, :2], target, perturbations)
    with pytest.raises(UserError, match=r"perturbations \[N, \*maps.shape\]"):
        fidelity.infidelity(model, variables, x, maps, target, perturbations[:, :1])


def test_sensitivity_max_matches_captum(small):
    torch, model, variables, x = small
    from captum.metrics import sensitivity_max

    samples, radius, rng, target = 4, 0.1, jax.random.PRNGKey(4), np.array([1, 2])
    explain = fast_jit(lambda x, t: attribution.input_x_gradient(model, variables, x, t))
    ours = fast_jit(lambda: fidelity.sensitivity_max(
        lambda x: attribution.input_x_gradient(model, variables, x, target), x, radius,
        samples, rng=rng, batch_size=3))()
    draws = fidelity.uniform_perturbations(rng, x, radius, samples)  # shared by examples
    assert np.abs(draws).max() <= radius and np.abs(draws[:, 0] - draws[:, 1]).max() == 0

    def explanation(inputs, target):  # a tuple of inputs → a tuple of maps, as Captum's
        if isinstance(inputs, tuple):
            return tuple(explanation(i, target) for i in inputs)
        return torch.from_numpy(np.array(explain(inputs.numpy(), np.asarray(target))))

    moved = torch.from_numpy(_captum_order(x[None] + draws))
    theirs = sensitivity_max(explanation, torch.from_numpy(np.array(x)),
                             perturb_func=lambda inputs, radius: moved,
                             perturb_radius=radius, n_perturb_samples=samples,
                             target=target.tolist()).numpy()
    difference = np.abs(ours - theirs).max() / np.abs(theirs).max()
    print(f"sensitivity_max: {difference:.1e}")
    assert difference < 1e-5 and theirs.min() > 0
    with pytest.raises(UserError, match="norm_ord must be 'fro' or a number"):
        fidelity.sensitivity_max(lambda x: x, x, norm_ord="nuc")
    with pytest.raises(UserError, match=r"radius must be a number or one per example \[2\]"):
        fidelity.sensitivity_max(lambda x: x, x, radius=jnp.ones(3))


def _gini(a: np.ndarray) -> float:
    """Quantus' Sparseness (without its +1e-7)."""
    a = np.sort(np.abs(a.ravel()).astype(np.float64))
    n = len(a)
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * a.sum()))


def _entropy(a: np.ndarray) -> float:
    """Quantus' Complexity: ``scipy.stats.entropy`` of ``|a| / Σ|a|``."""
    p = np.abs(a.ravel()).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def test_sparseness_and_complexity_match_their_formulas():
    rng = np.random.default_rng(5)
    n = 3 * 4 * 4
    one_hot = np.zeros((3, 4, 4), np.float32)
    one_hot[1, 2, 3] = -2.0
    maps = np.stack([rng.standard_normal((3, 4, 4)).astype(np.float32),  # mixed signs
                     rng.exponential(size=(3, 4, 4)).astype(np.float32) ** 3,  # peaked
                     np.full((3, 4, 4), 0.5, np.float32), one_hot,
                     np.zeros((3, 4, 4), np.float32)])
    gini, entropy = fast_jit(lambda m: (complexity.sparseness(m),
                                        complexity.complexity(m)))(maps)
    np.testing.assert_allclose(gini[:4], [_gini(m) for m in maps[:4]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(entropy[:4], [_entropy(m) for m in maps[:4]], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(gini[2:4], [0.0, 1 - 1 / n], atol=1e-6)  # uniform, one value
    np.testing.assert_allclose(entropy[2:4], [math.log(n), 0.0], atol=1e-5)
    assert gini[1] > gini[0] and entropy[1] < entropy[0]  # the peaked map is more concise
    assert np.isnan(gini[4]) and np.isnan(entropy[4])  # no mass: undefined


class Bands(nn.Module):
    """Linear: the logits are the mean brightness of 7 horizontal bands of the frame."""

    @nn.compact
    def __call__(self, x, train=False):
        rows = x.mean(axis=(1, 3, 4))  # [B, H]
        return 10.0 * jnp.stack([rows[:, 4 * c:4 * c + 4].mean(-1) for c in range(7)], -1)


def test_sensitivity_measurement_on_a_linear_model():
    """The gradient of a linear model does not move with its input, so saliency has
    sensitivity-max 0; input × gradient moves with the input itself."""
    from fer_jax import configs

    config = configs.defaults()
    config.input.clip_frames, config.input.image_size = 4, 32
    config.explain.measurements = "sensitivity"
    source = synthetic.SyntheticFaces("test", 4, synthetic.SyntheticConfig(image_size=32,
                                                                           num_frames=12))
    results = suite.measure(Bands(), {}, config, source,
                            [explainers.parse("saliency"), explainers.parse("input_x_gradient")],
                            suite.Settings(grid=4), batch_size=4)
    saliency, product = (results["methods"][label]["sensitivity_max"]
                         for label in ("Saliency", "Input×Gradient"))
    assert list(results["methods"]["Saliency"]) == ["sensitivity_max"]
    assert saliency["videos"] == product["videos"] == 4
    assert saliency["mean"] == pytest.approx(0.0, abs=1e-6)
    assert 1e-3 < product["mean"] < 1  # a perturbation of 2 % of the range moves the map
