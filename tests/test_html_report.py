"""The self-contained HTML report: escaping, validation, tables, images, and a headless
Chromium rendering of a whole report."""
import io
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from browser import render_in_chromium, require_chromium
from fer_jax.errors import UserError
from fer_jax.viz import html


def _png(seed: int = 0, size: int = 16) -> bytes:
    """A small random colour PNG."""
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    return buffer.tobytes()


def _gif(size: int = 12) -> bytes:
    """A two-frame animated GIF: a white square moving on black."""
    frames = []
    for shift in (0, 4):
        frame = np.zeros((size, size), np.uint8)
        frame[2 + shift:6 + shift, 2:6] = 255
        frames.append(Image.fromarray(frame).convert("P"))
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=200,
                   loop=0)
    return out.getvalue()


def _demo_report() -> html.Report:
    """Three sections: a table, a single pixelated figure, a PNG/GIF gallery, details."""
    doc = html.Report(title="fer_jax explanation report")
    scores = doc.section("Occlusion test", id="occlusion", intro="Drop in class score.")
    scores.table(["method", "difference", "time [s]"],
                 [["rollout", 0.31, 1.5], ["lrp", 0.4521, None], ["grad-cam", None, 0.25]],
                 caption="Score difference after occluding the top patches",
                 highlight={1: "max", 2: "min"})
    faces = doc.section("Faces", id="faces")
    faces.figure(_png(1, 12), caption="A 12 px face crop", pixelated=True, width=192)
    faces.gallery([(_png(2), "frame 0"), (_gif(), "clip (GIF)"), (_png(3), "frame 8")],
                  columns=3, pixelated=True)
    per_class = doc.section("Per class", id="per_class")
    per_class.details("happy").text("Mouth corners dominate.").figure(_png(4), "happy map")
    return doc


def test_user_strings_are_escaped():
    doc = html.Report(title="<b>report</b>")
    sec = doc.section("A & B", id="ab", intro="x < y")
    sec.figure(_png(), caption="<script>alert(1)</script>")
    sec.table(['<i>"q"</i>'], [["<td>"]])
    sec.details("<summary>").text("ok")
    page = doc.html()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for raw in ("<b>report</b>", "<i>", "<td><td>", "<summary><summary>"):
        assert raw not in page
    assert "A &amp; B" in page and "x &lt; y" in page and "&quot;q&quot;" in page


def test_section_ids_are_validated():
    doc = html.Report()
    doc.section("One", id="one-1_a")
    with pytest.raises(UserError, match="used twice"):
        doc.section("Again", id="one-1_a")
    for bad in ("", "has space", 'q"uote', "a#b", "é"):
        with pytest.raises(UserError, match="letters, digits"):
            doc.section("Bad", id=bad)


def test_images_must_be_png_gif_or_jpeg():
    doc = html.Report()
    sec = doc.section("S", id="s")
    bmp = cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    for data in (b"", b"not an image", bmp):
        with pytest.raises(UserError, match="neither PNG, GIF nor JPEG"):
            sec.figure(data)
    with pytest.raises(UserError, match="neither PNG, GIF nor JPEG"):
        sec.gallery([(_png(), "ok"), (b"GIF7", "truncated magic")])
    sec.figure(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1])  # a uint8 buffer works
    sec.figure(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    page = doc.html()
    assert page.count("<img ") == 2  # the failed calls added nothing
    assert page.count('src="data:image/jpeg;base64,') == 1


def test_image_kind_is_sniffed_and_embedded():
    doc = html.Report()
    doc.section("S", id="s").figure(_png(), "png").figure(_gif(), "gif", pixelated=True)
    page = doc.html()
    assert page.count('src="data:image/png;base64,') == 1
    assert page.count('src="data:image/gif;base64,') == 1
    assert page.count('class="pixelated"') == 1


def test_table_cells_format_and_none():
    doc = html.Report()
    doc.section("S", id="s").table(
        ["name", "x", "n", "flag"],
        [["a", 1 / 3, 7, True], [None, np.float32(2.5), np.int64(-2), None]], ndigits=2)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", doc.html())
    assert cells == ["a", "0.33", "7", "True", html.MISSING, "2.50", "-2", html.MISSING]
    with pytest.raises(UserError, match="row 1 has 1 cells for 2 columns"):
        doc.section("T", id="t").table(["a", "b"], [[1, 2], [3]])


def test_highlight_bolds_the_best_numbers():
    doc = html.Report()
    sec = doc.section("S", id="s")
    rows = [["a", 0.5, 3.0], ["b", 0.9, None], ["c", 0.9, 1.0], ["d", None, float("nan")]]
    sec.table(["m", "acc", "loss"], rows, highlight={1: "max", 2: "min"})
    best = re.findall(r'<td class="num best">([^<]*)</td>', doc.html())
    assert best == ["0.900", "0.900", "1.000"]  # ties all bold; None and NaN never best
    for highlight in ({0: "mean"}, {3: "max"}, {-1: "min"}):
        with pytest.raises(UserError, match="highlight"):
            sec.table(["m", "acc", "loss"], rows, highlight=highlight)


def test_written_report_is_self_contained(tmp_path):
    path = _demo_report().write(tmp_path / "nested" / "dir" / "report.html")
    assert path == tmp_path / "nested" / "dir" / "report.html"
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"https?:|<script|<link|@import|url\(", page, re.I)
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert len(sources) == 5 and all(s.startswith("data:image/") for s in sources)
    assert all(h.startswith("#") for h in re.findall(r'\shref="([^"]*)"', page))
    toc = re.findall(r'<a href="#([^"]+)"', page)
    assert toc == ["occlusion", "faces", "per_class"]
    assert all(f'<section id="{i}">' in page for i in toc)
    assert "<details><summary>happy</summary>" in page
    assert re.search(r"<footer>Generated \d{4}-\d\d-\d\d \d\d:\d\d by fer_jax 0\.1\.0\.", page)


def test_report_renders_in_headless_chromium(tmp_path):
    require_chromium()
    path = _demo_report().write(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    state = render_in_chromium(path, shot)
    assert state["title"] == "fer_jax explanation report"
    assert state["h2"] == ["Occlusion test", "Faces", "Per class"]
    assert len(state["images"]) == 5
    for image in state["images"]:
        assert image["scheme"] == "data"
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0
    assert state["toc"] == ["occlusion", "faces", "per_class"]
    assert set(state["toc"]) <= set(state["ids"])
    assert state["resources"] == []  # nothing fetched besides the file itself
    screenshot = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert screenshot is not None and screenshot.shape[1] >= 1000
    assert screenshot.shape[0] == state["scrollHeight"]  # the whole page, footer included
    assert screenshot.std() > 10  # text, table and images, not a blank page
