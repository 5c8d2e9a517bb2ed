"""``sampler.scoring``: the score-table sampler scores the clean clip (default, the thesis'
§3.3.2.6) or the augmented training clip (the training forward pass's own logits)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import config_files
from fast import fast_jit
from fer_jax import checkpointing, clip_sampling, experiment, train
from fer_jax.clip_sampling import ClipSampling
from fer_jax.data import pipeline, sources
from fer_jax.errors import UserError


def _config(scoring=None):
    config = config_files.load("sampler_synthetic", "smoke")
    if scoring is not None:
        config.sampler.scoring = scoring
    return config


def test_spearman_of_a_table_row_is_scipys():
    """The table-vs-intensity correlation's ρ (average ranks for ties) equals scipy's."""
    from scipy import stats
    rng = np.random.default_rng(0)
    for n in (3, 7, 40):
        a, b = rng.normal(size=n), rng.normal(size=n)
        tied = np.round(b * 2) / 2  # many ties, as in a clip-intensity window
        for x, y in ((a, b), (a, tied), (tied, np.round(a))):
            assert clip_sampling.spearman(x, y) == pytest.approx(
                stats.spearmanr(x, y).statistic, abs=1e-12)
    np.testing.assert_array_equal(clip_sampling.average_ranks(np.array([3.0, 1, 3, 2])),
                                  [3.5, 1, 3.5, 2])
    assert np.isnan(clip_sampling.spearman(np.ones(4), np.arange(4.0)))


def test_default_is_clean():
    assert _config().sampler.scoring == "clean"


def test_the_step_returns_clean_or_training_logits_of_the_pre_update_parameters(tmp_path):
    config = _config()
    run = experiment.Run(config, str(tmp_path))
    source = sources.build(config, "train")
    batch = next(iter(pipeline.train_dataset(source, config, 1, seed=0, clean=True)))
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    assert not np.array_equal(batch["video"], batch["clean_video"])  # augmented differs
    tx, _ = train.make_optimizer(config, steps_per_epoch=6)
    params, model_state = run.init_variables(jax.random.PRNGKey(0))
    state = train.TrainState(jnp.int32(3), params, model_state, tx.init(params),
                             jax.random.PRNGKey(1))
    label = batch["label"][:, None]

    def step(scoring, batch):
        fn = fast_jit(functools.partial(train.train_step, model=run.model, tx=tx,
                                        config=config, scoring=scoring))
        new_state, _, scores = fn(state, batch, train.zero_train_sums())
        assert int(new_state.step) == 4
        return scores

    augmented = step("augmented", {k: v for k, v in batch.items() if k != "clean_video"})
    logits, _ = fast_jit(lambda x: train.apply_model(
        run.model, params, model_state, x, train=True,
        rng=jax.random.fold_in(state.rng, state.step)))(train.normalise(batch["video"], config))
    assert augmented.dtype == jnp.float32 and augmented.shape == (8,)
    np.testing.assert_allclose(augmented, jnp.take_along_axis(logits, label, 1)[:, 0],
                               rtol=1e-5, atol=1e-6)

    clean = step("clean", batch)
    eval_logits, _ = fast_jit(lambda x: train.apply_model(
        run.model, params, model_state, x, train=False))(
        train.normalise(batch["clean_video"], config))
    np.testing.assert_allclose(clean, jnp.take_along_axis(eval_logits, label, 1)[:, 0],
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(clean, augmented)


@pytest.mark.parametrize("scoring", ["clean", "augmented"])
def test_the_pipeline_builds_clean_clips_only_for_clean_scoring(scoring, tmp_path):
    config = _config(scoring)
    source = sources.build(config, "train")
    sampling = ClipSampling(config, source, tmp_path)
    try:
        assert sampling.scoring == scoring and sampling.needs_scores
        assert sampling.needs_clean_video == (scoring == "clean")
        sampling.start(0)
        batch = next(iter(pipeline.train_dataset(source, config, 1, seed=0,
                                                 selector=sampling.selector,
                                                 clean=sampling.needs_clean_video)))
        assert ("clean_video" in batch) == (scoring == "clean")
    finally:
        sampling.close()
    config.sampler.name = "uniform"
    uniform = ClipSampling(config, source, tmp_path)
    assert not uniform.needs_scores and not uniform.needs_clean_video
    uniform.close()


def test_an_unknown_scoring_is_a_one_line_error(tmp_path):
    config = _config("noisy")
    with pytest.raises(UserError) as error:
        ClipSampling(config, sources.build(config, "train"), tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "'clean'" in message and "'augmented'" in message and "'noisy'" in message


@pytest.mark.slow
def test_augmented_scoring_trains_and_moves_the_table(tmp_path, monkeypatch):
    config = _config("augmented")
    config.train.epochs = 2  # warm-up epoch, then an exploration epoch that fills the table
    flags = []
    original = pipeline.train_dataset

    def recording(*args, **kwargs):
        flags.append(kwargs.get("clean"))
        return original(*args, **kwargs)

    monkeypatch.setattr(train.pipeline, "train_dataset", recording)
    result = train.train_and_evaluate(config, str(tmp_path))
    assert flags == [False]
    assert result["sampler"]["name"] == "stochastic_softmax"
    manager = checkpointing.Checkpoints(tmp_path, 2)
    step = manager.latest.latest_step()
    sampler = manager.latest.restore(step, args=ocp.args.Composite(
        sampler=ocp.args.StandardRestore())).sampler
    tables = [np.asarray(v) for v in sampler.values() if np.asarray(v).dtype == np.float32]
    assert tables and any(np.ptp(v) > 0 and np.isfinite(v).all() for v in tables)
