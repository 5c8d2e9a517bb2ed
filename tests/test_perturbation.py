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
    baseline = np.array(jax.random.uniform(jax.random.PRNGKey(2), SHAPE[1:]))
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


def test_rise_is_its_formula_on_the_authors_masks(tiny):
    """Masks: the authors' ``generate_masks`` (scikit-image ``resize(order=1,
    mode='reflect')`` to ``(cells + 1) · cell``, then a crop at the shift) applied to our grids
    and shifts, with time as a third axis; saliency ``Σ_i p_t(x ⊙ M_i) M_i / (N · p)``."""
    resize = pytest.importorskip("skimage.transform").resize
    model, variables, x = tiny
    key, count, cells, p = jax.random.PRNGKey(4), 24, (2, 3, 3), 0.4
    positions = SHAPE[1:4]
    explain = fast_jit(lambda v, x: (  # 48 masked clips in chunks of 7: the last one padded
        attribution.rise(model, v, x, None, count, cells, p, rng=key, batch_size=7),
        attribution.rise_masks(key, jnp.arange(count), positions, cells, p),
        perturbation.rise_grids(key, jnp.arange(count), positions, cells, p)))
    maps, masks, (grids, shifts) = explain(variables, x)
    reversed_maps = explain(variables, x[::-1])[0]
    masks, grids, shifts = np.asarray(masks), np.asarray(grids), np.asarray(shifts)
    cell = np.array([-(-n // c) for n, c in zip(positions, cells)])  # (2, 3, 3)
    authors = np.stack([resize(grid.astype(np.float32), (np.array(cells) + 1) * cell, order=1,
                               mode="reflect", anti_aliasing=False)[
        tuple(slice(s, s + n) for s, n in zip(shift, positions))]
        for grid, shift in zip(grids, shifts)])
    np.testing.assert_allclose(masks, authors, atol=1e-6)
    assert 0.2 < grids.mean() < 0.6 and len(np.unique(shifts, axis=0)) > 5
    assert masks.min() >= 0 and masks.max() <= 1
    assert ((masks > 0.05) & (masks < 0.95)).mean() > 0.3  # interpolated, not binary
    apply = fast_jit(model.apply)
    target = np.argmax(apply(variables, x), -1)  # target=None: the prediction for the clip
    masked = np.asarray(x)[:, None] * masks[None, ..., None]  # [B, N, T, H, W, C]
    logits = np.asarray(apply(variables, masked.reshape(-1, *SHAPE[1:])), np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).reshape(2, count, 3)
    scores = probs[np.arange(2), :, target]  # [B, N]
    reference = np.einsum("bn,nthw->bthw", scores, masks) / (count * p)
    print(f"RISE: masks {np.abs(masks - authors).max():.1e} from the authors', maps "
          f"{np.abs(maps - reference).max() / np.abs(reference).max():.1e} of their maximum "
          "from the formula")
    np.testing.assert_allclose(maps, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reversed_maps, maps[::-1], rtol=1e-5, atol=1e-6)  # per example


class Constant(nn.Module):
    """Logits that do not depend on the input."""

    @nn.compact
    def __call__(self, x, train=False):
        return jnp.broadcast_to(jnp.array([0.5, 2.0]), (len(x), 2)) + 0 * x.mean()


def test_rise_of_a_constant_model_is_the_constant():
    """E[M] = p at every position, so Σ_i c · M_i / (N · p) → c."""
    x = jnp.ones((1, 4, 8, 8, 3))
    maps = fast_jit(lambda x: attribution.rise(Constant(), {}, x, 1, masks=2000, cells=2,
                                               p=0.5, batch_size=1000, score="logit"))(x)
    assert maps.shape == (1, 4, 8, 8)
    np.testing.assert_allclose(maps, 2.0, rtol=0.1)
    assert float(maps.std()) < 0.05 * 2.0


def test_kernel_shap_efficiency_and_exact_values_of_a_linear_model(tiny):
    model, variables, x = tiny
    linear = Linear()
    linear_variables = fast_jit(linear.init)(jax.random.PRNGKey(5), x)
    groups = attribution.tube_groups(SHAPE[1:4], 4, 2)  # 8 tubes of 2 × 4 × 4
    target = jnp.array([1, 2])

    def explain(v, lv, x):
        return (attribution.kernel_shap_values(model, v, x, target, groups, samples=30,
                                               baseline=0.2, batch_size=8)[0],
                model.apply(v, x), model.apply(v, jnp.full_like(x, 0.2)),
                attribution.kernel_shap_values(linear, lv, x, target, groups, samples=30,
                                               batch_size=8)[0],
                attribution.feature_ablation(linear, lv, x, target, groups),
                attribution.occlusion(linear, lv, x, target, (2, 4, 4)))

    values, logits, baseline_logits, linear_values, ablation, occlusion = fast_jit(explain)(
        variables, linear_variables, x)
    # efficiency: Σ_g φ_g = f(x) − f(baseline), held by the 10⁶ weights of the two ends
    gap = (logits - baseline_logits)[np.arange(2), target]
    print(f"KernelSHAP efficiency: |Σ φ − Δf| / |Δf| ≤ "
          f"{np.abs(values.sum(-1) - gap).max() / np.abs(gap).min():.1e}")
    np.testing.assert_allclose(values.sum(-1), gap, rtol=1e-3, atol=1e-4)
    assert np.abs(values).max() > 0.1 * np.abs(gap).max()
    # a linear model: φ_g = Σ_{i ∈ g} w_i x_i (baseline 0), and ablating g removes exactly that
    kernel = np.asarray(linear_variables["params"]["classifier"]["kernel"])[:, target].T
    contributions = (np.asarray(x).reshape(2, -1) * kernel).reshape(SHAPE).sum(-1)
    exact = np.stack([np.bincount(groups.ravel(), c.ravel(), 8) for c in contributions])
    np.testing.assert_allclose(linear_values, exact, rtol=1e-4, atol=1e-4)
    expected_map = np.stack([e[groups] for e in exact])
    np.testing.assert_allclose(ablation, expected_map, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(occlusion, expected_map, rtol=1e-4, atol=1e-5)  # same tiles


def test_groups():
    np.testing.assert_array_equal(attribution.box_groups((3, 5), (2, 2)),
                                  [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]])
    tubes = attribution.tube_groups((4, 8, 8), (3, 5), 3)  # cut at the border in every axis
    assert tubes.dtype == np.int32 and tubes.max() == 2 * 3 * 2 - 1
    np.testing.assert_array_equal(tubes[:3, :3, :5], 0)
    np.testing.assert_array_equal(tubes[:3, :3, 5:], 1)
    np.testing.assert_array_equal(tubes[3:, 6:, 5:], 11)
    frames = attribution.frame_groups((4, 8, 8))
    np.testing.assert_array_equal(frames, np.broadcast_to(np.arange(4)[:, None, None],
                                                          (4, 8, 8)))
    default = attribution.default_groups((16, 112, 112))  # a quarter of each axis
    assert default.max() == 63 and (default == 0).sum() == 4 * 28 * 28
    patched = attribution.default_groups((8, 112, 112), patch=16)  # no patch split: 32 px
    assert patched.max() == 63 and (patched == 0).sum() == 2 * 32 * 32
    assert (patched == 3).sum() == 2 * 32 * 16  # the last column of tubes cut at 112
    with pytest.raises(UserError, match="box .* positive size"):
        attribution.box_groups((4, 8), (0, 2))


def test_region_groups_are_the_face_part_bands():
    from fer_jax.data import synthetic
    data = synthetic.SyntheticFaces("test", 1, synthetic.SyntheticConfig(image_size=32,
                                                                         num_frames=12))
    landmarks = data.ground_truth(0)["landmarks"][None, :3]  # [1, 3, 68, 2]
    regions, per_frame, masks = fast_jit(lambda lm: (
        face_parts.region_groups(lm, 32, 32),
        face_parts.region_groups(lm, 32, 32, per_frame=True),
        [face_parts.part_mask(lm, (part,), 32, 32) for part in face_parts.PARTS]))(landmarks)
    regions, per_frame = np.asarray(regions), np.asarray(per_frame)
    assert regions.shape == (1, 3, 32, 32) and face_parts.REGIONS[-1] == "rest"
    for region, mask in enumerate(masks):
        assert mask.sum() > 0
        np.testing.assert_array_equal(regions == region, mask)
    assert (regions == 3).sum() > 0
    np.testing.assert_array_equal(per_frame, regions + 4 * np.arange(3)[:, None, None])
    assert face_parts.region_count(3) == 4 and face_parts.region_count(3, True) == 12


def test_registry_defaults_and_groups_traced_under_jit(tiny):
    from fer_jax.evaluation import explainers
    model, variables, x = tiny
    spec = explainers.parse("occlusion(window=(2, 4, 4), batch_size=32)", None)
    assert spec.label == "Occlusion (window=(2, 4, 4), batch_size=32)"
    groups = attribution.tube_groups(SHAPE[1:4], 4, 2)
    names = ("occlusion", "feature_ablation", "rise", "kernel_shap")
    got = fast_jit(lambda v, x, g: {
        "spec": spec(model, v, x),
        "direct": attribution.occlusion(model, v, x, None, (2, 4, 4), (2, 4, 4)),
        # default windows, groups, masks, samples (one clip, more copies per pass: quicker)
        "defaults": {name: attribution.METHODS[name](model, v, x[:1], batch_size=256)
                     for name in names},
        "traced": attribution.feature_ablation(model, v, x, None, g, num_groups=8),
        "concrete": attribution.feature_ablation(model, v, x, None, groups)})(
        variables, x, groups)
    np.testing.assert_allclose(got["spec"], got["direct"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["traced"], got["concrete"], rtol=1e-6, atol=1e-7)
    for name in names:  # default groups / windows: 1 × 2 × 2 tubes, a quarter of each axis
        maps = np.asarray(got["defaults"][name])
        assert maps.shape == (1, *SHAPE[1:4]) and np.isfinite(maps).all(), name
        assert maps.std() > 0, name
    assert (np.asarray(got["defaults"]["rise"]) > 0).all()  # probabilities × masks
    # tiles of the default occlusion window equal the default groups' ablation
    np.testing.assert_allclose(got["defaults"]["occlusion"], got["defaults"]["feature_ablation"],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="need num_groups"):
        jax.jit(lambda g: attribution.feature_ablation(model, variables, x, groups=g))(groups)


@pytest.mark.parametrize("name, options, message", [
    ("occlusion", dict(window=(5, 2, 2)), "exceeds the input's positions"),
    ("occlusion", dict(window=(2, 2, 2), strides=(1, 3, 1)), "larger than the window"),
    ("occlusion", dict(window=(2, 2)), "one per position axis"),
    ("occlusion", dict(score="softmax"), "unknown perturbation score"),
    ("feature_ablation", dict(groups=np.zeros((4, 8), np.int32)), "must cover the positions"),
    ("feature_ablation", dict(groups=np.full((4, 8, 8), 0.5)), "integer array"),
    ("feature_ablation", dict(groups=np.full((4, 8, 8), -1)), "must lie in"),
    ("feature_ablation", dict(baseline=np.zeros(5)), "does not broadcast"),
    ("feature_ablation", dict(batch_size=0), "batch_size must be a positive"),
    ("kernel_shap", dict(groups=np.zeros((4, 8, 8), np.int32)), "at least 2 feature groups"),
    ("kernel_shap", dict(samples=1), "samples >= 2"),
    ("rise", dict(p=0.0), r"p must lie in \(0, 1\]"),
    ("rise", dict(masks=0), "masks >= 1"),
    ("rise", dict(cells=(4, 0, 4)), "RISE cells"),
])
def test_bad_options_are_one_line_errors(tiny, name, options, message):
    model, variables, x = tiny
    with pytest.raises(UserError, match=message):
        attribution.METHODS[name](model, variables, x, **options)
