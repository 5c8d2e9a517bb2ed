"""The HTML report of ``--mode=report``: measurements of ``evaluation.suite`` as tables and
figures, with example overlays, in one self-contained page (``viz.html``)."""
from __future__ import annotations

import numpy as np

from fer_jax.evaluation import occlusion
from fer_jax.viz import html, overlays, plots, video

PREVIEW_FRACTION = 0.2   # seed 000's example figures occlude 20 % of the patches


def _ranking_rows(results: dict) -> list[list]:
    rows = []
    for label, m in results["methods"].items():
        def truth(name, key="mean"):
            return (m.get(name) or {}).get(key)
        rows.append([label, m["occlusion"]["mean_difference"],
                     m["occlusion"]["difference"][-1][0], m["deletion"]["auc"],
                     m["insertion"]["auc"], truth("energy_inside"), truth("energy_chance"),
                     truth("pointing_game"), truth("au_cosine", "macro"),
                     truth("temporal_correlation")])
    return rows


RANKING_HEADER = ["method", "occlusion difference (mean)", "difference at 50 %, 0 frames",
                  "deletion AUC ↓", "insertion AUC ↑", "AU energy share", "(uniform map)",
                  "pointing game", "CAM-COS (macro)", "intensity correlation"]


def _summary(doc: html.Report, results: dict) -> None:
    c = results["classification"]
    section = doc.section("Summary", "summary", intro=(
        f"Model {results['model']}, {results['checkpoint']} checkpoint at step "
        f"{results['checkpoint_step']}, {results['videos']} videos of the "
        f"{results['split']} split. Ground truth used: "
        f"{', '.join(results['truth']) or 'none (classification and occlusion only)'}."))
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
    section = doc.section("Method ranking", "ranking", intro=(
        "Occlusion difference: accuracy with the least important cells occluded minus "
        "accuracy with the most important ones occluded, averaged over the seed-000 grid "
        "(higher is better). Deletion / insertion: area under the probability of the "
        "explained class as the most important cells are removed / revealed. AU energy "
        "share, pointing game and CAM-COS compare the maps of the true class with the "
        "action-unit regions of the expression; the uniform-map column is the energy share "
        "of a map without information."))
    section.table(RANKING_HEADER, _ranking_rows(results),
                  highlight={1: "max", 2: "max", 3: "min", 4: "max", 5: "max", 7: "max",
                             8: "max", 9: "max"})


def _examples(doc: html.Report, examples: dict, settings, class_names) -> None:
    section = doc.section("Examples", "examples", intro=(
        "One video per class (correctly classified where possible): the input frames, then "
        "each method's map of the predicted class over them; below, the seed-000 test at "
        f"{PREVIEW_FRACTION:.0%}: the most / least important cells of every frame hidden."))
    frames = examples["frames"]
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
        details.figure(overlays.png_bytes(overlays.frame_grid(rows, names, title=title)),
                       caption="Input and overlays (one column per frame).")
        details.gallery([(video.gif_bytes(r, fps=4, upscale=4), name)
                         for r, name in zip(rows, names)], columns=len(rows), pixelated=True)
        details.figure(overlays.png_bytes(overlays.frame_grid(previews, preview_names)),
                       caption=f"{PREVIEW_FRACTION:.0%} of the cells of every frame occluded.")


def _occlusion(doc: html.Report, results: dict, settings) -> None:
    methods = results["methods"]
    accuracy = {m: np.stack([v["occlusion"]["most"], v["occlusion"]["least"]])
                for m, v in methods.items()}
    section = doc.section("Occlusion test", "occlusion", intro=(
        "Seed 000: the top or bottom 0–50 % of the cells of every frame and the top or bottom "
        "0–4 frames (by map sum) are occluded; solid lines hide the least important, dashed "
        "lines the most important."))
    section.figure(plots.occlusion_curves(accuracy, settings.fractions, settings.frame_counts),
                   caption="Accuracy under occlusion.")
    section.figure(plots.difference_curves(accuracy, settings.fractions,
                                           settings.frame_counts),
                   caption="Difference: least-occluded minus most-occluded accuracy.")
    header = ["method"] + [f"{p:.0%}" for p in settings.fractions]
    section.table(header, [[m] + [row[0] for row in v["occlusion"]["difference"]]
                           for m, v in methods.items()],
                  caption="Difference with no frame occluded, by share of cells occluded.")
    steps = np.linspace(0, 1, settings.deletion_steps + 1)
    section.figure(plots.deletion_insertion(
        {m: {"deletion": np.asarray(v["deletion"]["curve"]),
             "insertion": np.asarray(v["insertion"]["curve"])} for m, v in methods.items()},
        steps), caption="Deletion and insertion curves (mean probability of the explained "
                        "class).")


def _ground_truth(doc: html.Report, results: dict) -> None:
    methods = results["methods"]
    if "au_masks" not in results["truth"]:
        return
    section = doc.section("Ground truth", "ground-truth", intro=(
        "Maps of the true class against the seed-003 action-unit heatmaps of the expression, "
        "drawn from the landmarks (neutral videos have none and are left out). CAM-COS: "
        "cosine between map and heatmap per video, averaged per class; the macro mean is over "
        "the expressive classes."))
    names = [n for n in results["class_names"] if n != "neutral"]
    section.table(["method"] + names + ["macro"],
                  [[m] + [v["au_cosine"]["per_class"][n] for n in names]
                   + [v["au_cosine"]["macro"]] for m, v in methods.items()],
                  caption="CAM-COS per class", highlight={len(names) + 1: "max"})
    scores = {name: {m: v[key]["mean"] for m, v in methods.items()}
              for name, key in (("AU energy share", "energy_inside"),
                                ("pointing game", "pointing_game"),
                                ("CAM-COS", "au_cosine"),
                                ("intensity correlation", "temporal_correlation"))}
    section.figure(plots.bar_table(scores, ylabel="score (mean over videos)"),
                   caption="Localisation scores by method.")


def _trends(doc: html.Report, results: dict, trends: dict) -> None:
    section = doc.section("Emotion trends", "trends", intro=(
        "Seed 000: class-average maps (each video min-max normalised) over the correctly "
        "classified videos, and the per-frame mean of those maps with one standard deviation."))
    names = results["class_names"]
    for n, (method, t) in enumerate(trends.items()):
        details = section.details(method, open=n == 0)
        details.figure(plots.trend_maps(t["maps"], names, title=method),
                       caption="Class-average maps.")
        details.figure(plots.trend_lines(t["frame_mean"], t["frame_std"], names, title=method),
                       caption="Per-frame mean of the normalised map over the frame's pixels "
                               "(map mass, not expression intensity): mean ± 1 sd over the "
                               "class's videos.")


def _face_parts(doc: html.Report, results: dict) -> None:
    parts = results.get("face_parts")
    if not parts:
        return
    names = results["class_names"]
    section = doc.section("Facial-part occlusion", "face-parts", intro=(
        "Seed 000: eyes, nose and mouth occluded as bands across the face (from the "
        "landmarks of every frame), alone and combined."))
    section.figure(plots.confusion_grid({k: np.asarray(v["confusion"]) for k, v in
                                         parts.items()}, names),
                   caption="Row-normalised confusion matrices by occluded parts.")
    section.table(["occluded"] + names + ["accuracy"],
                  [[k] + [v["per_class_accuracy"][n] for n in names] + [v["accuracy"]]
                   for k, v in parts.items()], caption="Per-class accuracy")


def build(results: dict, trends: dict, examples: dict, settings) -> html.Report:
    """The report of ``suite.measure`` results (without arrays), ``trends`` (method →
    ``maps``/``frame_mean``/``frame_std``) and ``examples`` (``explain.explain_videos``)."""
    doc = html.Report(f"fer_jax explanation report — {results['model']}")
    _summary(doc, results)
    _ranking(doc, results)
    _examples(doc, examples, settings, results["class_names"])
    _occlusion(doc, results, settings)
    _ground_truth(doc, results)
    _trends(doc, results, trends)
    _face_parts(doc, results)
    doc.section("Settings", "settings").table(
        ["option", "value"], [[k, str(v)] for k, v in results["settings"].items()])
    return doc
