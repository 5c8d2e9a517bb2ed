"""Figures of attention modules (fer_jax.viz.attention_maps): mask overlays, self-attention
matrices with their temporal profile, and the learned β of adaptive softmax pooling."""
import cv2
import numpy as np
import pytest

from fer_jax.viz import attention_maps, colourise

FACE = np.array([200, 150, 100], np.uint8)  # a colour that text anti-aliasing never draws
BETAS = {"Surprise": 3.022, "Fear": 2.263, "Angry": 2.052, "Disgust": 1.542, "Sad": 1.409,
         "Happy": 0.562, "Neutral": 0.479}  # Ayral's thesis, section 2.3.2


def _decode(data: bytes) -> np.ndarray:
    """PNG bytes as a uint8 RGB image [H, W, 3]."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.ndim == 3 and image.shape[-1] == 3
    return image[..., ::-1]


def _faces(num_frames: int, size: int = 16) -> np.ndarray:
    return np.broadcast_to(FACE, (num_frames, size, size, 3)).copy()


def _pixels(image: np.ndarray, colour) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pixels of ``image`` that have exactly ``colour``."""
    return np.nonzero((image == np.asarray(colour, np.uint8)).all(axis=-1))


def _blend(value: float, alpha: float = 0.5) -> np.ndarray:
    """Colour of a face pixel under the normalised mask ``value`` (see viz.overlay)."""
    colour = colourise(np.array(value)).astype(np.float64)
    return np.round((1 - alpha) * FACE + alpha * colour).astype(np.uint8)


def test_mask_overlay_is_two_rows_and_colours_the_high_half(tmp_path):
    masks = np.zeros((1, 4, 4))
    masks[..., :2] = 1.0  # left half high, right half low
    path = tmp_path / "new" / "mask.png"
    data = attention_maps.mask_overlay(_faces(1), 0.5 + masks, path=path)  # gates in (0, 2)
    assert path.read_bytes() == data
    image = _decode(data)
    face_y, _ = _pixels(image, FACE)
    high_y, high_x = _pixels(image, _blend(1.0))
    low_y, low_x = _pixels(image, _blend(0.0))
    cell = len(np.unique(face_y))  # the 16-pixel frame, upscaled to 64
    assert cell == 64 and len(face_y) == cell * cell
    assert 2 * cell <= image.shape[0] < 3 * cell  # faces above, overlaid faces below
    assert high_y.min() > face_y.max() and low_y.min() > face_y.max()
    # Bilinear upsampling of the 4 cells to 16 pixels: columns 0-5 exactly high, 10-15 low.
    assert len(high_x) == len(low_x) == 6 * 4 * cell
    assert high_x.max() < low_x.min()


def test_mask_overlay_temporal_mask_tints_whole_frames():
    labels = ["frame 1", "frame 2", "frame 3"]
    image = _decode(attention_maps.mask_overlay(_faces(3), np.array([1.0, 1.0, 1.2]),
                                                labels=labels, alpha=0.4))
    high_y, high_x = _pixels(image, _blend(1.0, alpha=0.4))
    low_y, low_x = _pixels(image, _blend(0.0, alpha=0.4))
    area = 64 * 64
    assert len(low_x) == 2 * area and len(high_x) == area  # frames 1-2 low, frame 3 high
    assert high_x.min() > low_x.max()
    face_y, _ = _pixels(image, FACE)
    assert len(face_y) == 3 * area and low_y.min() > face_y.max()


def test_mask_overlay_coarse_time_axis_and_constant_mask():
    coarse = attention_maps.mask_overlay(_faces(4), np.random.default_rng(0).random((2, 4, 4)))
    assert _decode(coarse).shape[0] >= 2 * 64
    constant = _decode(attention_maps.mask_overlay(_faces(2), np.ones((2, 4, 4))))
    assert len(_pixels(constant, _blend(0.0))[0]) == 2 * 64 * 64  # all blue


def test_mask_overlay_rejects_bad_inputs():
    faces = _faces(3)
    with pytest.raises(ValueError, match=r"masks must be .*got shape \(3, 4\)"):
        attention_maps.mask_overlay(faces, np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"masks must be .*≤ 3 frames, got shape \(5, 4, 4\)"):
        attention_maps.mask_overlay(faces, np.ones((5, 4, 4)))
    with pytest.raises(ValueError, match=r"frames must be .*float64 of shape \(3, 16, 16, 3\)"):
        attention_maps.mask_overlay(faces.astype(np.float64), np.ones((3, 4, 4)))
    with pytest.raises(ValueError, match="masks of shape .* NaN"):
        attention_maps.mask_overlay(faces, np.full((3, 4, 4), np.nan))
    with pytest.raises(ValueError, match="labels must give one label per frame"):
        attention_maps.mask_overlay(faces, np.ones(3), labels=["a"])
    with pytest.raises(ValueError, match="alpha"):
        attention_maps.mask_overlay(faces, np.ones(3), alpha=1.5)


def _row_stochastic(*shape) -> np.ndarray:
    scores = np.random.default_rng(1).normal(size=shape)
    weights = np.exp(scores)
    return weights / weights.sum(axis=-1, keepdims=True)


def test_temporal_profile_is_the_mean_over_queries():
    attention = _row_stochastic(9, 9)
    profile = attention_maps.temporal_profile(attention)
    assert profile.shape == (9,)
    np.testing.assert_allclose(profile.sum(), 1.0)
    np.testing.assert_allclose(profile, attention.mean(axis=0))
    heads = _row_stochastic(4, 9, 9)
    np.testing.assert_allclose(attention_maps.temporal_profile(heads),
                               heads.mean(axis=(0, 1)))
    with pytest.raises(ValueError, match=r"attention must be .*got shape \(9, 8\)"):
        attention_maps.temporal_profile(attention[:, :8])


def test_self_attention_matrix_figure(tmp_path):
    attention = _row_stochastic(12, 12)
    path = tmp_path / "attention.png"
    plain = _decode(attention_maps.self_attention_matrix(attention, title="video 7",
                                                         path=path))
    assert path.exists()
    assert plain.shape[1] == 640 and plain.shape[0] > 500
    heads = _decode(attention_maps.self_attention_matrix(
        _row_stochastic(4, 12, 12), frame_labels=[str(10 * t) for t in range(12)]))
    assert heads.shape == plain.shape
    frames = np.random.default_rng(2).integers(0, 255, (12, 16, 16, 3), dtype=np.uint8)
    strip = _decode(attention_maps.self_attention_matrix(attention, frames=frames))
    assert strip.shape[1] == 640 and strip.shape[0] > plain.shape[0]


def test_self_attention_matrix_rejects_bad_inputs():
    attention = _row_stochastic(5, 5)
    with pytest.raises(ValueError, match=r"attention must be .*got shape \(5,\)"):
        attention_maps.self_attention_matrix(attention[0])
    with pytest.raises(ValueError, match=r"frame_labels .*\(5, from attention of shape"):
        attention_maps.self_attention_matrix(attention, frame_labels=["0", "1"])
    with pytest.raises(ValueError, match=r"frames must be .*\[5, H, W, 3\].*\(4, 8, 8, 3\)"):
        attention_maps.self_attention_matrix(attention,
                                             frames=np.zeros((4, 8, 8, 3), np.uint8))


def test_beta_order_sorts_classes_by_decreasing_mean():
    names, values = list(BETAS), np.array(list(BETAS.values()))
    np.testing.assert_array_equal(attention_maps.beta_order(values), np.arange(7))
    np.testing.assert_array_equal(attention_maps.beta_order(values[::-1]),
                                  np.arange(7)[::-1])
    seeds = np.stack([values, values])
    seeds[1, names.index("Neutral")] = 10.0  # mean 5.24: now the largest
    assert list(attention_maps.beta_order(seeds)) == [6, 0, 1, 2, 3, 4, 5]
    ties = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 4.0]])  # equal means keep the class order
    np.testing.assert_array_equal(attention_maps.beta_order(ties), [0, 1, 2])
    with pytest.raises(ValueError, match=r"betas must be .*got shape \(\)"):
        attention_maps.beta_order(1.0)


def test_pooling_betas_figure(tmp_path):
    names, values = list(BETAS), np.array(list(BETAS.values()))
    path = tmp_path / "betas.png"
    single = _decode(attention_maps.pooling_betas(values, names, title="AFEW", path=path))
    assert path.exists() and single.shape[1] == 640 and single.shape[0] > 250
    noise = np.random.default_rng(3).normal(0, 0.3, (5, 7))
    several = _decode(attention_maps.pooling_betas(values - 1.5 + noise, names))
    assert several.shape == single.shape  # negative β drawn to the left of 0
    with pytest.raises(ValueError, match=r"betas must be .*C = 7 .*got shape \(6,\)"):
        attention_maps.pooling_betas(values[:6], names)
    with pytest.raises(ValueError, match=r"betas must be .*got shape \(2, 3, 7\)"):
        attention_maps.pooling_betas(np.ones((2, 3, 7)), names)


@pytest.mark.parametrize("row, expected", [
    ("mult_mask", {"attention_mask.png"}), ("temporal_sa", {"self_attention.png"})])
def test_explain_draws_what_the_attention_module_computed(tmp_path, row, expected):
    """--mode=explain of a chapter-4 model: the module's mask or T×T matrix per video, and
    with adaptive softmax pooling the learned β of every class."""
    from pathlib import Path

    import config_files
    from fer_jax import explain, train
    config = config_files.load("thesis_attention", f"{row},smoke")
    config.model.temporal_pooling = "adaptive"
    config.train.epochs = 1
    config.explain.update(videos="0", methods="grad_cam")
    config.dataset.update(train_videos=16, validation_videos=4)  # compiling costs the time
    train.train_and_evaluate(config, str(tmp_path))
    index = explain.explain(config, str(tmp_path))
    names = {Path(f).name for f in index["videos"][0]["files"]}
    assert expected <= names
    for name in expected | {"pooling_betas.png"}:
        found = list(tmp_path.rglob(name))
        assert found and cv2.imdecode(np.frombuffer(found[0].read_bytes(), np.uint8),
                                      cv2.IMREAD_COLOR) is not None
