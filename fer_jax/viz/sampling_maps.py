"""Sampling maps of score-table clip samplers (Ayral's thesis, Figs. 3.2–3.9).

Top panel: for every epoch (y) the sampled clip as a bar over its frames ``start ..
start + F − 1`` (x), coloured by phase (warm-up grey, exploration blue, exploitation orange),
optionally with the per-frame ground-truth intensity on a second y axis. Optional bottom
panel: the video's score-table row after every epoch as an image (epochs × clip starts, on
the same frame axis) with a colour bar. Drawn with matplotlib's Agg canvas, without pyplot.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fer_jax.errors import UserError

PHASE_COLOURS = {"warmup": "0.6", "exploration": "tab:blue", "exploitation": "tab:orange"}
_LABELS = {"warmup": "warm-up (uniform)", "exploration": "exploration",
           "exploitation": "exploitation (softmax)"}


def plot_sampling_map(path: str | Path, starts, phases: Sequence[str], clip_length: int,
                      table_rows=None, intensity=None, title: str = "") -> str | Path:
    """Writes the sampling map of one video to the PNG ``path`` and returns ``path``.

    ``starts`` int [E]: clip start of each epoch; ``phases`` [E]: their phase names;
    ``clip_length`` F; ``table_rows`` float [E', N]: the table row after each epoch
    (E' may differ from E); ``intensity`` float [L]: per-frame ground truth.
    """
    starts = np.asarray(starts, np.int64)
    if starts.ndim != 1 or len(phases) != len(starts):
        raise UserError(f"sampling map: {len(phases)} phases for starts of shape "
                        f"{starts.shape}; give one start and one phase per epoch")
    unknown = sorted(set(phases) - set(PHASE_COLOURS))
    if unknown:
        raise UserError(f"sampling map: unknown phase {unknown[0]!r}; use one of "
                        f"{', '.join(PHASE_COLOURS)}")
    rows = None if table_rows is None else np.asarray(table_rows, np.float64)
    if rows is not None and rows.ndim != 2:
        raise UserError(f"sampling map: table_rows must be [epochs, clips], got shape "
                        f"{rows.shape}")
    num_frames = max([starts.max(initial=0) + clip_length]
                     + ([rows.shape[1] + clip_length - 1] if rows is not None else [])
                     + ([len(intensity)] if intensity is not None else []))

    fig = Figure(figsize=(8, 6.5 if rows is not None else 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if rows is not None else 1, 1, sharex=True, squeeze=False)[:, 0]
    top = axes[0]
    epochs = np.arange(len(starts))
    top.barh(epochs, clip_length, left=starts - 0.5, height=0.8,
             color=[PHASE_COLOURS[p] for p in phases])
    top.set(xlim=(-0.5, num_frames - 0.5), ylim=(-0.6, max(len(starts), 1) - 0.4),
            ylabel="epoch")
    top.legend(handles=[Patch(color=PHASE_COLOURS[p], label=_LABELS[p])
                        for p in PHASE_COLOURS if p in phases],
               loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, fontsize="small",
               frameon=False)
    if title:
        fig.suptitle(title)
    if intensity is not None:
        curve = top.twinx()
        curve.plot(np.arange(len(intensity)), intensity, color="tab:green", lw=1.5)
        curve.set_ylabel("ground-truth intensity", color="tab:green")
    if rows is not None:
        image = axes[1].imshow(rows, aspect="auto", origin="lower", cmap="viridis",
                               interpolation="nearest",
                               extent=(-0.5, rows.shape[1] - 0.5, -0.5, len(rows) - 0.5))
        fig.colorbar(image, ax=axes[1], label="score-table value")
        axes[1].set(ylabel="epoch")
    axes[-1].set_xlabel("frame (clip start for the table)")
    fig.savefig(path, dpi=100)
    return path
