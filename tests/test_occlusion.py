"""Tests of occlusion by attribution rank (fer_jax.evaluation.occlusion): ranking, keep masks,
pixel masks, cell maps and the condition tables, against hand-worked values; and the
measurement steps of fer_jax.evaluation.suite end to end on a model whose evidence is known."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast import fast_jit

from fer_jax import attribution, configs
from fer_jax.errors import UserError
from fer_jax.evaluation import explainers, face_parts, measurements, occlusion, suite


# --------------------------------------------------------------------------- ranks
def test_ranks_of_distinct_values_are_exact():
    scores = jnp.asarray([[3.0, 1.0, 2.0, -5.0], [0.0, 10.0, 0.5, 7.0]])
    rank = np.asarray(occlusion.ranks(scores, jax.random.key(0)))
    np.testing.assert_array_equal(rank, [[0, 2, 1, 3], [3, 0, 2, 1]])
    assert rank.dtype == np.int32


def test_ranks_are_a_permutation_per_row():
    scores = jax.random.normal(jax.random.key(1), (3, 5, 16)).round(1)  # some ties
    rank = np.asarray(occlusion.ranks(scores, jax.random.key(2)))
    np.testing.assert_array_equal(np.sort(rank, axis=-1), np.broadcast_to(np.arange(16),
                                                                          rank.shape))


def test_ranks_break_ties_at_random_but_reproducibly():
    """64 equal values: the order comes from the key alone."""
    flat = jnp.zeros((1, 64))
    a = np.asarray(occlusion.ranks(flat, jax.random.key(0)))
    b = np.asarray(occlusion.ranks(flat, jax.random.key(1)))
    again = np.asarray(occlusion.ranks(flat, jax.random.key(0)))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a[0], np.arange(64))  # not top-left first


def test_ranks_break_ties_only_among_equal_values():
    scores = jnp.asarray([[1.0, 5.0, 1.0, 5.0, 3.0, 1.0]])
    for seed in range(5):
        rank = np.asarray(occlusion.ranks(scores, jax.random.key(seed)))[0]
        assert set(rank[[1, 3]]) == {0, 1}
        assert rank[4] == 2
        assert set(rank[[0, 2, 5]]) == {3, 4, 5}


# --------------------------------------------------------------------------- keep masks
# One video, 3 frames of 4 cells; ranks chosen by hand (0 = most important).
CELL_RANK = jnp.asarray([[[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]]])
FRAME_RANK = jnp.asarray([[2, 0, 1]])


def _hidden(num_cells, num_frames, most):
    keep = occlusion.occlusion_keep(CELL_RANK, FRAME_RANK, num_cells, num_frames, most)
    return ~np.asarray(keep)[0]


def test_occlusion_keep_nothing_hidden_at_zero():
    for most in (True, False):
        assert not _hidden(0, 0, most).any()


def test_occlusion_keep_most_important_cells_per_frame():
    hidden = _hidden(1, 0, True)
    np.testing.assert_array_equal(hidden, [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    hidden = _hidden(2, 0, True)
    np.testing.assert_array_equal(hidden, [[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    assert (hidden.sum(axis=1) == 2).all()


def test_occlusion_keep_least_important_cells_per_frame():
    hidden = _hidden(1, 0, False)
    np.testing.assert_array_equal(hidden, [[0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]])
    hidden = _hidden(3, 0, False)
    np.testing.assert_array_equal(hidden, [[0, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 1]])


def test_occlusion_keep_frames():
    """Frame 1 has frame rank 0 (most important), frame 0 rank 2 (least)."""
    np.testing.assert_array_equal(_hidden(0, 1, True).all(axis=1), [False, True, False])
    np.testing.assert_array_equal(_hidden(0, 1, False).all(axis=1), [True, False, False])
    np.testing.assert_array_equal(_hidden(0, 2, True).all(axis=1), [False, True, True])
    # cells and frames together: a union
    hidden = _hidden(1, 1, True)
    np.testing.assert_array_equal(hidden, [[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 0]])


def test_occlusion_keep_traced_condition():
    """The counts and the most / least flag may be traced (they come from a lax.map)."""
    keep = fast_jit(occlusion.occlusion_keep)(CELL_RANK, FRAME_RANK, 2, 1, False)
    np.testing.assert_array_equal(~np.asarray(keep)[0], _hidden(2, 1, False))


def test_deletion_and_insertion_keep():
    clip_rank = jnp.asarray([[4, 0, 5, 2, 1, 3], [0, 1, 2, 3, 4, 5]])
    for count in range(7):
        deleted = np.asarray(occlusion.deletion_keep(clip_rank, count, False))
        inserted = np.asarray(occlusion.deletion_keep(clip_rank, count, True))
        np.testing.assert_array_equal((~deleted).sum(axis=1), [count, count])
        np.testing.assert_array_equal(inserted, ~deleted)
        np.testing.assert_array_equal(inserted, np.asarray(clip_rank) < count)
    np.testing.assert_array_equal(~np.asarray(occlusion.deletion_keep(clip_rank, 2, False))[0],
                                  [0, 1, 0, 0, 1, 0])


# --------------------------------------------------------------------------- pixels
def test_to_pixels_divisible():
    keep = np.zeros((1, 1, 4, 4), bool)
    keep[0, 0, 1, 2] = True
    pixels = np.asarray(occlusion.to_pixels(jnp.asarray(keep), 32, 32))[0, 0]
    expected = np.zeros((32, 32), bool)
    expected[8:16, 16:24] = True
    np.testing.assert_array_equal(pixels, expected)


def test_to_pixels_not_divisible():
    """30 px over 4 cells: pixel i lies in cell ⌊4i/30⌋, so the cells are rows 0-7, 8-14,
    15-22, 23-29 (8, 7, 8, 7 pixels)."""
    keep = jnp.asarray(np.eye(4, dtype=bool)[None, None])  # cell (i, i) kept
    pixels = np.asarray(occlusion.to_pixels(keep, 30, 30))[0, 0]
    assert pixels.shape == (30, 30)
    bounds = [(0, 8), (8, 15), (15, 23), (23, 30)]
    expected = np.zeros((30, 30), bool)
    for a, b in bounds:
        expected[a:b, a:b] = True
    np.testing.assert_array_equal(pixels, expected)
    # different heights and widths
    pixels = np.asarray(occlusion.to_pixels(keep, 30, 32))[0, 0]
    assert pixels.shape == (30, 32)
    assert pixels[0:8, 0:8].all() and not pixels[0:8, 8:].any()
    assert pixels[23:30, 24:32].all() and not pixels[23:30, :24].any()


def test_occlude_uint8_fills_in_pixel_units():
    video = np.full((1, 2, 32, 32, 3), 200, np.uint8)
    keep = np.ones((1, 2, 4, 4), bool)
    keep[0, 1, 0, 0] = False
    for fill, value in [(0.0, 0), (1.0, 255), (0.2, 51)]:
        out = np.array(occlusion.occlude(jnp.asarray(video), jnp.asarray(keep), fill))
        assert out.dtype == np.uint8
        assert (out[0, 1, :8, :8] == value).all()
        out[0, 1, :8, :8] = 200
        assert (out == 200).all()  # nothing else changed
    grey = np.asarray(occlusion.occlude(jnp.asarray(video), jnp.asarray(keep), 0.5))
    assert abs(int(grey[0, 1, 0, 0, 0]) - 127.5) <= 0.5


def test_occlude_float_video_not_divisible():
    video = jnp.full((1, 1, 30, 30, 1), 0.9, jnp.float32)
    keep = np.ones((1, 1, 4, 4), bool)
    keep[0, 0, 3, 1] = False  # rows 23-29, columns 8-14
    out = np.asarray(occlusion.occlude(video, jnp.asarray(keep), 0.25))[0, 0, ..., 0]
    assert out.dtype == np.float32
    expected = np.full((30, 30), 0.9, np.float32)
    expected[23:30, 8:15] = 0.25
    np.testing.assert_array_equal(out, expected)


# --------------------------------------------------------------------------- cell maps
def test_match_frames_nearest():
    """T' = 2 → T = 8: frame t uses map ⌊2t/8⌋, each map repeated 4 times."""
    maps = jnp.arange(2.0).reshape(1, 2, 1, 1) * jnp.ones((1, 2, 3, 3))
    out = np.asarray(occlusion.match_frames(maps, 8))
    assert out.shape == (1, 8, 3, 3)
    np.testing.assert_array_equal(out[0, :, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1])
    # T' = 3 → T = 4: ⌊3t/4⌋ = 0, 0, 1, 2
    maps = jnp.arange(3.0).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(np.asarray(occlusion.match_frames(maps, 4))[0, :, 0, 0],
                                  [0, 0, 1, 2])
    same = jnp.ones((2, 4, 2, 2))
    assert occlusion.match_frames(same, 4) is same


def test_match_frames_refuses_maps_without_frames():
    with pytest.raises(UserError, match=r"\[B, T, h, w\]"):
        occlusion.match_frames(jnp.zeros((2, 8, 8)), 4)
    with pytest.raises(UserError):
        occlusion.to_cells(jnp.zeros((2, 8, 8)), 4, 4)


def test_to_cells_averages_each_cell():
    """8×8 → 4×4: every cell is the mean of its 2×2 block; so the map's mean is kept."""
    maps = jax.random.uniform(jax.random.key(0), (2, 3, 8, 8))
    cells = np.asarray(occlusion.to_cells(maps, 3, 4))
    assert cells.shape == (2, 3, 4, 4) and cells.dtype == np.float32
    blocks = np.asarray(maps).reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(cells, blocks, atol=1e-6)
    np.testing.assert_allclose(cells.mean(axis=(2, 3)), np.asarray(maps).mean(axis=(2, 3)),
                               atol=1e-6)


def test_to_cells_keeps_evidence_in_its_cell():
    """A map that is 1 on the top-left 8×8 cell of 32×32 and 0 elsewhere gives exactly that
    cell (no leakage into the neighbours), and frames are repeated (T' = 1 → T = 2)."""
    maps = np.zeros((1, 1, 32, 32), np.float32)
    maps[0, 0, :8, :8] = 1
    cells = np.asarray(occlusion.to_cells(jnp.asarray(maps), 2, 4))
    expected = np.zeros((1, 2, 4, 4), np.float32)
    expected[:, :, 0, 0] = 1
    np.testing.assert_allclose(cells, expected, atol=1e-6)


def test_to_cells_not_divisible_keeps_the_mean():
    """30 px into 4 cells of 7.5 px: pixel 7 is shared half / half between cells 0 and 1."""
    maps = np.zeros((1, 1, 30, 30), np.float32)
    maps[0, 0, 7, :] = 1.0
    cells = np.asarray(occlusion.to_cells(jnp.asarray(maps), 1, 4))[0, 0]
    np.testing.assert_allclose(cells[:, 0], [0.5 / 7.5, 0.5 / 7.5, 0, 0], atol=1e-6)
    maps = np.asarray(jax.random.uniform(jax.random.key(3), (1, 2, 30, 30)))
    cells = np.asarray(occlusion.to_cells(jnp.asarray(maps), 2, 4))
    np.testing.assert_allclose(cells.mean(axis=(2, 3)), maps.mean(axis=(2, 3)), atol=1e-6)


def test_to_cells_same_grid_and_coarse_maps():
    maps = jax.random.normal(jax.random.key(0), (1, 2, 4, 4))
    np.testing.assert_array_equal(np.asarray(occlusion.to_cells(maps, 2, 4)), np.asarray(maps))
    coarse = jnp.full((1, 1, 2, 2), 3.0)  # a coarse CAM, interpolated up
    np.testing.assert_allclose(np.asarray(occlusion.to_cells(coarse, 2, 8)), 3.0, atol=1e-6)


def test_to_cells_under_jit():
    maps = jax.random.uniform(jax.random.key(0), (2, 2, 8, 8))
    fn = fast_jit(occlusion.to_cells, static_argnums=(1, 2))
    np.testing.assert_allclose(np.asarray(fn(maps, 4, 4)),
                               np.asarray(occlusion.to_cells(maps, 4, 4)), atol=1e-6)


# --------------------------------------------------------------------------- conditions
def test_grid_conditions_order_and_counts():
    """Fractions 0 … 0.5 of 16 cells round to 0, 2 (1.6), 3 (3.2), 5 (4.8), 6 (6.4), 8."""
    fractions, frames = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), (0, 1, 2, 3, 4)
    rows = occlusion.grid_conditions(fractions, frames, 16, 8)
    assert rows.shape == (2 * 6 * 5, 3) and rows.dtype == np.int32
    table = rows.reshape(2, 6, 5, 3)
    np.testing.assert_array_equal(table[:, :, 0, 0], [[0, 2, 3, 5, 6, 8]] * 2)
    np.testing.assert_array_equal(table[0, 0, :, 1], frames)
    assert (table[0, ..., 2] == 1).all() and (table[1, ..., 2] == 0).all()
    # every (most, cells, frames) combination exactly once
    assert len({tuple(r) for r in rows}) == len(rows)
    np.testing.assert_array_equal(rows[:3], [[0, 0, 1], [0, 1, 1], [0, 2, 1]])
    np.testing.assert_array_equal(rows[5], [2, 0, 1])
    np.testing.assert_array_equal(rows[30], [0, 0, 0])


@pytest.mark.parametrize("fractions,frames", [
    ((0.0, 1.5), (0,)), ((-0.1,), (0,)), (((0.1, 0.2),), (0,)),
    ((0.1,), (0, 9)), ((0.1,), (-1,))])
def test_grid_conditions_refuse_bad_values(fractions, frames):
    with pytest.raises(UserError, match="occlusion"):
        occlusion.grid_conditions(fractions, frames, 16, 8)


def test_deletion_conditions():
    rows = occlusion.deletion_conditions(4, 32)
    np.testing.assert_array_equal(rows[:, 0], [0, 8, 16, 24, 32] * 2)
    np.testing.assert_array_equal(rows[:, 1], [0] * 5 + [1] * 5)
    rows = occlusion.deletion_conditions(3, 10)  # 0, 3.33, 6.67, 10 rounded
    np.testing.assert_array_equal(rows[:4, 0], [0, 3, 7, 10])
    with pytest.raises(UserError, match="at least 1"):
        occlusion.deletion_conditions(0, 10)


def test_preview_keep():
    cells = np.asarray(jax.random.uniform(jax.random.key(0), (2, 3, 4, 4)))
    keep = occlusion.preview_keep(cells, 0.5)
    assert keep.shape == (2, 2, 3, 4, 4) and keep.dtype == bool
    hidden = ~keep
    assert (hidden.sum(axis=(3, 4)) == 8).all()
    assert not (hidden[0] & hidden[1]).any()  # most and least important are disjoint
    # the hidden cells of 'most' are the 8 largest of each frame
    threshold = np.sort(cells.reshape(2, 3, 16), axis=-1)[..., 8]
    np.testing.assert_array_equal(hidden[0], cells >= threshold[..., None, None])
    small = occlusion.preview_keep(cells, 0.1)  # 1.6 → 2 cells
    assert ((~small).sum(axis=(3, 4)) == 2).all()


# --------------------------------------------------------------------------- end to end
# A hand-made model whose answer is known: the logits depend on the top-left 8×8 cell of the
# 32×32 frame only, v = mean of the normalised cell over frames and channels, logits
# 10·(v, −v): a bright cell (> 0.5) is class 0, a dark one class 1. Occluded pixels are grey
# (fill 0.5 → uint8 127, normalised −0.008 ≈ 0): hiding the cell makes every video class 1,
# i.e. accuracy 0.5 (chance) on the balanced batch and a probability of the clean prediction
# of σ(±20·0.008), 0.5 on average; hiding one of the two frames halves v but keeps its sign.
# Saliency is |∂logit/∂x| = 10 / (2·64·3) on the cell and exactly 0 elsewhere.
T = 2
SETTINGS = suite.Settings(grid=4, fractions=(0.0, 0.1, 0.5), frame_counts=(0, 1),
                          deletion_steps=4, fill=0.5)
CLASSES = ["bright", "dark"]


class OneCell(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        v = x[:, :, :8, :8, :].mean(axis=(1, 2, 3, 4))
        return 10.0 * jnp.stack([v, -v], axis=-1)


def _config():
    config = configs.defaults()
    config.dataset.num_classes = 2
    config.input.clip_frames = T
    config.input.image_size = 32
    return config


def _batch():
    """4 videos (bright, dark, bright, dark) plus a padded fifth (mask False) that would be
    misclassified; noise everywhere but in the cell. AU regions: the cell (video 3: none,
    neutral); intensities 0.2 then 1 (only frame 1 is expressive)."""
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (5, T, 32, 32, 3), dtype=np.uint8)
    labels = np.asarray([0, 1, 0, 1, 1], np.int32)
    bright = np.asarray([True, False, True, False, True])
    cell = np.where(bright[:, None, None, None, None],
                    rng.integers(200, 256, (5, T, 8, 8, 3)), rng.integers(0, 56, (5, T, 8, 8, 3)))
    video[:, :, :8, :8] = cell
    au = np.zeros((5, T, 32, 32), np.float32)
    au[:, :, :8, :8] = 1.0
    au[3] = 0.0
    return {"video": jnp.asarray(video), "label": jnp.asarray(labels),
            "mask": jnp.asarray([True, True, True, True, False]),
            "au_masks": jnp.asarray(au), "intensity": jnp.asarray([[0.2, 1.0]] * 5),
            "landmarks": jnp.asarray(_landmarks())}


def _landmarks():
    """iBUG-68 points whose eyes band is rows [0, 8) (brows y −4, eyes y 4, point 29 y 12),
    nose band [8, 16), mouth band [16, 26), all across x 0…31: the eyes hide the cell."""
    points = np.full((68, 2), 16.0, np.float32)
    points[0:17, 0] = np.linspace(0, 31, 17)
    points[0:17, 1] = 20.0
    points[8, 1] = 30.0
    points[17:27, 1] = -4.0
    points[27:31, 1] = 12.0
    points[31:36, 1] = 14.0
    points[36:48, 1] = 4.0
    points[48:55, 1] = 18.0
    points[55:68, 1] = 22.0
    return np.broadcast_to(points, (5, T, 68, 2))


def _negative_saliency(model, variables, x, target=None):
    """A deliberately wrong explainer: the cell that matters ranks last."""
    return -attribution.saliency(model, variables, x, target)


def _measure(explainer, truth):
    context = suite.context(_config(), CLASSES, SETTINGS)
    chosen = measurements.applicable(measurements.select(""),
                                     ("au_masks", "intensity") if truth else ())
    step = fast_jit(functools.partial(
        suite.method_step, model=OneCell(), config=_config(), explainer=explainer,
        chosen=chosen, context=context))
    batch = _batch()
    if not truth:
        batch = {k: batch[k] for k in ("video", "label", "mask")}
    sums = step(suite.zero(chosen, context), {}, batch, jax.random.key(0))
    host = jax.tree.map(np.asarray, jax.device_get(sums))
    assert float(host["videos"]) == 4
    return suite.summarise_method(host, chosen, context)


@pytest.fixture(scope="module")
def saliency_result():
    return _measure(explainers.parse("saliency"), truth=True)


def test_suite_good_explainer_separates_evidence(saliency_result):
    result = saliency_result
    occluded = result["occlusion"]
    # rows: fractions 0, 0.1 (2 cells), 0.5 (8 cells); columns: 0, 1 frame
    np.testing.assert_allclose(occluded["most"], [[1, 1], [0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(occluded["least"], [[1, 1], [1, 1], [1, 1]])
    np.testing.assert_allclose(occluded["difference"], [[0, 0], [0.5, 0.5], [0.5, 0.5]])
    assert occluded["mean_difference"] == pytest.approx(0.4)
    # counts 0, 8, 16, 24, 32 of the 32 cells; the cell (2 of them) is among the first 8
    np.testing.assert_allclose(result["deletion"]["curve"], [1, 0.5, 0.5, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(result["insertion"]["curve"], [0.5, 1, 1, 1, 1], atol=1e-6)
    assert result["deletion"]["auc"] == pytest.approx(0.25 * (0.75 + 1.5), abs=1e-6)
    assert result["insertion"]["auc"] == pytest.approx(0.25 * (0.75 + 3), abs=1e-6)
    # trends: min-max maps are 1 on the cell, 0 elsewhere; two correct videos per class
    trends = result["trends"]
    assert trends["videos"] == [2, 2]
    expected = np.zeros((2, T, 4, 4))
    expected[:, :, 0, 0] = 1
    np.testing.assert_allclose(trends["maps"], expected, atol=1e-6)
    np.testing.assert_allclose(trends["frame_mean"], 1 / 16, atol=1e-6)
    np.testing.assert_allclose(trends["frame_std"], 0, atol=1e-4)


def test_suite_ground_truth_of_the_good_explainer(saliency_result):
    """The map is the AU region itself: cosine 1, every maximum and all the energy inside,
    region share 64 / 1024; video 3 is neutral (not counted); the map's mass is the same on
    both frames, so the temporal correlation is undefined for every video."""
    result = saliency_result
    for name in ("au_cosine", "pointing_game", "energy_inside"):
        assert result[name]["per_class"] == pytest.approx({"bright": 1.0, "dark": 1.0}), name
        assert result[name]["videos"] == 3
    assert result["energy_chance"]["mean"] == pytest.approx(1 / 16)
    assert result["temporal_correlation"]["videos"] == 0
    assert result["temporal_correlation"]["mean"] is None


def test_suite_bad_explainer_scores_negative():
    result = _measure(_negative_saliency, truth=False)
    occluded = result["occlusion"]
    np.testing.assert_allclose(occluded["most"], [[1, 1], [1, 1], [1, 1]])
    np.testing.assert_allclose(occluded["least"], [[1, 1], [0.5, 0.5], [0.5, 0.5]])
    assert occluded["mean_difference"] == pytest.approx(-0.4)
    np.testing.assert_allclose(result["deletion"]["curve"], [1, 1, 1, 1, 0.5], atol=1e-6)
    np.testing.assert_allclose(result["insertion"]["curve"], [0.5, 0.5, 0.5, 0.5, 1],
                               atol=1e-6)
    assert "au_cosine" not in result


def test_suite_facial_part_confusions():
    """K + 1 = 8 confusion matrices (none, then face_parts.COMBINATIONS); rows are labels.
    Every combination with the eyes hides the cell (all videos → class 1), the others don't."""
    step = fast_jit(functools.partial(suite.base_step, model=OneCell(), config=_config(),
                                      fill=0.5, parts=True))
    sums = {"parts": jnp.zeros((8, 2, 2))}
    sums, probabilities = step(sums, {}, _batch())
    parts = np.asarray(sums["parts"])
    assert parts.shape == (len(face_parts.COMBINATIONS) + 1, 2, 2)
    np.testing.assert_array_equal(parts.sum(axis=2), [[2, 2]] * 8)  # label counts
    clean = [[2, 0], [0, 2]]
    np.testing.assert_array_equal(parts[0], clean)
    for index, combination in enumerate(face_parts.COMBINATIONS, start=1):
        expected = [[0, 2], [0, 2]] if "eyes" in combination else clean
        np.testing.assert_array_equal(parts[index], expected, err_msg=str(combination))
    probabilities = np.asarray(probabilities)
    assert probabilities.shape == (5, 2)
    np.testing.assert_array_equal(probabilities.argmax(1), [0, 1, 0, 1, 0])
    _, plain = fast_jit(functools.partial(suite.base_step, model=OneCell(), config=_config(),
                                          fill=0.5, parts=False))({}, {}, _batch())
    np.testing.assert_allclose(np.asarray(plain), probabilities, atol=1e-6)
