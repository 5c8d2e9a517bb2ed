"""configs/sampler_synthetic.py's ``:pretrain`` and ``:long`` variants (the thesis' claim for
pretrained 3D CNNs): what they state, and that they build, without training."""
import re

import flax.traverse_util
import jax
import jax.numpy as jnp
import pytest

from config_files import load
from fer_jax import experiment, train
from fer_jax.data import pipeline


def _variables(config):
    """The full variable shapes of ``config``'s model (no compilation)."""
    model = experiment.build_model(config)
    x = jax.ShapeDtypeStruct((1,) + pipeline.input_shape(config), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)


def test_long_videos_hold_a_short_event_and_train_on_16_frame_clips():
    config = load("sampler_synthetic", "long")
    d = config.dataset
    assert (d.num_frames, config.input.clip_frames, config.eval.max_frames) == (80, 16, 80)
    assert tuple(d.apex_frames) == (8, 16) and d.test_videos >= 1000
    assert d.onset_frames[1] + d.apex_frames[1] + d.offset_frames[1] <= 24  # ≤ 30 % of a video
    assert config.model.name == "resnet3d_18" and config.model.kwargs.dense
    assert config.optimizer.name == "adamw" and config.optimizer.scale == pytest.approx(1 / 200)
    assert config.train.epochs <= 8 and not config.model.init_exclude  # the classifier stays
    assert config.sampler.name == "stochastic_softmax"


def test_pretraining_events_fill_the_clip_and_its_faces_are_not_the_long_videos():
    pre, long = load("sampler_synthetic", "pretrain"), load("sampler_synthetic", "long")
    d = pre.dataset
    assert d.num_frames == pre.input.clip_frames == long.input.clip_frames
    assert d.apex_frames[0] + d.onset_frames[0] + d.offset_frames[0] >= d.num_frames * 0.6
    assert pre.sampler.name == "" and pre.input.train_clip == "random"
    assert d.num_subjects > long.dataset.num_subjects
    assert d.seed != long.dataset.seed  # identities are drawn from (seed, subject)
    # Every variable of the fine-tuned model has its pretrained counterpart (model.init_from
    # loads all of them, the classifier included).
    shapes = [jax.tree.map(lambda s: s.shape, _variables(c)) for c in (pre, long)]
    assert shapes[0] == shapes[1]
    with pytest.raises(ValueError, match="two runs"):
        load("sampler_synthetic", "pretrain,long")


def test_long_scales_every_parameter_but_the_classifier():
    config = load("sampler_synthetic", "long")
    params = flax.traverse_util.flatten_dict(_variables(config)["params"], sep="/")
    scaled = {k for k in params if re.search(config.optimizer.scaled, k)}
    assert set(params) - scaled == {"fc/kernel", "fc/bias"}
    tx, _ = train.make_optimizer(config, steps_per_epoch=20)
    jax.eval_shape(tx.init, _variables(config)["params"])  # the optimiser accepts the pattern


@pytest.mark.parametrize("variant", ["long,smoke", "pretrain,smoke"])
def test_smoke_variants_build(variant):
    config = load("sampler_synthetic", variant)
    train.check_train_config(config)
    variables = _variables(config)
    assert config.eval.max_frames == config.dataset.num_frames > config.input.clip_frames
    tx, _ = train.make_optimizer(config, steps_per_epoch=3)
    jax.eval_shape(tx.init, variables["params"])
    assert bool(config.optimizer.scaled) == variant.startswith("long")
