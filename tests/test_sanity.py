"""Sanity checks of explanation methods (fer_jax.evaluation.sanity and the measurements
randomisation, input_invariance, data_randomisation): Adebayo et al.'s cascading parameter
and data randomisation, Kindermans et al.'s input invariance, and the permuted training
labels of ``train.shuffle_labels``.

The model is a tiny video CNN (a 1×3×3 convolution, a per-position dense layer, a mean over
positions, a dense head: stages conv → mix → head, whose names do not sort in that order);
'trained' parameters are an initialisation with another seed than the randomised ones. A
gradient map (saliency) must change as the stages are randomised; a map of the input alone
(its edges) cannot, and scores 1.0 at every depth."""
import dataclasses
import functools
import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast import fast_jit
from scipy import stats

from fer_jax import configs, experiment, explain
from fer_jax.data import sources
from fer_jax.errors import UserError
from fer_jax.evaluation import explainers, measurements, sanity, suite
from fer_jax.viz import html, report

T, SIZE, CLASSES = 2, 12, 3
SETTINGS = suite.Settings(grid=4)
SANITY = ("randomisation", "input_invariance", "data_randomisation")


class TinyConv(nn.Module):
    padding: str = "VALID"
    bias: bool = True
    norm: bool = False

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.Conv(4, (1, 3, 3), padding=self.padding, use_bias=self.bias, name="conv")(x)
        if self.norm:
            h = nn.BatchNorm(use_running_average=not train, name="norm")(h)
        h = nn.relu(nn.Dense(4, name="mix")(nn.relu(h)))
        return nn.Dense(CLASSES, name="head")(h.mean(axis=(1, 2, 3)))


@dataclasses.dataclass(frozen=True)
class InputEdges:
    """A 'method' that ignores the model: the gradient magnitude of the input's luminance."""

    label: str = "Edges"
    key: str = "edges"

    def __call__(self, model, variables, x, target=None):
        luma = x.mean(-1)
        return (jnp.abs(jnp.diff(luma, axis=-1, prepend=luma[..., :1]))
                + jnp.abs(jnp.diff(luma, axis=-2, prepend=luma[..., :1, :])))


def _config():
    config = configs.defaults()
    config.dataset.num_classes = CLASSES
    config.input.clip_frames, config.input.image_size = T, SIZE
    return config


def _x(batch=1):
    return jnp.zeros((batch, T, SIZE, SIZE, 3))


def _trained(model=None, seed=7):
    return sanity.initial_variables(model or TinyConv(), _x(), seed=seed, train=False)


def _batch():
    """4 random videos and a padded fifth (mask False)."""
    rng = np.random.default_rng(0)
    return {"video": jnp.asarray(rng.integers(0, 256, (5, T, SIZE, SIZE, 3), dtype=np.uint8)),
            "label": jnp.asarray([0, 1, 2, 0, 1], np.int32),
            "mask": jnp.asarray([True, True, True, True, False])}


def _measure(explainer, model, variables, names, references=None):
    """One ``suite.method_step`` of ``names`` after ``suite.prepare``: the method's results,
    and the skipped measurements."""
    config = _config()
    context = suite.context(config, [str(c) for c in range(CLASSES)], SETTINGS, references)
    chosen = measurements.select(",".join(names))
    chosen, prepared, context, skipped = suite.prepare(chosen, model, variables, config,
                                                       context)
    step = fast_jit(functools.partial(suite.method_step, model=model, config=config,
                                      explainer=explainer, chosen=chosen, context=context))
    sums = step(suite.zero(chosen, context), variables, _batch(), jax.random.key(0), prepared)
    host = jax.tree.map(np.asarray, jax.device_get(sums))
    return suite.summarise_method(host, chosen, context), skipped, context


@pytest.fixture(scope="module")
def results():
    """Saliency and input edges through the three sanity checks (the 'compare' model:
    another initialisation), input × gradient through the input shift."""
    model, variables = TinyConv(), _trained()
    references = {"compare": _trained(seed=11)}
    out = {}
    for explainer, names in ((explainers.parse("saliency"), SANITY),
                             (explainers.parse("input_x_gradient"), ["input_invariance"]),
                             (InputEdges(), SANITY)):
        out[explainer.label], skipped, context = _measure(explainer, model, variables,
                                                          names, references)
        assert skipped == {}
    return out, context


# --------------------------------------------------------------------------- similarity
def _ssim_numpy(a, b, window=7):
    """SSIM as the module docstring states it, written out with loops (one frame)."""
    wh, ww = min(window, a.shape[0]), min(window, a.shape[1])
    values = []
    for i in range(a.shape[0] - wh + 1):
        for j in range(a.shape[1] - ww + 1):
            pa, pb = a[i:i + wh, j:j + ww].ravel(), b[i:i + wh, j:j + ww].ravel()
            ma, mb = pa.mean(), pb.mean()
            cov = ((pa - ma) * (pb - mb)).mean()
            values.append((2 * ma * mb + 1e-4) * (2 * cov + 9e-4)
                          / ((ma**2 + mb**2 + 1e-4) * (pa.var() + pb.var() + 9e-4)))
    return np.mean(values)


@fast_jit
def _scores(a, b, c, d):
    return sanity.spearman(a, b), sanity.ssim(a, b), sanity.top_k_overlap(c, d)


@pytest.mark.parametrize("size", [9, 4])  # 3×3 windows of 7×7; one global window
def test_similarities_against_scipy_and_a_numpy_transcription(size):
    rng = np.random.default_rng(1)
    a = np.round(rng.random((3, 2, size, size)), 1)  # rounded: ties for the ranks
    b = np.round(0.5 * a + 0.5 * rng.random(a.shape), 1)
    b[2] = a[2]
    c, d = rng.random((3, 2 * size * size)), rng.random((3, 2 * size * size))
    d[1] = c[1] * 2
    rho, index, overlap = map(np.asarray, _scores(a, b, c, d))

    for n in range(3):
        assert rho[n] == pytest.approx(stats.spearmanr(a[n].ravel(), b[n].ravel())[0],
                                       abs=1e-5)
    assert rho[2] == pytest.approx(1.0)
    expected = [np.mean([_ssim_numpy(a[n, t], b[n, t]) for t in range(2)]) for n in range(3)]
    np.testing.assert_allclose(index, expected, atol=1e-5)
    assert index[2] == pytest.approx(1.0)
    k = max(1, round(0.1 * c.shape[1]))
    top = [set(np.argsort(-v)[:k]) for v in (*c, *d)]
    np.testing.assert_allclose(overlap, [len(top[n] & top[3 + n]) / k for n in range(3)])
    assert overlap[1] == 1.0
    if size == 4:  # a constant map has no ranks
        constant = _scores(np.ones((1, 2, 4, 4)), a[:1], c[:1], d[:1])[0]
        assert np.isnan(constant[0])


# --------------------------------------------------------------------------- stages
def test_stages_are_in_execution_order_and_randomised_from_the_top():
    model, variables = TinyConv(norm=True), _trained(TinyConv(norm=True))
    order = sanity.stages(model, _x(), train=False)
    assert order == ["conv", "norm", "mix", "head"]
    assert list(jax.jit(lambda v: v)(variables)["params"]) == ["conv", "head", "mix", "norm"]
    random = sanity.initial_variables(model, _x(), seed=0, collections=list(variables),
                                      train=False)
    assert set(random) == {"params", "batch_stats"}
    variables["batch_stats"] = jax.tree.map(lambda v: v + 3.0, variables["batch_stats"])
    np.testing.assert_array_equal(sanity.cascade(order), np.triu(np.ones((4, 4), bool))[::-1])
    for depth in range(5):
        changed = sanity.randomise_top_down(variables, random, order, depth)
        for i, stage in enumerate(order):
            source = random if i >= len(order) - depth else variables
            for collection in changed:
                if stage in changed[collection]:
                    assert jax.tree.all(jax.tree.map(
                        np.array_equal, changed[collection][stage],
                        source[collection][stage])), (depth, stage, collection)
    traced = jax.jit(sanity.randomise)(variables, random, {"mix": True, "head": False,
                                                           "norm": jnp.bool_(True)})
    np.testing.assert_array_equal(traced["params"]["mix"]["kernel"],
                                  random["params"]["mix"]["kernel"])
    np.testing.assert_array_equal(traced["batch_stats"]["norm"]["mean"],
                                  random["batch_stats"]["norm"]["mean"])
    np.testing.assert_array_equal(traced["params"]["head"]["kernel"],
                                  variables["params"]["head"]["kernel"])


def test_a_timesformer_has_its_blocks_in_order():
    from fer_jax import models
    model = models.build("timesformer", num_classes=CLASSES, patch_size=4, hidden_size=8,
                         num_layers=2, num_heads=2)
    assert sanity.stages(model, jnp.zeros((1, 2, 8, 8, 3)), train=False) == [
        "patch_embeddings", "cls_token", "position_embeddings", "time_embeddings",
        "blocks_0", "blocks_1", "layernorm", "classifier"]


# --------------------------------------------------------------------------- randomisation
def test_randomisation_separates_gradients_from_a_map_of_the_input(results):
    out, context = results
    assert context.setup["randomisation"]["stages"] == ["head", "mix", "conv"]
    edges, saliency = out["Edges"]["randomisation"], out["Saliency"]["randomisation"]
    assert edges["stages"] == ["head", "mix", "conv"] and edges["videos"] == 4
    for score in sanity.SCORES:
        np.testing.assert_allclose(edges[score], 1.0, atol=1e-5)
    assert not edges["passes"]
    assert saliency["spearman"][-1] < 0.5 and saliency["passes"]
    assert saliency["final_spearman"] == saliency["spearman"][-1]
    assert max(saliency["ssim"]) < 0.9 and max(saliency["top_k"]) < 0.9


def test_data_randomisation_compares_the_other_model(results):
    out, _ = results
    edges, saliency = out["Edges"]["data_randomisation"], out["Saliency"]["data_randomisation"]
    assert edges["spearman"] == pytest.approx(1.0) and not edges["passes"]
    assert saliency["spearman"] < 0.9
    assert 0 <= saliency["compare_accuracy"] <= 1 and saliency["videos"] == 4
    with pytest.raises(UserError, match="explain.compare_workdir"):
        measurements.get("data_randomisation").check(
            suite.context(_config(), ["a"] * CLASSES, SETTINGS))


def test_the_same_model_compared_with_itself_scores_one():
    variables = _trained()
    out, _, _ = _measure(explainers.parse("saliency"), TinyConv(), variables,
                         ["data_randomisation"], {"compare": variables})
    for score in sanity.SCORES:
        assert out["data_randomisation"][score] == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- input shift
@pytest.mark.parametrize("model", [TinyConv(), TinyConv(bias=False, norm=True)],
                         ids=["bias", "batch norm"])
def test_the_first_layer_absorbs_the_shift(model):
    variables = _trained(model)
    if "batch_stats" in variables:  # running statistics away from their initial values
        variables["batch_stats"] = {"norm": {"mean": jnp.arange(4.0), "var": jnp.full(4, 2.)}}
    layer = sanity.first_layer(model, _x(), variables, train=False)
    assert layer.kernel == ("conv", "kernel")
    assert layer.offset == (("params", "conv", "bias") if model.bias
                            else ("batch_stats", "norm", "mean"))
    x = jax.random.normal(jax.random.PRNGKey(3), (2, T, SIZE, SIZE, 3))
    shifted = sanity.absorb_shift(variables, layer, 1.5)
    before, after, uncompensated = fast_jit(lambda v, s, x: (
        model.apply(v, x), model.apply(s, x + 1.5), model.apply(v, x + 1.5)))(
        variables, shifted, x)
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert not np.allclose(uncompensated, before, atol=1e-3)


def test_zero_padding_breaks_the_compensation_at_the_borders_only():
    model = TinyConv(padding="SAME")
    variables = _trained(model)
    layer = sanity.first_layer(model, _x(), variables, train=False)
    x = jax.random.normal(jax.random.PRNGKey(3), (1, T, SIZE, SIZE, 3))
    shifted = sanity.absorb_shift(variables, layer, 1.0)
    conv = nn.Conv(4, (1, 3, 3), padding="SAME")
    inside = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    a, b = fast_jit(lambda v, s, x: (conv.apply({"params": v}, x),
                                     conv.apply({"params": s}, x + 1.0)))(
        variables["params"]["conv"], shifted["params"]["conv"], x)
    np.testing.assert_allclose(b[inside], a[inside], atol=1e-5)
    assert np.abs(b - a)[:, :, 0].max() > 1e-2


def test_gradient_times_input_changes_under_the_shift_plain_gradients_do_not(results):
    out, context = results
    assert context.setup["input_invariance"] == {
        "layer": "conv (shift absorbed by its bias)", "shift": 1.0}
    saliency, product = out["Saliency"]["input_invariance"], out["Input×Gradient"][
        "input_invariance"]
    assert saliency["exact"] and saliency["logit_change"] < 1e-3
    assert saliency["difference"] < 1e-4 and saliency["spearman"] == pytest.approx(1.0)
    assert saliency["passes"]
    assert product["difference"] > 0.05 and not product["passes"]


def test_a_model_that_cannot_absorb_a_shift_is_skipped_not_silently(caplog):
    model = TinyConv(bias=False)
    out, skipped, _ = _measure(InputEdges(), model, _trained(model),
                               ["input_invariance", "randomisation"])
    assert list(out) == ["randomisation"]
    assert list(skipped) == ["input_invariance"]
    assert "has no bias and no batch normalisation" in skipped["input_invariance"]
    assert "measurement input_invariance skipped" in caplog.text

    class Empty(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return x.mean(axis=(1, 2, 3))

    _, skipped, _ = _measure(InputEdges(), Empty(), {}, SANITY[:2])
    assert skipped == {"randomisation": "the model has no parameters to randomise",
                       "input_invariance": "no constant input shift can be absorbed: the "
                                           "model has no Conv or Dense layer (no 'kernel' "
                                           "parameter)"}


# --------------------------------------------------------------------------- registry, page
def test_the_sanity_checks_run_only_when_named():
    assert not set(SANITY) & {m.name for m in measurements.select("")}
    assert measurements.optional() == ["sensitivity", *SANITY]  # sensitivity-max: test_fidelity
    chosen = [m.name for m in measurements.select("randomisation,default")]
    assert chosen[-1] == "randomisation" and "occlusion" in chosen
    assert [m.name for m in measurements.select("data_randomisation")] == [
        "data_randomisation"]


def test_report_section_and_ranking(results):
    out, context = results
    full = {"methods": {m: out[m] for m in ("Saliency", "Edges")},
            "compare_workdir": "/runs/shuffled"}
    header, rows, highlight = report.ranking_table(full)
    assert header == ["method", "randomisation ρ ↓", "input shift Δ ↓",
                      "data randomisation ρ ↓"]
    assert highlight == {1: "min", 2: "min", 3: "min"}
    assert rows[1][1] == pytest.approx(1.0)
    page = report.Page(html.Report("sanity"))
    for measurement in measurements.present(full):
        measurement.draw(page, full, context)
    text = page.doc.html()
    assert text.count('<section id="sanity">') == 1
    for caption in ("Cascading randomisation", "Randomisation at full depth (3 stages)",
                    "absorbed by conv (shift absorbed by its bias); the logits are unchanged",
                    "/runs/shuffled"):
        assert caption in text


def test_report_options_of_the_data_randomisation_fail_early(tmp_path):
    """Before any model is loaded: a comparison workdir without the measurement, the
    measurement without one; then a comparison with itself, or with a missing workdir."""
    config = _config()
    config.explain.update(measurements="default", compare_workdir=str(tmp_path / "other"))
    with pytest.raises(UserError, match="only read by the data_randomisation measurement"):
        explain.report(config, str(tmp_path / "untrained"))
    config.explain.update(measurements="data_randomisation", compare_workdir="")
    with pytest.raises(UserError, match="needs explain.compare_workdir"):
        explain.report(config, str(tmp_path / "untrained"))
    run = experiment.Run(config, str(tmp_path / "w"))
    with pytest.raises(UserError, match="is the workdir being reported"):
        explain.load_compare(run, str(tmp_path / "w"))
    with pytest.raises(UserError, match="does not exist"):
        explain.load_compare(run, str(tmp_path / "missing"))


# --------------------------------------------------------------------------- shuffled labels
class Labelled:
    def __init__(self, labels):
        self.labels = np.asarray(labels, np.int32)
        self.class_names = ["a", "b", "c"]

    def __len__(self):
        return len(self.labels)

    def num_frames(self, index):
        return 3

    def load(self, index, frame_indices=None):
        return {"label": self.labels[index], "frames": np.full((3, 2, 2, 3), index)}


def test_shuffled_labels_are_a_seeded_permutation():
    source = Labelled(np.arange(40) % 3)
    shuffled = sources.ShuffledLabels(source, seed=3)
    again, other = sources.ShuffledLabels(source, seed=3), sources.ShuffledLabels(source, 4)
    np.testing.assert_array_equal(shuffled.labels, again.labels)
    assert not np.array_equal(shuffled.labels, other.labels)
    assert not np.array_equal(shuffled.labels, source.labels)
    np.testing.assert_array_equal(np.sort(shuffled.labels), np.sort(source.labels))
    np.testing.assert_array_equal(shuffled.labels, source.labels[shuffled.permutation])
    example = shuffled.load(5)
    assert example["label"] == shuffled.labels[5] and example["frames"][0, 0, 0, 0] == 5
    assert len(shuffled) == 40 and shuffled.num_frames(0) == 3
    assert shuffled.class_names == ["a", "b", "c"]
    copied = pickle.loads(pickle.dumps(shuffled))  # data-loading workers get a copy
    np.testing.assert_array_equal(copied.labels, shuffled.labels)
    assert configs.defaults().train.shuffle_labels is False
