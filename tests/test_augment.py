"""Frame-consistent augmentation: geometry shared by frames, landmarks and masks."""
import cv2
import ml_collections
import numpy as np

from fer_jax.data import augment

CONFIG = ml_collections.ConfigDict(dict(hflip=1.0, rotation=15.0, crop_scale=(0.7, 0.9),
                                        brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05))


def test_flip_permutation_is_an_involution_that_swaps_sides():
    perm = augment._FLIP_68
    assert sorted(perm) == list(range(68))
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[48] == 54 and perm[30] == 30 and perm[8] == 8


def test_landmarks_and_masks_follow_the_pixels():
    rng = np.random.default_rng(0)
    points = rng.uniform(20, 44, (3, 68, 2)).astype(np.float32)
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    masks = np.zeros((3, 64, 64), np.float32)
    t, i = 1, 10
    x, y = np.round(points[t, i]).astype(int)
    frames[t, y - 1:y + 2, x - 1:x + 2] = 255
    masks[t, y - 1:y + 2, x - 1:x + 2] = 1.0
    points[t, i] = (x, y)
    params = augment.draw_params(rng, CONFIG, 64, 64, 48)
    out = augment.apply({"frames": frames, "landmarks": points, "au_masks": masks}, params, 48)
    assert out["frames"].shape == (3, 48, 48, 3) and out["au_masks"].shape == (3, 48, 48)
    # The flipped face's landmark order is anatomical again: point i moved to index perm[i].
    moved = out["landmarks"][t, augment._FLIP_68[i]]
    for image in (out["frames"][t].astype(np.float32).mean(-1), out["au_masks"][t]):
        peak = np.unravel_index(np.argmax(image), image.shape)[::-1]
        assert np.hypot(*(np.array(peak) - moved)) < 1.5


def test_one_draw_is_applied_to_every_frame():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    frames = np.stack([frame] * 4)
    params = augment.draw_params(rng, CONFIG, 40, 40, 32)
    out = augment.apply({"frames": frames}, params, 32)["frames"]
    for f in out[1:]:
        np.testing.assert_array_equal(f, out[0])
    assert not np.array_equal(out[0], augment.apply(
        {"frames": frames}, augment.identity_params(40, 40, 32), 32)["frames"][0])


def test_identity_params_only_resize_and_keep_colours():
    frames = np.full((2, 20, 20, 3), 77, np.uint8)
    out = augment.apply({"frames": frames}, augment.identity_params(20, 20, 10), 10)
    assert out["frames"].shape == (2, 10, 10, 3) and np.all(out["frames"] == 77)


def _jitter_step_by_step(frames: np.ndarray, params: augment.AugmentParams) -> np.ndarray:
    """The colour jitter evaluated step by step in float64 (augment.jitter_colour's docstring)."""
    x = frames.astype(np.float64) * params.brightness
    luma = augment.LUMA.astype(np.float64)
    mean = (x @ luma).mean()
    x = (x - mean) * params.contrast + mean
    grey = (x @ luma)[..., None]
    x = grey + (x - grey) * params.saturation
    x = x @ augment.hue_rotation(params.hue).T
    return np.clip(x, 0, 255).astype(np.uint8)


def test_colour_jitter_is_the_step_by_step_chain_to_one_grey_level():
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (3, 6, 10, 3), dtype=np.uint8), 4, 1),
                       4, 2)
    for frames in (noise, smooth):
        for _ in range(10):
            params = augment.draw_params(rng, CONFIG, 24, 40, 24)
            expected = _jitter_step_by_step(frames, params).astype(int)
            out = augment.jitter_colour(frames, params)
            assert out.shape == frames.shape and out.dtype == np.uint8
            difference = np.abs(out.astype(int) - expected)
            assert difference.max() <= 1 and difference.mean() < 0.1
    # Saturated colours clip instead of wrapping round.
    params = augment.AugmentParams(np.eye(2, 3), False, 1.5, 1.0, 1.0, 0.0)
    bright = np.full((1, 2, 2, 3), 200, np.uint8)
    assert np.all(augment.jitter_colour(bright, params) == 255)
    # Grey pixels keep their level under a saturation change (no rounding drift).
    grey = np.repeat(rng.integers(0, 256, (2, 8, 8, 1), dtype=np.uint8), 3, axis=-1)
    desaturate = augment.AugmentParams(np.eye(2, 3), False, 1.0, 1.0, 0.7, 0.0)
    np.testing.assert_array_equal(augment.jitter_colour(grey, desaturate), grey)


def _warp_each(frames: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.warpAffine(f, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT_101) for f in frames])


def test_warps_equal_opencv_frame_by_frame_including_the_copy_free_identity_and_flip():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    masks = rng.random((3, 20, 20)).astype(np.float32)
    def flips(probability):  # TimeSformer's augmentation: flips, no rotation or crop
        return ml_collections.ConfigDict(dict(CONFIG, hflip=probability, rotation=0.0,
                                              crop_scale=(1.0, 1.0)))
    identity = augment.draw_params(rng, flips(0.0), 20, 20, 20).matrix
    flip = augment.draw_params(rng, flips(1.0), 20, 20, 20).matrix
    general = augment.draw_params(rng, CONFIG, 20, 20, 16).matrix
    np.testing.assert_array_equal(flip, [[-1, 0, 19], [0, 1, 0]])  # exact: cv2.flip's case
    for array in (frames, masks):
        assert augment.warp_frames(array, identity, 20) is array
        for matrix, size in ((flip, 20), (general, 16), (identity, 12)):
            out = augment.warp_frames(array, matrix, size)
            np.testing.assert_array_equal(out, _warp_each(array, matrix, size))
