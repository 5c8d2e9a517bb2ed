"""Tests of face detection, tracking, landmarks and alignment (fer_jax.data.faces)."""
import os
import pickle

import cv2
import numpy as np
import pytest

from fer_jax.data import faces, synthetic
from fer_jax.errors import UserError

pytest.importorskip("dlib", reason="needs the [faces] extra (pip install dlib-bin)")
skimage_data = pytest.importorskip("skimage.data", reason="needs scikit-image (the [faces] extra)")

CROP = 112
ASTRONAUT_BOX = np.array([175, 76, 265, 166], np.float32)  # the real face (dlib's detection)
GREY = 200


@pytest.fixture(scope="module")
def dlib_proc() -> faces.FaceProcessor:
    return faces.FaceProcessor("dlib", crop_size=CROP)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def source() -> synthetic.SyntheticFaces:
    return synthetic.SyntheticFaces(
        "test", 4, synthetic.SyntheticConfig(image_size=128, num_frames=12, nuisance=0.0))


@pytest.fixture(scope="module")
def clip(source) -> dict:
    """Synthetic video 1, first 8 frames: 'frames' uint8 [8, 128, 128, 3], 'landmarks'."""
    example = source.load(1)
    return {"frames": example["frames"][:8], "landmarks": example["landmarks"][:8]}


def _eye_angle(landmarks: np.ndarray) -> float:
    """Degrees of the line between the eye centres of landmarks [68, 2]."""
    d = landmarks[42:48].mean(0) - landmarks[36:42].mean(0)
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _assert_one_line_user_error(excinfo) -> None:
    assert isinstance(excinfo.value, UserError)
    message = str(excinfo.value)
    assert message and "\n" not in message


def _assert_anatomical_order(points: np.ndarray) -> None:
    """points [68, 2] in image coordinates are a plausible upright iBUG-68 face."""
    y = points[:, 1]
    brows, eyes, nose_tip = y[17:27].mean(), y[36:48].mean(), y[30]
    mouth, chin = y[48:68].mean(), y[8]
    assert brows < eyes < nose_tip < mouth < chin
    assert points[0, 0] < points[8, 0] < points[16, 0]  # jaw runs left → right
    assert points[36:42, 0].mean() < points[27:36, 0].mean() < points[42:48, 0].mean()
    assert points[36, 0] < points[39, 0] < points[42, 0] < points[45, 0]
    assert points[48, 0] < points[51, 0] < points[54, 0]  # mouth corners around the top lip
    assert points[17, 0] < points[21, 0] < points[22, 0] < points[26, 0]


# --------------------------------------------------------------------------- real photo
def test_dlib_on_astronaut_keeps_real_face_with_ordered_landmarks(dlib_proc, astronaut):
    track = dlib_proc(astronaut[None])
    assert track.num_faces.tolist() == [2] and track.multiple == 1  # one weak false positive
    np.testing.assert_allclose(track.boxes[0], ASTRONAUT_BOX, atol=6)
    _assert_anatomical_order(track.landmarks[0])
    x0, y0, x1, y1 = ASTRONAUT_BOX
    assert (track.landmarks[0, :, 0] > x0 - 20).all() and (track.landmarks[0, :, 0] < x1 + 20).all()
    assert (track.landmarks[0, :, 1] > y0 - 20).all() and (track.landmarks[0, :, 1] < y1 + 20).all()
    assert track.crops.shape == (1, CROP, CROP, 3) and track.crops.dtype == np.uint8
    _assert_anatomical_order(track.crop_landmarks[0])
    assert track.valid.tolist() == [True] and track.missing == 0


def test_opencv_on_astronaut_gives_box_crop_without_landmarks(astronaut):
    track = faces.FaceProcessor("opencv", crop_size=CROP, margin=0.25)(astronaut[None])
    box = track.boxes[0]
    centre = (box[:2] + box[2:]) / 2
    np.testing.assert_allclose(centre, (ASTRONAUT_BOX[:2] + ASTRONAUT_BOX[2:]) / 2, atol=15)
    assert np.isnan(track.landmarks).all() and np.isnan(track.crop_landmarks).all()
    scale = CROP / ((box[2:] - box[:2]).max() * 1.5)
    np.testing.assert_allclose(track.transforms[0, :, :2], np.eye(2) * scale, atol=1e-6)
    top_left = track.transforms[0, :, :2] @ (centre - (box[2:] - box[:2]).max() * 0.75)
    np.testing.assert_allclose(top_left + track.transforms[0, :, 2], -0.5, atol=1e-3)


def test_crop_pixels_follow_the_transforms(dlib_proc, astronaut):
    image = astronaut.copy()
    nose = np.array([225, 128])
    image[nose[1] - 2:nose[1] + 3, nose[0] - 2:nose[0] + 3] = (0, 255, 0)
    track = faces.FaceProcessor("dlib", crop_size=224, margin=0.25)(image[None])
    crop = track.crops[0].astype(int)
    green = (crop[..., 1] > 200) & (crop[..., 0] < 80) & (crop[..., 2] < 80)
    found = np.argwhere(green)[:, ::-1].mean(0)
    expected = faces.apply_affine(track.transforms, nose[None, None].astype(np.float32))[0, 0]
    np.testing.assert_allclose(found, expected, atol=1.0)
    np.testing.assert_allclose(
        track.crop_landmarks, faces.apply_affine(track.transforms, track.landmarks), atol=1e-3)


def test_rotated_face_is_levelled_in_the_crop(dlib_proc, astronaut):
    rotation = cv2.getRotationMatrix2D((220.0, 121.0), 15.0, 1.0)
    rotated = cv2.warpAffine(astronaut, rotation, astronaut.shape[1::-1])
    track = dlib_proc(np.stack([rotated, rotated]))
    assert track.valid.all()
    for t in range(2):
        assert _eye_angle(track.landmarks[t]) < -10  # the source face is tilted
        assert abs(_eye_angle(track.crop_landmarks[t])) < 3
        assert (track.crop_landmarks[t] >= 0).all() and (track.crop_landmarks[t] < CROP).all()
        _assert_anatomical_order(track.crop_landmarks[t])


# --------------------------------------------------------------------------- videos
def test_dlib_landmarks_match_synthetic_ground_truth(dlib_proc, clip):
    track = dlib_proc(clip["frames"])
    assert track.valid.all() and track.missing == 0 and track.multiple == 0
    error = faces.nme(track.landmarks, clip["landmarks"])
    assert error < 0.15, error  # measured 0.055 on this clip
    assert track.crops.shape == (8, CROP, CROP, 3)
    assert track.transforms.shape == (8, 2, 3) and track.transforms.dtype == np.float32


@pytest.fixture(scope="module")
def moving(clip) -> np.ndarray:
    """uint8 [8, 128, 160, 3]: the clip with the face moving 4 px to the right per frame."""
    padded = np.pad(clip["frames"], ((0, 0), (0, 0), (0, 32), (0, 0)), mode="edge")
    return np.stack([np.roll(f, 4 * t, axis=1) for t, f in enumerate(padded)])


@pytest.mark.parametrize("blank", [[3, 4], [0, 1]])
def test_blank_frames_are_carried(dlib_proc, moving, blank):
    frames = moving.copy()
    frames[blank] = GREY
    track = dlib_proc(frames)
    valid = np.ones(8, bool)
    valid[blank] = False
    assert track.valid.tolist() == valid.tolist()
    assert track.frame_indices.tolist() == list(range(8))
    assert track.missing == 2 and track.num_faces[blank].tolist() == [0, 0]
    source = blank[0] - 1 if blank[0] > 0 else blank[-1] + 1  # previous, or next when leading
    assert len(np.unique(track.boxes[track.valid, 0])) == 6  # the face moves
    for t in blank:
        np.testing.assert_array_equal(track.boxes[t], track.boxes[source])
        np.testing.assert_array_equal(track.landmarks[t], track.landmarks[source])
        np.testing.assert_array_equal(track.transforms[t], track.transforms[source])
        assert (track.crops[t] == GREY).any()  # the crop is cut from the blank frame itself


def test_blank_frames_are_dropped(clip):
    frames = clip["frames"].copy()
    frames[[3, 4]] = GREY
    track = faces.FaceProcessor("dlib", crop_size=CROP, missing="drop")(frames)
    assert track.frame_indices.tolist() == [0, 1, 2, 5, 6, 7]
    assert track.valid.all() and track.missing == 2 and track.num_input_frames == 8
    assert len(track.crops) == len(track.landmarks) == len(track.boxes) == 6


@pytest.mark.parametrize("backend", ["dlib", "opencv"])
def test_video_without_face_raises_no_face_error(backend):
    rng = np.random.default_rng(0)
    frames = np.concatenate([np.full((2, 96, 96, 3), GREY, np.uint8),
                             rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)])
    with pytest.raises(faces.NoFaceError, match="no face detected in any of the 4 frames") as e:
        faces.FaceProcessor(backend)(frames)
    _assert_one_line_user_error(e)


def _side_by_side(source) -> np.ndarray:
    """uint8 [8, 128, 224, 3]: video 1 at 128 px on the left, video 2 at 96 px on the right."""
    left = source.load(1)["frames"][:8]
    right = np.stack([cv2.resize(f, (96, 96), interpolation=cv2.INTER_AREA)
                      for f in source.load(2)["frames"][:8]])
    right = np.pad(right, ((0, 0), (16, 16), (0, 0), (0, 0)), constant_values=GREY)
    return np.concatenate([left, right], axis=2)


def test_select_track_starts_largest_then_follows_overlap():
    none = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    big_weak, huge = [0, 0, 50, 50], [60, -40, 200, 100]
    small_sure, small_moved, far = [100, 0, 140, 40], [104, 2, 144, 42], [300, 0, 330, 30]
    detections = [
        none,
        (np.float32([big_weak, small_sure]), np.float32([0.1, 1.0])),  # 250 < 1600: small
        (np.float32([huge, small_moved]), np.float32([1.0, 1.0])),  # IoU 0.08 < 0.75
        none,
        (np.float32([far, big_weak]), np.float32([1.0, 1.0])),  # no overlap: largest
    ]
    boxes, valid = faces.select_track(detections)
    assert valid.tolist() == [False, True, True, False, True]
    assert np.isnan(boxes[[0, 3]]).all()
    np.testing.assert_array_equal(boxes[[1, 2, 4]], [small_sure, small_moved, big_weak])


def test_two_faces_keep_the_largest_consistently(dlib_proc, source):
    track = dlib_proc(_side_by_side(source))
    assert track.multiple == 8 and track.num_faces.tolist() == [2] * 8
    assert (track.boxes[:, 2] <= 128).all()  # always the larger face on the left


def test_track_follows_the_first_face_when_a_larger_one_appears(dlib_proc, source):
    frames = _side_by_side(source)
    frames[:3, :, :128] = GREY  # the larger face enters at frame 3
    track = dlib_proc(frames)
    assert track.num_faces.tolist() == [1, 1, 1, 2, 2, 2, 2, 2] and track.multiple == 5
    assert (track.boxes[:, 0] >= 128).all()  # stays with the smaller face on the right


def test_grayscale_and_odd_sizes(dlib_proc, clip):
    odd = np.pad(clip["frames"][:3, 10:107], ((0, 0), (0, 0), (0, 3), (0, 0)), mode="edge")
    assert odd.shape == (3, 97, 131, 3)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in odd])
    truth = clip["landmarks"][:3] - np.float32([0, 10])
    for frames in (gray, gray[..., None], odd):
        track = dlib_proc(frames)
        assert track.valid.all() and track.crops.shape == (3, CROP, CROP, 3)
        assert faces.nme(track.landmarks, truth) < 0.15
    gray_crops = dlib_proc(gray).crops
    assert (gray_crops[..., 0] == gray_crops[..., 2]).all()


def test_single_frame(dlib_proc, clip):
    track = dlib_proc(clip["frames"][4:5])
    assert len(track.frame_indices) == 1 and track.valid.tolist() == [True]
    assert faces.nme(track.landmarks, clip["landmarks"][4:5]) < 0.15


def test_smoothing_reduces_box_jitter(clip):
    rng = np.random.default_rng(0)
    still = np.pad(clip["frames"][0], ((16, 16), (16, 16), (0, 0)), mode="edge")
    shifts = rng.normal(0, 3, (12, 2))
    frames = np.stack([cv2.warpAffine(still, np.float32([[1, 0, dx], [0, 1, dy]]), (160, 160),
                                      borderMode=cv2.BORDER_REPLICATE) for dx, dy in shifts])
    jitter = {}
    for smoothing in (1, 5):
        track = faces.FaceProcessor("dlib", crop_size=CROP, smoothing=smoothing)(frames)
        assert track.valid.all()
        centres = (track.boxes[:, :2] + track.boxes[:, 2:]) / 2
        jitter[smoothing] = np.abs(np.diff(centres, axis=0)).mean()
    assert jitter[5] < 0.5 * jitter[1], jitter


def test_smoothing_steadies_the_crop_rotation(clip):
    rng = np.random.default_rng(1)
    angles = rng.uniform(-6, 6, 12)
    still = clip["frames"][0]
    frames = np.stack([cv2.warpAffine(still, cv2.getRotationMatrix2D((64.0, 60.0), a, 1.0),
                                      (128, 128), borderMode=cv2.BORDER_REPLICATE)
                       for a in angles])
    jitter = {}
    for smoothing in (1, 5):
        track = faces.FaceProcessor("dlib", crop_size=CROP, smoothing=smoothing)(frames)
        assert track.valid.all()
        crop_angles = np.degrees(np.arctan2(track.transforms[:, 0, 1], track.transforms[:, 0, 0]))
        jitter[smoothing] = np.abs(np.diff(crop_angles)).mean()
        if smoothing == 1:
            assert max(abs(_eye_angle(p)) for p in track.crop_landmarks) < 1
    assert jitter[5] < 0.5 * jitter[1], jitter


def test_given_boxes_skip_detection(dlib_proc, clip):
    frames = clip["frames"][:3]
    whole = np.array([0, 0, 128, 128], np.float32)
    for boxes in (whole, np.tile(whole, (3, 1))):
        track = dlib_proc(frames, boxes=boxes)
        np.testing.assert_array_equal(track.boxes, np.tile(whole, (3, 1)))
        assert track.valid.all() and track.num_faces.tolist() == [1, 1, 1]
        assert np.isfinite(track.landmarks).all()
    blank = np.full((2, 64, 64, 3), GREY, np.uint8)  # no detection runs, so no NoFaceError
    assert faces.FaceProcessor("opencv")(blank, boxes=[0, 0, 64, 64]).valid.all()


def test_processor_pickles_and_gives_the_same_track(dlib_proc, clip):
    frames = clip["frames"][:2]
    before = dlib_proc(frames)
    restored = pickle.loads(pickle.dumps(dlib_proc))
    after = restored(frames)
    np.testing.assert_array_equal(before.crops, after.crops)
    np.testing.assert_array_equal(before.landmarks, after.landmarks)


# --------------------------------------------------------------------------- helpers, errors
def test_nme_is_mean_error_over_outer_eye_corner_distance():
    truth = np.zeros((2, 68, 2), np.float32)
    truth[:, 45] = (10, 0)
    pred = truth + np.float32([3, 4])  # every point off by 5 px, inter-ocular 10 px
    assert faces.nme(pred, truth) == pytest.approx(0.5)
    with pytest.raises(UserError, match="same shape"):
        faces.nme(pred[:, :5], truth[:, :5])


def test_moving_average_is_centred_and_truncated():
    values = np.array([0.0, 3.0, 6.0, 9.0, 30.0])
    np.testing.assert_allclose(faces.moving_average(values, 3), [1.5, 3, 6, 15, 19.5])
    np.testing.assert_array_equal(faces.moving_average(values, 1), values)


@pytest.mark.parametrize("frames, match", [
    (np.zeros((2, 64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64, 3), np.uint8), "one image"),
    (np.zeros((2, 64, 64, 2), np.uint8), "got shape"),
    (np.zeros((1, 2, 64, 64, 3), np.uint8), "got shape"),
    (np.zeros((0, 64, 64, 3), np.uint8), "at least one"),
])
def test_bad_frames_raise_one_line_user_error(dlib_proc, frames, match):
    with pytest.raises(UserError, match=match) as e:
        dlib_proc(frames)
    _assert_one_line_user_error(e)


@pytest.mark.parametrize("boxes", [np.zeros((3, 4)), [0, 0, 10], [[0, 0, 10, 10]] * 2,
                                   [10, 0, 0, 10], [0, 0, np.nan, 10]])
def test_bad_boxes_raise_one_line_user_error(dlib_proc, boxes):
    with pytest.raises(UserError, match="boxes must be") as e:
        dlib_proc(np.zeros((3, 32, 32, 3), np.uint8), boxes=boxes)
    _assert_one_line_user_error(e)


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "mtcnn"}, "unknown backend"),
    ({"missing": "skip"}, "unknown missing"),
    ({"smoothing": 0}, "smoothing must be"),
    ({"crop_size": 2.5}, "crop_size must be"),
    ({"margin": -0.1}, "margin must be"),
    ({"backend": "face_alignment", "detector": "mtcnn"}, "unknown detector"),
    ({"dlib_model": "/nonexistent/shape_predictor.dat"}, "dlib landmark model not found"),
])
def test_bad_arguments_raise_one_line_user_error(kwargs, match):
    with pytest.raises(UserError, match=match) as e:
        faces.FaceProcessor(**kwargs)
    _assert_one_line_user_error(e)


# --------------------------------------------------------------------------- face_alignment
@pytest.fixture(scope="module")
def random_fan_weights(tmp_path_factory) -> str:
    """A randomly initialised 2DFAN-4 state_dict saved like the released weights."""
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("face_alignment.models")
    path = tmp_path_factory.mktemp("fan") / "2DFAN4-random.pth.tar"
    torch.manual_seed(0)
    torch.save(models.FAN(4).state_dict(), path)
    return str(path)


def _no_download(*args, **kwargs):
    raise AssertionError("tried to download model weights")


def test_face_alignment_runs_offline_from_a_local_file(random_fan_weights, astronaut,
                                                       monkeypatch):
    import face_alignment.api
    import torch.hub

    monkeypatch.setattr(face_alignment.api, "load_file_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    # face_alignment decodes heatmaps with two numba functions that take ~20 s to compile on
    # first call; their pure-Python originals give the same landmarks for one face at once.
    import face_alignment.utils
    for name in ("_get_preds_fromhm", "transform_np"):
        jitted = getattr(face_alignment.utils, name)
        monkeypatch.setattr(face_alignment.utils, name, getattr(jitted, "py_func", jitted))
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    proc = faces.FaceProcessor("face_alignment", fan_weights=random_fan_weights, crop_size=64)
    track = proc(small[None])
    assert track.valid.tolist() == [True]
    np.testing.assert_allclose(track.boxes[0], ASTRONAUT_BOX / 2, atol=6)
    assert track.landmarks.shape == (1, 68, 2) and np.isfinite(track.landmarks).all()
    assert track.crops.shape == (1, 64, 64, 3) and np.isfinite(track.transforms).all()


def test_face_alignment_sfd_detector_reads_local_weights(random_fan_weights, tmp_path):
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd

    sfd_path = tmp_path / "s3fd-random.pth"
    torch.save(s3fd().state_dict(), sfd_path)
    proc = faces.FaceProcessor("face_alignment", fan_weights=random_fan_weights,
                               detector_weights=str(sfd_path))
    assert proc.detector == "sfd"
    boxes, scores = proc.backend.detect(np.zeros((64, 64, 3), np.uint8))
    assert boxes.dtype == scores.dtype == np.float32
    assert boxes.shape == (len(scores), 4)


def test_face_alignment_without_weights_says_where_to_get_them(tmp_path, monkeypatch):
    pytest.importorskip("face_alignment")
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))  # an empty cache
    with pytest.raises(UserError, match="fan_weights=") as e:
        faces.FaceProcessor("face_alignment")
    _assert_one_line_user_error(e)
    assert faces.FAN_URL in str(e.value)
    with pytest.raises(UserError, match="fan_weights file not found") as e:
        faces.FaceProcessor("face_alignment", fan_weights=str(tmp_path / "absent.pth.tar"))
    _assert_one_line_user_error(e)
    with pytest.raises(UserError, match="S3FD") as e:
        faces.FaceProcessor("face_alignment", fan_weights=__file__, detector="sfd")
    _assert_one_line_user_error(e)


def test_face_alignment_rejects_a_file_that_is_not_fan_weights(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("face_alignment")
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    proc = faces.FaceProcessor("face_alignment", fan_weights=str(path))
    with pytest.raises(UserError, match="not a 2DFAN-4 state_dict") as e:
        proc.backend
    _assert_one_line_user_error(e)


def _released_fan_weights() -> str:
    """The released 2DFAN-4 weights ($FER_JAX_FAN_WEIGHTS or the torch-hub cache), or skip."""
    pytest.importorskip("face_alignment")
    try:
        return faces.fan_weights_path(os.environ.get("FER_JAX_FAN_WEIGHTS"))
    except UserError as e:
        pytest.skip(f"set FER_JAX_FAN_WEIGHTS to the released 2DFAN-4 weights to run this "
                    f"comparison; they cannot be downloaded here ({e})")


def test_dlib_and_face_alignment_agree_on_astronaut(dlib_proc, astronaut):
    weights = _released_fan_weights()
    fan = faces.FaceProcessor("face_alignment", fan_weights=weights, crop_size=CROP)
    fan_track, dlib_track = fan(astronaut[None]), dlib_proc(astronaut[None])
    np.testing.assert_allclose(fan_track.boxes, dlib_track.boxes, atol=1)
    _assert_anatomical_order(fan_track.landmarks[0])
    assert faces.nme(fan_track.landmarks, dlib_track.landmarks) <= 0.05
