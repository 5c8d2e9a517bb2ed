"""The HTML report of ``--mode=report``: measurements of ``evaluation.suite`` as tables and
figures, with example overlays, in one self-contained page (``viz.html``).

The page's own sections are the summary (classification), the method ranking, the examples,
the facial-part occlusion and the settings. Everything else comes from the measurements
(``evaluation/measurements/``) that have results: each adds its columns to the ranking
(``Measurement.columns``) and draws its section, or its part of a shared one, on the ``Page``
(``Measurement.draw``), in the order of the results; nothing here names a measurement.
"""
from __future__ import annotations

import numpy as np

from fer_jax.evaluation import measurements as measurements_lib
from fer_jax.evaluation import occlusion
from fer_jax.viz import html, overlays, plots, video

PREVIEW_FRACTION = 0.2   # Du Toit's example figures occlude 20 % of the patches
EXAMPLE_CELL = 128       # pixels a frame of the examples is enlarged towards (whole factors)


def example_scale(frame_size: int) -> int:
    """The whole enlargement factor (1–4) of an example frame of ``frame_size`` pixels:
    small inputs (32 px) grow to about ``EXAMPLE_CELL`` pixels, model-sized ones (112 px and
    up) stay as they are, so a 25-method grid of 224-px frames is not 4× larger."""
    return int(np.clip(EXAMPLE_CELL // max(frame_size, 1), 1, 4))


class Page:
    """The report as the measurements' ``draw`` see it. ``section(spec)``: the section of a
    ``measurements.SectionSpec``, created on first use (sections follow in the order
    measurements first use them); ``score(spec, name, {method: value})``: a group of bars
    in the chart of that section, drawn at its end by ``finish``."""

    def __init__(self, doc: html.Report):
        self.doc = doc
        self._sections: dict[str, html.Section] = {}
        self._charts: dict[str, tuple[measurements_lib.SectionSpec, dict]] = {}

    def section(self, spec: measurements_lib.SectionSpec) -> html.Section:
        if spec.id not in self._sections:
            self._sections[spec.id] = self.doc.section(spec.title, spec.id, intro=spec.intro)
        return self._sections[spec.id]

    def score(self, spec: measurements_lib.SectionSpec, name: str, values: dict) -> None:
        self.section(spec)
        self._charts.setdefault(spec.id, (spec, {}))[1][name] = values

    def finish(self) -> None:
        for spec, scores in self._charts.values():
            caption, ylabel = spec.chart or ("", "")
            self._sections[spec.id].figure(plots.bar_table(scores, ylabel=ylabel),
                                           caption=caption)


def ranking_table(results: dict) -> tuple[list[str], list[list], dict[int, str]]:
    """Header, rows (one per method) and highlighted columns of the method ranking: the
    ``columns`` of every measurement with results."""
    columns = measurements_lib.ranking(results)
    first = next(iter(columns.values()), [])
    header = ["method"] + [c.header for c in first]
    highlight = {i: c.best for i, c in enumerate(first, start=1) if c.best}
    return header, [[label] + [c.value for c in row] for label, row in columns.items()], \
        highlight


def _summary(doc: html.Report, results: dict) -> None:
    c = results["classification"]
    section = doc.section("Summary", "summary", intro=(
        f"Model {results['model']}, {results['checkpoint']} checkpoint at step "
        f"{results['checkpoint_step']}, {results['videos']} videos of the "
        f"{results['split']} split. Ground truth used: "
        f"{', '.join(results['truth']) or 'none (classification and occlusion only)'}."
        + "".join(f" Measurement {name} left out: {reason}."
                  for name, reason in (results.get("skipped") or {}).items())))
    section.table(["accuracy", "macro F1", "macro accuracy", "ROC-AUC (macro)",
                   "EER accuracy (macro)"],
                  [[c["accuracy"], c["macro_f1"], c["macro_accuracy"], c.get("roc_auc"),
                    c.get("eer_accuracy")]], caption="Classification")
    section.figure(plots.confusion_matrix(np.asarray(c["confusion"]), results["class_names"],
                                          title="Confusion matrix (rows: true class)"),
                   caption="Row-normalised confusion matrix.")
    seconds = results["seconds"]
    section.table(["step", "seconds"], [[k, v] for k, v in seconds.items()], ndigits=1,
                  caption="Time spent (all batches, compilation included)")


def _ranking(doc: html.Report, results: dict) -> None:
    notes = [m.description for m in measurements_lib.present(results) if m.description]
    header, rows, highlight = ranking_table(results)
    doc.section("Method ranking", "ranking", intro=" ".join(notes)).table(
        header, rows, highlight=highlight)


def _examples(doc: html.Report, examples: dict, settings, class_names) -> None:
    section = doc.section("Examples", "examples", intro=(
        "One video per class (correctly classified where possible): the input frames, then "
        "each method's map of the predicted class over them; below, Du Toit's test at "
        f"{PREVIEW_FRACTION:.0%}: the most / least important cells of every frame hidden."))
    frames = examples["frames"]
    scale = example_scale(frames.shape[2])
    for n, index in enumerate(examples["videos"]):
        label, predicted = class_names[examples["labels"][n]], class_names[
            examples["predicted"][n]]
        rows, names, previews, preview_names = [frames[n]], ["input"], [], []
        for method, maps in examples["maps"].items():
            rows.append(overlays.overlay(frames[n], maps[n]))
            names.append(method)
            cells = np.asarray(occlusion.to_cells(maps[n:n + 1], frames.shape[1],
                                                  settings.grid))
            keep = occlusion.preview_keep(cells, PREVIEW_FRACTION)
            previews += [overlays.occlude_preview(frames[n], keep[0, 0], settings.fill * 255),
                         overlays.occlude_preview(frames[n], keep[1, 0], settings.fill * 255)]
            preview_names += [f"{method}: most", f"{method}: least"]
        title = f"video {index}: {label} → predicted {predicted}"
        details = section.details(title, open=n < 2)
        # the mosaics as JPEG: heatmaps over faces, a third of the PNG's size at 25 methods
        details.figure(overlays.jpeg_bytes(overlays.frame_grid(rows, names, scale=scale,
                                                               title=title)),
                       caption="Input and overlays (one column per frame).")
        details.gallery([(video.gif_bytes(r, fps=4, upscale=scale), name)
                         for r, name in zip(rows, names)], columns=len(rows), pixelated=True)
        details.figure(overlays.jpeg_bytes(overlays.frame_grid(previews, preview_names,
                                                               scale=scale)),
                       caption=f"{PREVIEW_FRACTION:.0%} of the cells of every frame occluded.")


def _face_parts(doc: html.Report, results: dict) -> None:
    parts = results.get("face_parts")
    if not parts:
        return
    names = results["class_names"]
    section = doc.section("Facial-part occlusion", "face-parts", intro=(
        "As in Du Toit: eyes, nose and mouth occluded as bands across the face (from the "
        "landmarks of every frame), alone and combined."))
    section.figure(plots.confusion_grid({k: np.asarray(v["confusion"]) for k, v in
                                         parts.items()}, names),
                   caption="Row-normalised confusion matrices by occluded parts.")
    section.table(["occluded"] + names + ["accuracy"],
                  [[k] + [v["per_class_accuracy"][n] for n in names] + [v["accuracy"]]
                   for k, v in parts.items()], caption="Per-class accuracy")


def build(results: dict, examples: dict, context: measurements_lib.Context) -> html.Report:
    """The report of ``suite.measure`` results (before ``Measurement.export``: trend arrays
    included) and ``examples`` (``explain.explain_videos``); ``context``: that of the run
    (``suite.context``)."""
    doc = html.Report(f"fer_jax explanation report — {results['model']}")
    _summary(doc, results)
    _ranking(doc, results)
    _examples(doc, examples, context.settings, results["class_names"])
    page = Page(doc)
    for measurement in measurements_lib.present(results):
        measurement.draw(page, results, context)
    page.finish()
    _face_parts(doc, results)
    doc.section("Settings", "settings").table(
        ["option", "value"], [[k, str(v)] for k, v in results["settings"].items()])
    return doc
