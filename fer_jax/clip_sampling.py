"""Score-table clip sampling inside a training run (Ayral's thesis, chapter 3).

``ClipSampling`` connects ``fer_jax.sampling`` to the training loop:

* one ``ScoreTable`` row of N = L − F + 1 clip scores per training video (N = 1 for videos
  shorter than F, which the pipeline pads to F frames), memory-mapped from a file in
  ``WORKDIR/sampler/process_<i>/`` that the Grain workers map too (``pipeline.SamplerClip``);
* the jit'ed train step scores each clip and returns the true-class logit per example:
  ``sampler.scoring='clean'`` (default) the un-augmented clip (eval mode, parameters before
  the update; the pipeline then adds ``clean_video``), ``'augmented'`` the training clip's own
  logits (train mode, same forward pass as the loss; see ``SCORINGS``); the loop hands these
  device arrays to ``add`` without waiting for them, and ``flush`` applies them to the table
  on the host (at log points, checkpoints and epoch ends, where the loop synchronises anyway);
* ``end_epoch`` applies the epoch's last updates and publishes the table for the next epoch,
  which is what the workers wait for before drawing, so draws do not depend on prefetching;
* the sampler state goes into every checkpoint, the sampling-map history into ``progress``;
* at the end: sampling maps (PNG per tracked video) and, when the dataset has per-frame
  ground truth (the synthetic benchmark), the Spearman correlation between each learned table
  row and the ground-truth expression intensity of the clips.

Several processes: each loads its own rows of every global batch, and which process loads a
video changes from epoch to epoch, so every process keeps the whole table (its own file)
and applies every update: ``flush`` all-gathers the steps' video indices, clip starts and
scores across processes. The tables stay identical, a draw depends only on (seed, epoch,
video, table) whichever process makes it, and a run equals the single-process run with the
same global batch.
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from fer_jax import sampling
from fer_jax.data import pipeline
from fer_jax.errors import UserError

# ``config.sampler.scoring``: what the table's score of the drawn clip is. 'clean' (fer_jax's
# default): the true-class logit of the same clip without augmentation, in eval mode (no
# dropout), with the parameters before the step's update: the method Ayral's thesis describes
# (§3.3.2.6 "Clean sample scoring", Table 3.8, p. 93: 46.91 % on AFEW at γ = 10).
# 'augmented': the true-class logit of the training forward pass itself (augmented clip,
# train mode, parameters before the update), what the thesis calls "data-augmented scoring"
# (46.65 % there) and what the author's public code does.
SCORINGS = ("clean", "augmented")


def check_scoring(config) -> str:
    """``config.sampler.scoring`` ('clean' when absent); a one-line UserError otherwise."""
    scoring = config.sampler.get("scoring", "clean")
    if scoring not in SCORINGS:
        raise UserError(f"sampler.scoring must be 'clean' or 'augmented', got {scoring!r}")
    return scoring


def _global(tree):
    """Every row of a tree of batch-sharded arrays, in global batch order, as NumPy (one
    all-gather across processes when they span several; every process must call it at the
    same point)."""
    if all(leaf.is_fully_addressable for leaf in jax.tree.leaves(tree)):
        return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of the values of ``x`` [N], tied values sharing their mean rank (as
    ``scipy.stats.rankdata``'s default), float64 [N]."""
    _, inverse, counts = np.unique(np.asarray(x), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each distinct value's last occurrence
    return (last - (counts - 1) / 2)[inverse].astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ of two vectors [N]: Pearson's correlation of their average ranks (the
    value of ``scipy.stats.spearmanr``, without importing scipy.stats, a second at start-up);
    NaN when either is constant."""
    ra, rb = average_ranks(a) - (len(a) + 1) / 2, average_ranks(b) - (len(b) + 1) / 2
    denominator = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / denominator) if denominator > 0 else float("nan")


class ClipSampling:
    """The clip sampler of one training run; see the module docstring."""

    def __init__(self, config, source, workdir: Path):
        c, clip = config.sampler, config.input.clip_frames
        self.scoring = check_scoring(config)
        lengths = np.array([source.num_frames(v) for v in range(len(source))], np.int64)
        # The table file lives in the workdir, one folder per process; files left there by a
        # killed run of this workdir are stale and removed.
        directory = Path(workdir) / "sampler" / f"process_{jax.process_index()}"
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("fer_jax_scores_*.bin"):
            stale.unlink()
        self.table = sampling.ScoreTable(np.maximum(lengths - clip + 1, 1),
                                         directory=directory)
        kwargs = dict(seed=config.seed)
        if c.name in ("stochastic_softmax", "reinforce"):
            kwargs.update(gamma=c.gamma, warmup_epochs=c.warmup_epochs)
        if c.name == "stochastic_softmax":
            kwargs.update(exploration_epochs=c.exploration_epochs, radius=c.radius or clip)
        if c.name == "reinforce":
            kwargs.update(learning_rate=c.learning_rate, baseline_momentum=c.baseline_momentum)
        self.sampler = sampling.make_sampler(c.name, self.table, **kwargs)
        self.needs_scores = c.name != "uniform"
        # the pipeline adds the un-augmented clip only for clean scoring
        self.needs_clean_video = self.needs_scores and self.scoring == "clean"
        self.selector = pipeline.SamplerClip(self.sampler, clip,
                                             config.input.get("pad", "repeat"))
        self.clip_frames = clip
        self.tracked = list(range(min(c.map_videos, len(source))))
        self.history = {str(v): {"epochs": [], "starts": [], "rows": []}
                        for v in self.tracked}  # rows: one per finished epoch
        self.pending: list[tuple[jax.Array, jax.Array, jax.Array | None, int]] = []

    # ------------------------------------------------------------------ the step loop
    def start(self, epoch: int) -> None:
        """Lets the workers draw for ``epoch`` (a fresh run: 0; a resumed one: its epoch)."""
        self.sampler.begin_epoch(epoch)
        self.table.publish(epoch)

    def add(self, batch: dict, scores: jax.Array | None, epoch: int) -> None:
        """Queues one step's table updates and sampling-map entries; ``batch`` is the step's
        global (device) batch, ``scores`` its true-class logits ``[B]`` (clean or training clip,
        per ``scoring``; None for the uniform sampler). Nothing is waited for."""
        self.pending.append((batch["index"], batch["start"], scores, epoch))

    def flush(self) -> None:
        """Applies the queued steps on the host (waits for them to finish)."""
        for index, start, scores, step_epoch in self.pending:
            index, start, scores = _global((index, start, scores))
            for v, clip_start in zip(index, start):
                if str(v) in self.history:
                    record = self.history[str(v)]
                    record["epochs"].append(step_epoch)
                    record["starts"].append(int(clip_start))
            if scores is not None:
                self.sampler.update_batch(index, start, scores, step_epoch)
        self.pending.clear()

    def end_epoch(self, epoch: int) -> None:
        """Applies the epoch's updates, snapshots tracked rows, publishes epoch + 1."""
        self.flush()
        for v in self.tracked:
            self.history[str(v)]["rows"].append(self.table.row(v).tolist())
        self.start(epoch + 1)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        if self.pending:
            raise RuntimeError("flush the pending table updates before checkpointing")
        return self.sampler.state_dict()

    def restore(self, state: dict, history: dict | None, epoch: int) -> None:
        self.sampler.load_state_dict({k: np.asarray(v) for k, v in state.items()})
        if history is not None:
            self.history = history
        self.start(epoch)

    def close(self) -> None:
        self.table.close()

    # ------------------------------------------------------------------ results
    def write_maps(self, directory: Path, source) -> list[Path]:
        """One sampling-map PNG per tracked video (thesis Figs 3.2–3.9)."""
        from fer_jax.viz.sampling_maps import plot_sampling_map  # matplotlib: only when drawing

        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for v in self.tracked:
            record = self.history[str(v)]
            if not record["starts"]:
                continue
            truth = source.ground_truth(v) if hasattr(source, "ground_truth") else {}
            # A video left out of an epoch (the dropped N mod B) has no start there.
            rows = [record["rows"][e] for e in record["epochs"] if e < len(record["rows"])]
            paths.append(plot_sampling_map(
                directory / f"video_{v:05d}.png", np.asarray(record["starts"]),
                [self.sampler.phase(e) for e in record["epochs"]], self.clip_frames,
                table_rows=np.asarray(rows) if rows else None,
                intensity=truth.get("intensity"),
                title=f"training video {v}, class {truth.get('label', '?')}"))
        return paths

    def intensity_correlation(self, source) -> dict | None:
        """Spearman ρ between every table row and the ground-truth mean intensity of each
        clip, over the expressive videos (some intensity variation, N ≥ 3), and the fraction
        whose highest-scored clip is a most intense one; None without per-frame ground
        truth."""
        if not hasattr(source, "ground_truth"):
            return None
        rhos, hits = [], []
        window = np.ones(self.clip_frames) / self.clip_frames
        for v in range(self.table.num_videos):
            row = np.asarray(self.table.row(v), np.float64)
            intensity = source.ground_truth(v)["intensity"]
            if len(row) < 3 or np.ptp(intensity) == 0 or np.ptp(row) == 0:
                continue
            clip_intensity = np.convolve(intensity, window, mode="valid")[:len(row)]
            rhos.append(spearman(row, clip_intensity))
            hits.append(clip_intensity[np.argmax(row)] >= clip_intensity.max() - 1e-6)
        if not rhos:  # still in warm-up: the table has not been written
            return {"videos": 0}
        return {"spearman_mean": float(np.mean(rhos)), "spearman_sd": float(np.std(rhos)),
                "videos": len(rhos), "argmax_at_peak_fraction": float(np.mean(hits))}
