"""Occlusion, feature ablation, RISE and KernelSHAP (fer_jax.attribution.perturbation) and the
feature groups (fer_jax.attribution.groups): parity with Captum on the same weights, RISE
against its formula and the authors' mask generation, KernelSHAP's efficiency and its exact
values on a linear model, batching and chunking, and the errors."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast import fast_jit

from fer_jax import attribution
from fer_jax.attribution import groups as feature_groups
from fer_jax.attribution import perturbation
from fer_jax.errors import UserError
from fer_jax.evaluation import face_parts

SHAPE = (2, 4, 8, 8, 3)  # [B, T, H, W, C]


class TinyNet(nn.Module):
    """conv → ReLU → flatten → linear: nonlinear in the input, so windows and groups
    interact, and small enough to port to PyTorch."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(4, (3, 3, 3), name="conv")(x))
        return nn.Dense(3, name="classifier")(x.reshape(len(x), -1))


class Linear(nn.Module):
    """A linear model: every Shapley value is ``Σ_{i ∈ g} w_i (x_i − x'_i)``."""

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(3, name="classifier")(x.reshape(len(x), -1))


@pytest.fixture(scope="module")
def tiny():
    model = TinyNet()
    x = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    return model, variables, x


def _torch_tiny(variables):
    """The PyTorch TinyNet with the same weights, as a function of channels-last clips."""
    torch = pytest.importorskip("torch", reason="parity tests need torch")
    p = variables["params"]
    conv, fc = torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.Linear(4 * 4 * 8 * 8, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.array(p["conv"]["kernel"]).transpose(4, 3, 0, 1, 2)))
        conv.bias.copy_(torch.from_numpy(np.array(p["conv"]["bias"])))
        fc.weight.copy_(torch.from_numpy(np.array(p["classifier"]["kernel"]).T.copy()))
        fc.bias.copy_(torch.from_numpy(np.array(p["classifier"]["bias"])))

    def forward(clips):  # [B, T, H, W, C] → logits [B, 3]
        features = torch.relu(conv(clips.permute(0, 4, 1, 2, 3)))
        return fc(features.permute(0, 2, 3, 4, 1).flatten(1))

    return forward


def test_parity_with_captum(tiny):
    torch = pytest.importorskip("torch", reason="parity tests need torch")
    captum = pytest.importorskip("captum.attr", reason="parity tests need captum==0.9.0")
    model, variables, x = tiny
    forward = _torch_tiny(variables)
    clips = torch.from_numpy(np.array(x))
    with torch.no_grad():
        np.testing.assert_allclose(forward(clips).numpy(), model.apply(variables, x), atol=1e-5)
    target = np.array([2, 0])
    # per-example groups: uneven tubes (cut at the border) for one clip, frames for the other
    groups = np.stack([attribution.tube_groups(SHAPE[1:4], (3, 5), 3),
                       attribution.frame_groups(SHAPE[1:4])])
    shap_groups = attribution.tube_groups(SHAPE[1:4], 4, 2)  # 8 groups
    baseline = np.asarray(jax.random.uniform(jax.random.PRNGKey(2), SHAPE[1:]))
    key = jax.random.PRNGKey(3)
    coalitions = np.asarray(attribution.shap_coalitions(key, 40, 8))

    def explain(v, x):
        return {
            # windows cut off at the border (start 6 of 8, width 3) and overlapping in time
            "occlusion": attribution.occlusion(model, v, x, target, (2, 3, 3), (1, 2, 2),
                                               baseline=0.3, batch_size=16),
            "feature_ablation": attribution.feature_ablation(model, v, x, target, groups,
                                                             baseline=baseline, batch_size=5),
            "kernel_shap": attribution.kernel_shap(model, v, x, target, shap_groups,
                                                   samples=40, baseline=baseline, rng=key,
                                                   batch_size=16)}

    ours = fast_jit(explain)(variables, x)
    targets = torch.from_numpy(target)
    occlusion = captum.Occlusion(forward).attribute(
        clips, sliding_window_shapes=(2, 3, 3, 3), strides=(1, 2, 2, 3), baselines=0.3,
        target=targets, perturbations_per_eval=8).numpy()
    ablation = captum.FeatureAblation(forward).attribute(
        clips, baselines=torch.from_numpy(baseline[None]), target=targets,
        feature_mask=torch.from_numpy(groups[..., None].astype(np.int64)),
        perturbations_per_eval=4).numpy()

    def fixed_coalitions(original_input, **kwargs):  # Captum's sampler replaced by ours
        for z in coalitions:
            yield torch.from_numpy(z[None].astype(np.int64))

    shap = []
    for i in range(len(x)):  # Captum draws coalitions per example; ours are shared
        explainer = captum.KernelShap(forward)
        explainer.perturb_func = fixed_coalitions
        shap.append(explainer.attribute(
            clips[i:i + 1], baselines=torch.from_numpy(baseline[None]), target=int(target[i]),
            feature_mask=torch.from_numpy(shap_groups[None, ..., None].astype(np.int64)),
            n_samples=len(coalitions)).numpy()[0])
    differences = {}
    for name, reference in (("occlusion", occlusion), ("feature_ablation", ablation),
                            ("kernel_shap", np.stack(shap))):
        # Captum attributes every channel of a position alike; ours has one value per position
        np.testing.assert_array_equal(reference, np.broadcast_to(reference[..., :1],
                                                                 reference.shape))
        reference = reference[..., 0]
        assert np.abs(reference).max() > 1e-2, name
        differences[name] = float(np.abs(ours[name] - reference).max()
                                  / np.abs(reference).max())
    print({k: f"{v:.1e}" for k, v in differences.items()})
    assert differences["occlusion"] < 1e-5 and differences["feature_ablation"] < 1e-5, differences
    assert differences["kernel_shap"] < 1e-4, differences
