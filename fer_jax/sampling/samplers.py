"""Training-clip samplers over a ``ScoreTable`` (Ayral's thesis, §3.2; Eqs. 3.5, 3.7–3.9).

A sampler draws one clip start ``t ∈ [0, N_v)`` per (video, epoch) and may update the video's
table row ``w_v`` with the clip's score ``s`` (the true-class logit of the un-augmented clip,
computed with the parameters before the step's update).

Phases (``phase(epoch)``)
  * ``'warmup'`` (the first ``warmup_epochs``): uniform draws (Eq. 3.7), updates ignored.
  * ``'exploration'`` (stochastic softmax, the next ``exploration_epochs`` E): exploration
    epoch k uses slot ``j = π_v(k)`` of E uniformly spaced starts
    ``round((N − 1)·j / (E − 1))``, where ``π_v`` is a permutation of ``range(E)`` hashed from
    (seed, video), so no slot repeats and no per-video state is kept. The score initialises
    the slot's segment: the positions nearer to that slot than to any other (a tie goes to
    the earlier position; slots that coincide when N < E share one segment).
  * ``'exploitation'``: ``t ~ softmax(γ w_v)`` (Eq. 3.8), by inverse CDF with one hashed
    uniform; the stochastic softmax update is Eq. 3.9 with radius R (F in the thesis):
    ``w[t+i] ← (|i|/R)·w[t+i] + ((R − |i|)/R)·s`` for |i| < R, clipped to the row (the
    centre is replaced by s exactly).

Determinism
  The uniform variate of a draw is a splitmix64 hash (``fer_jax.hashing``) of (seed, stream,
  epoch, video), never a stateful RNG: a draw is a function of (seed, epoch, video, table
  row), the same in Grain worker processes, threads and a resumed run. ``sample_many``
  returns exactly ``sample`` of each video and ``update_batch`` writes exactly what
  ``update`` writes, video by video.

Sharing with readers
  Pickling a sampler pickles its table by path (see ``table``); a reader process draws from
  the live table. Draws of an exploitation epoch read the row as left by the previous
  epochs, so the owner applies an epoch's updates, then ``table.publish(epoch + 1)``, and
  readers ``table.wait_published(epoch)`` before drawing.
"""
from __future__ import annotations

import inspect
import math
import operator

import numpy as np

from fer_jax.errors import UserError
from fer_jax.hashing import splitmix64
from fer_jax.sampling.table import ScoreTable

_DRAW, _EXPLORE = 1, 2  # hash streams
_UNIT = 2.0 ** -53      # 53-bit uniform in [0, 1)


# --------------------------------------------------------------------------- hashing
def _key(*keys: int) -> int:
    """Chained hash of non-negative integer keys: ``h ← splitmix64(h ^ key)`` from h = 0."""
    h = 0
    for key in keys:
        h = splitmix64(h ^ key)
    return h


# --------------------------------------------------------------------------- helpers
def _softmax_weights(rows: np.ndarray, gamma: float) -> np.ndarray:
    """float64 ``exp(γw − max γw)`` along the last axis of ``rows [..., N]`` (largest = 1)."""
    z = np.multiply(rows, gamma, dtype=np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return np.exp(z, out=z)


def _by_length(n: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """``(positions, N)`` for every distinct value N of ``n`` int [B]."""
    order = np.argsort(n, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(n[order])) + 1) if len(n) else []
    return [(g, int(n[g[0]])) for g in groups]


def _ragged_index(begin: np.ndarray, length: np.ndarray) -> np.ndarray:
    """int64 [Σ length]: ``begin[b] + 0..length[b]−1`` for every b, concatenated."""
    ends = np.cumsum(length)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(begin - ends + length, length)


def _integer(name: str, value, minimum: int = 0) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise UserError(f"{name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise UserError(f"{name} must be at least {minimum}, got {value}")
    return value


def _finite(name: str, value) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value}")
    return value


# --------------------------------------------------------------------------- samplers
class ClipSampler:
    """Shared machinery: uniform draws in warm-up, ``softmax(γ·row)`` draws in exploitation,
    validation, hashing, state. Subclasses set the phases and implement ``_update_many``."""

    name = ""
    warmup_epochs = 0
    _exploring = 0  # exploration epochs actually run

    def __init__(self, table: ScoreTable, seed: int = 0):
        if not isinstance(table, ScoreTable):
            raise TypeError(f"a sampler needs a ScoreTable, got {type(table).__name__}")
        self.table = table
        self.seed = _integer("seed", seed)
        self._epoch: int | None = None
        self._bind()

    def _bind(self) -> None:
        """Per-process caches: table views and the hash key of the last epoch drawn."""
        self._offsets, self._flat = self.table.offsets, self.table.flat
        self._draw_key_of = (-1, 0)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_offsets", "_flat", "_draw_key_of")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind()

    # ------------------------------------------------------------------ epochs
    def begin_epoch(self, epoch: int) -> None:
        """Sets the epoch that ``update(..., epoch=None)`` refers to."""
        self._epoch = _integer("epoch", epoch)

    def phase(self, epoch: int) -> str:
        """``'warmup'``, ``'exploration'`` or ``'exploitation'`` at ``epoch``."""
        epoch = _integer("epoch", epoch)
        if epoch < self.warmup_epochs:
            return "warmup"
        return "exploration" if epoch < self.warmup_epochs + self._exploring else "exploitation"

    def _draw_key(self, epoch: int) -> int:
        cached = self._draw_key_of
        if cached[0] != epoch:
            cached = self._draw_key_of = (epoch, _key(self.seed, _DRAW, epoch))
        return cached[1]

    # ------------------------------------------------------------------ draws
    def sample(self, video_index: int, epoch: int) -> int:
        """Clip start ``t ∈ [0, N_v)`` of video ``video_index`` at ``epoch``."""
        phase = self.phase(epoch)
        v = self.table.check_video(video_index)
        lo, hi = self._offsets.item(v), self._offsets.item(v + 1)
        h = splitmix64(self._draw_key(epoch) ^ v)
        if phase == "warmup":
            return ((h >> 32) * (hi - lo)) >> 32
        if phase == "exploration":
            return int(self._explore(np.array([v]), epoch)[0][0])
        weights = _softmax_weights(self._flat[lo:hi], self.gamma)
        cdf = np.cumsum(weights, out=weights)
        return min(int(cdf.searchsorted((h >> 11) * _UNIT * cdf[-1], "right")), hi - lo - 1)

    def sample_many(self, video_indices, epoch: int) -> np.ndarray:
        """int64 [B]: ``sample(v, epoch)`` for each v of ``video_indices`` int [B]."""
        phase = self.phase(epoch)
        v = self._videos(video_indices)
        n = self._offsets[v + 1] - self._offsets[v]
        h = splitmix64(v.astype(np.uint64) ^ self._draw_key(epoch))
        if phase == "warmup":
            return (((h >> 32) * n.astype(np.uint64)) >> 32).astype(np.int64)
        if phase == "exploration":
            return self._explore(v, epoch)[0]
        u = (h >> 11) * _UNIT
        starts = np.empty(len(v), np.int64)
        for group, size in _by_length(n):
            rows = self._flat[self._offsets[v[group], None] + np.arange(size)]
            weights = _softmax_weights(rows, self.gamma)
            cdf = np.cumsum(weights, axis=1, out=weights)
            count = (cdf <= (u[group] * cdf[:, -1])[:, None]).sum(axis=1)
            starts[group] = np.minimum(count, size - 1)
        return starts

    # ------------------------------------------------------------------ updates
    def update(self, video_index: int, start: int, score: float,
               epoch: int | None = None) -> None:
        """Feeds back the score of the clip of video ``video_index`` drawn at ``start`` in
        ``epoch`` (None: the epoch of the last ``begin_epoch``)."""
        if epoch is None:
            if self._epoch is None:
                raise UserError("update() without an epoch needs a begin_epoch(epoch) call first")
            epoch = self._epoch
        phase = self.phase(epoch)
        v = self.table.check_video(video_index)
        lo, hi = self._offsets.item(v), self._offsets.item(v + 1)
        start = _integer("clip start", start)
        if start >= hi - lo:
            raise UserError(f"clip start {start} of video {v} is out of range 0..{hi - lo - 1}")
        score = float(score)
        if not math.isfinite(score):
            raise UserError(f"the score of video {v} is not finite ({score})")
        if phase != "warmup":
            self._update_one(v, lo, hi, start, score, epoch, phase)

    def update_batch(self, video_indices, starts, scores, epoch: int) -> None:
        """``update`` for every (video, start, score) of ``video_indices`` int [B], ``starts``
        int [B] and ``scores`` float [B]; the videos of one batch are distinct."""
        phase = self.phase(epoch)
        v = self._videos(video_indices)
        starts, scores = np.asarray(starts), np.asarray(scores, np.float64)
        if starts.shape != v.shape or scores.shape != v.shape or (
                v.size and not np.issubdtype(starts.dtype, np.integer)):
            raise UserError(f"update_batch needs integer starts and scores of shape {v.shape}, "
                            f"got {starts.dtype} {starts.shape} and {scores.shape}")
        n = self._offsets[v + 1] - self._offsets[v]
        bad = np.flatnonzero((starts < 0) | (starts >= n))
        if bad.size:
            b = bad[0]
            raise UserError(f"clip start {starts[b]} of video {v[b]} is out of range "
                            f"0..{n[b] - 1}")
        if not np.isfinite(scores).all():
            raise UserError(f"the score of video {v[~np.isfinite(scores)][0]} is not finite")
        if len(np.unique(v)) != len(v):
            raise UserError("update_batch got the same video twice; a video is drawn once "
                            "per epoch")
        if phase != "warmup":
            self._update_many(v, starts.astype(np.int64), scores, epoch, phase)

    def _update_one(self, v: int, lo: int, hi: int, start: int, score: float, epoch: int,
                    phase: str) -> None:
        """One update (row ``flat[lo:hi]``); subclasses may add a faster path."""
        self._update_many(np.array([v]), np.array([start]), np.array([score]), epoch, phase)

    def _videos(self, video_indices) -> np.ndarray:
        """``video_indices`` as int64 [B], checked against the table."""
        v = np.asarray(video_indices)
        if v.ndim != 1 or (v.size and not np.issubdtype(v.dtype, np.integer)):
            raise UserError(f"video indices must be a 1-D integer array, got {v.dtype} "
                            f"{v.shape}")
        if v.size and (v.min() < 0 or v.max() >= self.table.num_videos):
            bad = v[(v < 0) | (v >= self.table.num_videos)][0]
            raise UserError(f"video index {bad} is out of range: the score table has "
                            f"{self.table.num_videos} videos")
        return v.astype(np.int64)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """NumPy copies: the table's (``scores``, ``offsets``, ``published_epoch``) and
        ``epoch`` (of ``begin_epoch``, −1 if none), plus the sampler's own arrays."""
        return {**self.table.state_dict(),
                "epoch": np.array(-1 if self._epoch is None else self._epoch, np.int64)}

    def load_state_dict(self, state: dict) -> None:
        """Exact restore of ``state_dict()`` output."""
        missing = sorted(set(self._state_keys()) - set(state))
        if missing:
            raise UserError(f"the saved {self.name} sampler state lacks {', '.join(missing)} "
                            f"(was it saved by another sampler?)")
        self.table.load_state_dict(state)
        epoch = int(state["epoch"])
        self._epoch = None if epoch < 0 else epoch

    def _state_keys(self) -> tuple[str, ...]:
        return "scores", "offsets", "published_epoch", "epoch"


class UniformSampler(ClipSampler):
    """Uniform clip sampling (Eq. 3.7) at every epoch; never updates the table. Its phase is
    ``'warmup'`` throughout (uniform draws, no updates)."""

    name = "uniform"

    def phase(self, epoch: int) -> str:
        _integer("epoch", epoch)
        return "warmup"


class StochasticSoftmaxSampler(ClipSampler):
    """Temporal stochastic softmax (Algorithm 3.1 with the phases of §3.2.4).

    ``gamma`` γ of Eq. 3.8; ``warmup_epochs`` and ``exploration_epochs`` E as in the module
    docstring; ``radius`` R of Eq. 3.9 (the clip length F in the thesis);
    ``skip_exploration`` goes from warm-up straight to exploitation (a table initialised
    from frame-level labels)."""

    name = "stochastic_softmax"

    def __init__(self, table: ScoreTable, gamma: float = 1.0, warmup_epochs: int = 3,
                 exploration_epochs: int = 5, radius: int = 16, seed: int = 0,
                 skip_exploration: bool = False):
        super().__init__(table, seed)
        self.gamma = _finite("gamma", gamma)
        self.warmup_epochs = _integer("warmup_epochs", warmup_epochs)
        self.exploration_epochs = _integer("exploration_epochs", exploration_epochs)
        self.skip_exploration = bool(skip_exploration)
        self._exploring = 0 if self.skip_exploration else self.exploration_epochs
        self.radius = _integer("radius", radius, minimum=1)
        distance = np.abs(np.arange(1 - self.radius, self.radius))
        self._keep = distance / self.radius                        # |i| / R, i = −R+1..R−1
        self._weight = (self.radius - distance) / self.radius      # (R − |i|) / R
        self._explore_key = _key(self.seed, _EXPLORE)

    def _explore(self, v: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exploration slot of videos ``v`` int64 [B] at ``epoch``: (start, segment begin,
        segment end), each int64 [B], positions within the row."""
        slots = self.exploration_epochs
        n = self._offsets[v + 1] - self._offsets[v]
        keys = splitmix64(splitmix64(v.astype(np.uint64) ^ self._explore_key)[:, None]
                           ^ np.arange(slots, dtype=np.uint64))
        j = np.argsort(keys, axis=1, kind="stable")[:, epoch - self.warmup_epochs]
        grid = ((n[:, None] - 1) * np.arange(slots) / (slots - 1) if slots > 1
                else (n[:, None] - 1) / 2)
        positions = np.rint(grid).astype(np.int64)  # [B, E], non-decreasing along E
        start = positions[np.arange(len(v)), j]
        below = np.where(positions < start[:, None], positions, -1).max(axis=1)
        above = np.where(positions > start[:, None], positions, n[:, None]).min(axis=1)
        begin = np.where(below < 0, 0, (below + start) // 2 + 1)
        end = np.where(above == n, n, (start + above) // 2 + 1)
        return start, begin, end

    def _update_one(self, v, lo, hi, start, score, epoch, phase):
        if phase != "exploitation":
            return super()._update_one(v, lo, hi, start, score, epoch, phase)
        r = self.radius
        a, b = max(start - r + 1, 0), min(start + r, hi - lo)
        k = a - start + r - 1
        window = self._flat[lo + a:lo + b]
        window[...] = window * self._keep[k:k + b - a] + score * self._weight[k:k + b - a]

    def _update_many(self, v, starts, scores, epoch, phase):
        if phase == "exploration":
            start, begin, end = self._explore(v, epoch)
            if (start != starts).any():
                b = int(np.flatnonzero(start != starts)[0])
                raise UserError(f"video {v[b]} was explored at start {start[b]} in epoch "
                                f"{epoch}, not at {starts[b]}")
            length = end - begin
            self._flat[_ragged_index(self._offsets[v] + begin, length)] = np.repeat(scores,
                                                                                    length)
            return
        offset = np.arange(1 - self.radius, self.radius)
        position = starts[:, None] + offset                          # [B, 2R − 1]
        n = self._offsets[v + 1] - self._offsets[v]
        inside = (position >= 0) & (position < n[:, None])
        index = (self._offsets[v, None] + position)[inside]
        k = np.broadcast_to(offset + self.radius - 1, position.shape)[inside]
        s = np.broadcast_to(scores[:, None], position.shape)[inside]
        self._flat[index] = self._flat[index] * self._keep[k] + s * self._weight[k]


class ReinforceSampler(ClipSampler):
    """REINFORCE estimate of the sampling distribution (Eq. 3.5), the thesis' comparison.

    The row holds per-video logits θ (initially the table's values, 0: uniform); draws
    ``t ~ q = softmax(γθ)`` after ``warmup_epochs`` uniform epochs. An update with reward
    ``r = s`` and the video's baseline b (an exponential moving average of its rewards with
    ``baseline_momentum``, started at its first reward; NaN before) does
    ``θ ← θ + learning_rate·(r − b)·γ·(e_t − q)``, the gradient of ``log q_t``.
    ``baselines`` float32 [V] is part of the state.
    """

    name = "reinforce"

    def __init__(self, table: ScoreTable, gamma: float = 1.0, learning_rate: float = 0.1,
                 baseline_momentum: float = 0.9, warmup_epochs: int = 3, seed: int = 0):
        super().__init__(table, seed)
        self.gamma = _finite("gamma", gamma)
        self.learning_rate = _finite("learning_rate", learning_rate)
        self.baseline_momentum = _finite("baseline_momentum", baseline_momentum)
        self.warmup_epochs = _integer("warmup_epochs", warmup_epochs)
        self.baselines = np.full(table.num_videos, np.nan, np.float32)

    def _update_many(self, v, starts, scores, epoch, phase):
        baseline = self.baselines[v].astype(np.float64)
        baseline = np.where(np.isnan(baseline), scores, baseline)
        step = self.learning_rate * (scores - baseline) * self.gamma
        m = self.baseline_momentum
        self.baselines[v] = m * baseline + (1 - m) * scores
        for group, size in _by_length(self._offsets[v + 1] - self._offsets[v]):
            index = self._offsets[v[group], None] + np.arange(size)
            theta = self._flat[index]
            weights = _softmax_weights(theta, self.gamma)
            gradient = -weights / np.cumsum(weights, axis=1)[:, -1:]
            gradient[np.arange(len(group)), starts[group]] += 1
            self._flat[index] = theta + step[group, None] * gradient

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "baselines": self.baselines.copy()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        baselines = np.asarray(state["baselines"])
        if baselines.shape != self.baselines.shape:
            raise UserError(f"the saved REINFORCE baselines are for {baselines.size} videos; "
                            f"the table has {self.baselines.size}")
        self.baselines[:] = baselines

    def _state_keys(self) -> tuple[str, ...]:
        return super()._state_keys() + ("baselines",)


SAMPLERS = {cls.name: cls for cls in (UniformSampler, StochasticSoftmaxSampler,
                                      ReinforceSampler)}


def make_sampler(name: str, table: ScoreTable, **kwargs) -> ClipSampler:
    """The sampler ``name`` (``'uniform'``, ``'stochastic_softmax'``, ``'reinforce'``) over
    ``table`` with keyword options ``kwargs``."""
    if name not in SAMPLERS:
        raise UserError(f"unknown clip sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    try:
        inspect.signature(SAMPLERS[name]).bind(table, **kwargs)
    except TypeError as e:
        raise UserError(f"clip sampler {name!r}: {e}") from None
    return SAMPLERS[name](table, **kwargs)
