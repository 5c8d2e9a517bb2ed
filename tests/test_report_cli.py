"""End-to-end behaviour of ``python -m fer_jax.main --mode=report`` and ``--mode=explain`` on
the synthetic smoke config: report.json contents, the HTML page as headless Chromium shows
it, the printed table, explanation files, and one-line errors for bad input.

One smoke model (1 epoch) is trained and reported on once for the whole file, with a small
measurement grid (2 fractions × 2 frame counts, 3 deletion points, 3 methods, 8 videos of
the validation split, where the 1-epoch model gets some videos right so the clean-accuracy
checks are not trivially 0 = 0)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import config_files
import shared_runs
from browser import render_in_chromium, require_chromium
from fer_jax.errors import UserError

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]
SMOKE = shared_runs.SYNTHETIC_SMOKE
METHODS = {"grad_cam": "Grad-CAM", "rollout": "Rollout-mean", "chefer_relevance": "TIBAV"}
FRACTIONS, FRAME_COUNTS, DELETION_STEPS, VIDEOS = (0.0, 0.5), (0, 1), 2, 8
REPORT = [f"--config.explain.methods={','.join(METHODS)}",
          f"--config.explain.max_videos={VIDEOS}",
          "--config.explain.fractions=" + ",".join(f"{p:g}" for p in FRACTIONS),
          "--config.explain.frame_counts=" + ",".join(str(f) for f in FRAME_COUNTS),
          f"--config.explain.deletion_steps={DELETION_STEPS}",
          "--config.explain.split=validation"]
CLASS_NAMES = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
SECTIONS = ["Summary", "Method ranking", "Examples", "Occlusion test", "Ground truth",
            "Emotion trends", "Facial-part occlusion", "Settings"]
CLIP_FRAMES, IMAGE_SIZE, UPSCALE = 4, 32, 4  # the smoke config; explain.upscale default
TIMINGS = {}  # step → seconds, printed as each step ends (shown with -s)


def _env():
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
                + " --xla_force_host_platform_device_count=1")


def _run(workdir, *args, config=SMOKE, name=None, timeout=300):
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fer_jax.main", *config,
                             f"--workdir={workdir}", *args],
                            cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=timeout)
    TIMINGS[name or " ".join(args)] = time.perf_counter() - started
    print(f"[{name or ' '.join(args)}: {TIMINGS[name or ' '.join(args)]:.1f} s]")
    return result


def _assert_one_line_error(result, pattern):
    """Exit status 2, no traceback, and stderr is exactly one ``fer_jax: error:`` line."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("fer_jax: error:") and pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """(workdir, report stdout): a 1-epoch smoke model and its report."""
    workdir = shared_runs.synthetic_smoke(tmp_path_factory, tmp_path_factory.mktemp("report"))
    result = _run(workdir, "--mode=report", *REPORT, name="report")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


@pytest.fixture(scope="module")
def report_json(reported):
    return json.loads((reported[0] / "report.json").read_text())


def test_report_json_holds_every_measurement(report_json, reported):
    r = report_json
    assert r["videos"] == VIDEOS and r["split"] == "validation"
    assert r["class_names"] == CLASS_NAMES
    assert r["truth"] == ["landmarks", "intensity", "au_masks"]  # synthetic ground truth
    assert r["settings"]["fractions"] == list(FRACTIONS)
    assert r["settings"]["frame_counts"] == list(FRAME_COUNTS)
    assert r["settings"]["deletion_steps"] == DELETION_STEPS

    c = r["classification"]
    for key in ("accuracy", "macro_f1", "roc_auc", "eer_accuracy"):
        assert isinstance(c[key], float) and 0 <= c[key] <= 1, (key, c[key])
    assert c["count"] == VIDEOS and np.asarray(c["confusion"]).sum() == VIDEOS

    assert list(r["methods"]) == list(METHODS.values())
    assert set(r["seconds"]) == {"classification", *METHODS.values()}
    shape = (len(FRACTIONS), len(FRAME_COUNTS))
    for label, m in r["methods"].items():
        occ = m["occlusion"]
        most, least = np.asarray(occ["most"]), np.asarray(occ["least"])
        assert most.shape == least.shape == np.asarray(occ["difference"]).shape == shape
        np.testing.assert_allclose(occ["difference"], least - most, atol=1e-6)
        assert np.isfinite(occ["mean_difference"])
        # (0 %, 0 frames) hides nothing: the clean accuracy, in both rows.
        assert most[0, 0] == least[0, 0] == pytest.approx(c["accuracy"]), label
        for name in ("deletion", "insertion"):
            assert len(m[name]["curve"]) == DELETION_STEPS + 1
            assert 0 <= m[name]["auc"] <= 1, (label, name, m[name]["auc"])
        # Deletion starts from, and insertion ends at, the unoccluded clip.
        assert m["deletion"]["curve"][0] == pytest.approx(m["insertion"]["curve"][-1],
                                                          abs=1e-5)
        for name, low in (("au_cosine", -1), ("energy_inside", 0), ("pointing_game", 0)):
            values = m[name]
            assert set(values["per_class"]) == set(CLASS_NAMES), (label, name)
            assert values["per_class"]["neutral"] is None  # neutral videos have no AUs
            for v in [*values["per_class"].values(), values["macro"], values["mean"]]:
                assert v is None or low - 1e-6 <= v <= 1 + 1e-6, (label, name, v)
        assert m["au_cosine"]["videos"] > 0
    assert set(r["trend_videos"]) == set(METHODS.values())

    parts = r["face_parts"]
    assert list(parts) == ["none", "eyes", "nose", "mouth", "eyes+nose", "eyes+mouth",
                           "nose+mouth", "eyes+nose+mouth"]
    assert all(p["count"] == VIDEOS for p in parts.values())
    assert parts["none"]["accuracy"] == pytest.approx(c["accuracy"])
    np.testing.assert_array_equal(parts["none"]["confusion"], c["confusion"])

    trends = np.load(reported[0] / "report_trends.npz")
    grid = r["settings"]["grid"]
    for key in METHODS:
        assert trends[f"{key}_maps"].shape == (len(CLASS_NAMES), CLIP_FRAMES, grid, grid)
        assert trends[f"{key}_frame_mean"].shape == trends[f"{key}_frame_std"].shape == (
            len(CLASS_NAMES), CLIP_FRAMES)


def test_grad_cam_maps_are_not_all_zero(report_json):
    """The default TimeSformer layer reaches the logits (its maps are measured)."""
    grad_cam = report_json["methods"]["Grad-CAM"]
    assert grad_cam["au_cosine"]["mean"] > 0 and grad_cam["energy_inside"]["mean"] is not None


def test_report_html_renders_offline_in_chromium(reported, report_json, tmp_path):
    workdir, _ = reported
    text = (workdir / "report.html").read_text()
    assert "http://" not in text and "https://" not in text
    require_chromium()
    shot = tmp_path / "report.png"
    started = time.perf_counter()
    state = render_in_chromium(workdir / "report.html", shot)
    TIMINGS["chromium render"] = time.perf_counter() - started
    print(f"[chromium render: {TIMINGS['chromium render']:.1f} s]")
    assert state["h2"] == SECTIONS
    images = state["images"]
    assert len(images) >= len(CLASS_NAMES) * (len(METHODS) + 2), len(images)
    assert all(i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0
               for i in images), [i for i in images if not i["naturalWidth"]][:3]
    assert {i["scheme"] for i in images} == {"data"}
    # Figures (PNG) are shown at the size they were drawn: a scaled-down figure shrinks its
    # text. (Animations of the examples fill their gallery cells; they hold no text.)
    scaled = [(i["naturalWidth"], round(i["shownWidth"])) for i in images
              if i["mime"] == "image/png" and i["shownWidth"] < 0.98 * i["naturalWidth"]]
    assert not scaled, scaled
    assert state["resources"] == []  # nothing fetched: no file, network or font requests
    screenshot = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert screenshot is not None and screenshot.shape[1] >= 1000
    assert screenshot.shape[0] >= min(state["scrollHeight"], 16384) > 2000
    assert screenshot.std() > 10  # text, tables and figures, not a blank page


def test_report_prints_a_row_per_method_and_the_path(reported):
    workdir, stdout = reported
    lines = stdout.splitlines()
    assert any(line.startswith(f"validation: {VIDEOS} videos, accuracy") for line in lines)
    for label in METHODS.values():
        rows = [line for line in lines if line.startswith(label + " ")]
        assert len(rows) == 1, stdout
        # label + 10 numeric/'-' columns: occlusion difference, deletion, insertion, AU energy,
        # pointing game, CAM-COS, infidelity, sparseness, complexity, seconds
        assert len(rows[0].split()) == 1 + 10, rows[0]
    assert f"report: {workdir / 'report.html'}" in lines


def test_explain_writes_images_animations_and_maps(reported):
    workdir, _ = reported
    result = _run(workdir, "--mode=explain", "--config.explain.videos=0,2",
                  "--config.explain.methods=rollout_grad", name="explain (2 videos)")
    assert result.returncode == 0, result.stderr[-3000:]
    root = workdir / "explanations"
    index = json.loads((root / "explanations.json").read_text())
    assert [v["video"] for v in index["videos"]] == [0, 2]
    for entry, video in zip(index["videos"], (0, 2)):
        assert entry["label"] in CLASS_NAMES and entry["predicted"] in CLASS_NAMES
        assert 0 < entry["confidence"] <= 1
        assert f"video {video}: {entry['label']} → {entry['predicted']}" in result.stdout
        folder = root / f"test_{video}"
        expected = {folder / f"rollout_grad{s}" for s in (".png", ".gif", ".mp4")}
        assert {Path(f) for f in entry["files"]} == expected | {folder / "maps.npz"}

        png = cv2.imread(str(folder / "rollout_grad.png"), cv2.IMREAD_COLOR)
        assert png is not None and png.shape[2] == 3
        # input row + overlay row of CLIP_FRAMES upscaled frames (plus labels and title)
        assert png.shape[0] >= 2 * IMAGE_SIZE * UPSCALE > png.shape[1] / 4
        assert png.shape[1] >= CLIP_FRAMES * IMAGE_SIZE * UPSCALE

        gif = folder / "rollout_grad.gif"
        assert gif.read_bytes()[:6] == b"GIF89a"
        with Image.open(gif) as image:
            assert image.n_frames == CLIP_FRAMES

        capture = cv2.VideoCapture(str(folder / "rollout_grad.mp4"))
        try:
            assert capture.isOpened()
            frames = []
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(frame)
        finally:
            capture.release()
        assert len(frames) == CLIP_FRAMES
        assert frames[0].shape == (IMAGE_SIZE * UPSCALE, IMAGE_SIZE * UPSCALE, 3)

        with np.load(folder / "maps.npz") as maps:
            assert list(maps) == ["rollout_grad"]
            m = maps["rollout_grad"]
        assert m.ndim == 3 and m.shape[0] == CLIP_FRAMES and m.shape[1] == m.shape[2] >= 1
        assert np.isfinite(m).all() and m.max() > 0


@pytest.mark.parametrize("mode, flag, message", [
    ("report", "--config.explain.methods=nope", "unknown explanation method 'nope'"),
    ("explain", "--config.explain.videos=999", "explain.videos '999': give indices in 0..19"),
])
def test_bad_explanation_settings_are_one_line(reported, mode, flag, message):
    workdir, _ = reported
    _assert_one_line_error(_run(workdir, f"--mode={mode}", flag), message)


def test_report_without_checkpoints_is_one_line(tmp_path):
    # Orbax's background tmp-directory cleanup used to outlive this quick exit and print a
    # "cannot schedule new futures after interpreter shutdown" traceback (now awaited in
    # Checkpoints.restore_variables).
    _assert_one_line_error(_run(tmp_path / "fresh", "--mode=report", name="report (fresh)"),
                           "no readable checkpoint in")


def test_landmark_model_is_refused_before_any_work():
    """``--mode=report`` of a landmark model fails with 'no readable checkpoint' on an
    untrained workdir (the checkpoint is loaded first), and training one costs ~15 s here, so
    the refusal is checked in-process: it comes before the model, variables or data are
    used."""
    from fer_jax.evaluation import suite
    config = config_files.load("tcn_ckplus", "smoke")
    with pytest.raises(UserError, match="a landmark model has no image input"):
        suite.measure(None, None, config, None, [], suite.Settings(grid=4), batch_size=8)

