"""Frame-consistent augmentation: geometry shared by frames, landmarks and masks."""
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
