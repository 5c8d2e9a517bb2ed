"""Figures of explanation reports: occlusion curves, confusion matrices, class trends,
deletion/insertion curves, randomisation curves and grouped bar charts.

Every function returns the figure as PNG bytes (100 dpi) so reports can embed it, and also
writes them to ``path`` when given. Drawn with matplotlib's Agg canvas, without pyplot.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fer_jax.errors import UserError


def figure(width: float, height: float) -> Figure:
    """An empty figure (inches) on an Agg canvas with constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def finish(fig: Figure, title: str, path) -> bytes:
    """Titles ``fig``, renders it as PNG bytes and writes them to ``path`` when given."""
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    data = buffer.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


_MARKERS = ("o", "s", "^", "D", "v", "P")
_HATCHES = ("", "//", "..", "xx", "\\\\", "++")
LEGEND_COLUMNS = 4


def series_style(index: int, count: int) -> dict:
    """Line style of series ``index`` of ``count``: the ten default colours, and from the
    eleventh series on a new marker per round of ten, so that 25 methods stay apart
    (``color`` and ``marker`` keywords of ``Axes.plot``)."""
    marker = _MARKERS[(index // 10) % len(_MARKERS)] if count > 10 else "."
    return {"color": f"C{index % 10}", "marker": marker, "markersize": 4}


def legend_below(fig: Figure, handles: Sequence, labels: Sequence[str],
                 columns: int = LEGEND_COLUMNS) -> None:
    """One legend for the whole figure, under its axes, in up to ``columns`` columns; the
    figure grows by the legend's rows so the axes keep their size and no entry covers data."""
    columns = max(min(columns, len(labels)), 1)
    rows = math.ceil(len(labels) / columns)
    fig.set_figheight(fig.get_figheight() + 0.22 * rows + 0.15)
    fig.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize="small")


def _array(values, shape: tuple, what: str) -> np.ndarray:
    """``values`` as a float array of ``shape`` (None = any size), or a UserError."""
    array = np.asarray(values, np.float64)
    if array.ndim != len(shape) or any(s is not None and s != n
                                      for s, n in zip(shape, array.shape)):
        expected = ", ".join("any" if s is None else str(s) for s in shape)
        raise UserError(f"{what} must have shape [{expected}], got {array.shape}")
    return array


def _nonempty(mapping: Mapping, what: str) -> None:
    """Raises a UserError for ``what`` when ``mapping`` is empty."""
    if not mapping:
        raise UserError(f"{what}: nothing to plot; give at least one entry")


def _accuracy(accuracy: Mapping, fractions, frame_counts) -> dict[str, np.ndarray]:
    """Checked occlusion accuracies, method -> float [2, P, F]."""
    _nonempty(accuracy, "occlusion curves")
    shape = (2, len(fractions), len(frame_counts))
    return {method: _array(values, shape, f"occlusion accuracy of {method!r} "
                                          f"([most, least important], fractions, frames)")
            for method, values in accuracy.items()}


def _fraction_axes(fig: Figure, fractions, ylabel: str) -> list:
    """One axes per spatial occlusion fraction (≤ 3 columns), titled and labelled."""
    columns = min(len(fractions), 3)
    axes = fig.subplots(math.ceil(len(fractions) / columns), columns, sharey=True,
                        squeeze=False)
    for ax in axes.ravel()[len(fractions):]:
        ax.set_visible(False)
    for ax, fraction in zip(axes.ravel(), fractions):
        ax.set(title=f"{100 * fraction:g} % patches occluded", xlabel="frames occluded")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    return list(axes.ravel()[:len(fractions)])


def _fraction_figure(num_fractions: int) -> Figure:
    columns = min(num_fractions, 3)
    return figure(3.6 * columns, 2.9 * math.ceil(num_fractions / columns) + 0.8)


def occlusion_curves(accuracy: Mapping, fractions: Sequence[float],
                     frame_counts: Sequence[int], title: str = "", path=None) -> bytes:
    """Accuracy under occlusion, one subplot per spatial fraction (Du Toit).

    ``accuracy``: method -> float [2, P, F]; index 0 = most important cells occluded
    (dashed), 1 = least important occluded (solid); P = len(fractions) spatial fractions,
    F = len(frame_counts) numbers of occluded frames (x axis).
    """
    accuracy = _accuracy(accuracy, fractions, frame_counts)
    fig = _fraction_figure(len(fractions))
    axes = _fraction_axes(fig, fractions, "accuracy")
    for number, (method, values) in enumerate(accuracy.items()):
        style = series_style(number, len(accuracy))
        for index, ax in enumerate(axes):
            ax.plot(frame_counts, values[1, index], label=method, **style)
            ax.plot(frame_counts, values[0, index], ls="--", **style)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3"), Line2D([], [], color="0.3", ls="--")]
    labels += ["solid: least important occluded", "dashed: most important occluded"]
    legend_below(fig, handles, labels)
    return finish(fig, title, path)


def difference_curves(accuracy: Mapping, fractions: Sequence[float],
                      frame_counts: Sequence[int], title: str = "", path=None) -> bytes:
    """Accuracy with the least minus with the most important cells occluded (higher is
    better), in the layout of :func:`occlusion_curves` (same ``accuracy`` [2, P, F])."""
    accuracy = _accuracy(accuracy, fractions, frame_counts)
    fig = _fraction_figure(len(fractions))
    axes = _fraction_axes(fig, fractions, "accuracy difference (least − most)")
    for number, (method, values) in enumerate(accuracy.items()):
        style = series_style(number, len(accuracy))
        for index, ax in enumerate(axes):
            ax.plot(frame_counts, values[1, index] - values[0, index], label=method, **style)
    for ax in axes:
        ax.axhline(0, color="0.5", lw=0.8)
    legend_below(fig, *axes[0].get_legend_handles_labels())
    return finish(fig, title, path)


def _row_fractions(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix; rows without videos are NaN."""
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, confusion / totals, np.nan)


def _draw_confusion(ax, confusion: np.ndarray, class_names: Sequence[str], normalise: bool,
                    fontsize: str = "medium"):
    """Draws one confusion matrix with annotated cells; returns the image (colour bar)."""
    shown = _row_fractions(confusion) if normalise else confusion
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    high = np.nanmax(shown, initial=0) / 2 if not normalise else 0.5
    for (row, column), value in np.ndenumerate(shown):
        if np.isfinite(value):
            ax.text(column, row, f"{100 * value:.0f}%" if normalise else f"{value:.0f}",
                    ha="center", va="center", fontsize=fontsize,
                    color="white" if value > high else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(ticks, class_names, fontsize=fontsize)
    ax.set(xlabel="predicted", ylabel="true")
    return image


def _confusion(confusion, class_names: Sequence[str], what: str) -> np.ndarray:
    count = len(class_names)
    return _array(confusion, (count, count), f"{what} (true × predicted, one row and "
                                             f"column per class)")


def confusion_matrix(confusion, class_names: Sequence[str], title: str = "",
                     normalise: bool = True, path=None) -> bytes:
    """Confusion matrix, int [C, C] (rows true, columns predicted).

    With ``normalise``, colours and annotations are row fractions (percent); rows without
    videos stay blank. Otherwise the counts are shown.
    """
    confusion = _confusion(confusion, class_names, "confusion matrix")
    size = 1.6 + 0.55 * len(class_names)
    fig = figure(size + 1.2, size)
    ax = fig.subplots()
    fig.colorbar(_draw_confusion(ax, confusion, class_names, normalise), ax=ax,
                 label="fraction of true class" if normalise else "videos")
    return finish(fig, title, path)


REPORT_WIDTH = 11.5
"""Width (inches, 100 dpi) of the widest figure a report shows unscaled: its content column
is 1,200 CSS px with 24 px padding each side. Wider figures are scaled down, and their
text with them."""


def confusion_grid(confusions: Mapping, class_names: Sequence[str], path=None) -> bytes:
    """Row-normalised confusion matrices (title -> int [C, C]) as small multiples, at most
    3 per row, with one colour scale from 0 to 1; as wide as a report shows unscaled, so
    the cell percentages stay legible."""
    _nonempty(confusions, "confusion grid")
    confusions = {name: _confusion(matrix, class_names, f"confusion matrix {name!r}")
                  for name, matrix in confusions.items()}
    columns = min(len(confusions), 3)
    rows = math.ceil(len(confusions) / columns)
    panel = min((REPORT_WIDTH - 1.0) / columns, 1.6 + 0.55 * len(class_names))
    fig = figure(panel * columns + 1.0, (panel + 0.3) * rows)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel()[len(confusions):]:
        ax.set_visible(False)
    for ax, (name, matrix) in zip(axes.ravel(), confusions.items()):
        image = _draw_confusion(ax, matrix, class_names, True, fontsize="small")
        ax.set_title(name)
    fig.colorbar(image, ax=axes, label="fraction of true class", shrink=0.8)
    return finish(fig, "", path)


def trend_maps(class_maps, class_names: Sequence[str], title: str = "", path=None) -> bytes:
    """Class-average heatmaps, float [C, T, h, w], as C rows × T columns of images.

    One colour scale for all; an all-NaN class (no videos) is drawn as a blank row saying
    "no videos".
    """
    maps = _array(class_maps, (len(class_names), None, None, None),
                  "class maps (classes, frames, height, width)")
    _, num_frames, height, width = maps.shape
    present = ~np.isnan(maps).all(axis=(1, 2, 3))
    norm = Normalize(*((np.nanmin(maps), np.nanmax(maps)) if present.any() else (0, 1)))
    fig = figure(1.4 + 0.9 * num_frames, 0.5 + 0.9 * len(class_names) * height / width)
    ax = fig.subplots()
    step_x, step_y = 1.1 * width, 1.1 * height  # a cell plus a 10 % gap
    for (row, column) in np.ndindex(len(maps), num_frames):
        if present[row]:
            ax.imshow(maps[row, column], cmap="inferno", norm=norm, interpolation="nearest",
                      extent=(column * step_x, column * step_x + width,
                              row * step_y + height, row * step_y))
    for row in np.flatnonzero(~present):
        ax.text(num_frames * step_x / 2, row * step_y + height / 2, "no videos",
                ha="center", va="center", color="0.4")
    ax.set(xlim=(-0.05 * width, num_frames * step_x), ylim=(len(maps) * step_y, -0.05 * height))
    ax.set_xticks(np.arange(num_frames) * step_x + width / 2,
                  [f"frame {t + 1}" for t in range(num_frames)], fontsize="small")
    ax.set_yticks(np.arange(len(maps)) * step_y + height / 2, class_names)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(ScalarMappable(norm, "inferno"), ax=ax, shrink=0.8)
    return finish(fig, title, path)


def trend_lines(mean, std, class_names: Sequence[str], title: str = "", path=None,
                ylabel: str = "mean map value") -> bytes:
    """Per-frame means per class, float [C, T], each class in its own panel (shared axes)
    as a line with a band of ± ``std`` [C, T]; all-NaN classes (no videos) are left out.
    ``ylabel`` names the quantity (the report's: the mean of the normalised explanation
    map over the frame's pixels)."""
    mean = _array(mean, (len(class_names), None), "trend means (classes, frames)")
    std = _array(std, mean.shape, "trend standard deviations (classes, frames)")
    present = np.flatnonzero(~np.isnan(mean).all(axis=1))
    columns = max(min(len(present), 4), 1)
    rows = max(math.ceil(len(present) / columns), 1)
    fig = figure(min(2.7 * columns + 0.6, REPORT_WIDTH), 0.6 + 2.0 * rows)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    frames = np.arange(1, mean.shape[1] + 1)
    for ax in axes.ravel()[len(present):]:
        ax.set_visible(False)
    for ax, row in zip(axes.ravel(), present):
        ax.fill_between(frames, mean[row] - std[row], mean[row] + std[row], alpha=0.25,
                        color=f"C{row}", linewidth=0)
        ax.plot(frames, mean[row], marker=".", color=f"C{row}")
        ax.set_title(class_names[row], fontsize="medium")
        ax.grid(alpha=0.3)
    if not len(present):
        axes[0, 0].text(0.5, 0.5, "no videos", ha="center", va="center",
                        transform=axes[0, 0].transAxes, color="0.4")
    for column in range(columns):  # the lowest drawn panel of each column carries the axis
        shown = [ax for ax in axes[:, column] if ax.get_visible()]
        if shown:
            shown[-1].xaxis.set_tick_params(labelbottom=True)
            shown[-1].set_xlabel("frame")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    return finish(fig, title, path)


def deletion_insertion(curves: Mapping, fractions, title: str = "", path=None) -> bytes:
    """Deletion and insertion curves: method -> {"deletion": [S], "insertion": [S]}, the
    mean target probability after removing / inserting ``fractions`` [S] of the cells
    (most important first); the legend under the panels gives each method's areas
    (trapezoid rule), deletion / insertion."""
    _nonempty(curves, "deletion/insertion curves")
    fractions = _array(fractions, (None,), "deletion/insertion fractions")
    fig = figure(9, 3.6)
    axes = fig.subplots(1, 2, sharey=True)
    handles, labels = [], []
    for number, (method, curve) in enumerate(curves.items()):
        areas = []
        for ax, kind in zip(axes, ("deletion", "insertion")):
            if kind not in curve:
                raise UserError(f"deletion/insertion curves: {method!r} has no {kind!r} "
                                f"curve; give both 'deletion' and 'insertion'")
            values = _array(curve[kind], fractions.shape, f"{kind} curve of {method!r}")
            line, = ax.plot(fractions, values, **series_style(number, len(curves)))
            areas.append(np.trapezoid(values, fractions))
        handles.append(line)
        labels.append(f"{method} (AUC {areas[0]:.3f} / {areas[1]:.3f})")
    for ax, kind, done in zip(axes, ("deletion", "insertion"), ("deleted", "inserted")):
        ax.set(title=kind, xlabel=f"fraction of cells {done}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean target probability")
    legend_below(fig, handles, labels, columns=3)
    return finish(fig, title, path)


def randomisation_curves(curves: Mapping, stages: Sequence[str], title: str = "",
                         path=None) -> bytes:
    """Cascading randomisation (Adebayo et al., Fig. 2 style): one panel per similarity score,
    method -> {score name: [D] values (None where undefined)}, against the depth: the
    ``stages`` [D] randomised cumulatively from the top (tick ``d``: up to ``stages[d]``)."""
    _nonempty(curves, "randomisation curves")
    scores = list(dict.fromkeys(score for curve in curves.values() for score in curve))
    depth = np.arange(1, len(stages) + 1)
    fig = figure(max(7.5, 3.2 * len(scores)), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(scores), sharey=True, squeeze=False)[0])
    for number, (method, curve) in enumerate(curves.items()):
        for ax, score in zip(axes, scores):
            values = _array([np.nan if v is None else v for v in curve.get(score, [])],
                            depth.shape, f"{score} curve of {method!r}")
            ax.plot(depth, values, label=method, **series_style(number, len(curves)))
    for ax, score in zip(axes, scores):
        ax.set(title=score, xlabel="randomised down to")
        ax.set_xticks(depth, list(stages), rotation=60, ha="right", fontsize="x-small")
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("similarity to the trained model's maps")
    legend_below(fig, *axes[0].get_legend_handles_labels())
    return finish(fig, title, path)


def _table(values: Mapping, groups: list, methods: list) -> np.ndarray:
    """Nested dict group -> method -> float as [groups, methods], NaN where missing."""
    return np.array([[values.get(group, {}).get(method, np.nan) for method in methods]
                     for group in groups], np.float64)


def bar_table(values: Mapping, errors: Mapping | None = None, ylabel: str = "",
              title: str = "", path=None) -> bytes:
    """Grouped bar chart: group -> method -> value (one colour per method, hatched from the
    eleventh on), with optional ``errors`` of the same structure (e.g. standard deviations)
    as error bars; the legend under the axes."""
    _nonempty(values, "bar table")
    groups = list(values)
    methods = list(dict.fromkeys(method for group in values.values() for method in group))
    heights = _table(values, groups, methods)
    spread = None if errors is None else _table(errors, groups, methods)
    width = 0.8 / len(methods)
    fig = figure(min(max(4.5, 1.2 + len(groups) * (0.4 + 0.25 * len(methods))),
                     REPORT_WIDTH), 3.8)
    ax = fig.subplots()
    for index, method in enumerate(methods):
        ax.bar(np.arange(len(groups)) + (index - (len(methods) - 1) / 2) * width,
               heights[:, index], width, label=method, capsize=3, color=f"C{index % 10}",
               hatch=_HATCHES[(index // 10) % len(_HATCHES)], edgecolor="white",
               linewidth=0, yerr=None if spread is None else spread[:, index])
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    legend_below(fig, *ax.get_legend_handles_labels())
    return finish(fig, title, path)


def sweep_curves(values: Sequence[float], panels: Mapping[str, Mapping[str, tuple]],
                 xlabel: str, title: str = "", path=None) -> bytes:
    """Measurements against a swept setting (e.g. the λ of Belharbi et al., Fig. 5): one panel
    per entry of ``panels`` (panel title → series name → ``(means [V], sds [V])``, None where
    not measured), the ``V`` setting ``values`` on the x axis (symmetric-log when 0 is among
    them), error bars = the standard deviations, and each series' value at the first
    setting (the baseline) drawn dashed."""
    _nonempty(panels, "panels")
    values = np.asarray(values, np.float64)
    fig = figure(4.2 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel, series) in zip(axes, panels.items()):
        _nonempty(series, f"series of panel {panel!r}")
        for i, (name, (means, sds)) in enumerate(series.items()):
            means = np.array([np.nan if m is None else m for m in means], np.float64)
            sds = np.array([0.0 if s is None else s for s in sds], np.float64)
            colour = f"C{i}"
            ax.errorbar(values, means, yerr=sds, marker="o", capsize=3, color=colour,
                        label=name)
            if np.isfinite(means[0]):
                ax.axhline(means[0], color=colour, linestyle="--", linewidth=0.8)
        if (values <= 0).any():
            positive = values[values > 0]
            ax.set_xscale("symlog", linthresh=positive.min() if positive.size else 1.0)
        ax.set_xlabel(xlabel)
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return finish(fig, title, path)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of every run of True in the bool vector ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def prediction_timeline(times, probabilities, face, class_names: Sequence[str],
                        title: str = "", path=None) -> bytes:
    """Class probabilities over time: ``times`` float [T] (seconds, or frame numbers),
    ``probabilities`` float [T, C] (NaN rows where there is no face), ``face`` bool [T];
    stretches without a face are shaded grey, the legend sits outside the axes."""
    times = _array(times, (None,), "times")
    probabilities = _array(probabilities, (len(times), len(class_names)), "probabilities")
    face = np.asarray(face, bool)
    fig = figure(8.0, 3.6)
    ax = fig.subplots()
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    for c, name in enumerate(class_names):
        ax.plot(times, probabilities[:, c], label=name, color=f"C{c}", lw=1.6,
                marker="o" if len(times) < 3 else None)
    for start, stop in _runs(~face):
        ax.axvspan(times[start] - step / 2, times[stop - 1] + step / 2, color="0.85", lw=0,
                   label="no face" if start == _runs(~face)[0][0] else None)
    ax.set(xlabel="time (s)" if step != 1.0 else "frame", ylabel="class probability",
           ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return finish(fig, title, path)
