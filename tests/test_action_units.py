"""Tests of the AU codebook and AU heatmaps of Belharbi et al. (fer_jax.data.action_units)."""
import cv2
import numpy as np
import pytest

from fer_jax.data import action_units as au
from fer_jax.data import synthetic


@pytest.fixture(scope="module")
def face224() -> np.ndarray:
    """Integer landmarks [68, 2] of a neutral synthetic face in a 224x224 image."""
    config = synthetic.SyntheticConfig(image_size=224, nuisance=0.0)
    return np.rint(synthetic.SyntheticFaces("train", 1, config).ground_truth(0)["landmarks"][0])


@pytest.fixture(scope="module")
def face64() -> np.ndarray:
    config = synthetic.SyntheticConfig(image_size=64, nuisance=0.0)
    return synthetic.SyntheticFaces("train", 1, config).ground_truth(0)["landmarks"][0]


def _extract_reference(landmarks, aus, size):
    """The authors' pipeline with integer ellipses (as cv2 draws them without sub-pixels)."""
    maps = []
    for unit in aus:
        canvas = np.full((size, size), 1e-4)
        for x, y, ax, ay in au.au_ellipses(landmarks, unit, size, size):
            cv2.ellipse(canvas, (int(x), int(y)), (int(ax), int(ay)), 0, 0, 360, 255, -1)
        small = cv2.blur(cv2.resize(canvas, (28, 28)), (3, 3))
        maps.append(cv2.resize(small, (size, size)))
    combined = np.max(maps, axis=0)
    return (combined - combined.min()) / (combined.max() - combined.min())


def test_codebook_follows_the_figure():
    assert au.EXPRESSIONS == ("neutral", "anger", "disgust", "fear", "happiness", "sadness",
                              "surprise")
    assert au.AU_CODEBOOK["happiness"] == (6, 12, 25)
    assert au.AU_CODEBOOK["surprise"] == (1, 2, 5, 26, 27)
    assert au.AU_CODEBOOK["fear"] == (1, 2, 4, 5, 20, 25, 26, 27)
    assert au.AU_CODEBOOK["anger"] == (4, 5, 7, 10, 17, 23, 24, 25, 26)
    assert au.AU_CODEBOOK["disgust"] == (9, 10, 16, 17, 25, 26)
    assert au.AU_CODEBOOK["sadness"] == (1, 4, 6, 15, 17)
    assert au.AU_CODEBOOK["neutral"] == ()
    differing = {k for k in au.AU_CODEBOOK if au.AU_CODEBOOK[k] != au.AU_CODEBOOK_CODE_VARIANT[k]}
    assert differing == {"disgust"}
    assert set(au.AU_CODEBOOK_CODE_VARIANT["disgust"]) == {5, 9, 16, 17, 25, 26}


def test_expression_names_labels_and_validity():
    assert au.expression_index("fear") == 3
    assert au.expression_index(np.int64(6)) == 6
    assert au.expression_name(4) == "happiness"
    assert au.expression_aus("sadness", "code") == (1, 4, 6, 15, 17)
    assert not au.is_valid("neutral") and not au.is_valid(0)
    assert all(au.is_valid(name) for name in au.EXPRESSIONS[1:])


def test_map_is_normalised_and_neutral_is_zero(face64):
    for label in range(1, 7):
        heat = au.au_map(face64, label, 64, 64)
        assert heat.shape == (64, 64) and heat.dtype == np.float32
        assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
    neutral = au.au_map(face64, "neutral", 64, 64)
    assert neutral.dtype == np.float32 and not neutral.any()


def test_map_matches_the_extract_pipeline(face224):
    # At 224 px the constant radii are unscaled; these AUs have integer centres and axes, so
    # the sub-pixel drawing must reproduce the plain integer pipeline of the authors' code.
    for aus in ((12,), (25,), (4,), (12, 25)):
        reference = _extract_reference(face224, aus, 224)
        combined = np.max([au.au_region_map(face224, unit, 224, 224) for unit in aus], axis=0)
        ours = (combined - combined.min()) / (combined.max() - combined.min())
        np.testing.assert_allclose(ours, reference, atol=1e-4)
    region = au.au_region_map(face224, 12, 224, 224)
    assert region.min() == pytest.approx(1e-4, rel=1e-3) and region.max() == pytest.approx(255.0)


@pytest.mark.parametrize("unit, centres", [
    (12, lambda p: [p[48], p[54]]),
    (16, lambda p: [p[59], p[55]]),
    (4, lambda p: [(p[19] + p[24]) / 2]),
    (9, lambda p: [np.array([p[31, 0], p[29, 1]]), np.array([p[35, 0], p[29, 1]])]),
    (6, lambda p: [p[41] + [0, 224 / 6], p[46] + [0, 224 / 6]]),
])
def test_maximum_lies_inside_the_expected_region(face224, unit, centres):
    region = au.au_region_map(face224, unit, 224, 224)
    y, x = np.unravel_index(np.argmax(region), region.shape)
    distance = min(np.hypot(x - cx, y - cy) for cx, cy in centres(face224))
    assert distance <= 20
    # ... and the map is low far from every centre.
    far = [(x, y) for x in range(0, 224, 8) for y in range(0, 224, 8)
           if min(np.hypot(x - cx, y - cy) for cx, cy in centres(face224)) > 60]
    assert max(region[y, x] for x, y in far) < 1.0


def test_lip_stretcher_follows_the_authors_code(face224):
    # AU20: circles at mid(lm48, lm6) and mid(lm50, lm10), as in Belharbi et al.'s code
    # (a symmetric lm54 on the right would move the second circle by |lm54 - lm50| / 2).
    centres = au.au_ellipses(face224, 20, 224, 224)
    expected = [(face224[48] + face224[6]) / 2, (face224[50] + face224[10]) / 2]
    np.testing.assert_allclose([c[:2] for c in centres], expected)
    assert np.hypot(*((face224[54] - face224[50]) / 2)) > 5  # the two readings differ here


def test_constant_sizes_scale_with_face_size(face224):
    small = au.au_region_map(face224, 12, 224, 224, face_size=224)
    large = au.au_region_map(face224, 12, 224, 224, face_size=448)
    assert (large > 127).sum() > 3 * (small > 127).sum()
    # Image-relative axes (w/8, h/10) of AU1 do not depend on the face size.
    np.testing.assert_array_equal(au.au_region_map(face224, 1, 224, 224, face_size=100),
                                  au.au_region_map(face224, 1, 224, 224, face_size=400))


def test_zero_axes_get_the_minimum(face224):
    flat = face224.copy()
    flat[[19, 24], 1] = flat[19, 1]  # level brows: AU4's vertical axis would be 0
    (_, _, _, ay), = au.au_ellipses(flat, 4, 224, 224)
    assert ay == 10
    (_, _, _, ay), = au.au_ellipses(flat, 4, 112, 112)
    assert ay == 5


def test_code_variant_differs_for_disgust_only(face64):
    for label in range(7):
        figure = au.au_map(face64, label, 64, 64)
        code = au.au_map(face64, label, 64, 64, codebook="code")
        assert np.array_equal(figure, code) == (au.EXPRESSIONS[label] != "disgust")
    np.testing.assert_array_equal(
        au.au_map(face64, "disgust", 64, 64, codebook=au.AU_CODEBOOK_CODE_VARIANT),
        au.au_map(face64, "disgust", 64, 64, codebook="code"))


def test_video_maps_equal_per_frame_maps():
    config = synthetic.SyntheticConfig(nuisance=1.0)
    truth = synthetic.SyntheticFaces("train", 3, config).ground_truth(2)
    landmarks = truth["landmarks"][::6]
    maps = au.au_maps(landmarks, int(truth["label"]), 64, 64)
    assert maps.shape == (len(landmarks), 64, 64) and maps.dtype == np.float32
    for frame, heat in zip(landmarks, maps):
        np.testing.assert_array_equal(heat, au.au_map(frame, int(truth["label"]), 64, 64))


def test_regions_outside_the_image_give_a_zero_map():
    far = np.full((68, 2), -1000.0)
    heat = au.au_map(far, "happiness", 64, 64)
    assert np.all(np.isfinite(heat)) and not heat.any()


@pytest.mark.parametrize("call, message", [
    (lambda p: au.au_map(p[:60], "anger", 64, 64), "shape"),
    (lambda p: au.au_map(p.T, "anger", 64, 64), "shape"),
    (lambda p: au.au_maps(p, "anger", 64, 64), "shape"),
    (lambda p: au.au_map(np.where(p > 30, np.nan, p), "anger", 64, 64), "NaN"),
    (lambda p: au.au_map(p, "contempt", 64, 64), "unknown expression"),
    (lambda p: au.au_map(p, 7, 64, 64), "outside"),
    (lambda p: au.au_map(p, -1, 64, 64), "outside"),
    (lambda p: au.au_map(p, 2.0, 64, 64), "name or an integer"),
    (lambda p: au.au_map(p, "anger", 0, 64), "positive"),
    (lambda p: au.au_map(p, "anger", 64, -3), "positive"),
    (lambda p: au.au_map(p, "anger", 64, 64, face_size=0), "positive"),
    (lambda p: au.au_map(p, "anger", 64, 64, codebook="paper"), "unknown codebook"),
    (lambda p: au.au_region_map(p, 3, 64, 64), "unsupported action unit"),
    (lambda p: au.is_valid("calm"), "unknown expression"),
])
def test_bad_input_raises_one_line_value_error(face64, call, message):
    with pytest.raises(ValueError, match=message) as error:
        call(face64)
    assert "\n" not in str(error.value)
