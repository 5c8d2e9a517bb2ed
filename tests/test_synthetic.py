"""Tests of the procedural synthetic face-video benchmark (fer_jax.data.synthetic)."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from fer_jax.data import action_units
from fer_jax.data import synthetic
from fer_jax.data.synthetic import SyntheticConfig, SyntheticFaces

CLEAN = SyntheticConfig(nuisance=0.0)
NOISY = SyntheticConfig(nuisance=1.0)


@pytest.fixture(scope="module")
def clean() -> SyntheticFaces:
    return SyntheticFaces("train", 28, CLEAN)


@pytest.fixture(scope="module")
def noisy() -> SyntheticFaces:
    return SyntheticFaces("train", 120, NOISY)


def _apex(truth: dict) -> int:
    return int(np.flatnonzero(truth["phase"] == 2)[0])


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_pixels_and_different_seed_differs():
    a = SyntheticFaces("train", 10, SyntheticConfig(seed=3))
    b = SyntheticFaces("train", 10, SyntheticConfig(seed=3))
    c = SyntheticFaces("train", 10, SyntheticConfig(seed=4))
    b.load(7)  # rendering order must not matter
    for i in (2, 5):
        np.testing.assert_array_equal(a.load(i)["frames"], b.load(i)["frames"])
        assert not np.array_equal(a.load(i)["frames"], c.load(i)["frames"])
    assert not np.array_equal(a.load(0)["frames"], a.load(1)["frames"])


def test_video_does_not_depend_on_num_videos_or_other_splits():
    small, large = SyntheticFaces("test", 9, NOISY), SyntheticFaces("test", 40, NOISY)
    np.testing.assert_array_equal(small.labels, large.labels[:9])
    np.testing.assert_array_equal(small.subjects, large.subjects[:9])
    np.testing.assert_array_equal(small.load(8)["frames"], large.load(8)["frames"])
    other = SyntheticFaces("validation", 9, NOISY)
    assert not np.array_equal(small.load(0)["frames"], other.load(0)["frames"])


def test_same_pixels_in_another_process(noisy):
    code = ("import hashlib; from fer_jax.data import synthetic as s; "
            "d = s.SyntheticFaces('train', 120, s.SyntheticConfig(nuisance=1.0)); "
            "print(hashlib.sha256(d.load(37)['frames'].tobytes()).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="123")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    import hashlib
    assert result.stdout.strip() == hashlib.sha256(noisy.load(37)["frames"].tobytes()).hexdigest()


def test_frame_subset_equals_slice_of_full_render(noisy):
    for index in range(0, 120, 7):
        full = noisy.load(index, au_masks=True)
        frames = np.array([5, 0, 23, 5, 11])
        part = noisy.load(index, frames, au_masks=True)
        for key in ("frames", "landmarks", "intensity", "occluded", "dark", "distractor",
                    "au_masks", "phase", "occluder_box"):
            np.testing.assert_array_equal(part[key], full[key][frames], err_msg=key)
        np.testing.assert_array_equal(part["frame_indices"], frames)
    assert noisy.load(3, [])["frames"].shape == (0, 64, 64, 3)


def test_pickled_source_renders_the_same(noisy):
    clone = pickle.loads(pickle.dumps(noisy))
    np.testing.assert_array_equal(clone.load(4)["frames"], noisy.load(4)["frames"])


# --------------------------------------------------------------------------- labels and splits
def test_labels_are_balanced_and_cover_the_classes():
    for num_classes, n in ((7, 50), (3, 31), (2, 9)):
        source = SyntheticFaces("train", n, SyntheticConfig(num_classes=num_classes))
        counts = np.bincount(source.labels, minlength=num_classes)
        assert len(counts) == num_classes and counts.max() - counts.min() <= 1
        assert source.labels.dtype == np.int32 and len(source) == n
        assert source.class_names == action_units.EXPRESSIONS[:num_classes]
    # Shuffled within blocks, not simply label = index % C.
    seven = SyntheticFaces("train", 70, CLEAN).labels
    assert not np.array_equal(seven, np.arange(70) % 7)


def test_subjects_are_disjoint_across_splits():
    config = SyntheticConfig(num_subjects=40)
    seen = {}
    for split in synthetic.SPLITS:
        source = SyntheticFaces(split, 200, config)
        start, stop = source.subject_range
        assert source.subjects.min() >= start and source.subjects.max() < stop
        assert len(np.unique(source.subjects)) == stop - start  # every subject is used
        seen[split] = set(source.subjects.tolist())
    assert not seen["train"] & seen["validation"] and not seen["train"] & seen["test"]
    assert not seen["validation"] & seen["test"]
    ranges = synthetic.subject_ranges(40)
    assert ranges == {"train": (0, 28), "validation": (28, 34), "test": (34, 40)}


def test_identity_is_fixed_per_subject():
    clean = SyntheticFaces("train", 60, CLEAN)  # 42 training subjects: some appear twice
    by_subject = {}
    for i, subject in enumerate(clean.subjects.tolist()):
        by_subject.setdefault(subject, []).append(i)
    i, j = next(v for v in by_subject.values() if len(v) > 1)[:2]
    a, b = clean.load(i, [0]), clean.load(j, [0])
    np.testing.assert_array_equal(a["frames"][0, :4], b["frames"][0, :4])  # same background
    np.testing.assert_allclose(a["landmarks"], b["landmarks"], atol=0.6)  # same neutral face
    k = next(k for k in range(len(clean)) if clean.subjects[k] != clean.subjects[i])
    assert np.abs(clean.load(k, [0])["landmarks"] - a["landmarks"]).max() > 1.0


# --------------------------------------------------------------------------- timeline
def test_intensity_profile(noisy):
    for index in range(len(noisy)):
        truth = noisy.ground_truth(index)
        intensity, phase = truth["intensity"], truth["phase"]
        assert intensity.dtype == np.float32 and len(intensity) == noisy.num_frames(index)
        if truth["label"] == 0:
            assert not intensity.any() and not phase.any()
            continue
        assert intensity[0] == 0 and intensity[-1] == 0
        assert np.all((intensity >= 0) & (intensity <= 1))
        apex = np.flatnonzero(phase == 2)
        assert 4 <= len(apex) <= 8 and np.all(intensity[apex] == 1)
        assert np.all(np.diff(apex) == 1) and np.all(intensity[phase != 2] < 1)
        peak = apex[0]
        assert np.all(np.diff(intensity[:peak + 1]) >= 0)
        assert np.all(np.diff(intensity[apex[-1]:]) <= 0)
        # phases occur in order: neutral, onset, apex, offset, neutral
        runs = [p for k, p in enumerate(phase) if k == 0 or phase[k - 1] != p]
        assert runs == [0, 1, 2, 3, 0]
        assert 2 <= np.sum(phase == 1) <= 4 and 2 <= np.sum(phase == 3) <= 4


def test_short_and_variable_length_videos():
    config = SyntheticConfig(num_frames=(10, 30), num_subjects=20)
    source = SyntheticFaces("validation", 40, config)
    assert source.lengths.min() >= 10 and source.lengths.max() <= 30
    assert len(np.unique(source.lengths)) > 5
    for index in range(0, 40, 5):
        sample = source.load(index)
        assert len(sample["frames"]) == source.num_frames(index) == source.lengths[index]
        if sample["label"]:
            assert sample["intensity"][0] == 0 and sample["intensity"][-1] == 0
            assert sample["intensity"].max() == 1
    smoke = SyntheticFaces("train", 8, SyntheticConfig(num_frames=12, image_size=32,
                                                       num_subjects=20))
    assert smoke.load(1)["frames"].shape == (12, 32, 32, 3)


def test_config_sets_the_event_phases_of_long_videos():
    """config.dataset.{onset,apex,offset}_frames reach the benchmark (the long-video sampler
    experiment: 64–96 frames, an apex of 8–16 frames); a bad range is a one-line error."""
    from fer_jax import configs
    from fer_jax.data import sources
    from fer_jax.errors import UserError

    config = configs.defaults()
    config.dataset = configs.synthetic_dataset(num_frames=(64, 96), apex_frames=(8, 16),
                                               test_videos=21)
    source = sources.build(config, "test")
    assert 64 <= min(source.lengths) and max(source.lengths) <= 96
    apex = [int(np.sum(source.ground_truth(v)["phase"] == 2)) for v in range(21)
            if source.labels[v]]
    assert min(apex) >= 8 and max(apex) <= 16 and len(set(apex)) > 3
    assert configs.defaults().dataset.apex_frames == SyntheticConfig().apex_frames
    config.dataset.apex_frames = (0, 3)
    with pytest.raises(UserError, match="config.dataset: apex_frames must satisfy 1 <= min"):
        sources.build(config, "test")


# --------------------------------------------------------------------------- geometry
def test_landmarks_are_anatomical_and_inside_the_frame(noisy):
    for index in range(len(noisy)):
        p = noisy.ground_truth(index)["landmarks"]
        assert p.shape == (noisy.num_frames(index), 68, 2) and p.dtype == np.float32
        assert p.min() >= 0 and p.max() < 64
        y = p[..., 1]
        brows, eyes = y[:, 17:27].mean(1), y[:, 36:48].mean(1)
        nose, mouth, chin = y[:, 30], y[:, 48:68].mean(1), y[:, 8]
        assert np.all(brows < eyes) and np.all(eyes < nose) and np.all(nose < mouth)
        assert np.all(mouth < chin)
        x = p[..., 0]
        assert np.all(x[:, 0] < x[:, 8]) and np.all(x[:, 8] < x[:, 16])
        assert np.all(x[:, 36] < x[:, 39]) and np.all(x[:, 39] < x[:, 42])
        assert np.all(x[:, 42] < x[:, 45]) and np.all(x[:, 48] < x[:, 54])
        assert np.all(x[:, 17] < x[:, 21]) and np.all(x[:, 22] < x[:, 26])
        assert np.all(y[:, [40, 41, 46, 47]] > y[:, [38, 37, 44, 43]])  # eyes open
        assert np.all(y[:, [67, 66, 65]] >= y[:, [61, 62, 63]])        # lips not crossed


def test_expression_changes_pixels_only_through_the_face(clean):
    for index in range(len(clean)):
        truth = clean.ground_truth(index)
        if truth["label"] == 0:
            frames = clean.load(index)["frames"]
            assert np.all(frames == frames[0])  # no expression, no nuisance: a still video
            continue
        start = int(np.flatnonzero(truth["phase"])[0])
        sample = clean.load(index, [0, start - 1, _apex(truth)])
        neutral, before, apex = sample["frames"].astype(np.int16)
        np.testing.assert_array_equal(neutral, before)
        changed = np.abs(apex - neutral).max(-1) > 30
        assert changed.sum() >= 15
        ys, xs = np.nonzero(changed)
        p = sample["landmarks"][[0, 2]].reshape(-1, 2)
        assert xs.min() >= p[:, 0].min() - 3 and xs.max() <= p[:, 0].max() + 3
        assert ys.min() >= p[:, 1].min() - 3 and ys.max() <= p[:, 1].max() + 3


def _displacements(source: SyntheticFaces) -> tuple[np.ndarray, np.ndarray]:
    """Apex-minus-first-frame landmark displacements, similarity-aligned, in IODs."""
    features = []
    for index in range(len(source)):
        truth = source.ground_truth(index)
        p = truth["landmarks"].astype(np.float64)
        a = p[_apex(truth)] if truth["label"] else p[len(p) // 2]
        b = p[0]
        rigid = [27, 28, 29, 30, 36, 39, 42, 45]
        za = (a[:, 0] - a[rigid, 0].mean()) + 1j * (a[:, 1] - a[rigid, 1].mean())
        zb = (b[:, 0] - b[rigid, 0].mean()) + 1j * (b[:, 1] - b[rigid, 1].mean())
        za *= (np.conj(za[rigid]) @ zb[rigid]) / (np.conj(za[rigid]) @ za[rigid])
        iod = abs(zb[36:42].mean() - zb[42:48].mean())
        features.append(np.concatenate([(za - zb).real, (za - zb).imag]) / iod)
    return np.array(features), source.labels


def test_labels_are_learnable_from_landmark_displacements():
    config = SyntheticConfig(nuisance=0.5)
    x_train, y_train = _displacements(SyntheticFaces("train", 210, config))
    x_test, y_test = _displacements(SyntheticFaces("test", 140, config))
    centroids = np.stack([x_train[y_train == c].mean(0) for c in range(7)])
    predicted = np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == y_test).mean() >= 0.9


def test_au_fields_move_the_described_landmarks():
    f = {au: synthetic.au_field(au) for au in action_units.ACTION_UNITS}
    dx, dy = (lambda au, i: f[au][i, 0]), (lambda au, i: f[au][i, 1])
    assert dy(1, 21) < -0.1 and dy(1, 22) < -0.1 and abs(dy(1, 17)) < 0.01   # inner brows up
    assert dy(2, 17) < -0.1 and dy(2, 26) < -0.1 and abs(dy(2, 21)) < 0.01   # outer brows up
    assert dy(4, 19) > 0.1 and dx(4, 21) > 0 and dx(4, 22) < 0               # down, together
    assert dy(5, 37) < -0.05 and dy(5, 44) < -0.05                            # upper lids up
    assert dy(6, 41) < 0 and dy(6, 46) < 0                                    # lower lids up
    assert dy(7, 41) < 0 and dy(7, 37) > 0                                    # lids tighten
    assert dy(9, 33) < 0 and dy(9, 31) < 0                                    # nose wrinkles
    assert dy(10, 51) < -0.05 and dy(10, 62) < -0.05                          # upper lip up
    assert dx(12, 48) < 0 < dx(12, 54) and dy(12, 48) < -0.1 and dy(12, 54) < -0.1
    assert dy(15, 48) > 0.05 and dy(15, 54) > 0.05                            # corners down
    assert dy(16, 57) > 0.05 and dy(16, 66) > 0.05                            # lower lip down
    assert dy(17, 8) < 0 and dy(17, 57) < 0                                   # chin up
    assert dx(20, 48) < -0.1 and dx(20, 54) > 0.1                             # lips stretched
    assert dx(23, 48) > 0 > dx(23, 54) and dx(24, 48) > 0 > dx(24, 54)        # tightened
    assert dy(25, 66) > 0 and dy(25, 62) < 0                                  # lips part
    assert dy(26, 8) > 0.1 and dy(26, 66) > 0.1 and dy(27, 66) > 0.1          # jaw, mouth
    mirror = synthetic._MIRROR
    for field in f.values():  # every field is left/right symmetric
        np.testing.assert_allclose(field[mirror], field * [-1, 1])
    with pytest.raises(ValueError, match="unsupported action unit"):
        synthetic.au_field(3)


# --------------------------------------------------------------------------- AU masks
def test_au_masks(clean):
    regions = {  # landmark points that the class's AU regions must cover / avoid at apex
        "happiness": ([48, 54], [19, 24]),
        "surprise": ([19, 24, 62], [3, 13]),
        "sadness": ([21, 22, 48, 54], []),
        "anger": ([21, 22, 37, 62], []),
    }
    for index in range(len(clean)):
        truth = clean.ground_truth(index)
        name = clean.class_names[truth["label"]]
        sample = clean.load(index, [0, _apex(truth)] if truth["label"] else [0], au_masks=True)
        masks = sample["au_masks"]
        assert masks.shape == (len(sample["frames"]), 64, 64) and masks.dtype == np.float32
        if name == "neutral":
            assert not masks.any()
            continue
        assert masks.min() == 0 and masks.max() == pytest.approx(1.0)
        np.testing.assert_array_equal(
            masks[-1], action_units.au_map(sample["landmarks"][-1], name, 64, 64))
        if name in regions:
            inside, outside = regions[name]
            p = np.rint(sample["landmarks"][-1]).astype(int)
            assert all(masks[-1][p[i, 1], p[i, 0]] > 0.5 for i in inside), name
            assert all(masks[-1][p[i, 1], p[i, 0]] < 0.05 for i in outside), name
            total = masks[-1].sum()
            eyes, nose = int(p[36:48, 1].mean()), p[30, 1]
            above_eyes, below_nose = masks[-1][:eyes].sum(), masks[-1][nose:].sum()
            if name == "happiness":  # cheeks, lip corners, lips
                assert above_eyes < 0.02 * total and below_nose > 0.6 * total
            if name == "surprise":  # brows, eyes, mouth
                assert above_eyes > 0.4 * total and below_nose > 0.05 * total


# --------------------------------------------------------------------------- nuisances
def test_no_nuisance_means_no_nuisance(clean):
    for index in range(len(clean)):
        truth = clean.ground_truth(index)
        assert not truth["occluded"].any() and not truth["dark"].any()
        assert not truth["distractor"].any() and truth["distractor_label"] == -1
        neutral = truth["phase"] == 0
        np.testing.assert_array_equal(truth["landmarks"][neutral],
                                      np.broadcast_to(truth["landmarks"][0],
                                                      truth["landmarks"][neutral].shape))


def test_nuisances_are_recorded_where_they_are(noisy):
    counts = dict(occluded=0, dark=0, distractor=0)
    for index in range(len(noisy)):
        truth = noisy.ground_truth(index)
        for key in counts:
            counts[key] += bool(truth[key].any())
        if truth["distractor"].any():
            other = int(truth["distractor_label"])
            assert other not in (0, int(truth["label"]))
            assert np.all(truth["distractor_intensity"][truth["distractor"]] <= 0.35)
            gap = truth["phase"] != 0
            gap = gap | np.roll(gap, 1) | np.roll(gap, -1)
            assert not np.any(truth["distractor"] & gap)
        if truth["occluded"].any():
            t = int(np.flatnonzero(truth["occluded"])[0])
            x0, y0, x1, y1 = truth["occluder_box"][t]
            assert 0 < x1 - x0 < 64 and 0 < y1 - y0 < 64
            assert not truth["occluder_box"][~truth["occluded"]].any()
        if truth["dark"].any() and not truth["dark"].all():
            frames = noisy.load(index)["frames"].astype(np.float64)
            assert frames[truth["dark"]].mean() < 0.75 * frames[~truth["dark"]].mean()
    assert all(10 < c < 110 for c in counts.values()), counts


def test_occluder_covers_its_box(noisy):
    checked = 0
    for index in range(len(noisy)):
        truth = noisy.ground_truth(index)
        if not truth["occluded"].any() or truth["occluded"].all() or truth["dark"].any():
            continue
        t = int(np.flatnonzero(truth["occluded"])[0])
        free = int(np.flatnonzero(~truth["occluded"])[0])
        x0, y0, x1, y1 = truth["occluder_box"][t]
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4, (y1 - y0) / 4
        # the central half of the box lies inside both occluder shapes (rectangle, ellipse)
        rows = slice(*np.clip(np.rint([cy - hh, cy + hh]).astype(int), 0, 64))
        cols = slice(*np.clip(np.rint([cx - hw, cx + hw]).astype(int), 0, 64))
        frames = noisy.load(index, [t, free])["frames"][:, rows, cols]
        occluded, visible = frames.astype(np.float64)
        if occluded.size == 0:
            continue
        assert occluded.std(axis=(0, 1)).max() < 20  # one flat colour plus pixel noise
        assert np.abs(occluded - visible).mean() > 10
        checked += 1
    assert checked >= 5


# --------------------------------------------------------------------------- API and errors
def test_sample_layout(noisy):
    sample = noisy[5]
    assert sample["frames"].dtype == np.uint8 and sample["frames"].shape == (24, 64, 64, 3)
    for key, dtype in (("label", np.int32), ("subject", np.int32), ("index", np.int32),
                       ("frame_indices", np.int32), ("intensity", np.float32),
                       ("landmarks", np.float32), ("occluded", np.bool_), ("dark", np.bool_),
                       ("distractor", np.bool_)):
        assert sample[key].dtype == dtype, key
    assert sample["label"] == noisy.labels[5] and sample["subject"] == noisy.subjects[5]
    assert sample["index"] == 5 and "au_masks" not in sample
    assert noisy.num_frames(5) == 24


@pytest.mark.parametrize("make, message", [
    (lambda: SyntheticFaces("val", 4), "unknown split"),
    (lambda: SyntheticFaces("train", -1), "num_videos"),
    (lambda: SyntheticConfig(num_classes=1), "num_classes"),
    (lambda: SyntheticConfig(num_classes=8), "num_classes"),
    (lambda: SyntheticConfig(image_size=16), "image_size"),
    (lambda: SyntheticConfig(nuisance=1.5), "nuisance"),
    (lambda: SyntheticConfig(num_subjects=2), "num_subjects"),
    (lambda: SyntheticConfig(num_frames=8), "too short"),
    (lambda: SyntheticConfig(num_frames=(30, 20)), "num_frames"),
    (lambda: SyntheticConfig(apex_frames=(0, 3)), "apex_frames"),
    (lambda: SyntheticConfig(onset_frames=(3,)), "onset_frames"),
    (lambda: SyntheticConfig(seed=-1), "seed"),
    (lambda: SyntheticConfig(codebook="paper"), "codebook"),
    (lambda: SyntheticFaces("train", 4).load(4), "out of range"),
    (lambda: SyntheticFaces("train", 4).load(-1), "out of range"),
    (lambda: SyntheticFaces("train", 4).ground_truth(1.5), "int"),
    (lambda: SyntheticFaces("train", 4).load(0, [0, 24]), "frame_indices"),
    (lambda: SyntheticFaces("train", 4).load(0, [-1]), "frame_indices"),
    (lambda: SyntheticFaces("train", 4).load(0, [[0, 1]]), "frame_indices"),
    (lambda: SyntheticFaces("train", 4).num_frames(9), "out of range"),
])
def test_bad_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()
