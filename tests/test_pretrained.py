"""Converted weights on disk → training initialisation (``model.init_from``)."""

from pathlib import Path

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import config_files
from fast import fast_jit
from fer_jax import configs, models, train
from fer_jax.errors import UserError
from fer_jax.models import pretrained
from fer_jax.models.convert.__main__ import main as convert_main

torch = pytest.importorskip("torch", reason="needs torch (pip install '.[interop]')")
transformers = pytest.importorskip("transformers", reason="needs transformers ('.[interop]')")

def _smoke_config():
    return config_files.load("synthetic", "smoke")


def _hf_directory(path: Path) -> Path:
    torch.manual_seed(0)
    config = transformers.TimesformerConfig(
        image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, num_labels=5)
    transformers.TimesformerForVideoClassification(config).save_pretrained(path)
    return path


def test_hf_directory_to_training_initialisation(tmp_path, capsys):
    weights = tmp_path / "k400.msgpack"
    assert convert_main(["hf", str(_hf_directory(tmp_path / "hf")), str(weights),
                         "--num-classes", "7"]) == 0
    variables, name, kwargs = pretrained.load(weights)
    assert name == "timesformer" and kwargs["hidden_size"] == 32 and kwargs["num_layers"] == 1

    config = _smoke_config()
    config.model.kwargs.update({k: kwargs[k] for k in ("patch_size", "hidden_size",
                                                       "num_layers", "num_heads", "mlp_ratio")})
    config.model.init_from = str(weights)
    # With a tiny learning rate the steps of the epoch change the weights only slightly, so
    # the checkpoint's encoder shows it started from the converted weights.
    config.optimizer.learning_rate = 1e-9
    config.train.update(epochs=1, checkpoint_every_steps=0)
    capsys.readouterr()
    train.train_and_evaluate(config, str(tmp_path / "run"))
    assert "initialised" in capsys.readouterr().out
    restored, _, _ = train.checkpointing.Checkpoints(tmp_path / "run", 2).restore_variables(
        jax.sharding.SingleDeviceSharding(jax.devices()[0]), prefer_best=False)
    np.testing.assert_allclose(restored["params"]["blocks_0"]["mlp"]["fc1"]["kernel"],
                               variables["params"]["blocks_0"]["mlp"]["fc1"]["kernel"],
                               atol=1e-6)


def test_merge_reports_what_it_did_not_load():
    fresh = {"params": {"a": np.zeros((2, 3)), "head": np.zeros((4, 7))}}
    weights = {"params": {"a": np.ones((2, 3)), "head": np.ones((4, 5)), "extra": np.ones(1)}}
    merged, report = pretrained.merge(fresh, weights)
    np.testing.assert_array_equal(merged["params"]["a"], 1.0)
    np.testing.assert_array_equal(merged["params"]["head"], 0.0)
    assert report == {"loaded": ["params/a"], "kept": ["params/head"], "excluded": [],
                      "zeroed": [], "unused": ["params/head", "params/extra"]}
    assert "kept 1" in pretrained.describe(report)
    with pytest.raises(UserError, match="no pretrained array matches"):
        pretrained.merge(fresh, {"params": {"b": np.ones(3)}})


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert convert_main(["official", str(tmp_path / "missing.pyth"), str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "junk.pyth").write_bytes(b"not a checkpoint")
    assert convert_main(["official", str(tmp_path / "junk.pyth"), str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(UserError, match="no file"):
        pretrained.load(tmp_path / "none.msgpack")


def test_init_exclude_keeps_or_zeroes_the_matching_arrays(tmp_path, capsys):
    """``model.init_exclude``: matching variables (a classifier, BatchNorm statistics) are not
    loaded from ``model.init_from`` but keep the fresh initialisation, or start at zero with
    ``model.init_exclude_zeros``; the log line says which."""
    model = models.build("resnet3d_18", num_classes=3, width=1 / 16, dense=True,
                         stage_sizes=(1, 1, 1, 1))
    x = jnp.zeros((1, 2, 8, 8, 3))
    init = fast_jit(model.init)
    fresh = init(jax.random.PRNGKey(0), x)
    # + 0.5: biases and BatchNorm statistics start at 0 / 1 whatever the seed
    weights = jax.tree.map(lambda a: a + 0.5, init(jax.random.PRNGKey(1), x))
    path = pretrained.save(tmp_path / "w.msgpack", weights, "resnet3d_18", {"width": 1 / 16})
    tx = optax.sgd(0.1)
    state = train.TrainState(jnp.int32(0), fresh["params"], {"batch_stats": fresh["batch_stats"]},
                             tx.init(fresh["params"]), jax.random.PRNGKey(2))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    flat = lambda s: flax.traverse_util.flatten_dict(  # noqa: E731
        {"params": s.params, **s.model_state}, sep="/")
    start, loaded = flat(state), flax.traverse_util.flatten_dict(weights, sep="/")
    for exclude, zeros, excluded in [("^params/fc/", True, {"params/fc/bias", "params/fc/kernel"}),
                                     ("^batch_stats/layer4", False, None)]:
        capsys.readouterr()
        got = flat(train.init_from_pretrained(state, str(path), tx, device, exclude, zeros))
        line = capsys.readouterr().out
        if excluded is None:
            excluded = {k for k in start if k.startswith("batch_stats/layer4")}
        assert f"excluded {len(excluded)} by model.init_exclude, " \
               f"{'zeroed' if zeros else 'kept at initialisation'}" in line, line
        for key, value in got.items():
            if key not in excluded:
                expected = loaded[key]
            else:
                expected = np.zeros_like(start[key]) if zeros else start[key]
            np.testing.assert_array_equal(value, expected, err_msg=key)
        assert all(np.abs(loaded[k] - start[k]).max() > 0 for k in excluded)  # they differ

    with pytest.raises(UserError, match="model.init_exclude='\\^params/nothing' matches no "):
        train.init_from_pretrained(state, str(path), tx, device, "^params/nothing")
    with pytest.raises(UserError, match="is not a regular expression"):
        train.init_from_pretrained(state, str(path), tx, device, "fc/(")
    with pytest.raises(UserError, match="excludes every pretrained array"):
        train.init_from_pretrained(state, str(path), tx, device, ".")


def test_init_exclude_settings_are_checked_before_training():
    config = configs.defaults()
    for settings, message in [(dict(init_exclude="^params/fc/"), "needs model.init_from"),
                              (dict(init_exclude_zeros=True), "needs model.init_exclude"),
                              (dict(init_from="w.msgpack", init_exclude="fc/("),
                               "is not a regular expression")]:
        config.model.update({"init_from": "", "init_exclude": "", "init_exclude_zeros": False,
                             **settings})
        with pytest.raises(UserError, match=message) as error:
            train.check_train_config(config)
        assert "\n" not in str(error.value)
