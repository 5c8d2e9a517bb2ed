"""Tests of the evaluation protocols (fer_jax.data.protocols) on synthetic metadata tables
shaped like the real datasets (sizes, subjects, classes, official partitions)."""
import dataclasses

import numpy as np
import pytest

from fer_jax.data import datasets, protocols
from fer_jax.data.protocols import Meta
from fer_jax.errors import UserError

EMOTIONS7 = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")


def _meta(labels, subjects, class_names, partitions=None, info=None, names=None) -> Meta:
    labels = np.asarray(labels, np.int32)
    subjects = np.asarray(subjects).astype(str)
    n = len(labels)
    if names is None:
        names = np.char.add(np.char.add(subjects, "/"), np.arange(n).astype(str))
    return Meta(names=np.asarray(names).astype(str), labels=labels, subjects=subjects,
                partitions=np.full(n, "") if partitions is None else np.asarray(partitions),
                info={k: np.asarray(v, np.int32) for k, v in (info or {}).items()},
                class_names=tuple(class_names))


def _cremad() -> Meta:
    """7,442 videos of 91 actors: per actor 12 sentences x 6 emotions at level XX, except
    sentence 0 whose 5 non-neutral emotions come at 3 levels (82 each), less 20 missing."""
    actor, sentence, emotion, level = np.meshgrid(np.arange(1001, 1092), np.arange(12),
                                                  np.arange(6), np.arange(4), indexing="ij")
    sentence0 = (sentence == 0) & (emotion > 0)
    valid = np.where(sentence0, level < 3, level == 3)
    actor, sentence, emotion, level = (a[valid] for a in (actor, sentence, emotion, level))
    keep = np.sort(np.random.default_rng(0).permutation(len(actor))[20:])
    actor, sentence, emotion, level = (a[keep] for a in (actor, sentence, emotion, level))
    names = [f"VideoFlash/{a}_{s}_{e}_{v}" for a, s, e, v in zip(actor, sentence, emotion, level)]
    return _meta(emotion, actor, ("neutral", "anger", "disgust", "fear", "happiness", "sadness"),
                 info={"level": level, "sentence": sentence}, names=names)


def _afew() -> Meta:
    """Train 773 / Val 383 / Test 100 (unlabelled, stored as neutral), skewed classes."""
    rng = np.random.default_rng(1)
    p = np.array([0.2, 0.17, 0.1, 0.1, 0.19, 0.15, 0.09])
    labels = rng.choice(7, 1256, p=p)
    partitions = np.repeat(["Train", "Val", "Test"], [773, 383, 100])
    labels[partitions == "Test"] = 0
    return _meta(labels, np.arange(1256), EMOTIONS7, partitions=partitions)


def _ckplus() -> Meta:
    """327 labelled sequences of 118 subjects ('S005'...), plus a neutral video
    '<sequence>/neutral' for 150 of them with the sequence's subject."""
    rng = np.random.default_rng(2)
    subject = np.sort(np.concatenate([np.arange(118), rng.integers(0, 118, 209)]))
    sequence = np.arange(327) - np.searchsorted(subject, subject) + 1
    subjects = np.char.add("S", np.char.zfill((subject + 5).astype(str), 3))
    seq_names = np.char.add(np.char.add(subjects, "/"), np.char.zfill(sequence.astype(str), 3))
    labels = rng.integers(1, 7, 327)
    with_neutral = np.sort(rng.choice(327, 150, replace=False))
    names = np.concatenate([seq_names, np.char.add(seq_names[with_neutral], "/neutral")])
    return _meta(np.concatenate([labels, np.zeros(150, int)]),
                 np.concatenate([subjects, subjects[with_neutral]]), EMOTIONS7, names=names)


def _samm() -> Meta:
    """343 videos of 32 subjects '006'..'037', 8 classes."""
    rng = np.random.default_rng(3)
    subjects = np.char.zfill((6 + np.concatenate([np.arange(32), rng.integers(0, 32, 311)]))
                             .astype(str), 3)
    return _meta(rng.integers(0, 8, 343), subjects, ("anger", "contempt", "disgust", "fear",
                 "happiness", "other", "sadness", "surprise"))


def _clips(num_classes, sources_per_class, max_clips, seed):
    """Labels and source-video ids of clips: each class has source videos of 1..max_clips
    clips; returns (labels, sources, source_of_clip) with source ids unique overall."""
    rng = np.random.default_rng(seed)
    num_sources = num_classes * sources_per_class
    per_source = rng.integers(1, max_clips + 1, num_sources)
    source_of_clip = np.repeat(np.arange(num_sources), per_source)
    labels = source_of_clip // sources_per_class
    return labels, np.char.add("v", source_of_clip.astype(str)), source_of_clip


def _hmdb51() -> Meta:
    """~6,800 clips of 51 classes from source videos of 1..7 clips; per split file each source
    video is wholly train (1, 55 %), test (2, 25 %) or unused (0)."""
    labels, sources, source_of_clip = _clips(51, 33, 7, seed=4)
    rng = np.random.default_rng(5)
    codes = rng.choice(3, (3, source_of_clip.max() + 1), p=[0.2, 0.55, 0.25])
    return _meta(labels, sources, [f"action{c}" for c in range(51)],
                 info={f"split{k + 1}": codes[k][source_of_clip] for k in range(3)})


def _hmdb8() -> Meta:
    """~2,400 clips of the 8 HMDB actions from source videos of 1..5 clips."""
    labels, sources, _ = _clips(8, 100, 5, seed=6)
    return _meta(labels, sources, ("fall_floor", "hug", "jump", "punch", "run", "smoke",
                                   "throw", "wave"))


UNBC_OPI = np.repeat(np.arange(6), [92, 30, 21, 25, 20, 12])  # 92 OPI 0, 51 OPI 1-2, 57 OPI >= 3


def _unbc() -> Meta:
    """200 sequences of 25 subjects (8 each, random OPI) with the thesis's OPI counts."""
    rng = np.random.default_rng(7)
    opi = rng.permutation(UNBC_OPI)
    subjects = np.char.add("s", (np.arange(200) % 25).astype(str))
    return _meta(opi, subjects, [f"opi{k}" for k in range(6)], info={"opi": opi})


def _biovid() -> Meta:
    """87 subjects x 5 classes (BL1, PA1..PA4) x 20 videos = 8,700."""
    subject, label, _ = np.meshgrid(np.arange(87), np.arange(5), np.arange(20), indexing="ij")
    subjects = np.char.add("0712", np.char.zfill(subject.ravel().astype(str), 2))
    return _meta(label.ravel(), subjects, ("BL1", "PA1", "PA2", "PA3", "PA4"))


def _rafdb() -> Meta:
    """12,271 train / 3,068 test images (one-frame videos), skewed classes."""
    rng = np.random.default_rng(8)
    p = np.array([0.2, 0.05, 0.05, 0.02, 0.39, 0.16, 0.13])
    partitions = np.repeat(["train", "test"], [12271, 3068])
    return _meta(rng.choice(7, len(partitions), p=p), np.arange(len(partitions)), EMOTIONS7,
                 partitions=partitions)


# AffectNet's 7 classes in EMOTIONS7 order: training.csv counts (paper), 500 each in validation.csv
AFFECTNET_TRAIN = np.array([74874, 24882, 3803, 6378, 134415, 25459, 14090])


def _affectnet() -> Meta:
    """283,901 training.csv / 3,500 validation.csv images (one-frame videos), one subject each."""
    labels = np.concatenate([np.repeat(np.arange(7), AFFECTNET_TRAIN),
                             np.repeat(np.arange(7), 500)])
    partitions = np.repeat(["train", "test"], [AFFECTNET_TRAIN.sum(), 3500])
    subjects = np.arange(len(labels)).astype(str)
    return _meta(labels, subjects, EMOTIONS7, partitions=partitions, names=subjects)


META = {"cremad": _cremad(), "afew": _afew(), "ckplus": _ckplus(), "samm": _samm(),
        "hmdb51": _hmdb51(), "hmdb8": _hmdb8(), "unbc": _unbc(), "biovid": _biovid(),
        "rafdb": _rafdb(), "affectnet": _affectnet()}
CASES = [(d, p) for d, table in protocols.PROTOCOLS.items() for p in table]


def _parts(s: protocols.Splits):
    return s.train, s.validation, s.test


def _subjects(meta: Meta, subset) -> set:
    return set(meta.subjects[subset.indices])


def _all_folds(dataset, protocol, seed=0):
    first = protocols.split(dataset, META[dataset], protocol, 0, seed)
    return [first] + [protocols.split(dataset, META[dataset], protocol, k, seed)
                      for k in range(1, first.num_folds)]


# --------------------------------------------------------------------------- every protocol
def test_every_dataset_has_metadata_and_protocols():
    assert set(protocols.PROTOCOLS) == set(META)
    assert tuple(protocols.PROTOCOLS) == datasets.names()  # every registered dataset, in order
    assert all(table for table in protocols.PROTOCOLS.values())


@pytest.mark.parametrize("dataset,protocol", CASES)
def test_splits_are_sorted_disjoint_and_cover_all_videos(dataset, protocol):
    meta = META[dataset]
    s = protocols.split(dataset, meta, protocol, fold=0, seed=0)
    assert s.protocol == protocol and s.fold == 0 and s.num_folds >= 1
    for subset in _parts(s):
        assert subset.indices.dtype == np.int64 and subset.labels.dtype == np.int32
        assert len(subset.indices) > 0 and np.all(np.diff(subset.indices) > 0)
        assert np.all((subset.labels >= 0) & (subset.labels < len(s.class_names)))
    used = np.concatenate([subset.indices for subset in _parts(s)])
    assert len(np.unique(used)) == len(used)  # disjoint
    assert len(used) + s.excluded == len(meta.names)  # train ∪ validation ∪ test ∪ excluded


@pytest.mark.parametrize("dataset,protocol", CASES)
def test_same_seed_same_splits(dataset, protocol):
    a = protocols.split(dataset, META[dataset], protocol, seed=3)
    b = protocols.split(dataset, META[dataset], protocol, seed=3)
    for x, y in zip(_parts(a), _parts(b)):
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.labels, y.labels)


@pytest.mark.parametrize("dataset,protocol", [c for c in CASES if c[1] != "loso"])
def test_different_seed_different_random_splits(dataset, protocol):
    a = protocols.split(dataset, META[dataset], protocol, seed=0)
    b = protocols.split(dataset, META[dataset], protocol, seed=1)
    assert not np.array_equal(a.validation.indices, b.validation.indices)


@pytest.mark.parametrize("dataset", ["samm", "unbc"])
def test_leave_one_subject_out_ignores_the_seed(dataset):
    a = protocols.split(dataset, META[dataset], seed=0, fold=4)
    b = protocols.split(dataset, META[dataset], seed=9, fold=4)
    np.testing.assert_array_equal(a.train.indices, b.train.indices)


def test_default_protocol_is_the_first_listed():
    for dataset, table in protocols.PROTOCOLS.items():
        assert protocols.split(dataset, META[dataset]).protocol == next(iter(table))


def test_kept_labels_are_the_stored_ones_without_relabelling():
    meta = META["cremad"]
    s = protocols.split("cremad", meta, "actors", fold=2)
    assert s.class_names == meta.class_names
    for subset in _parts(s):
        np.testing.assert_array_equal(subset.labels, meta.labels[subset.indices])


# --------------------------------------------------------------------------- CREMA-D
def test_cremad_random_is_90_5_5_stratified_by_emotion():
    meta = META["cremad"]
    s = protocols.split("cremad", meta, "random")
    assert len(meta.names) == 7442 and s.excluded == 0 and s.num_folds == 1
    for subset, share in zip(_parts(s), (0.90, 0.05, 0.05)):
        per_class = np.bincount(subset.labels, minlength=6)
        np.testing.assert_allclose(per_class, share * np.bincount(meta.labels), atol=1)


def test_cremad_actor_folds_are_actor_independent_and_partition_the_actors():
    meta = META["cremad"]
    folds = _all_folds("cremad", "actors")
    assert len(folds) == 5
    tests = [_subjects(meta, s.test) for s in folds]
    assert set().union(*tests) == set(meta.subjects) and sum(map(len, tests)) == 91
    for s in folds:
        train, validation, test = (_subjects(meta, p) for p in _parts(s))
        assert not (train & validation or train & test or validation & test)
        assert len(test) in (18, 19)
        rest = len(s.train.indices) + len(s.validation.indices)
        assert abs(len(s.validation.indices) / rest - 0.10) < 0.02  # ~7 of 72-73 actors


# --------------------------------------------------------------------- AFEW, RAF-DB, AffectNet
@pytest.mark.parametrize("dataset,train,test,share", [("afew", "Train", "Val", 0.20),
                                                      ("rafdb", "train", "test", 0.10),
                                                      ("affectnet", "train", "test", 0.10)])
def test_official_partitions_with_a_stratified_validation_draw(dataset, train, test, share):
    meta = META[dataset]
    s = protocols.split(dataset, meta, "official", seed=5)
    np.testing.assert_array_equal(s.test.indices, np.flatnonzero(meta.partitions == test))
    pool = np.flatnonzero(meta.partitions == train)
    np.testing.assert_array_equal(np.union1d(s.train.indices, s.validation.indices), pool)
    expected = share * np.bincount(meta.labels[pool], minlength=7)
    assert np.all(np.abs(np.bincount(s.validation.labels, minlength=7) - expected) <= 1)
    assert s.excluded == np.sum((meta.partitions != train) & (meta.partitions != test))


def test_afew_unlabelled_test_partition_is_excluded():
    assert protocols.split("afew", META["afew"]).excluded == 100


def test_affectnet_official_sizes_of_seed_003():
    meta = META["affectnet"]
    s = protocols.split("affectnet", meta, "official", seed=1)
    assert s.class_names == EMOTIONS7 and s.num_folds == 1 and s.excluded == 0
    assert len(s.train.indices) + len(s.validation.indices) == 283_901
    assert np.bincount(s.test.labels).tolist() == [500] * 7
    np.testing.assert_allclose(np.bincount(s.validation.labels, minlength=7),
                               0.10 * AFFECTNET_TRAIN, atol=1)


# --------------------------------------------------------------------------- CK+
def test_ckplus_six_subject_independent_folds_with_15_percent_validation():
    meta = META["ckplus"]
    folds = _all_folds("ckplus", "6fold")
    assert len(folds) == 6
    tests = [_subjects(meta, s.test) for s in folds]
    assert set().union(*tests) == set(meta.subjects) and sum(map(len, tests)) == 118
    for s in folds:
        train, validation, test = (_subjects(meta, p) for p in _parts(s))
        assert not (train & validation or train & test or validation & test)
        assert abs(len(s.validation.indices) / len(meta.names) - 0.15) < 0.012


def test_ckplus_neutral_videos_follow_their_sequence():
    meta = META["ckplus"]
    s = protocols.split("ckplus", meta, "6fold", fold=1)
    part_of = {}
    for part, subset in enumerate(_parts(s)):
        part_of.update(dict.fromkeys(meta.names[subset.indices], part))
    neutral = [name for name in meta.names if name.endswith("/neutral")]
    assert len(neutral) == 150
    assert all(part_of[name] == part_of[name[:-len("/neutral")]] for name in neutral)


# --------------------------------------------------------------------------- LOSO
@pytest.mark.parametrize("dataset,num_subjects", [("samm", 32), ("unbc", 25)])
def test_loso_tests_each_subject_once_and_validates_on_the_next(dataset, num_subjects):
    meta = META[dataset]
    folds = _all_folds(dataset, "loso")
    subjects = sorted(set(meta.subjects))
    assert len(folds) == num_subjects == len(subjects)
    for k, s in enumerate(folds):
        assert _subjects(meta, s.test) == {subjects[k]}
        assert _subjects(meta, s.validation) == {subjects[(k + 1) % num_subjects]}
        assert not _subjects(meta, s.train) & {subjects[k], subjects[(k + 1) % num_subjects]}


def test_unbc_is_binary_no_pain_vs_pain_with_opi_1_2_excluded():
    meta = META["unbc"]
    s = protocols.split("unbc", meta, "loso", fold=7)
    assert s.class_names == ("no_pain", "pain") and s.excluded == 51
    labels = np.concatenate([p.labels for p in _parts(s)])
    assert np.bincount(labels).tolist() == [92, 57]
    for subset in _parts(s):
        opi = meta.info["opi"][subset.indices]
        assert np.all(np.isin(opi, [0, 3, 4, 5]))
        np.testing.assert_array_equal(subset.labels, (opi >= 3).astype(np.int32))


# --------------------------------------------------------------------------- HMDB
@pytest.mark.parametrize("k", [1, 2, 3])
def test_hmdb51_official_split_with_validation_by_source_video(k):
    meta = META["hmdb51"]
    codes = meta.info[f"split{k}"]
    s = protocols.split("hmdb51", meta, f"split{k}", seed=2)
    assert s.num_folds == 1 and s.excluded == np.sum(codes == 0)
    np.testing.assert_array_equal(s.test.indices, np.flatnonzero(codes == 2))
    np.testing.assert_array_equal(np.union1d(s.train.indices, s.validation.indices),
                                  np.flatnonzero(codes == 1))
    assert not _subjects(meta, s.train) & _subjects(meta, s.validation)
    share = len(s.validation.indices) / np.sum(codes == 1)
    assert abs(share - 0.10) < 0.01
    assert len(np.unique(s.validation.labels)) == 51  # stratified: every action validated


def test_hmdb8_random_split_by_source_video_in_seed_004_proportions():
    meta = META["hmdb8"]
    s = protocols.split("hmdb8", meta, "random", seed=4)
    n = len(meta.names)
    assert 2200 < n < 2600 and s.excluded == 0
    for subset, share in zip(_parts(s), (0.694, 0.157, 0.149)):
        assert abs(len(subset.indices) / n - share) < 0.02
    train, validation, test = (_subjects(meta, p) for p in _parts(s))
    assert not (train & validation or train & test or validation & test)


# --------------------------------------------------------------------------- BioVid
@pytest.mark.parametrize("protocol,pain,positive", [("bl1_pa4", "PA4", [4]),
                                                    ("bl1_pa34", "PA3+PA4", [3, 4])])
def test_biovid_tasks_relabel_and_use_eight_subject_independent_folds(protocol, pain,
                                                                      positive):
    meta = META["biovid"]
    folds = _all_folds("biovid", protocol)
    assert len(folds) == 8
    tests = [_subjects(meta, s.test) for s in folds]
    assert set().union(*tests) == set(meta.subjects) and sum(map(len, tests)) == 87
    kept = 1740 * (1 + len(positive))
    for s in folds:
        assert s.class_names == ("BL1", pain) and s.excluded == 8700 - kept
        for subset in _parts(s):
            stored = meta.labels[subset.indices]
            assert np.all(np.isin(stored, [0] + positive))
            np.testing.assert_array_equal(subset.labels, (stored > 0).astype(np.int32))
        train, validation, test = (_subjects(meta, p) for p in _parts(s))
        assert not (train & validation or train & test or validation & test)
        assert len(validation) in (9, 10)  # ~1/8 of the 76 training subjects


# --------------------------------------------------------------------------- errors
def _replace(meta, **changes):
    return dataclasses.replace(meta, **changes)


@pytest.mark.parametrize("call,message", [
    (lambda: protocols.split("ferplus", META["afew"]), "choose one of cremad, afew"),
    (lambda: protocols.split("cremad", META["cremad"], "loso"), "choose one of random, actors"),
    (lambda: protocols.split("cremad", META["cremad"], "actors", fold=5), "choose 0..4"),
    (lambda: protocols.split("hmdb51", META["hmdb51"], "split2", fold=1), "choose 0..0"),
    (lambda: protocols.split("unbc", META["unbc"], fold=-1), "choose 0..24"),
    (lambda: protocols.split("afew", _replace(META["afew"], labels=META["afew"].labels + 1)),
     "labels must lie in 0..6"),
    (lambda: protocols.split("samm", _replace(META["samm"], subjects=META["samm"].subjects[:9])),
     "subjects has 9 entries"),
    (lambda: protocols.split("samm", _replace(META["samm"], names=np.full(343, "006/1"))),
     "names are not unique"),
    (lambda: protocols.split("hmdb51", _replace(META["hmdb51"], info={})), "info['split1']"),
    (lambda: protocols.split("biovid", _replace(META["biovid"], class_names=tuple("abcde"))),
     "lacks the classes ['BL1']"),
    (lambda: protocols.split("samm", _replace(META["samm"], subjects=np.full(343, "006"))),
     "train split comes out empty"),
    (lambda: protocols.split("rafdb", _replace(META["rafdb"], partitions=np.full(15339, "train"))),
     "test split comes out empty"),
    (lambda: protocols.split("ckplus", _replace(META["ckplus"], subjects=np.full(477, "S005"))),
     "needs at least 6 subjects"),
])
def test_errors_are_user_errors_naming_the_choices(call, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        call()
