"""AU-guided training (Belharbi et al.): the alignment term (raw cosine), its AU maps in the
training pipeline, its effect on training, and the ATT-COS / CAM-COS it reports (normalised)."""
import functools
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import config_files
from fast import fast_jit
from fer_jax import attribution, au_guidance, configs, experiment, explain, models, train
from fer_jax.data import action_units, augment, pipeline, sources
from fer_jax.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _au(batch=3, frames=2, size=8, seed=0):
    """Random non-negative 'AU maps' [B, T, S, S]; the first example neutral (zeros)."""
    a = jax.random.uniform(jax.random.PRNGKey(seed), (batch, frames, size, size))
    return a.at[0].set(0.0)


def test_identical_maps_align_perfectly_and_neutral_samples_are_left_out():
    au = _au()
    term, valid = au_guidance.alignment([au], au)
    np.testing.assert_array_equal(valid, [False, True, True])
    assert abs(float(term)) < 1e-6
    for how in ("shift", "raw"):  # A ≥ 0: both leave it as it is
        cosine, reported_valid = au_guidance.att_cos([au], au, how)
        np.testing.assert_allclose(cosine[1:], 1.0, atol=1e-6)
        np.testing.assert_array_equal(reported_valid, valid)
    # The neutral example's own map does not matter.
    other = au.at[0].set(jax.random.uniform(jax.random.PRNGKey(5), au.shape[1:]))
    assert float(au_guidance.alignment([other], au)[0]) == pytest.approx(float(term), abs=1e-6)
    # Only neutral examples: no alignment term.
    term, valid = au_guidance.alignment([au], jnp.zeros_like(au))
    assert float(term) == 0.0 and not valid.any()


def _cosine(x, y):
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    return np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y)


def test_term_is_the_masked_mean_of_one_minus_raw_cosine_averaged_over_layers():
    """The loss (Eq. 2) takes the raw, signed layer attention, whatever the reported ATT-COS
    does."""
    au = _au()
    a = jax.random.normal(jax.random.PRNGKey(1), au.shape)
    b = jax.random.normal(jax.random.PRNGKey(2), (3, 1, 4, 4))  # a coarser layer
    cos_a = np.array([_cosine(x, y) for x, y in zip(np.asarray(a)[1:], np.asarray(au)[1:])])
    term_a, _ = au_guidance.alignment([a], au)
    np.testing.assert_allclose(term_a, np.mean(1 - cos_a), rtol=1e-5)
    term_b = au_guidance.alignment([b], au)[0]
    both, _ = au_guidance.alignment([a, b], au)
    np.testing.assert_allclose(both, (term_a + term_b) / 2, rtol=1e-6)
    # The reported ATT-COS of the same signed map is the shifted one, far from the raw.
    reported, _ = au_guidance.att_cos([a], au)
    shifted = [_cosine(x - x.min(), y) for x, y in zip(np.asarray(a)[1:], np.asarray(au)[1:])]
    np.testing.assert_allclose(reported[1:], shifted, rtol=1e-5)
    assert np.abs(np.asarray(reported[1:]) - cos_a).min() > 0.3, (reported, cos_a)
    # Several layers: the mean of their ATT-COS.
    np.testing.assert_allclose(au_guidance.att_cos([a, b], au)[0],
                               (reported + au_guidance.att_cos([b], au)[0]) / 2, rtol=1e-6)


def test_au_maps_are_resized_to_the_layer_over_time_and_space():
    au = _au(frames=4, size=16)
    small = attribution.upsample(au, (2, 4, 4))  # what a C3D-like layer [T/2, H/4] sees
    term, _ = au_guidance.alignment([small], au)
    assert abs(float(term)) < 1e-5  # A resized to the layer: the layer's own map
    # The evaluation's direction (map upsampled to A) scores the coarse map lower.
    assert (au_guidance.att_cos([small], au)[0][1:] < 1 - 1e-3).all()


def test_gradient_of_the_term_matches_finite_differences():
    au = _au()
    maps = jax.random.normal(jax.random.PRNGKey(3), (3, 2, 4, 4))
    check_grads(lambda m: au_guidance.alignment([m], au)[0], (maps,), order=1,
                modes=("rev",), eps=1e-3, atol=2e-2, rtol=2e-2)


def test_a_map_without_a_spatial_grid_is_refused():
    for fn in (au_guidance.alignment, au_guidance.att_cos):
        with pytest.raises(UserError, match="spatial grid per frame"):
            fn([jnp.ones((3, 5))], _au())


def _config(**guidance):
    config = configs.defaults()
    config.au_guidance.update(guidance)
    return config


def test_options_resolve_per_model_and_bad_ones_are_refused():
    resnet = models.build("resnet2d_50", num_classes=7, stage_sizes=(1, 1, 1, 1))
    tsf = models.build("timesformer", num_classes=7, hidden_size=32, num_layers=2, num_heads=2)
    assert au_guidance.from_config(_config(), resnet) is None  # off by default
    guidance = au_guidance.from_config(_config(weight=4.0), resnet)
    assert guidance == au_guidance.Guidance(4.0, ("layer4_0",), "cam")
    measured = au_guidance.from_config(_config(measure=True, layers="blocks_0, blocks_1"), tsf)
    assert measured == au_guidance.Guidance(0.0, ("blocks_0", "blocks_1"), "grad_cam")
    with pytest.raises(UserError, match="must be >= 0"):
        au_guidance.from_config(_config(weight=-1.0), resnet)
    # The reported ATT-COS / CAM-COS: the authors' evaluation by default, or another choice.
    assert (guidance.cosine, guidance.att_normalise, guidance.cam_normalise) == (
        "normalised", "shift", "minmax")
    for cosine, modes in (("minmax", ("minmax", "minmax")), ("raw", ("raw", "raw"))):
        chosen = au_guidance.from_config(_config(weight=4.0, cosine=cosine), resnet)
        assert (chosen.att_normalise, chosen.cam_normalise) == modes
    with pytest.raises(UserError, match="au_guidance.cosine must be one of normalised, minmax"):
        au_guidance.from_config(_config(measure=True, cosine="l2"), resnet)
    config = _config(weight=1.0)
    config.input.modality = "landmarks"
    with pytest.raises(UserError, match="landmark model"):
        au_guidance.from_config(config, resnet)
    config = _config(measure=True)
    config.eval.full_video = True
    with pytest.raises(UserError, match="eval.full_video"):
        au_guidance.from_config(config, resnet)


def test_layer_taps_record_training_applies_and_name_missing_layers():
    model = models.build("resnet2d_50", num_classes=3, stage_sizes=(1, 1), width=0.125)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 2, 32, 32, 3))
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)

    @fast_jit
    def tapped(variables, x):
        with attribution.LayerTaps(("layer1_0", "layer2_0")) as taps:
            model.apply(variables, x, train=True, mutable=["batch_stats"])
        return taps.outputs(model)

    outputs = tapped(variables, x)
    assert outputs["layer1_0"].shape == (2, 2, 8, 8, 32)
    assert outputs["layer2_0"].shape == (2, 2, 4, 4, 64)
    expected, attention = fast_jit(lambda v, x: (
        attribution.layer_activations(model, v, x, "layer2_0")[0],
        attribution.layer_attention(model, v, x, layer="layer2_0")))(variables, x)
    np.testing.assert_allclose(attention, expected.mean(-1), rtol=1e-5, atol=1e-6)
    with attribution.LayerTaps(("layer9_0",)) as taps:
        jax.eval_shape(lambda: model.apply(variables, x, train=False))
    with pytest.raises(UserError, match="'layer9_0' is not called by ResNet2D"):
        taps.outputs(model)


def _smoke(arg=""):
    return config_files.load("au_guided_synthetic", ",".join(filter(None, ["smoke", arg])))


def test_training_batches_carry_au_maps_that_follow_the_augmentation():
    config = _smoke()
    config.input.augment.update(hflip=1.0, rotation=10.0, crop_scale=(0.8, 0.9))
    source = sources.build(config, "train")
    batch = next(iter(pipeline.train_dataset(source, config, 1, seed=0, au_maps=True)))
    size, frames = config.input.image_size, config.input.clip_frames
    assert batch["au_masks"].shape == (8, frames, size, size)
    assert batch["au_masks"].dtype == np.uint8
    # Redraw an expressive example by hand: same clip, same augmentation, maps from its
    # landmarks.
    neutral = batch["label"] == action_units.EXPRESSIONS.index("neutral")
    row = int(np.flatnonzero(~neutral)[0])
    element = pipeline._TrainElement(source, pipeline.clip_selector("evenly_spaced", frames),
                                     config.input.augment, size, 0, 48, au_codebook="figure")
    epoch, video = element.video_at(row)
    rng = np.random.default_rng([0, epoch, video])
    frames, _ = element.selector(video, epoch, source.num_frames(video), rng)
    example = source.load(video, frames)
    params = augment.draw_params(rng, config.input.augment, *example["frames"].shape[1:3], size)
    moved = augment.apply(example, params, size)
    expected = action_units.au_maps(moved["landmarks"], int(example["label"]), size, size)
    assert expected.max() > 0
    np.testing.assert_allclose(batch["au_masks"][row] / 255, expected, atol=1 / 255 + 1e-6)
    # They agree with the source-resolution maps warped by the same geometry.
    original = action_units.au_maps(example["landmarks"], int(example["label"]),
                                    *example["frames"].shape[1:3])
    warped = augment.warp_frames(original, params.matrix, size)
    cosine = (warped * expected).sum() / np.linalg.norm(warped) / np.linalg.norm(expected)
    assert cosine > 0.9
    assert (batch["au_masks"][neutral] == 0).all()


def _att_cos_after_training(config, runs) -> list[float]:
    """ATT-COS of one fixed training batch after training on it, for each ``(weight,
    steps)`` of ``runs``: ``steps`` updates with AU guidance weight ``weight``, from the same
    initialisation. The guided step measures (its sums come from the parameters before its
    update, which is discarded)."""
    run = experiment.Run(config, "/tmp/unused-au-guidance-workdir")
    source = sources.build(config, "train")
    batch = next(iter(pipeline.train_dataset(source, config, 1, seed=0, au_maps=True)))
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    tx, _ = train.make_optimizer(config, steps_per_epoch=8)
    params, model_state = fast_jit(run.init_variables)(jax.random.PRNGKey(0))
    steps_of = {weight: fast_jit(functools.partial(
        train.train_step, model=run.model, tx=tx, config=config,
        guidance=au_guidance.Guidance(weight, run.guidance.layers, "cam") if weight else None))
        for weight in {w for w, _ in runs} | {4.0}}
    result = []
    for weight, steps in runs:
        state = train.TrainState(jnp.int32(0), params, model_state, fast_jit(tx.init)(params),
                                 jax.random.PRNGKey(1))
        for _ in range(steps):
            state, _, _ = steps_of[weight](state, batch, train.zero_train_sums())
        _, sums, _ = steps_of[4.0](state, batch, train.zero_train_sums())
        result.append(float(sums["att_cos"] / sums["att_count"]))
    return result


@pytest.mark.parametrize("arg", ["", "timesformer"])
def test_guided_training_raises_the_alignment_of_the_layer_attention(arg):
    config = _smoke(arg)
    config.optimizer.learning_rate = 3e-3
    plain, guided = _att_cos_after_training(config, [(0.0, 8), (4.0, 8)])
    assert guided > plain + 0.1, (plain, guided)


def test_guidance_trains_3d_cnn_features_with_a_coarser_time_axis():
    config = _smoke()  # 4-frame clips; layer1 of a 3D ResNet keeps 2 frames of 8×8
    config.model.name = "resnet3d_18"
    config.model.kwargs = dict(width=1 / 8, stage_sizes=(2, 1, 1, 1))  # layer1_1 kept
    config.au_guidance.layers = "layer1_1"
    config.optimizer.learning_rate = 3e-3
    before, after = _att_cos_after_training(config, [(4.0, 0), (4.0, 8)])
    assert after > before + 0.05, (before, after)


def test_command_line_run_reports_att_cos_and_cam_cos(tmp_path):
    command = [sys.executable, "-m", "fer_jax.main",
               "--config=configs/au_guided_synthetic.py:smoke", f"--workdir={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validation ATT-COS" in result.stdout and "validation CAM-COS" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    last = metrics["history"][-1]
    assert 0 <= last["train"]["att_cos"] <= 1 and last["train"]["cross_entropy"] > 0
    assert -1 <= last["validation"]["att_cos"] <= 1
    evaluated = metrics["best_validation"]  # what --mode=eval writes (experiment.Run.evaluate)
    alignment = evaluated["au_alignment"]
    assert alignment["layers"] == ["layer4_0"] and alignment["cam_method"] == "cam"
    assert alignment["cosine"] == "normalised"
    for name in ("att_cos", "cam_cos"):
        measured = alignment[name]
        assert measured["per_class"]["neutral"] is None  # neutral has no AUs
        values = [v for v in measured["per_class"].values() if v is not None]
        assert values and measured["macro"] == pytest.approx(np.mean(values))
        assert 0 < measured["videos"] < evaluated["count"]  # the expressive videos
    events = list((tmp_path / "tensorboard").glob("events.*"))
    assert events and b"train/att_cos" in events[0].read_bytes()

    # --mode=explain: Fig. 4 of Belharbi et al. by default (AU map, CAM, layer attention).
    config = _smoke()
    config.explain.videos = "0,1"
    trained = explain.load(config, str(tmp_path))
    assert [e.label for e in trained.explainers] == ["CAM", "Layer attention (layer=layer4_0)"]
    out = explain.explain_videos(trained, config, [0, 1])
    size = config.input.image_size
    assert out["au_maps"].shape == (2, config.input.clip_frames, size, size)
    index = explain.explain(config, str(tmp_path))
    assert all(Path(f).exists() for f in index["videos"][0]["files"])


def test_runs_saved_before_au_guidance_existed_resume_only_unguided(tmp_path):
    config = configs.defaults()
    saved = json.loads(config.to_json())
    del saved["au_guidance"]  # a workdir written before the option existed
    del saved["model"]["attention"]  # and before model.attention (a nested field)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    (tmp_path / "checkpoints" / "6").mkdir(parents=True)  # a step to resume
    experiment.check_same_experiment(config, tmp_path)  # defaults: the same experiment
    config.au_guidance.weight = 4.0
    with pytest.raises(UserError, match="differs in au_guidance.weight"):
        experiment.check_same_experiment(config, tmp_path)
