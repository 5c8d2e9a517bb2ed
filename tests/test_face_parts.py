"""Tests of the facial-part occlusion bands and masks (fer_jax.evaluation.face_parts)."""
import jax
import numpy as np
import pytest
from fast import fast_jit

from fer_jax.data import synthetic
from fer_jax.errors import UserError
from fer_jax.evaluation import face_parts

SIZE = 64
EYES, NOSE_BASE, MOUTH = slice(36, 48), slice(31, 36), slice(48, 68)


@pytest.fixture(scope="module")
def faces():
    """Synthetic test videos: 'frames' uint8 [4, 12, 64, 64, 3], 'landmarks' [4, 12, 68, 2]."""
    data = synthetic.SyntheticFaces(
        "test", 4, synthetic.SyntheticConfig(image_size=SIZE, num_frames=12))
    samples = [data.load(i) for i in range(4)]
    return {key: np.stack([s[key] for s in samples]) for key in ("frames", "landmarks")}


@pytest.fixture(scope="module")
def single_masks(faces):
    """{part: bool [4, 12, 64, 64]} for each single part."""
    return {part: np.asarray(face_parts.part_mask(faces["landmarks"], (part,), SIZE, SIZE))
            for part in face_parts.PARTS}


def _at_landmarks(mask, landmarks, points):
    """Mask values [B, T, P] at the pixels nearest to ``landmarks[..., points, :]``."""
    columns, rows = np.rint(landmarks[..., points, :]).astype(int).transpose(3, 0, 1, 2)
    b, t = np.indices(rows.shape[:2])
    return mask[b[..., None], t[..., None], rows, columns]


def test_combinations_and_names():
    assert face_parts.COMBINATIONS == (
        ("eyes",), ("nose",), ("mouth",), ("eyes", "nose"), ("eyes", "mouth"),
        ("nose", "mouth"), ("eyes", "nose", "mouth"))
    assert face_parts.combination_name(("eyes", "mouth")) == "eyes+mouth"
    assert face_parts.combination_name(("nose",)) == "nose"


def test_bands_follow_the_definition_ordered_and_contiguous(faces):
    landmarks = faces["landmarks"].astype(np.float64)
    bands = np.asarray(face_parts.part_bands(landmarks))
    assert bands.shape == (4, 12, 3, 4)
    x, y = landmarks[..., 0], landmarks[..., 1]
    expected_y = np.stack([(y[..., 17:27].mean(-1) + y[..., EYES].min(-1)) / 2,
                           (y[..., EYES].max(-1) + y[..., 29]) / 2,
                           (y[..., NOSE_BASE].max(-1) + y[..., 48:55].min(-1)) / 2,
                           (y[..., MOUTH].max(-1) + y[..., 8]) / 2], axis=-1)
    np.testing.assert_allclose(bands[..., 1], expected_y[..., :3], atol=1e-4)
    np.testing.assert_allclose(bands[..., 3], expected_y[..., 1:], atol=1e-4)
    np.testing.assert_allclose(bands[..., 0], x[..., :17].min(-1)[..., None].repeat(3, -1),
                               atol=1e-4)
    np.testing.assert_allclose(bands[..., 2], x[..., :17].max(-1)[..., None].repeat(3, -1),
                               atol=1e-4)
    assert (bands[..., 3] > bands[..., 1]).all()  # top to bottom, none empty
    np.testing.assert_array_equal(bands[..., 1:, 1], bands[..., :-1, 3])  # contiguous


def test_degenerate_face_gives_empty_not_overlapping_bands():
    landmarks = np.zeros((68, 2), np.float32)
    landmarks[:, 0] = np.arange(68)
    landmarks[29, 1] = -10.0  # nose bridge above the eyes: b1 would fall below b0
    bands = np.asarray(face_parts.part_bands(landmarks))
    assert (bands[:, 3] >= bands[:, 1]).all()
    np.testing.assert_array_equal(bands[1:, 1], bands[:-1, 3])


def test_masks_match_the_bands_at_integer_pixel_centres(faces):
    landmarks = faces["landmarks"][1, 5]
    box = np.asarray(face_parts.part_bands(landmarks))[1]
    rows, columns = np.indices((SIZE, SIZE))
    expected = ((rows >= box[1]) & (rows < box[3]) & (columns >= box[0]) & (columns <= box[2]))
    mask = np.asarray(face_parts.part_mask(landmarks, ("nose",), SIZE, SIZE))
    assert mask.shape == (SIZE, SIZE) and mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)


def test_landmarks_fall_in_their_parts(faces, single_masks):
    landmarks = faces["landmarks"]
    assert _at_landmarks(single_masks["eyes"], landmarks, EYES).all()
    assert not _at_landmarks(single_masks["eyes"], landmarks, MOUTH).any()
    assert _at_landmarks(single_masks["nose"], landmarks, NOSE_BASE).all()
    assert not _at_landmarks(single_masks["nose"], landmarks, EYES).any()
    assert _at_landmarks(single_masks["mouth"], landmarks, MOUTH).all()
    assert not _at_landmarks(single_masks["mouth"], landmarks, EYES).any()
    # The bands run the full face width, out to the jaw on both sides.
    for jaw_point in (1, 15):  # jaw points at eye/nose height
        side = _at_landmarks(single_masks["eyes"] | single_masks["nose"], landmarks, [jaw_point])
        assert side.mean() > 0.9


def test_combination_masks_are_the_or_of_their_parts(faces, single_masks):
    for combo in face_parts.COMBINATIONS[3:]:
        mask = face_parts.part_mask(faces["landmarks"], combo, SIZE, SIZE)
        expected = np.logical_or.reduce([single_masks[p] for p in combo])
        np.testing.assert_array_equal(mask, expected)


def test_occlude_parts_changes_exactly_the_masked_pixels(faces, single_masks):
    video = faces["frames"].astype(np.float32) / 255.0 + 1.0  # no pixel equals the fill
    occluded = np.asarray(face_parts.occlude_parts(video, faces["landmarks"], ("eyes", "mouth"),
                                                   fill=-1.0))
    mask = single_masks["eyes"] | single_masks["mouth"]
    assert occluded.shape == video.shape and occluded.dtype == video.dtype
    changed = (occluded != video).any(axis=-1)
    np.testing.assert_array_equal(changed, mask)
    assert (occluded[mask] == -1.0).all()
    np.testing.assert_array_equal(occluded[~mask], video[~mask])


def test_jit_and_vmap_give_the_eager_result(faces):
    video = faces["frames"].astype(np.float32) / 255.0
    landmarks = faces["landmarks"]
    parts = ("eyes", "nose")
    eager = np.asarray(face_parts.occlude_parts(video, landmarks, parts))
    jitted = fast_jit(face_parts.occlude_parts, static_argnums=2)(video, landmarks, parts)
    mapped = fast_jit(jax.vmap(lambda v, l: face_parts.occlude_parts(v[None], l[None], parts)[0])
                      )(video, landmarks)
    np.testing.assert_array_equal(jitted, eager)
    np.testing.assert_array_equal(mapped, eager)
    mask = fast_jit(face_parts.part_mask, static_argnums=(1, 2, 3))(landmarks, parts, SIZE, SIZE)
    np.testing.assert_array_equal(mask, face_parts.part_mask(landmarks, parts, SIZE, SIZE))


def test_unknown_or_missing_parts_raise():
    landmarks = np.zeros((68, 2), np.float32)
    with pytest.raises(UserError, match="'ears'.*eyes, nose, mouth"):
        face_parts.part_mask(landmarks, ("eyes", "ears"), SIZE, SIZE)
    with pytest.raises(UserError, match="no facial part"):
        face_parts.part_mask(landmarks, (), SIZE, SIZE)
    with pytest.raises(UserError, match="'lips'"):
        face_parts.combination_name(("lips",))
