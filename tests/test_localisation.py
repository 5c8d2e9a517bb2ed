"""Tests of the ground-truth measurements (fer_jax.evaluation.localisation) on hand-built
maps: B = 2 videos, T = 3 frames, 8×8 pixels; the AU region is the top-left 4×4 quarter."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast import fast_jit

from fer_jax.evaluation import localisation

B, T, S = 2, 3, 8


def _region():
    """AU heatmaps [B, T, 8, 8]: 1 on the top-left 4×4 quarter (a quarter of the frame)."""
    au = np.zeros((B, T, S, S), np.float32)
    au[:, :, :4, :4] = 1.0
    return au


def _inside_only():
    maps = np.zeros((B, T, S, S), np.float32)
    maps[:, :, 1:3, 1:3] = 2.0
    return maps


def _call(fn, *args, **kwargs):
    return tuple(np.asarray(v) for v in fn(*map(jnp.asarray, args), **kwargs))


# --------------------------------------------------------------------------- au_cosine
def test_au_cosine_of_the_mask_itself_is_one():
    au = _region()
    cosine, valid = _call(localisation.au_cosine, au, au)
    np.testing.assert_allclose(cosine, 1.0, atol=1e-6)
    assert valid.all()


def test_au_cosine_orthogonal_support_is_zero():
    au = _region()
    maps = np.zeros_like(au)
    maps[:, :, 5:, 5:] = 1.0  # bottom-right, disjoint from the region
    cosine, _ = _call(localisation.au_cosine, maps, au)
    np.testing.assert_allclose(cosine, 0.0, atol=1e-6)


def test_raw_au_cosine_scale_invariant_and_hand_value():
    """The raw cosine (the training loss's): a constant map against a region of k = 16 of 64
    pixels per frame: cos = k·T / (√(64·T) · √(k·T)) = √(16/64) = 0.5, whatever the map's
    scale or size (a constant 4×4 map is upsampled to a constant 8×8 one)."""
    au = _region()
    for maps in (np.ones((B, T, S, S)), 7.0 * np.ones((B, T, S, S)), 0.1 * np.ones((B, T, 4, 4))):
        cosine, _ = _call(localisation.au_cosine, maps.astype(np.float32), au, normalise="raw")
        np.testing.assert_allclose(cosine, 0.5, atol=1e-5)
    maps = np.asarray(jax.random.uniform(jax.random.key(0), (B, T, S, S)))
    for how in localisation.NORMALISATIONS:
        np.testing.assert_allclose(_call(localisation.au_cosine, 3.0 * maps, au, normalise=how)[0],
                                   _call(localisation.au_cosine, maps, au, normalise=how)[0],
                                   atol=1e-6, err_msg=how)


def test_constant_map_scores_zero_once_normalised():
    """Min-max normalisation (the metric's default) turns a constant map into zeros: it says
    nothing about where, so it scores 0 (not the raw 0.5 above) and no NaN."""
    au = _region()
    for value in (0.0, 1.0, -3.0):
        cosine, valid = _call(localisation.au_cosine, np.full((B, T, 4, 4), value, np.float32),
                              au)
        np.testing.assert_array_equal(cosine, 0.0)
        assert valid.all()


def _minmax_cosine(maps: np.ndarray, au: np.ndarray) -> np.ndarray:
    """Belharbi et al.'s CAM-COS in numpy: per video, min-max over the whole clip, then the
    cosine with ``A`` (maps already at ``A``'s size)."""
    out = []
    for m, a in zip(maps.astype(np.float64), au.astype(np.float64)):
        m = (m - m.min()) / (m.max() - m.min())
        out.append((m * a).sum() / (np.linalg.norm(m) * np.linalg.norm(a)))
    return np.asarray(out)


def _toy_cam() -> np.ndarray:
    """A CAM whose peak lies on the AU region but which has a large negative background that
    differs between frames (so per-frame and per-clip normalisation differ)."""
    rng = np.random.default_rng(0)
    maps = rng.normal(-2.0, 0.3, (B, T, S, S)).astype(np.float32)
    maps[:, :, :4, :4] += 2.5
    maps[:, 1] -= 1.0
    return maps


def test_au_cosine_min_max_normalises_the_map_over_the_clip():
    au = _region()
    maps = _toy_cam()
    normalised, _ = _call(localisation.au_cosine, maps, au)
    raw, _ = _call(localisation.au_cosine, maps, au, normalise="raw")
    np.testing.assert_allclose(normalised, _minmax_cosine(maps, au), rtol=1e-5)
    assert (normalised > 0.6).all() and (raw < 0.3).all(), (normalised, raw)
    # 'minmax' is the default, and a coarser map is upsampled to A before it is normalised.
    coarse = maps[:, :, ::2, ::2]
    up = np.asarray(localisation.to_pixels(jnp.asarray(coarse), jnp.asarray(au)))
    np.testing.assert_allclose(_call(localisation.au_cosine, coarse, au, normalise="minmax")[0],
                               _minmax_cosine(up, au), rtol=1e-5)


def test_normalised_cosine_is_invariant_to_affine_rescaling_the_raw_one_is_not():
    au = _region()
    maps = np.asarray(jax.random.normal(jax.random.key(1), (B, T, S, S)))
    base = _call(localisation.au_cosine, maps, au)[0]
    raw = _call(localisation.au_cosine, maps, au, normalise="raw")[0]
    for a, b in ((2.0, 0.0), (0.5, 3.0), (10.0, -7.0)):
        rescaled = (a * maps + b).astype(np.float32)
        np.testing.assert_allclose(_call(localisation.au_cosine, rescaled, au)[0], base,
                                   atol=1e-5)
        if b:
            moved = _call(localisation.au_cosine, rescaled, au, normalise="raw")[0]
            assert np.abs(moved - raw).max() > 0.1, (a, b, moved, raw)


def test_a_map_with_negative_values_is_shifted():
    """'minmax' maps a negative-valued map to [0, 1]; 'shift' (the authors' rule for layer
    attention) subtracts the minimum only where the map has negative values."""
    au = _region()
    negative = _toy_cam()  # all values < 0.6, most negative
    shifted = np.asarray(localisation.normalise_maps(jnp.asarray(negative), "shift"))
    np.testing.assert_allclose(shifted, negative - negative.reshape(B, -1).min(1)[:, None, None,
                                                                                  None],
                               rtol=1e-6)
    assert shifted.min() == 0.0
    scaled = np.asarray(localisation.normalise_maps(jnp.asarray(negative), "minmax"))
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    # A shift and a min-max normalisation differ only in scale: the same cosine.
    np.testing.assert_allclose(_call(localisation.au_cosine, negative, au, normalise="shift")[0],
                               _call(localisation.au_cosine, negative, au)[0], rtol=1e-5)
    # A non-negative map is left as it is by 'shift': its raw cosine.
    positive = negative - negative.min() + 0.5
    np.testing.assert_array_equal(
        np.asarray(localisation.normalise_maps(jnp.asarray(positive), "shift")), positive)
    np.testing.assert_allclose(_call(localisation.au_cosine, positive, au, normalise="shift")[0],
                               _call(localisation.au_cosine, positive, au, normalise="raw")[0],
                               rtol=1e-6)


def test_unknown_normalisation_is_refused():
    with pytest.raises(ValueError, match="normalise must be one of minmax, shift, raw"):
        localisation.au_cosine(jnp.ones((B, T, S, S)), jnp.asarray(_region()), normalise="l2")


def test_au_cosine_neutral_video_is_invalid():
    au = _region()
    au[1] = 0.0  # neutral: no AU anywhere
    _, valid = _call(localisation.au_cosine, np.ones_like(au), au)
    np.testing.assert_array_equal(valid, [True, False])


# --------------------------------------------------------------------------- energy_inside
def test_energy_inside_only_inside_is_one():
    share, chance, valid = _call(localisation.energy_inside, _inside_only(), _region(),
                                 np.ones((B, T)))
    np.testing.assert_allclose(share, 1.0, atol=1e-6)
    np.testing.assert_allclose(chance, 0.25, atol=1e-6)
    assert valid.all()


def test_energy_inside_uniform_map_scores_the_chance_value():
    share, chance, _ = _call(localisation.energy_inside, np.full((B, T, S, S), 3.0), _region(),
                             np.ones((B, T)))
    np.testing.assert_allclose(share, chance, atol=1e-6)
    np.testing.assert_allclose(chance, 16 / 64, atol=1e-6)


def test_energy_inside_hand_value_and_negative_values_ignored():
    """3 units inside, 1 outside, −10 outside (not counted): share 3 / 4."""
    maps = np.zeros((B, T, S, S), np.float32)
    maps[:, :, 0, 0] = 3.0
    maps[:, :, 7, 7] = 1.0
    maps[:, :, 6, 0] = -10.0
    share, _, _ = _call(localisation.energy_inside, maps, _region(), np.ones((B, T)))
    np.testing.assert_allclose(share, 0.75, atol=1e-6)


def test_energy_inside_ignores_frames_below_min_intensity():
    """All the mass outside the region sits in frame 2, whose intensity 0.2 < 0.5: only
    frames 0 and 1 count, where the map lies inside."""
    maps = _inside_only()
    maps[:, 2] = 0.0
    maps[:, 2, 6:, 6:] = 100.0
    intensity = np.asarray([[1.0, 0.6, 0.2]] * B, np.float32)
    share, chance, valid = _call(localisation.energy_inside, maps, _region(), intensity)
    np.testing.assert_allclose(share, 1.0, atol=1e-6)
    np.testing.assert_allclose(chance, 0.25, atol=1e-6)
    assert valid.all()
    # with min_intensity 0.1 frame 2 counts: 3 frames × 4 px × 2 inside, 4 px × 100 outside
    share, _, _ = _call(localisation.energy_inside, maps, _region(), intensity,
                        min_intensity=0.1)
    np.testing.assert_allclose(share, 16 / (16 + 400), atol=1e-6)


def test_energy_inside_threshold_of_graded_heatmaps():
    """A heatmap of 0.8 on the quarter and 0.3 elsewhere: only the quarter is ≥ 0.5."""
    au = np.where(_region() > 0, 0.8, 0.3).astype(np.float32)
    share, chance, _ = _call(localisation.energy_inside, _inside_only(), au, np.ones((B, T)))
    np.testing.assert_allclose(share, 1.0, atol=1e-6)
    np.testing.assert_allclose(chance, 0.25, atol=1e-6)
    _, chance, _ = _call(localisation.energy_inside, _inside_only(), au, np.ones((B, T)),
                         threshold=0.2)
    np.testing.assert_allclose(chance, 1.0, atol=1e-6)  # everything is "inside"


def test_energy_inside_invalid_without_expressive_frames_or_mass():
    intensity = np.asarray([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]], np.float32)
    _, _, valid = _call(localisation.energy_inside, _inside_only(), _region(), intensity)
    np.testing.assert_array_equal(valid, [False, True])
    au = _region()
    au[1] = 0.0  # neutral video: no region on any frame
    _, _, valid = _call(localisation.energy_inside, _inside_only(), au, np.ones((B, T)))
    np.testing.assert_array_equal(valid, [True, False])
    _, _, valid = _call(localisation.energy_inside, -_inside_only(), _region(), np.ones((B, T)))
    assert not valid.any()  # no positive attribution at all


# --------------------------------------------------------------------------- pointing game
def _pointing_maps():
    """Video 0: maximum inside on frames 0 and 2, outside on frame 1. Video 1: inside always."""
    maps = np.zeros((B, T, S, S), np.float32)
    maps[0, 0, 2, 3] = 1.0
    maps[0, 1, 6, 6] = 1.0
    maps[0, 1, 0, 0] = 0.5
    maps[0, 2, 0, 0] = 1.0
    maps[1, :, 3, 3] = 1.0
    return maps


def test_pointing_game_hit_rate():
    hits, valid = _call(localisation.pointing_game, _pointing_maps(), _region(),
                        np.ones((B, T)))
    np.testing.assert_allclose(hits, [2 / 3, 1.0], atol=1e-6)
    assert valid.all()


def test_pointing_game_counts_only_expressive_frames():
    """Video 0's miss (frame 1) is on a frame of intensity 0.4: 2 of 2 hits."""
    intensity = np.asarray([[1.0, 0.4, 0.9], [0.0, 0.0, 0.0]], np.float32)
    hits, valid = _call(localisation.pointing_game, _pointing_maps(), _region(), intensity)
    assert hits[0] == 1.0
    np.testing.assert_array_equal(valid, [True, False])


def test_pointing_game_all_outside_is_zero():
    maps = np.zeros((B, T, S, S), np.float32)
    maps[:, :, 7, 0] = 1.0
    hits, _ = _call(localisation.pointing_game, maps, _region(), np.ones((B, T)))
    np.testing.assert_array_equal(hits, [0.0, 0.0])


# --------------------------------------------------------------------------- temporal
def test_temporal_correlation_signs():
    intensity = np.asarray([[0.0, 0.5, 1.0], [0.2, 1.0, 0.4]], np.float32)
    frames = np.ones((B, T, S, S), np.float32)
    proportional = frames * (3.0 * intensity + 1.0)[..., None, None]
    r, valid = _call(localisation.temporal_correlation, proportional, intensity)
    np.testing.assert_allclose(r, 1.0, atol=1e-5)
    assert valid.all()
    anti = frames * (2.0 - intensity)[..., None, None]
    r, _ = _call(localisation.temporal_correlation, anti, intensity)
    np.testing.assert_allclose(r, -1.0, atol=1e-5)


def test_temporal_correlation_hand_value():
    """Masses (0, 0, 1) against intensities (0, 1, 2): centred (−⅓, −⅓, ⅔) and (−1, 0, 1),
    r = 1 / (√(6/9) · √2) = √3/2."""
    maps = np.zeros((1, 3, 2, 2), np.float32)
    maps[0, 2, 0, 0] = 1.0
    maps[0, 0, 1, 1] = -5.0  # negative: no mass
    r, _ = _call(localisation.temporal_correlation, maps, np.asarray([[0.0, 1.0, 2.0]]))
    np.testing.assert_allclose(r, np.sqrt(3) / 2, atol=1e-6)


def test_temporal_correlation_constant_is_invalid():
    intensity = np.asarray([[0.0, 0.5, 1.0], [0.5, 0.5, 0.5]], np.float32)
    maps = np.ones((B, T, S, S), np.float32)
    maps[1] *= np.asarray([1.0, 2.0, 3.0])[:, None, None]  # varies, but intensity doesn't
    r, valid = _call(localisation.temporal_correlation, maps, intensity)
    np.testing.assert_array_equal(valid, [False, False])
    assert np.isfinite(r).all()


# --------------------------------------------------------------------------- jit / vmap
def test_jit_and_vmap_match_eager():
    key = jax.random.key(0)
    maps = jax.random.normal(key, (B, T, 4, 4))
    au = jax.random.uniform(jax.random.fold_in(key, 1), (B, T, S, S))
    intensity = jax.random.uniform(jax.random.fold_in(key, 2), (B, T))
    fns = {
        "energy": lambda m, a, i: localisation.energy_inside(m, a, i),
        "pointing": lambda m, a, i: localisation.pointing_game(m, a, i),
        "cosine": lambda m, a, i: localisation.au_cosine(m, a),
        "raw cosine": lambda m, a, i: localisation.au_cosine(m, a, normalise="raw"),
        "shifted cosine": lambda m, a, i: localisation.au_cosine(m, a, normalise="shift"),
        "temporal": lambda m, a, i: localisation.temporal_correlation(m, i),
    }
    for name, fn in fns.items():
        eager = fn(maps, au, intensity)
        for e, j in zip(eager, fast_jit(fn)(maps, au, intensity)):
            np.testing.assert_allclose(np.asarray(j), np.asarray(e), atol=1e-5, err_msg=name)
        # vmap over an extra leading axis: each slice alone
        stacked = jax.vmap(fn)(maps[:, None], au[:, None], intensity[:, None])
        for e, v in zip(eager, stacked):
            np.testing.assert_allclose(np.asarray(v)[:, 0], np.asarray(e), atol=1e-5,
                                       err_msg=name)
