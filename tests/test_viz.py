"""Visualisation primitives of explanation reports: overlays, occlusion previews, frame
grids, video writers and report plots (fer_jax.viz)."""
import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageSequence

from fer_jax import viz
from fer_jax.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _solid(colours, size=4):
    """uint8 video [T, size, size, 3] with one solid RGB colour per frame."""
    return np.broadcast_to(np.array(colours, np.uint8)[:, None, None],
                           (len(colours), size, size, 3)).copy()


def test_colourise_uses_opencv_colours_and_clips():
    lut = cv2.applyColorMap(np.array([[0], [255]], np.uint8), cv2.COLORMAP_JET)[:, 0, ::-1]
    colours = viz.colourise(np.array([[-1.0, 0.0], [1.0, 3.0]]))
    assert colours.shape == (2, 2, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours.reshape(4, 3), lut[[0, 0, 1, 1]])
    assert tuple(lut[1]) != tuple(lut[0])
    with pytest.raises(UserError, match="unknown colour map 'gray'.*jet.*turbo"):
        viz.colourise(np.zeros(3), "gray")


def test_resize_maps_nearest_in_time_and_space():
    maps = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    resized = viz.resize_maps(maps, 7, 4, 6, interpolation="nearest")
    assert resized.shape == (7, 4, 6) and resized.dtype == np.float32
    expected = maps[[0, 0, 0, 1, 1, 2, 2]].repeat(2, axis=1).repeat(3, axis=2)
    np.testing.assert_array_equal(resized, expected)
    smooth = viz.resize_maps(maps, 3, 4, 4)  # linear: values between the cells
    assert set(np.unique(smooth)) - set(np.unique(maps))
    with pytest.raises(UserError, match=r"\[T, h, w\]"):
        viz.resize_maps(maps[0], 3, 4, 4)
    with pytest.raises(UserError, match="interpolation 'cubic'"):
        viz.resize_maps(maps, 3, 4, 4, interpolation="cubic")


def test_overlay_colours_exactly_the_hot_cell():
    frames = np.full((4, 4, 4, 3), 100, np.uint8)
    maps = np.zeros((2, 4, 4))
    maps[1, 2, 3] = 1.0  # frames 2 and 3 (nearest in time), pixel (2, 3)
    low, high = viz.colourise(np.array([0.0, 1.0])).astype(np.float64)
    for scaled in (maps, 5 * maps + 3):  # normalised by the video's min and max
        result = viz.overlay(frames, scaled, alpha=0.5)
        expected = np.broadcast_to(np.round(0.5 * 100 + 0.5 * low), frames.shape).copy()
        expected[2:, 2, 3] = np.round(0.5 * 100 + 0.5 * high)
        np.testing.assert_array_equal(result, expected)
    constant = viz.overlay(frames, np.full((1, 2, 2), 7.0), alpha=1.0)
    np.testing.assert_array_equal(constant, np.broadcast_to(low, frames.shape))


def test_overlay_normalises_over_the_video_not_per_frame():
    frames = np.zeros((2, 1, 2, 3), np.uint8)
    maps = np.array([[[0.0, 0.5]], [[0.0, 1.0]]])
    result = viz.overlay(frames, maps, alpha=1.0, cmap="viridis")
    np.testing.assert_array_equal(result[0, 0, 1], viz.colourise(np.array(0.5), "viridis"))
    unnormalised = viz.overlay(frames, 2 * maps, alpha=1.0, normalise=False)
    np.testing.assert_array_equal(unnormalised[0, 0, 1], viz.colourise(np.array(1.0)))


def test_overlay_rejects_bad_shapes():
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(UserError, match="uint8 RGB video"):
        viz.overlay(frames.astype(np.float32), np.zeros((2, 2, 2)))
    with pytest.raises(UserError, match="uint8 RGB video"):
        viz.overlay(frames[..., 0], np.zeros((2, 2, 2)))
    with pytest.raises(UserError, match=r"maps must be .*\[T, h, w\]"):
        viz.overlay(frames, np.zeros((2, 2)))
    with pytest.raises(UserError, match="alpha"):
        viz.overlay(frames, np.zeros((2, 2, 2)), alpha=1.5)


def test_occlude_preview_fills_exactly_the_hidden_cells():
    frames = np.random.default_rng(0).integers(1, 255, (4, 4, 4, 3), dtype=np.uint8)
    keep = np.array([[[True, False], [False, True]], [[False, True], [True, True]]])
    result = viz.occlude_preview(frames, keep, fill=0)
    visible = keep.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(result[visible], frames[visible])
    assert (result[~visible] == 0).all() and (~visible).sum() == 3 * 2 * 4
    grey = viz.occlude_preview(frames, keep, fill=0.5 * 255)
    assert (grey[~visible] == 128).all()
    with pytest.raises(UserError, match="fill"):
        viz.occlude_preview(frames, keep, fill=300)
    with pytest.raises(UserError, match="cell mask"):
        viz.occlude_preview(frames, keep[0])


def test_frame_grid_size_padding_and_labels():
    black2, black3 = _solid([[0, 0, 0]] * 2), _solid([[0, 0, 0]] * 3)
    one = viz.frame_grid([black2], scale=2)
    assert one.dtype == np.uint8 and one.ndim == 3 and one.shape[-1] == 3
    grid = viz.frame_grid([black2, black3], scale=2)
    # Two rows, three columns; the short row's third cell is white padding.
    assert grid.shape[0] > one.shape[0] + 8 and grid.shape[1] > one.shape[1] + 8
    assert (grid == 0).all(axis=-1).sum() == 5 * 8 * 8
    assert (grid == 255).all(axis=-1).sum() == grid.shape[0] * grid.shape[1] - 5 * 8 * 8
    labelled = viz.frame_grid([black2, black3], row_labels=["input", "rollout"],
                              column_labels=["frame 1", "frame 2", "frame 3"], scale=2,
                              title="video 7")
    assert labelled.shape[0] > grid.shape[0] and labelled.shape[1] > grid.shape[1]
    assert (labelled == 0).all(axis=-1).sum() >= 5 * 8 * 8  # cells plus text
    with pytest.raises(UserError, match="same frame size"):
        viz.frame_grid([black2, _solid([[0, 0, 0]], size=5)])
    with pytest.raises(UserError, match="1 row and 0 column labels"):
        viz.frame_grid([black2, black3], row_labels=["input"])


def test_png_bytes_round_trip():
    image = np.random.default_rng(1).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    data = viz.png_bytes(image)
    assert data.startswith(PNG_SIGNATURE)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[..., ::-1], image)
    with pytest.raises(UserError, match="uint8 RGB"):
        viz.png_bytes(image[..., 0])


def test_jpeg_bytes_round_trip_and_smaller_than_png_for_a_face_mosaic():
    smooth = np.linspace(0, 255, 96 * 128 * 3).reshape(96, 128, 3)
    noise = np.random.default_rng(2).normal(0, 6, smooth.shape)
    image = np.clip(smooth + noise, 0, 255).astype(np.uint8)
    data = viz.jpeg_bytes(image, quality=90)
    assert data.startswith(b"\xff\xd8\xff")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.abs(decoded.astype(int) - image).mean() < 6  # lossy: less than the noise (sd 6)
    assert len(data) < len(viz.png_bytes(image)) / 2
    with pytest.raises(UserError, match="uint8 RGB"):
        viz.jpeg_bytes(image[..., 0])
    with pytest.raises(UserError, match="quality must lie in 1..100"):
        viz.jpeg_bytes(image, quality=0)


def test_write_gif_round_trip(tmp_path):
    colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    path = viz.write_video(tmp_path / "new" / "clip.gif", _solid(colours), fps=4, upscale=3)
    assert path == tmp_path / "new" / "clip.gif"
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.size == (12, 12)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 250
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    for frame, colour in zip(frames, colours):
        np.testing.assert_array_equal(frame, np.broadcast_to(colour, (12, 12, 3)))
    data = viz.gif_bytes(_solid(colours), upscale=2)
    assert data.startswith(b"GIF89a")
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.n_frames == 3 and gif.size == (8, 8)


def test_write_mp4_round_trip(tmp_path):
    frames = _solid([[40 * t] * 3 for t in range(5)], size=8)
    path = viz.write_video(tmp_path / "clip.mp4", frames, upscale=2)
    capture = cv2.VideoCapture(str(path))
    read = []
    while (frame := capture.read())[0]:
        read.append(frame[1])
    capture.release()
    assert len(read) == 5 and read[0].shape == (16, 16, 3)
    np.testing.assert_allclose([f.mean() for f in read], [40 * t for t in range(5)], atol=8)


def test_write_video_rejects_bad_input(tmp_path):
    frames = _solid([[0, 0, 0]])
    with pytest.raises(UserError, match=r"\.mp4 or \.gif"):
        viz.write_video(tmp_path / "clip.avi", frames)
    with pytest.raises(UserError, match="upscale"):
        viz.write_video(tmp_path / "clip.gif", frames, upscale=0)
    with pytest.raises(UserError, match="fps"):
        viz.gif_bytes(frames, fps=0)
    assert not list(tmp_path.iterdir())


_CLASSES = ["anger", "happy", "neutral"]
_FRACTIONS, _FRAME_COUNTS = (0.0, 0.1), (0, 1, 2)
_ACCURACY = {"rollout": np.random.default_rng(2).random((2, 2, 3)),
             "grad-cam": np.random.default_rng(3).random((2, 2, 3))}
_CONFUSION = np.array([[3, 1, 0], [0, 0, 0], [1, 2, 5]])
_PLOTS = {
    "occlusion_curves": lambda path: viz.occlusion_curves(
        _ACCURACY, _FRACTIONS, _FRAME_COUNTS, title="occlusion", path=path),
    "difference_curves": lambda path: viz.difference_curves(
        _ACCURACY, _FRACTIONS, _FRAME_COUNTS, path=path),
    "confusion_matrix": lambda path: viz.confusion_matrix(_CONFUSION, _CLASSES, path=path),
    "confusion_counts": lambda path: viz.confusion_matrix(_CONFUSION, _CLASSES,
                                                          normalise=False, path=path),
    "confusion_grid": lambda path: viz.confusion_grid(
        {"none": _CONFUSION, "eyes": _CONFUSION.T, "eyes+mouth": _CONFUSION}, _CLASSES,
        path=path),
    "trend_maps": lambda path: viz.trend_maps(
        np.concatenate([np.random.default_rng(4).random((2, 3, 2, 2)),
                        np.full((1, 3, 2, 2), np.nan)]), _CLASSES, title="trend", path=path),
    "trend_lines": lambda path: viz.trend_lines(
        np.array([[0.1, 0.5, 0.9], [np.nan] * 3, [0.2, 0.2, 0.3]]), np.full((3, 3), 0.1),
        _CLASSES, path=path),
    "deletion_insertion": lambda path: viz.deletion_insertion(
        {"rollout": {"deletion": [1.0, 0.5, 0.0], "insertion": [0.0, 0.7, 1.0]}},
        [0.0, 0.5, 1.0], path=path),
    "bar_table": lambda path: viz.bar_table(
        {"eyes": {"rollout": 0.4, "grad-cam": 0.6}, "mouth": {"rollout": 0.3}},
        errors={"eyes": {"rollout": 0.1, "grad-cam": 0.05}}, ylabel="score", path=path),
}


@pytest.mark.parametrize("name", sorted(_PLOTS))
def test_plots_return_png_and_write_path(name, tmp_path):
    data = _PLOTS[name](None)
    assert data.startswith(PNG_SIGNATURE)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and min(image.shape[:2]) > 100 and image.std() > 0
    path = tmp_path / "figures" / f"{name}.png"
    assert _PLOTS[name](path) == path.read_bytes()


def test_plots_reject_bad_input():
    with pytest.raises(UserError, match=r"'rollout'.*shape \[2, 3, 3\], got \(2, 2, 3\)"):
        viz.occlusion_curves(_ACCURACY, (0.0, 0.1, 0.2), _FRAME_COUNTS)
    with pytest.raises(UserError, match="nothing to plot"):
        viz.difference_curves({}, _FRACTIONS, _FRAME_COUNTS)
    with pytest.raises(UserError, match=r"confusion matrix .*\[2, 2\]"):
        viz.confusion_matrix(_CONFUSION, _CLASSES[:2])
    with pytest.raises(UserError, match="'eyes'"):
        viz.confusion_grid({"none": _CONFUSION, "eyes": _CONFUSION[:2]}, _CLASSES)
    with pytest.raises(UserError, match="class maps"):
        viz.trend_maps(np.zeros((3, 2, 2)), _CLASSES)
    with pytest.raises(UserError, match="standard deviations"):
        viz.trend_lines(np.zeros((3, 4)), np.zeros((3, 5)), _CLASSES)
    with pytest.raises(UserError, match="no 'insertion' curve"):
        viz.deletion_insertion({"rollout": {"deletion": [1.0, 0.0]}}, [0.0, 1.0])
    with pytest.raises(UserError, match="nothing to plot"):
        viz.bar_table({})


_SEVEN = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
_PARTS = ["none", "eyes", "nose", "mouth", "eyes+nose", "eyes+mouth", "nose+mouth", "all"]


@pytest.mark.parametrize("name, draw", [
    ("confusion_grid", lambda: viz.confusion_grid(
        {part: np.eye(7, dtype=int) * 20 + 1 for part in _PARTS}, _SEVEN)),
    ("trend_lines", lambda: viz.trend_lines(np.random.default_rng(0).random((7, 8)),
                                            np.full((7, 8), 0.1), _SEVEN, title="rollout")),
    ("trend_maps", lambda: viz.trend_maps(np.random.default_rng(1).random((7, 8, 4, 4)), _SEVEN)),
    ("confusion_matrix", lambda: viz.confusion_matrix(np.eye(7, dtype=int), _SEVEN)),
])
def test_report_figures_fit_the_report_width_unscaled(name, draw):
    """At the paper's sizes (7 classes, the 8 facial-part combinations, 8 frames) a report
    figure is at most as wide as the report's content column, so the browser shows its text
    at the size it was drawn (a wider one is scaled down, its numbers with it)."""
    image = cv2.imdecode(np.frombuffer(draw(), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] <= viz.plots.REPORT_WIDTH * 100, image.shape


def test_trend_lines_draw_one_panel_per_class_with_a_band():
    """No overlapping error bars: each class with videos gets a panel whose band spans
    mean ± sd (its light pixels) and whose line is the mean."""
    mean = np.array([[0.2, 0.4, 0.6], [np.nan] * 3, [0.5, 0.5, 0.5]])
    image = cv2.imdecode(np.frombuffer(viz.trend_lines(mean, np.full((3, 3), 0.1), _CLASSES),
                                       np.uint8), cv2.IMREAD_COLOR)
    one = cv2.imdecode(np.frombuffer(viz.trend_lines(mean[:1], np.full((1, 3), 0.1),
                                                     _CLASSES[:1]), np.uint8),
                       cv2.IMREAD_COLOR)
    assert image.shape[1] > 1.6 * one.shape[1]  # two panels side by side, not one


_MANY = [f"method {i}" for i in range(25)]  # as many as the README's ranking compares
_MANY_RNG = np.random.default_rng(5)


@pytest.mark.parametrize("name, draw", [
    ("occlusion_curves", lambda: viz.occlusion_curves(
        {m: _MANY_RNG.random((2, 3, 4)) for m in _MANY}, (0.1, 0.2, 0.3), (0, 2, 4, 8))),
    ("difference_curves", lambda: viz.difference_curves(
        {m: _MANY_RNG.random((2, 3, 4)) for m in _MANY}, (0.1, 0.2, 0.3), (0, 2, 4, 8))),
    ("deletion_insertion", lambda: viz.deletion_insertion(
        {m: {"deletion": _MANY_RNG.random(11), "insertion": _MANY_RNG.random(11)}
         for m in _MANY}, np.linspace(0, 1, 11))),
    ("randomisation_curves", lambda: viz.plots.randomisation_curves(
        {m: {"spearman": list(_MANY_RNG.random(5)), "ssim": list(_MANY_RNG.random(5))}
         for m in _MANY}, ["head", "b2", "b1", "b0", "embed"])),
    ("bar_table", lambda: viz.bar_table(
        {au: {m: _MANY_RNG.random() for m in _MANY} for au in ("AU4", "AU6", "AU12", "AU25")},
        ylabel="AU energy")),
])
def test_plots_of_25_methods_lay_out_and_fit_the_report(name, draw):
    """25 methods: constrained layout applies (matplotlib warns when a legend squeezes the
    axes to nothing), the legend sits under the axes, and the figure is no wider than the
    report's column."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        image = cv2.imdecode(np.frombuffer(draw(), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] <= viz.plots.REPORT_WIDTH * 100, image.shape


def test_series_styles_tell_25_methods_apart_and_the_legend_grows_the_figure():
    styles = {(s["color"], s["marker"]) for s in
              (viz.plots.series_style(i, 25) for i in range(25))}
    assert len(styles) == 25
    assert viz.plots.series_style(3, 4)["marker"] == "."  # few series: colour alone
    heights = []
    for count in (2, 30):
        fig = viz.plots.figure(6, 3)
        ax = fig.subplots()
        lines = [ax.plot([0, 1], [i, i])[0] for i in range(count)]
        viz.plots.legend_below(fig, lines, [f"m{i}" for i in range(count)])
        heights.append(fig.get_figheight())
        fig.canvas.draw()
        legend_box = fig.legends[0].get_window_extent()
        assert legend_box.y1 <= ax.get_window_extent().y0  # below the axes, not on them
    assert heights[1] - heights[0] == pytest.approx(0.22 * (8 - 1))  # 8 rows of 4 vs 1
