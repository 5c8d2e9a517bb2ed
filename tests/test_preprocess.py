"""--mode=preprocess on fixture trees of every dataset layout: faces, AU maps, ArrayRecord,
the per-file summary of bad inputs, resuming, and reading the records back by protocol."""
import json
import pickle
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("dlib", reason="the face backends need the 'faces' extra")

from fer_jax import configs  # noqa: E402
from fer_jax.data import (action_units, datasets, fixtures, layouts, pipeline,  # noqa: E402
                          preprocess, tfds_builders, tfds_source)
from fer_jax.errors import UserError  # noqa: E402

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

CROP = 48
REASON_TEXT = {"one frame": "only 1 frame", "no face": "no face detected",
               "several faces": "several faces", "grayscale": "grayscale",
               "odd size": "frame size", "truncated": "truncated"}
"""add_bad_files keyword → text the summary entry must contain (else the keyword itself)."""


def _config(name: str, raw: Path, data: Path, num_classes: int = 7, workers: int = 0, **kw):
    config = configs.defaults()
    config.dataset = configs.real_dataset(name, num_classes, data_dir=str(data))
    config.preprocess.update(manual_dir=str(raw), crop_size=CROP, workers=workers, **kw)
    return config


def _entries_for(summary: dict, key: str) -> list[dict]:
    stem = str(Path(key).with_suffix("")) if Path(key).suffix in {".avi", ".flv", ".mp4"} \
        else key
    return [f for f in summary["files"] if f["file"] in (key, stem)]


@pytest.mark.parametrize("name", datasets.names())
def test_every_layout_is_built_and_every_bad_input_has_an_entry(name, tmp_path):
    raw, data = tmp_path / "raw", tmp_path / "data"
    good = fixtures.make_tree(name, raw, subjects=2, per_class=1, frames=12, image_size=96)
    bad = fixtures.add_bad_files(name, raw)
    layout = layouts.get(name)
    summary = preprocess.run(_config(name, raw, data))

    for key, keyword in bad.items():
        if fixtures.BAD_INPUT_STAGES[keyword] == "faces" and layout.faces == "none":
            continue  # whole-scene videos: no face is needed
        entries = _entries_for(summary, key)
        assert entries, f"no summary entry for {key} ({keyword})"
        text = REASON_TEXT.get(keyword, keyword)
        assert any(text in e["reason"] for e in entries), (key, keyword, entries)
    # Every good video became a record; bad ones are failed or kept, never silently gone.
    builder = tfds_source.open_builder(_config(name, raw, data))
    meta, lengths = tfds_source.meta_of(builder)
    assert set(good) <= set(meta.names)
    counts = summary["counts"]
    assert counts["records"] == len(meta.names) == counts["found"] - counts["failed"]
    assert list(meta.names) == sorted(meta.names)
    failed = {f["file"] for f in summary["files"] if f["status"] == "failed"}
    assert not failed & set(meta.names)
    # A record decodes to what the metadata says.
    record = builder.as_data_source(tfds_builders.SPLIT)[0]
    assert len(record["frames"]) == len(record["frame_indices"]) == lengths[0]
    if layout.faces != "none":
        assert record["au_maps"].shape == (lengths[0], CROP, CROP)
        assert record["landmarks"].shape == (lengths[0], 68, 2)
        assert np.isfinite(record["landmarks"]).all()
    summary_file = Path(summary["records"]) / preprocess.SUMMARY_FILE
    assert json.loads(summary_file.read_text())["counts"] == counts


def test_rerun_resumes_from_the_cache(tmp_path):
    raw, data = tmp_path / "raw", tmp_path / "data"
    names = fixtures.make_tree("cremad", raw, subjects=1, per_class=1, frames=12, image_size=96)
    config = _config("cremad", raw, data, num_classes=6)
    first = preprocess.run(config)
    assert first["counts"]["processed"] == len(names) and first["counts"]["reused"] == 0

    cache = preprocess.cache_dir(data, layouts.get("cremad"),
                                 preprocess.settings_from_config(config))
    (cache / f"{names[0]}.npz").unlink()                     # as if killed before this one
    (cache / f"{names[1]}.npz.tmp123").write_bytes(b"half")  # and while writing that one
    second = preprocess.run(config)
    assert second["counts"]["processed"] == 1
    assert second["counts"]["reused"] == len(names) - 1
    assert second["counts"]["records"] == len(names)
    third = preprocess.run(config)
    assert third["counts"]["processed"] == 0 and third["counts"]["records"] == len(names)


def test_warnings_of_cached_videos_stay_in_the_summary(tmp_path):
    raw, data = tmp_path / "raw", tmp_path / "data"
    fixtures.make_tree("afew", raw, subjects=2, per_class=1, frames=12, image_size=96)
    fixtures.add_bad_files("afew", raw)
    config = _config("afew", raw, data)
    first = preprocess.run(config)
    second = preprocess.run(config)
    kept = [f for f in first["files"] if f["status"] == "kept"]
    assert kept and kept == [f for f in second["files"] if f["status"] == "kept"]
    assert second["counts"]["failed"] == first["counts"]["failed"] > 0  # retried, still bad


@pytest.fixture(scope="module")
def afew_records(tmp_path_factory) -> tuple[Path, Path]:
    """An AFEW tree (2 subjects, 3 videos per class and split: the fewest that give AFEW's protocol a validation split) and its records, built once."""
    root = tmp_path_factory.mktemp("afew")
    raw, data = root / "raw", root / "data"
    fixtures.make_tree("afew", raw, subjects=2, per_class=3, frames=12, image_size=96)
    preprocess.run(_config("afew", raw, data))
    return raw, data


def test_protocol_splits_read_clips_for_the_pipeline(afew_records):
    raw, data = afew_records
    config = _config("afew", raw, data)
    splits = {s: tfds_source.open_split(config, s) for s in ("train", "validation", "test")}
    records = [set(s.records.tolist()) for s in splits.values()]
    assert all(records) and not (records[0] & records[1] or records[0] & records[2])
    assert {n.split("/")[0] for n in splits["test"].names} == {"Val"}

    test = splits["test"]
    clip = test.load(0, np.array([0, 3, 5]), au_masks=True)
    plain = test.load(0, np.array([0, 3, 5]))  # the stored AU maps only when asked for
    assert "au_masks" not in plain and plain.keys() | {"au_masks"} == clip.keys()
    np.testing.assert_array_equal(plain["frames"], clip["frames"])
    jpegs = tfds_source.open_builder(config).as_data_source(tfds_builders.SPLIT)[
        int(test.records[0])]["frames"]
    np.testing.assert_array_equal(clip["frames"], np.stack([  # = decoding frame by frame
        cv2.cvtColor(cv2.imdecode(np.frombuffer(jpegs[i], np.uint8), cv2.IMREAD_COLOR),
                     cv2.COLOR_BGR2RGB) for i in (0, 3, 5)]))
    assert clip["frames"].shape == (3, CROP, CROP, 3) and clip["frames"].dtype == np.uint8
    assert clip["landmarks"].shape == (3, 68, 2)
    inside = (clip["landmarks"] > -2) & (clip["landmarks"] < CROP + 2)
    assert inside.mean() > 0.95
    assert clip["au_masks"].shape == (3, CROP, CROP)
    assert 0 <= clip["au_masks"].min() and clip["au_masks"].max() <= 1
    expression = test.class_names[int(clip["label"])]
    assert (clip["au_masks"].max() == 1) == (expression != "neutral")
    # Stored maps = the AU maps of Belharbi et al. drawn from the stored landmarks, radii
    # scaled to the face (crop without its 25 % margins), quantised to 1/255.
    expected = action_units.au_maps(clip["landmarks"], expression, CROP, CROP,
                                    face_size=CROP / 1.5)
    np.testing.assert_allclose(clip["au_masks"], expected, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(clip["frame_indices"], [0, 3, 5])
    assert test.face_fraction == pytest.approx(1 / 1.5)  # AU maps drawn in training scale so
    copy = pickle.loads(pickle.dumps(test))  # as Grain worker processes receive it
    np.testing.assert_array_equal(copy.load(0, np.array([0, 3, 5]))["frames"], clip["frames"])

    config.input.update(image_size=32, clip_frames=4)
    batch = next(pipeline.iterate_eval(test, config, truth=("landmarks", "au_masks"),
                                       batch_size=4))
    assert batch["video"].shape == (4, 4, 32, 32, 3)
    assert batch["au_masks"].shape == (4, 4, 32, 32)


def test_affectnet_faces_come_from_the_box_of_its_label_file(tmp_path):
    import cv2

    raw = tmp_path / "raw"
    fixtures.make_tree("affectnet", raw, subjects=1, per_class=1, image_size=96)
    layout = layouts.get("affectnet")
    video = layout.scan(str(raw))[0][0]
    image = cv2.imread(str(video.paths[0]))
    cv2.imwrite(str(video.paths[0]), np.full_like(image, 128))  # nothing to detect
    settings = preprocess.settings_from_config(_config("affectnet", raw, tmp_path))
    arrays, warnings = preprocess.process_video(video, layout, settings,
                                                preprocess._make_processor(layout, settings))
    assert arrays["valid"].all() and arrays["landmarks"].shape == (1, 68, 2)
    assert not any("1 frame" in w for w in warnings)  # still images are one frame by nature


def test_errors_are_one_line(tmp_path, afew_records):
    missing, data = tmp_path / "raw", tmp_path / "data"
    with pytest.raises(UserError, match="manual_dir"):
        preprocess.run(_config("afew", "", data))
    with pytest.raises(UserError, match="does not exist|not found|missing|empty"):
        preprocess.run(_config("afew", missing, data))
    raw, records = afew_records
    with pytest.raises(UserError, match="backend"):
        preprocess.run(_config("afew", raw, data, backend="mtcnn"))
    with pytest.raises(UserError, match="--mode=preprocess"):
        tfds_source.open_split(_config("afew", raw, data), "train")
    with pytest.raises(UserError, match="num_classes is 6"):
        tfds_source.open_split(_config("afew", raw, records, num_classes=6), "train")


def test_preprocess_then_train_from_the_command_line(tmp_path, python):
    """The CLI in worker processes, then a tiny TimeSformer trained and evaluated on it."""
    raw, data = tmp_path / "raw", tmp_path / "data"
    fixtures.make_tree("afew", raw, subjects=2, per_class=3, frames=12, image_size=96)
    common = ["--config=configs/timesformer_cremad.py", "--config.dataset.name=afew",
              "--config.dataset.num_classes=7", f"--config.dataset.data_dir={data}",
              f"--config.preprocess.crop_size={CROP}"]
    run = subprocess.run(
        [python, "-m", "fer_jax.main", *common, "--mode=preprocess",
         f"--config.preprocess.manual_dir={raw}", "--config.preprocess.workers=2"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "afew: 42 videos in" in run.stdout and "42 processed now" in run.stdout

    tiny = ["--config.model.kwargs.patch_size=8", "--config.model.kwargs.hidden_size=32",
            "--config.model.kwargs.num_layers=1", "--config.model.kwargs.num_heads=2",
            "--config.input.image_size=32", "--config.input.clip_frames=4",
            "--config.input.num_workers=0", "--config.train.batch_size=4",
            "--config.train.epochs=1", "--config.eval.split=validation"]
    train = subprocess.run([python, "-m", "fer_jax.main", *common, *tiny,
                            f"--workdir={tmp_path / 'run'}"],
                           capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    assert '"best_epoch": 1' in train.stdout
