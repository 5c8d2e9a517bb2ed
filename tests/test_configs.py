"""Every experiment config: loads, builds its full-size model, and trains at ``:smoke`` size."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from config_files import CONFIG_DIR, load
from fer_jax import experiment, train
from fer_jax.data import pipeline

CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))


def test_every_seed_experiment_has_a_config():
    for name in ("synthetic", "timesformer_cremad", "vgg16_3d_afew", "c3d_afew", "i3d_hmdb51",
                 "resnext101_hmdb51", "resnet3d18_afew", "tcn_ckplus", "scn_ckplus",
                 "early_fusion_hmdb8", "thesis_length", "thesis_pooling", "thesis_attention"):
        assert name in CONFIGS


# Variants (``path:arg``) that change the model or its pooling; each is built at full size, and
# trained at smoke size below unless another test trains it (the thesis' attention modules in
# test_attention_modules.py, two-step video-level training included).
VARIANTS = ["vgg16_3d_afew:softmax", "thesis_attention:mult_mask",
            "thesis_attention:temporal_sa,video_level", "thesis_length:resize"]


@pytest.mark.parametrize("name", CONFIGS + VARIANTS)
def test_full_size_model_builds(name):
    name, _, variant = name.partition(":")
    config = load(name, variant)
    model = experiment.build_model(config)
    x = jax.ShapeDtypeStruct((1,) + pipeline.input_shape(config), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (1, config.dataset.num_classes)
    with pytest.raises(ValueError, match="unknown config argument"):
        load(name, "nope")


# Configs whose smoke run other tests already train and evaluate end to end, from the command
# line: synthetic (test_train_cli.py), sampler_synthetic (test_sampler_training.py, three epochs
# with test-time pooling), au_guided_synthetic (test_au_guidance.py). And i3d_hmdb51, whose
# smoke run cost the most CPU of all (18-22 s) and whose parts are trained elsewhere: the
# dense I3D's training step in test_cnn3d.py, the chapter-3 path (SGD with the plateau
# schedule, full-video evaluation of dense logits with max pooling) by c3d_afew and
# resnext101_hmdb51 below.
TRAINED_ELSEWHERE = {"synthetic", "sampler_synthetic", "au_guided_synthetic", "i3d_hmdb51"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [c for c in CONFIGS if c not in TRAINED_ELSEWHERE]
                         + [v for v in VARIANTS if not v.startswith("thesis_attention:")])
def test_smoke_config_trains_and_evaluates(name, tmp_path):
    name, _, variant = name.partition(":")
    config = load(name, ",".join(filter(None, [variant, "smoke"])))
    assert config.dataset.name == "synthetic"
    config.train.epochs = 1
    config.train.checkpoint_every_steps = 0  # the epoch end's (mid-epoch: test_preemption.py)
    # two steps and ten validation videos: what runs is the config's whole path (model,
    # sampler, pooling, evaluation), whose compilation, not the step count, costs the time
    config.dataset.update(train_videos=2 * config.train.batch_size, validation_videos=10)
    result = train.train_and_evaluate(config, str(tmp_path))
    assert result["stopped"] == "completed" and result["epochs_completed"] == 1
    assert np.isfinite(result["final_validation"]["loss"])
    # The epoch's validation ran the config's own evaluation (clips, full videos, pooling) on
    # every video; --mode=eval is that evaluation on the best checkpoint and the test split,
    # the same for every model (tested from the command line in test_train_cli.py).
    assert result["final_validation"]["count"] == config.dataset.validation_videos
    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == \
        config.model.name
