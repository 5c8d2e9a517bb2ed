"""Tests of explanation-method specs (fer_jax.evaluation.explainers): parsing, labels,
defaults per model family, errors and file-name keys."""
import re

import config_files
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import attribution, experiment, models
from fer_jax.attribution import attention
from fer_jax.errors import UserError
from fer_jax.evaluation import explainers
from fer_jax.evaluation.explainers import Explainer, parse, parse_all

TINY = dict(num_classes=3, patch_size=8, hidden_size=16, num_layers=1, num_heads=2)


@pytest.fixture(scope="module")
def timesformer():
    return models.build("timesformer", **TINY)


@pytest.fixture(scope="module")
def cnn():
    return models.build("c3d", num_classes=3, width=0.125, fc_dim=16)


# --------------------------------------------------------------------------- parse
def test_attention_method_on_divided_attention_defaults_to_spatial():
    explainer = parse("rollout")
    assert explainer == Explainer("rollout", {"mode": "spatial"}, "Rollout-mean")


def test_explicit_mode_is_kept():
    explainer = parse("rollout(mode='both')")
    assert explainer.options == {"mode": "both"}
    assert explainer.label == "Rollout-mean (mode=both)"


def test_no_spatial_default_without_divided_attention():
    assert parse("rollout", "joint_space_time").options == {}
    assert parse("chefer_relevance", None).options == {}
    assert parse("grad_cam").options == {}  # not an attention method


def test_labels():
    assert parse("chefer_relevance").label == "TIBAV"
    assert parse("grad_cam_pp").label == "Grad-CAM++"
    assert parse("rollout_grad(head_fusion='max')").label == "Rollout-Grad-max"
    assert parse("rollout_grad(head_fusion='max')").options == {"head_fusion": "max",
                                                                 "mode": "spatial"}
    assert parse("rollout(head_fusion='max', discard_ratio=0.5)").label == (
        "Rollout-max (discard_ratio=0.5)")


@pytest.mark.parametrize("name,shown", [("rollout", "Rollout"), ("rollout_grad", "Rollout-Grad")])
def test_labels_name_the_head_fusion_given_or_not(name, shown):
    """A label never hides which fusion over heads was used: the default (mean) included."""
    labels = {fusion: parse(f"{name}(head_fusion={fusion!r})").label
              for fusion in attention.HEAD_FUSIONS}
    assert labels == {f: f"{shown}-{f}" for f in ("mean", "min", "max")}
    assert parse(name).label == labels[attention.DEFAULT_HEAD_FUSION] == f"{shown}-mean"
    # the default spelt out is the same explanation: same file key
    assert parse(name).key == parse(f"{name}(head_fusion='mean')").key == name


def test_options_are_python_literals():
    explainer = parse(" integrated_gradients( steps=8, baseline=0.5,"
                      " internal_batch_size=None ) ")
    assert explainer.name == "integrated_gradients"
    assert explainer.options == {"steps": 8, "baseline": 0.5, "internal_batch_size": None}
    assert isinstance(explainer.options["steps"], int)
    assert parse("rollout(discard_ratio=0.9, mode=\"both\")").options == {
        "discard_ratio": 0.9, "mode": "both"}
    assert parse("grad_cam()").options == {}


@pytest.mark.parametrize("spec", [
    "rollout(head_fusion=max)",       # not a literal (a name)
    "rollout('max')",                 # positional
    "rollout(head_fusion='max'",      # unbalanced
    "rollout(head_fusion=='max')",    # bad syntax
    "rollout(mode='both', mode='spatial')",  # repeated keyword
    "rollout(mode='both'), grad_cam(layer='x')",  # two specs where one is expected
    "rollout(**{'mode': 'both'})",    # not keyword=literal
])
def test_bad_options_are_user_errors(spec):
    with pytest.raises(UserError) as error:
        parse(spec)
    message = str(error.value)
    assert "rollout" in message
    assert "rollout(head_fusion='max')" in message or "keyword=literal" in message


@pytest.mark.parametrize("spec", ["gradcam", "Saliency", "", "grad cam", "lrp-x"])
def test_unknown_method_lists_the_methods(spec):
    with pytest.raises(UserError, match="unknown explanation method") as error:
        parse(spec)
    for name in attribution.METHODS:
        assert name in str(error.value)


# --------------------------------------------------------------------------- parse_all
def test_parse_all_splits_on_commas_outside_parentheses(timesformer):
    found = parse_all("rollout(head_fusion='max', discard_ratio=0.5),grad_cam", timesformer)
    assert [e.name for e in found] == ["rollout", "grad_cam"]
    assert found[0].options == {"head_fusion": "max", "discard_ratio": 0.5, "mode": "spatial"}
    assert len(parse_all(" saliency , lrp ,", timesformer)) == 2  # blanks ignored


def test_parse_all_defaults_for_a_timesformer(timesformer):
    found = parse_all("", timesformer)
    assert [e.name for e in found] == ["grad_cam", "rollout", "rollout_grad",
                                       "chefer_relevance"]
    # Du Toit's Rollout: the minimum over heads; Rollout-Grad keeps vit-explain's mean.
    assert [e.label for e in found] == ["Grad-CAM", "Rollout-min", "Rollout-Grad-mean", "TIBAV"]
    assert found[1].options == {"head_fusion": "min", "mode": "spatial"}
    assert all(e.options == {"mode": "spatial"} for e in found[2:])
    assert parse_all("  ", timesformer) == found


def test_du_toit_configs_report_rollout_with_the_minimum_over_heads():
    """The synthetic TimeSformer (whose report reproduces Du Toit's ranking) and the CREMA-D
    config explain with his Rollout by default."""
    for name in ("synthetic", "timesformer_cremad"):
        config = config_files.load(name)
        found = parse_all(config.explain.methods, experiment.build_model(config))
        rollout = [e for e in found if e.name == "rollout"]
        assert [e.options.get("head_fusion") for e in rollout] == ["min"], name
        assert [e.label for e in rollout] == ["Rollout-min"], name


def test_parse_all_defaults_for_a_cnn(cnn):
    found = parse_all("", cnn)
    assert [e.name for e in found] == ["grad_cam", "grad_cam_pp", "layer_cam", "lrp"]
    assert all(e.options == {} for e in found)


def test_the_cam_family_by_name(cnn):
    found = parse_all("hires_cam,xgrad_cam,eigen_grad_cam,score_cam(batch_size=8),"
                      "ablation_cam,full_grad", cnn)
    assert [e.label for e in found] == ["HiResCAM", "XGrad-CAM", "EigenGrad-CAM",
                                        "Score-CAM (batch_size=8)", "Ablation-CAM", "FullGrad"]
    assert found[3].options == {"batch_size": 8} and found[3].key == "score_cam-batch_size=8"


def test_parse_all_refuses_duplicates(timesformer):
    with pytest.raises(UserError, match="listed twice"):
        parse_all("grad_cam,saliency,grad_cam", timesformer)
    with pytest.raises(UserError, match="listed twice"):
        parse_all("rollout(head_fusion='max'), rollout(head_fusion='max')", timesformer)
    # the same explanation written twice: the default mode spelt out
    with pytest.raises(UserError, match="listed twice"):
        parse_all("rollout,rollout(mode='spatial')", timesformer)
    with pytest.raises(UserError, match="listed twice"):  # the default fusion spelt out
        parse_all("rollout,rollout(head_fusion='mean')", timesformer)
    assert len(parse_all("rollout,rollout(mode='both')", timesformer)) == 2
    fusions = parse_all("rollout(head_fusion='min'),rollout,rollout(head_fusion='max')",
                        timesformer)
    assert [e.label for e in fusions] == ["Rollout-min", "Rollout-mean", "Rollout-max"]


@pytest.mark.parametrize("spec", ["rollout", "grad_cam,chefer_relevance",
                                  "rollout_grad(head_fusion='min')"])
def test_attention_methods_on_a_cnn_are_refused(cnn, spec):
    with pytest.raises(UserError, match="needs an attention model"):
        parse_all(spec, cnn)


# --------------------------------------------------------------------------- keys
def test_keys_are_file_name_safe():
    assert parse("rollout").key == "rollout"
    assert parse("rollout_grad(head_fusion='max')").key == "rollout_grad-head_fusion=max"
    assert parse("rollout(mode='both')").key == "rollout-mode=both"
    assert parse("grad_cam(layer='blocks_0/attention')").key == "grad_cam-layer=blocks_0attention"
    odd = parse("integrated_gradients(steps=8, baseline=(0.1, 0.2), name='a b:c*?<>|\\\\')")
    assert re.fullmatch(r"[A-Za-z0-9_.=-]+", odd.key), odd.key
    assert "/" not in odd.key and " " not in odd.key


def test_keys_differ_for_different_options():
    specs = ["rollout", "rollout(mode='both')", "rollout(head_fusion='max')",
             "rollout(head_fusion='max', discard_ratio=0.5)"]
    assert len({parse(s).key for s in specs}) == len(specs)
    # option order does not matter
    assert (parse("rollout(head_fusion='max', discard_ratio=0.5)").key
            == parse("rollout(discard_ratio=0.5, head_fusion='max')").key)


# --------------------------------------------------------------------------- calling
def test_call_forwards_target_and_options(monkeypatch):
    calls = []
    monkeypatch.setitem(attribution.METHODS, "grad_cam",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or "maps")
    explainer = parse("grad_cam(layer='block')")
    assert explainer("model", "variables", "x", "target") == "maps"
    assert calls == [(("model", "variables", "x", "target"), {"layer": "block"})]


def test_call_on_a_tiny_timesformer(timesformer):
    """Rollout through the spec equals the direct call with Du Toit's spatial mode; maps per
    frame and patch [B, T, h, w] = [1, 2, 4, 4] that, with the cls entry, sum to at most 1."""
    x = jax.random.normal(jax.random.key(0), (1, 2, 32, 32, 3))
    variables = timesformer.init(jax.random.key(1), x)
    maps = parse("rollout")(timesformer, variables, x, jnp.asarray([0]))
    assert maps.shape == (1, 2, 4, 4)
    direct = attention.rollout(timesformer, variables, x, mode="spatial")
    np.testing.assert_allclose(np.asarray(maps), np.asarray(direct), atol=1e-6)
    assert 0 < float(maps.sum()) <= 1 + 1e-5


def test_display_names_cover_the_registry():
    assert set(explainers.DISPLAY_NAMES) == set(attribution.METHODS)
    assert set(explainers.ATTENTION_METHODS) <= set(attribution.METHODS)
