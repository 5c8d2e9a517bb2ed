"""Score table and clip samplers (fer_jax.sampling) against the thesis' definitions
(Ayral, Eqs. 3.5, 3.7–3.9, §3.2.4); the sampling map figure."""
import multiprocessing
import os
import pickle

import matplotlib.image
import numpy as np
import pytest
from scipy import stats

from fer_jax import sampling
from fer_jax.errors import UserError
from fer_jax.models import pooling
from fer_jax.sampling import (ReinforceSampler, ScoreTable, StochasticSoftmaxSampler,
                              UniformSampler, make_sampler)
from fer_jax.viz import plot_sampling_map

RAGGED = np.array([1, 7, 1, 40, 3, 12, 1, 25, 7, 60])  # N = 1 rows included


def _softmax(w, gamma):
    p = np.exp(gamma * (np.asarray(w, np.float64) - np.max(w)))
    return p / p.sum()


def _table(counts=RAGGED, seed=0, **kwargs) -> ScoreTable:
    counts = np.asarray(counts)
    init = np.random.default_rng(seed).normal(size=counts.sum()).astype(np.float32)
    return ScoreTable(counts, init=init, **kwargs)


def _assert_one_line(excinfo):
    message = str(excinfo.value)
    assert message and "\n" not in message


# --------------------------------------------------------------------------- table
def test_ragged_table_layout_rows_and_init():
    table = ScoreTable(RAGGED)
    assert table.num_videos == len(RAGGED)
    np.testing.assert_array_equal(table.offsets, np.concatenate([[0], np.cumsum(RAGGED)]))
    assert table.offsets.dtype == np.int64 and table.flat.dtype == np.float32
    assert [table.num_clips(v) for v in range(len(RAGGED))] == RAGGED.tolist()
    assert not table.flat.any() and table.published_epoch == -1
    table.row(3)[:] = np.arange(40)
    table.row(2)[0] = -5  # an N = 1 row
    np.testing.assert_array_equal(table.flat[9:49], np.arange(40))
    assert table.flat[table.offsets[2]] == -5 and table.row(2).shape == (1,)
    with pytest.raises(ValueError):
        table.offsets[0] = 1  # read-only

    rows = [np.full(n, v, np.float32) for v, n in enumerate(RAGGED)]
    from_rows = ScoreTable(RAGGED, init=rows)
    np.testing.assert_array_equal(from_rows.flat, np.repeat(np.arange(len(RAGGED)), RAGGED))
    from_flat = ScoreTable(RAGGED, init=from_rows.flat.copy())
    np.testing.assert_array_equal(from_flat.flat, from_rows.flat)
    assert table.path != from_rows.path
    if os.access("/dev/shm", os.W_OK):
        assert table.path.startswith("/dev/shm/")


def test_memory_per_clip_position_at_mean_100():
    counts = np.random.default_rng(0).integers(1, 200, 20_000)
    table = ScoreTable(counts)
    per_position = table.nbytes / counts.sum()
    assert abs(counts.mean() - 100) < 1 and per_position <= 4.1, per_position


def test_close_removes_the_file_and_copies_do_not(tmp_path):
    table = ScoreTable([3, 4], directory=str(tmp_path))
    assert os.path.dirname(table.path) == str(tmp_path) and os.path.exists(table.path)
    copy = pickle.loads(pickle.dumps(table))
    copy.close()
    del copy
    assert os.path.exists(table.path)
    table.close()
    assert not os.path.exists(table.path)
    table.close()  # idempotent
    orphan = ScoreTable([2]).path
    assert not os.path.exists(orphan)  # garbage-collected owner


def test_file_falls_back_to_the_temporary_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(sampling.table, "_SHARED_MEMORY", str(tmp_path / "missing"))
    monkeypatch.setattr(sampling.table.tempfile, "tempdir", str(tmp_path))
    assert os.path.dirname(ScoreTable([2, 3]).path) == str(tmp_path)
    with pytest.raises(UserError, match="cannot create a") as excinfo:
        ScoreTable([2], directory=str(tmp_path / "missing"))
    _assert_one_line(excinfo)


def test_publish_and_wait():
    table = ScoreTable([2])
    table.wait_published(-1)
    table.publish(4)
    table.wait_published(4)
    table.wait_published(2)
    with pytest.raises(TimeoutError, match="epoch 5 was not published"):
        table.wait_published(5, timeout_s=0.05)


# --------------------------------------------------------------------------- phases, draws
def test_phases_switch_at_the_configured_epochs():
    table = ScoreTable([5])
    softmax = StochasticSoftmaxSampler(table, warmup_epochs=2, exploration_epochs=3)
    assert [softmax.phase(e) for e in range(7)] == (
        ["warmup"] * 2 + ["exploration"] * 3 + ["exploitation"] * 2)
    skip = StochasticSoftmaxSampler(table, warmup_epochs=2, exploration_epochs=3,
                                    skip_exploration=True)
    assert [skip.phase(e) for e in range(4)] == ["warmup"] * 2 + ["exploitation"] * 2
    reinforce = ReinforceSampler(table, warmup_epochs=1)
    assert [reinforce.phase(e) for e in range(3)] == ["warmup"] + ["exploitation"] * 2
    assert {UniformSampler(table).phase(e) for e in range(50)} == {"warmup"}


def test_exploitation_draws_follow_softmax_of_the_row():
    w = np.array([0.0, 1.0, -1.0, 2.0, 0.5, 0.5, -3.0, 1.5], np.float32)
    gamma, epochs = 1.5, 12_000
    table = ScoreTable([len(w)], init=w)
    sampler = StochasticSoftmaxSampler(table, gamma=gamma, warmup_epochs=0,
                                       exploration_epochs=0, seed=3)
    starts = [sampler.sample(0, e) for e in range(epochs)]
    counts = np.bincount(starts, minlength=len(w))
    expected = epochs * _softmax(w, gamma)
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # A large γ is numerically stable and picks the maximum.
    greedy = StochasticSoftmaxSampler(table, gamma=1e4, warmup_epochs=0, exploration_epochs=0)
    assert {greedy.sample(0, e) for e in range(200)} == {3}


def test_warmup_draws_are_uniform_and_updates_are_ignored():
    table = _table()
    before = table.flat.copy()
    sampler = StochasticSoftmaxSampler(table, warmup_epochs=100_000, seed=1)
    starts = [sampler.sample(3, e) for e in range(12_000)]
    assert stats.chisquare(np.bincount(starts, minlength=40)).pvalue > 1e-3
    uniform = UniformSampler(table, seed=1)
    draws = [uniform.sample(9, e) for e in range(12_000)]
    assert stats.chisquare(np.bincount(draws, minlength=60)).pvalue > 1e-3
    sampler.begin_epoch(5)
    sampler.update(3, 10, 100.0)
    sampler.update_batch([0, 3, 5], [0, 39, 2], [1.0, 2.0, 3.0], 6)
    uniform.update(3, 10, 100.0, 7)
    np.testing.assert_array_equal(table.flat, before)


def test_eq_3_9_update_by_hand_with_clipping():
    table = ScoreTable([5, 10], init=[[0, 4, 2, -4, 8], np.zeros(10)])
    sampler = StochasticSoftmaxSampler(table, radius=4, warmup_epochs=0, exploration_epochs=0)
    sampler.update(0, 2, 8.0, epoch=0)  # weights (4 − |i|)/4 over i = −2..2, both ends clipped
    np.testing.assert_array_equal(table.row(0), [4, 7, 8, 5, 8])
    sampler.update(1, 1, 4.0, epoch=0)  # positions −2..4 clipped to 0..4
    np.testing.assert_array_equal(table.row(1), [3, 4, 3, 2, 1, 0, 0, 0, 0, 0])
    sampler.update(1, 8, -8.0, epoch=0)  # positions 5..11 clipped to 5..9
    np.testing.assert_array_equal(table.row(1), [3, 4, 3, 2, 1, -2, -4, -6, -8, -6])


def _nearest_slot_segments(n, slots):
    """Brute force: index of the slot nearest to each position (ties: the earlier position)."""
    distance = np.abs(np.arange(n)[:, None] - np.asarray(slots)[None, :])
    return np.asarray(slots)[np.argmin(distance, axis=1)]


@pytest.mark.parametrize("n", [41, 23, 3, 1])
def test_exploration_visits_distinct_spaced_slots_and_initialises_segments(n):
    num_videos, slots = 30, 5
    table = ScoreTable(np.full(num_videos, n))
    sampler = StochasticSoftmaxSampler(table, warmup_epochs=2, exploration_epochs=slots,
                                       seed=7)
    positions = [round((n - 1) * j / (slots - 1)) for j in range(slots)]
    orders = set()
    for v in range(num_videos):
        starts = [sampler.sample(v, e) for e in range(2, 2 + slots)]
        assert sorted(starts) == sorted(positions)
        orders.add(tuple(starts))
        for e, start in zip(range(2, 2 + slots), starts):
            sampler.update(v, start, float(start), e)  # score = the slot's start
        np.testing.assert_array_equal(table.row(v), _nearest_slot_segments(n, positions))
    if n > slots:
        assert len(orders) > 10  # per-video permutations
        with pytest.raises(UserError, match="was explored at start") as excinfo:
            sampler.update(0, sampler.sample(0, 2) + 1, 1.0, 2)
        _assert_one_line(excinfo)


def test_skip_exploration_exploits_a_label_initialised_table():
    labels = np.zeros(30, np.float32)
    labels[20:24] = 4.0  # e.g. clip scores from frame-level PSPI
    table = ScoreTable([30], init=[labels])
    sampler = StochasticSoftmaxSampler(table, gamma=2.0, warmup_epochs=1,
                                       exploration_epochs=5, skip_exploration=True)
    assert sampler.phase(1) == "exploitation"
    starts = np.array([sampler.sample(0, e) for e in range(1, 500)])
    assert np.mean((starts >= 20) & (starts < 24)) > 0.9


def test_reinforce_moves_probability_towards_rewarded_positions():
    table = ScoreTable([10, 4])
    sampler = ReinforceSampler(table, gamma=1.0, learning_rate=0.5, warmup_epochs=1, seed=2)
    sampler.update(0, 3, 2.0, epoch=1)  # first reward: the baseline starts there, no step
    assert not table.row(0).any() and sampler.baselines[0] == 2.0
    assert np.isnan(sampler.baselines[1])
    for epoch in range(2, 400):
        start = sampler.sample(0, epoch)
        sampler.update(0, start, 1.0 if start == 7 else 0.0, epoch)
    q = _softmax(table.row(0), 1.0)
    assert q[7] > 0.5 and q.argmax() == 7
    # One step by hand: θ ← θ + lr (r − b) γ (e_t − q).
    theta, baseline = table.row(0).astype(np.float64), float(sampler.baselines[0])
    sampler.update(0, 2, 3.0, epoch=401)
    expected = theta + 0.5 * (3.0 - baseline) * (np.eye(10)[2] - _softmax(theta, 1.0))
    np.testing.assert_allclose(table.row(0), expected, rtol=1e-5, atol=1e-6)
    assert sampler.baselines[0] == np.float32(0.9 * baseline + 0.1 * 3.0)


# --------------------------------------------------------------------------- determinism
def _samplers(table, seed=5):
    return [UniformSampler(table, seed=seed),
            StochasticSoftmaxSampler(table, gamma=2.0, warmup_epochs=1, exploration_epochs=3,
                                     radius=4, seed=seed),
            ReinforceSampler(table, gamma=0.5, warmup_epochs=1, seed=seed)]


def test_draws_are_deterministic_and_sample_many_equals_sample():
    table = _table()
    videos = np.arange(len(RAGGED))
    for sampler, again in zip(_samplers(table), _samplers(table)):
        for epoch in range(7):
            one = [sampler.sample(v, epoch) for v in videos]
            assert one == [again.sample(v, epoch) for v in videos]
            np.testing.assert_array_equal(sampler.sample_many(videos[::-1], epoch), one[::-1])
    other_seed = _samplers(table, seed=6)[1]
    assert [other_seed.sample(3, e) for e in range(10)] != [
        _samplers(table)[1].sample(3, e) for e in range(10)]


def test_update_batch_equals_update():
    for i in range(3):
        one, many = _samplers(_table(seed=i))[i], _samplers(_table(seed=i))[i]
        for epoch in range(8):
            videos = np.random.default_rng(epoch).permutation(len(RAGGED))[:6]
            starts = one.sample_many(videos, epoch)
            scores = np.random.default_rng(100 + epoch).normal(size=6).astype(np.float32)
            for v, start, score in zip(videos, starts, scores):
                one.update(v, start, score, epoch)
            many.update_batch(videos, starts, scores, epoch)
            for key, value in one.state_dict().items():
                np.testing.assert_array_equal(value, many.state_dict()[key])


def _child(sampler, videos, epochs, queue):
    """Spawned process: draws before and after the owner publishes new scores."""
    queue.put([sampler.sample(v, e) for v in videos for e in epochs])
    sampler.table.wait_published(99, timeout_s=60)
    queue.put((sampler.table.flat.tolist(), [sampler.sample(v, e) for v in videos
                                             for e in epochs]))


def test_pickled_sampler_in_a_spawned_process_draws_the_same_and_sees_writes():
    table = _table()
    sampler = StochasticSoftmaxSampler(table, gamma=1.0, warmup_epochs=1,
                                       exploration_epochs=2, seed=11)
    videos, epochs = range(len(RAGGED)), range(6)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(sampler, videos, epochs, queue))
    process.start()  # pickles the sampler; its table travels by path
    try:
        assert queue.get(timeout=60) == [sampler.sample(v, e) for v in videos for e in epochs]
        table.flat[:] = np.random.default_rng(9).normal(size=table.flat.size) * 3
        table.publish(99)
        scores, draws = queue.get(timeout=60)
    finally:
        process.join(timeout=60)
    np.testing.assert_array_equal(np.float32(scores), table.flat)
    assert draws == [sampler.sample(v, e) for v in videos for e in epochs]
    assert len(pickle.dumps(table)) < 200  # by path, not by value


def test_state_dict_round_trip_is_exact(tmp_path):
    for i in range(3):
        table = _table()
        sampler = _samplers(table)[i]
        for epoch in range(6):
            videos = np.arange(len(RAGGED))
            sampler.update_batch(videos, sampler.sample_many(videos, epoch),
                                 np.linspace(-2, 3, len(RAGGED)), epoch)
        sampler.begin_epoch(6)
        table.publish(6)
        np.savez(tmp_path / "state.npz", **sampler.state_dict())
        with np.load(tmp_path / "state.npz") as saved:
            state = dict(saved)
        restored = _samplers(_table(seed=1))[i]
        restored.load_state_dict(state)
        for key, value in restored.state_dict().items():
            np.testing.assert_array_equal(value, state[key])
        assert restored.table.published_epoch == 6
        assert [restored.sample(v, 7) for v in videos] == [sampler.sample(v, 7) for v in videos]
        restored.update(3, 0, 1.0)  # the begin_epoch epoch came back too


# --------------------------------------------------------------------------- errors, API
def test_bad_inputs_raise_one_line_errors():
    table = _table()
    sampler = StochasticSoftmaxSampler(table, warmup_epochs=0, exploration_epochs=0)
    cases = [
        lambda: ScoreTable([3, -1, 2]),
        lambda: ScoreTable([3, 0]),
        lambda: ScoreTable([2, 3], init=np.zeros(4)),
        lambda: ScoreTable([2, 3], init=[np.zeros(2), np.zeros(2)]),
        lambda: table.row(len(RAGGED)),
        lambda: sampler.sample(-1, 0),
        lambda: sampler.sample(len(RAGGED), 0),
        lambda: sampler.sample(0, -1),
        lambda: sampler.sample_many([0, 99], 0),
        lambda: sampler.update(1, 7, 1.0, 0),
        lambda: sampler.update(1, -1, 1.0, 0),
        lambda: sampler.update(1, 0, float("nan"), 0),
        lambda: sampler.update(1, 0, 1.0),  # no begin_epoch
        lambda: sampler.update_batch([1, 3], [0, 40], [1.0, 2.0], 0),
        lambda: sampler.update_batch([1, 1], [0, 0], [1.0, 2.0], 0),
        lambda: make_sampler("softmax", table),
        lambda: make_sampler("uniform", table, gamma=2.0),
        lambda: StochasticSoftmaxSampler(table, radius=0),
        lambda: sampler.load_state_dict(_table(counts=[3, 4]).state_dict() | {"epoch": -1}),
        lambda: sampler.load_state_dict({"scores": table.flat}),
    ]
    for case in cases:
        with pytest.raises(UserError) as excinfo:
            case()
        _assert_one_line(excinfo)
    with pytest.raises(UserError, match="unknown clip sampler 'softmax'; choose one of uniform"):
        make_sampler("softmax", table)


def test_make_sampler_and_softmax_pool_export():
    table = ScoreTable([4])
    assert isinstance(make_sampler("uniform", table, seed=1), UniformSampler)
    built = make_sampler("stochastic_softmax", table, gamma=2.0, radius=8)
    assert isinstance(built, StochasticSoftmaxSampler) and built.radius == 8
    assert isinstance(make_sampler("reinforce", table, learning_rate=0.2), ReinforceSampler)
    assert sampling.softmax_pool is pooling.softmax_pool
    assert set(sampling.__all__) >= {"ScoreTable", "make_sampler", "softmax_pool"}


# --------------------------------------------------------------------------- figure
def test_sampling_map_png(tmp_path):
    n, clip = 30, 8
    intensity = np.exp(-0.5 * ((np.arange(n + clip - 1) - 25) / 4.0) ** 2)
    table = ScoreTable([n])
    sampler = StochasticSoftmaxSampler(table, gamma=3.0, warmup_epochs=2, exploration_epochs=3,
                                       radius=clip)
    starts, phases, rows = [], [], []
    for epoch in range(15):
        start = sampler.sample(0, epoch)
        sampler.update(0, start, 4 * intensity[start:start + clip].mean(), epoch)
        starts.append(start)
        phases.append(sampler.phase(epoch))
        rows.append(table.row(0).copy())
    path = plot_sampling_map(tmp_path / "map.png", starts, phases, clip, table_rows=rows,
                             intensity=intensity, title="video 0")
    image = matplotlib.image.imread(path)
    assert path == tmp_path / "map.png" and path.stat().st_size > 20_000
    assert image.shape[0] > 400 and image.shape[1] > 600 and image[..., :3].std() > 0.1
    small = plot_sampling_map(str(tmp_path / "small.png"), starts, phases, clip)
    assert matplotlib.image.imread(small).shape[0] < image.shape[0]
    with pytest.raises(UserError, match="unknown phase"):
        plot_sampling_map(tmp_path / "bad.png", [0], ["burn-in"], clip)
