"""Explanation measurements as plug-ins (fer_jax.evaluation.measurements): the registry,
selection by ``config.explain.measurements``, and a measurement defined here that reaches the
results, the ranking (HTML and console) and the report page through the registry alone.

``suite.measure`` runs on 6 synthetic test videos with a parameter-free model (the logits are
the mean brightness of 7 horizontal bands of the frame) explained by saliency."""
import dataclasses
import pkgutil
import re

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import configs, explain
from fer_jax.data import synthetic
from fer_jax.errors import UserError
from fer_jax.evaluation import explainers, measurements, suite
from fer_jax.viz import report

T, SIZE, VIDEOS = 4, 32, 6
SETTINGS = suite.Settings(grid=4, fractions=(0.0, 0.5), frame_counts=(0, 1), deletion_steps=2)
ALL_KEYS = ["occlusion", "deletion", "insertion", "infidelity", "sparseness", "complexity",
            "energy_inside", "energy_chance", "pointing_game", "au_cosine",
            "temporal_correlation", "trends"]
DEFAULT = ["occlusion", "deletion", "infidelity", "sparseness", "energy_share",
           "pointing_game", "au_cosine", "intensity_correlation", "trends"]
# sensitivity-max (tests/test_fidelity.py) and the sanity checks (tests/test_sanity.py)
OPTIONAL = ["sensitivity", "randomisation", "input_invariance", "data_randomisation"]
OPTIONAL_KEYS = ["sensitivity_max", "randomisation", "input_invariance", "data_randomisation"]
SECTIONS = ["summary", "ranking", "examples", "occlusion", "ground-truth", "trends",
            "face-parts", "settings"]


class Bands(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        rows = x.mean(axis=(1, 3, 4))  # [B, H]
        return 10.0 * jnp.stack([rows[:, 4 * c:4 * c + 4].mean(-1) for c in range(7)], -1)


class MeanMap(measurements.Measurement):
    """A toy measurement: the mean of the predicted class's cell map over the videos."""

    name = "mean_map"
    description = "Mean map: the mean cell value of the map of the predicted class."

    def zero(self, context):
        return {"total": jnp.float32(0), "videos": jnp.float32(0)}

    def add(self, sums, batch, context):
        per_video = batch.cells.mean(axis=(1, 2, 3))
        return {"total": sums["total"] + jnp.sum(jnp.where(batch.mask, per_video, 0.0)),
                "videos": sums["videos"] + batch.mask.sum()}

    def summarise(self, sums, context):
        return {"mean_map": {"mean": float(sums["total"] / max(float(sums["videos"]), 1))}}

    def columns(self, result):
        return [measurements.Column("mean map", result["mean_map"]["mean"], "max", "mean map")]

    def draw(self, page, results, context):
        page.section(measurements.SectionSpec("Mean map", "mean-map")).table(
            ["method", "mean map"], [[m, v["mean_map"]["mean"]]
                                     for m, v in results["methods"].items()])


def _config(selection: str = ""):
    config = configs.defaults()
    config.input.clip_frames, config.input.image_size = T, SIZE
    config.explain.measurements = selection
    return config


@pytest.fixture(scope="module")
def source():
    return synthetic.SyntheticFaces("test", VIDEOS, synthetic.SyntheticConfig(
        image_size=SIZE, num_frames=12))


def _measure(source, selection: str = "", chosen=None, settings=SETTINGS,
             method: str = "saliency") -> dict:
    return suite.measure(Bands(), {}, _config(selection), source, [explainers.parse(method)],
                         settings, batch_size=4, measurements=chosen)


def _leaves(tree, path="") -> dict:
    """{path: leaf} of nested dicts and lists (None leaves kept as None)."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{path}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _leaves(sub, f"{path}/{i}").items()}
    return {path: tree}


@pytest.fixture(scope="module")
def everything(source):
    return _measure(source, ",".join(DEFAULT))  # whether or not mean_map is registered


@pytest.fixture
def mean_map():
    measurement = measurements.register(MeanMap())
    yield measurement
    measurements.unregister(measurement.name)


# --------------------------------------------------------------------------- registry
def test_registry_lists_every_module():
    modules = {m.name for m in pkgutil.iter_modules(measurements.__path__)} - {"base"}
    assert set(measurements.MODULES) == modules
    assert measurements.names() == DEFAULT + OPTIONAL
    keys = [k for n in measurements.names() for k in measurements.get(n).result_keys]
    assert keys == ALL_KEYS + OPTIONAL_KEYS
    for name in measurements.names():
        assert measurements.get(name).name == name
    assert [m.name for m in measurements.select("")] == DEFAULT
    assert [m.name for m in measurements.select("default")] == DEFAULT
    assert measurements.optional() == OPTIONAL
    assert [m.name for m in measurements.select(" trends, occlusion,trends ")] == [
        "occlusion", "trends"]  # the registry's order
    truthless = measurements.applicable(measurements.select(""), ("landmarks",))
    assert [m.name for m in truthless] == ["occlusion", "deletion", "infidelity", "sparseness",
                                           "trends"]


@pytest.mark.parametrize("text", ["nope", "occlusion,nope", "Occlusion"])
def test_unknown_name_is_one_line(text):
    with pytest.raises(UserError) as error:
        measurements.select(text)
    message = str(error.value)
    assert "\n" not in message and "unknown measurement" in message
    assert all(name in message for name in measurements.names())


def test_report_refuses_an_unknown_name_before_any_work(tmp_path):
    """No checkpoint there: the measurement names are checked first."""
    config = _config("occlusion,nope")
    with pytest.raises(UserError, match="unknown measurement 'nope' in explain.measurements"):
        explain.report(config, str(tmp_path / "untrained"))


def test_register_refuses_a_taken_name_or_key():
    class Twin(MeanMap):
        name = "occlusion"

    class Shadow(MeanMap):
        name = "shadow"
        keys = ("insertion",)

    for measurement in (Twin(), Shadow()):
        with pytest.raises(ValueError, match="already registered"):
            measurements.register(measurement)
    assert "shadow" not in measurements.names()


# --------------------------------------------------------------------------- results
def test_all_measurements_by_default(everything):
    assert everything["truth"] == ["landmarks", "intensity", "au_masks"]
    result = everything["methods"]["Saliency"]
    assert list(result) == ALL_KEYS
    assert result["trends"]["maps"].shape == (7, T, SETTINGS.grid, SETTINGS.grid)
    assert len(result["deletion"]["curve"]) == SETTINGS.deletion_steps + 1
    assert result["au_cosine"]["videos"] > 0
    assert [m.name for m in measurements.present(everything)] == DEFAULT
    # Bands is linear and its gradient the same on every channel: the saliency map predicts
    # every logit change exactly up to scale (infidelity 0). It is uniform over the explained
    # band, a quarter of the grid's rows, all frames: 16 of 64 cells.
    assert result["infidelity"]["mean"] == pytest.approx(0.0, abs=1e-5)
    assert result["infidelity"]["videos"] == VIDEOS
    assert result["sparseness"]["mean"] == pytest.approx(1 - 16 / 64, abs=1e-5)
    assert result["complexity"]["mean"] == pytest.approx(np.log(16), abs=1e-5)


def test_a_subset_from_the_config_has_only_its_keys(source, everything):
    """Each measurement's values do not depend on which others run alongside."""
    subset = _measure(source, "au_cosine,deletion")
    result = subset["methods"]["Saliency"]
    assert list(result) == ["deletion", "insertion", "au_cosine"]
    for key in result:
        alone, together = _leaves(result[key]), _leaves(everything["methods"]["Saliency"][key])
        assert alone.keys() == together.keys(), key
        for path, value in alone.items():
            assert (value is None) == (together[path] is None), (key, path)
            assert value is None or value == pytest.approx(together[path], rel=1e-5), path
    assert subset["classification"] == everything["classification"]
    header, _, highlight = report.ranking_table(subset)
    assert header == ["method", "deletion AUC ↓", "insertion AUC ↑", "CAM-COS (macro)"]
    assert highlight == {1: "min", 2: "max", 3: "max"}


def test_ranking_columns_of_the_default_selection(everything):
    header, rows, highlight = report.ranking_table(everything)
    assert header == ["method", "occlusion difference (mean)", "difference at 50 %, 0 frames",
                      "deletion AUC ↓", "insertion AUC ↑", "infidelity ↓", "sparseness ↑",
                      "complexity ↓", "AU energy share", "(uniform map)", "pointing game",
                      "CAM-COS (macro)", "intensity correlation"]
    assert highlight == {1: "max", 2: "max", 3: "min", 4: "max", 5: "min", 6: "max", 7: "min",
                         8: "max", 10: "max", 11: "max", 12: "max"}
    result = everything["methods"]["Saliency"]
    assert rows == [["Saliency", result["occlusion"]["mean_difference"],
                     result["occlusion"]["difference"][-1][0], result["deletion"]["auc"],
                     result["insertion"]["auc"], result["infidelity"]["mean"],
                     result["sparseness"]["mean"], result["complexity"]["mean"],
                     result["energy_inside"]["mean"],
                     result["energy_chance"]["mean"], result["pointing_game"]["mean"],
                     result["au_cosine"]["macro"], result["temporal_correlation"]["mean"]]]


def test_cam_cos_normalises_the_maps_unless_raw_is_chosen(source):
    """Input×Gradient maps are signed: min-max normalised (``explain.cosine='normalised'``,
    the default) their CAM-COS is another number than the raw cosine's; an unknown choice is
    refused before any batch is measured."""
    label = "Input×Gradient"
    normalised = _measure(source, "au_cosine", method="input_x_gradient")
    raw = _measure(source, "au_cosine", method="input_x_gradient",
                   settings=dataclasses.replace(SETTINGS, cosine="raw"))
    ours, theirs = (r["methods"][label]["au_cosine"]["per_class"] for r in (normalised, raw))
    pairs = [(ours[n], theirs[n]) for n in ours if ours[n] is not None]
    assert pairs and all(0 <= a <= 1 for a, _ in pairs)
    assert max(abs(a - b) for a, b in pairs) > 0.1, pairs
    with pytest.raises(UserError, match="explain.cosine must be one of normalised, raw"):
        _measure(source, "au_cosine", settings=dataclasses.replace(SETTINGS, cosine="minmax"))


def test_a_measurement_defined_elsewhere_plugs_in(source, mean_map, capsys):
    assert measurements.names()[-1] == "mean_map"
    results = _measure(source, "occlusion,mean_map")
    result = results["methods"]["Saliency"]
    assert list(result) == ["occlusion", "mean_map"]
    assert result["mean_map"]["mean"] > 0  # saliency: |gradient|, not all zero
    header, rows, highlight = report.ranking_table(results)
    assert header[-1] == "mean map" and rows[0][-1] == result["mean_map"]["mean"]
    assert highlight[len(header) - 1] == "max"

    from fer_jax import main
    results.update(split="test", workdir="/tmp/w", seconds={"Saliency": 1.0})
    main._print_report(results)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["method", "occl.", "diff", "mean", "map", "seconds"]
    assert lines[2].split()[0] == "Saliency" and len(lines[2].split()) == 4
    long = "AttnLRP (attention_rule=cp) twice"  # longer than the default column
    main._print_report(dict(results, methods={long: result}, seconds={long: 1.0}))
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith(long + "  ")  # the columns keep their place
    assert len(lines[1]) == len(lines[2])  # header and row end in the same column


def _examples(results) -> dict:
    rng = np.random.default_rng(0)
    return {"frames": rng.integers(0, 256, (2, T, SIZE, SIZE, 3), dtype=np.uint8),
            "labels": np.asarray([0, 1]), "predicted": np.asarray([0, 2]), "videos": [0, 1],
            "maps": {label: rng.random((2, T, 8, 8), dtype=np.float32)
                     for label in results["methods"]}}


def _page(results) -> str:
    results = dict(results, model="bands", checkpoint="best", checkpoint_step=1, split="test",
                   settings={"grid": SETTINGS.grid})
    context = suite.context(_config(), results["class_names"], SETTINGS)
    return report.build(results, _examples(results), context).html()


def test_report_sections_follow_the_measurements(source, everything, mean_map):
    page = _page(everything)
    assert re.findall(r'<section id="([^"]+)">', page) == SECTIONS
    for caption in ("Accuracy under occlusion.", "Deletion and insertion curves",
                    "CAM-COS per class", "Localisation scores by method.", "Class-average maps."):
        assert caption in page
    ground_truth = page[page.index('<section id="ground-truth">'):]
    ground_truth = ground_truth[:ground_truth.index("</section>")]
    assert ground_truth.index("CAM-COS per class") < ground_truth.index("Localisation scores")
    examples = page[page.index('<section id="examples">'):]
    examples = examples[:examples.index("</section>")]
    assert examples.count("data:image/jpeg") == 2 * 2  # two mosaics per example video
    assert [report.example_scale(n) for n in (8, 32, 64, 112, 224)] == [4, 4, 2, 1, 1]

    with_toy = _page(_measure(source, "mean_map,deletion"))
    assert re.findall(r'<section id="([^"]+)">', with_toy) == [
        "summary", "ranking", "examples", "occlusion", "mean-map", "face-parts", "settings"]
    assert "Accuracy under occlusion." not in with_toy  # the occlusion test did not run
    assert "Mean map: the mean cell value" in with_toy  # its note in the ranking intro
