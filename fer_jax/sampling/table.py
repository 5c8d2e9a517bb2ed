"""The score table of temporal stochastic softmax (Ayral's thesis, §3.2.3.2): shared memory.

One float32 row ``w_v`` of ``N_v = L_v − F + 1`` clip scores per training video (``N_v = 1``
for videos shorter than F, which the pipeline pads to F frames), stored ragged in one flat
buffer: row ``v`` is ``flat[offsets[v]:offsets[v + 1]]``. 4 bytes per clip position plus
8 bytes per video (4.08 bytes per position at a mean N of 100).

File layout (one file-backed ``np.memmap``, in ``/dev/shm`` when it has room, else in
``tempfile.gettempdir()``):

    int64 header [8]      magic, number of videos V, number of clip positions, published epoch
    int64 offsets [V + 1]
    float32 scores [offsets[V]]

The process that builds a ``ScoreTable`` owns the file and removes it on ``close()`` (or when
the object is garbage-collected, or at interpreter exit). A pickled table carries only the
path: unpickling (e.g. in a Grain worker process) maps the same file read/write, so the copy
sees the owner's writes immediately. The owner ``publish``-es an epoch once the table holds
every update that draws of that epoch depend on; readers ``wait_published`` for it.
"""
from __future__ import annotations

import operator
import os
import tempfile
import time
import weakref
from collections.abc import Sequence

import numpy as np

from fer_jax.errors import UserError

_MAGIC = 0x5F5E_7AB1_E000_0001
_HEADER = 8  # int64 words
_MAGIC_AT, _VIDEOS_AT, _POSITIONS_AT, _PUBLISHED_AT = range(4)
_SHARED_MEMORY = "/dev/shm"


def _create(directory: str | None, nbytes: int) -> str:
    """Path of a new file of ``nbytes`` reserved bytes (``posix_fallocate``, so a full tmpfs
    fails here rather than with SIGBUS on a later write)."""
    candidates = [directory] if directory else [_SHARED_MEMORY, tempfile.gettempdir()]
    errors = []
    for candidate in candidates:
        try:
            fd, path = tempfile.mkstemp(prefix="fer_jax_scores_", suffix=".bin", dir=candidate)
        except OSError as e:
            errors.append(f"{candidate}: {e.strerror}")
            continue
        try:
            os.posix_fallocate(fd, 0, nbytes)
            return path
        except OSError as e:
            os.unlink(path)
            errors.append(f"{candidate}: {e.strerror}")
        finally:
            os.close(fd)
    raise UserError(f"cannot create a {nbytes / 2**20:.1f} MiB score table file "
                    f"({'; '.join(errors)}); free space there or pass another directory")


def _remove(path: str, owner_pid: int) -> None:
    """Unlinks ``path`` in the owner process only (not in a forked child at its exit)."""
    if os.getpid() == owner_pid:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class ScoreTable:
    """Ragged float32 clip-score rows of every training video, in a shared file.

    ``num_clips_per_video``: int [V], ``N_v ≥ 1`` clip positions of each video.
    ``init``: initial scores (default 0, i.e. uniform softmax), either flat float32
    ``[Σ N_v]`` or a sequence of V rows of lengths ``N_v`` (e.g. clip scores derived from
    frame-level labels such as UNBC PSPI). ``directory``: where the file goes (default
    ``/dev/shm`` with a fallback to the temporary directory).
    """

    def __init__(self, num_clips_per_video, init=None, directory: str | None = None):
        counts = np.asarray(num_clips_per_video)
        if counts.ndim != 1 or (counts.size and not np.issubdtype(counts.dtype, np.integer)):
            raise UserError(f"clip counts must be a 1-D integer array, got dtype {counts.dtype} "
                            f"and shape {counts.shape}")
        if counts.size and counts.min() < 1:
            v = int(np.argmin(counts))
            raise UserError(f"video {v} has {counts[v]} clip positions; every video needs at "
                            f"least 1 (pad videos shorter than the clip to the clip length)")
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        flat_init = None if init is None else _flatten(init, offsets)
        nbytes = 8 * (_HEADER + len(offsets)) + 4 * int(offsets[-1])
        self._path = _create(directory, nbytes)
        self._finalizer = weakref.finalize(self, _remove, self._path, os.getpid())
        layout = np.memmap(self._path, np.int64, "r+", shape=(_HEADER + len(offsets),))
        layout[:_HEADER] = [_MAGIC, len(counts), offsets[-1], -1, 0, 0, 0, 0]
        layout[_HEADER:] = offsets
        del layout
        self._map()
        if flat_init is not None:
            self._flat[:] = flat_init

    # ------------------------------------------------------------------ sharing
    def _map(self) -> None:
        """Maps the file: header, read-only offsets and score views."""
        self._memmap = np.memmap(self._path, np.uint8, "r+")
        self._header = self._memmap[:8 * _HEADER].view(np.int64).view(np.ndarray)
        if self._header[_MAGIC_AT] != _MAGIC:
            raise ValueError(f"{self._path} is not a score table file")
        end = 8 * (_HEADER + int(self._header[_VIDEOS_AT]) + 1)
        self._offsets = self._memmap[8 * _HEADER:end].view(np.int64).view(np.ndarray)
        self._offsets.flags.writeable = False
        self._flat = self._memmap[end:end + 4 * int(self._header[_POSITIONS_AT])].view(
            np.float32).view(np.ndarray)

    def __getstate__(self) -> dict:
        return {"path": self._path}

    def __setstate__(self, state: dict) -> None:
        self._path = state["path"]
        self._finalizer = None  # a copy never removes the owner's file
        if not os.path.exists(self._path):
            raise FileNotFoundError(f"score table file {self._path} no longer exists (its "
                                    f"owner closed the table or exited)")
        self._map()

    def close(self) -> None:
        """Owner: removes the file (views already handed out stay valid). Copies: no-op."""
        if self._finalizer is not None:
            self._finalizer()

    @property
    def path(self) -> str:
        return self._path

    # ------------------------------------------------------------------ layout
    @property
    def num_videos(self) -> int:
        return len(self._offsets) - 1

    @property
    def offsets(self) -> np.ndarray:
        """Read-only int64 [V + 1]: row ``v`` is ``flat[offsets[v]:offsets[v + 1]]``."""
        return self._offsets

    @property
    def flat(self) -> np.ndarray:
        """Writable float32 [Σ N_v] view of every row, concatenated."""
        return self._flat

    @property
    def nbytes(self) -> int:
        """Size of the shared file (header, offsets and scores)."""
        return self._memmap.size

    def check_video(self, video_index) -> int:
        """``video_index`` as an int in ``[0, V)``; UserError otherwise."""
        v = operator.index(video_index)
        if not 0 <= v < len(self._offsets) - 1:
            raise UserError(f"video index {v} is out of range: the score table has "
                            f"{self.num_videos} videos")
        return v

    def num_clips(self, video_index: int) -> int:
        """``N_v``, the number of clip positions of video ``video_index``."""
        v = self.check_video(video_index)
        return self._offsets.item(v + 1) - self._offsets.item(v)

    def row(self, video_index: int) -> np.ndarray:
        """Writable float32 [N_v] view of the scores of video ``video_index``."""
        v = self.check_video(video_index)
        return self._flat[self._offsets.item(v):self._offsets.item(v + 1)]

    # ------------------------------------------------------------------ epochs
    @property
    def published_epoch(self) -> int:
        """The latest epoch published by the owner (−1 before the first)."""
        return int(self._header[_PUBLISHED_AT])

    def publish(self, epoch: int) -> None:
        """Owner: the table now holds every update that draws of ``epoch`` depend on."""
        self._header[_PUBLISHED_AT] = epoch

    def wait_published(self, epoch: int, timeout_s: float = 600.0) -> None:
        """Blocks until the owner has published ``epoch`` (or a later one); TimeoutError after
        ``timeout_s`` seconds."""
        deadline, delay = time.monotonic() + timeout_s, 1e-4
        while self._header[_PUBLISHED_AT] < epoch:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"score table {self._path}: epoch {epoch} was not published within "
                    f"{timeout_s:g} s (published: {self.published_epoch}); the training "
                    f"process must call table.publish(epoch) once the previous epoch's "
                    f"updates are applied")
            time.sleep(delay)
            delay = min(2 * delay, 0.01)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies: ``scores`` float32 [Σ N_v], ``offsets`` int64 [V + 1],
        ``published_epoch`` int64 []."""
        return {"scores": self._flat.copy(), "offsets": self._offsets.copy(),
                "published_epoch": np.array(self.published_epoch, np.int64)}

    def load_state_dict(self, state: dict) -> None:
        """Restores ``state_dict()`` output exactly; UserError if it is for other videos."""
        offsets, scores = np.asarray(state["offsets"]), np.asarray(state["scores"])
        if offsets.shape != self._offsets.shape or scores.shape != self._flat.shape or (
                not np.array_equal(offsets, self._offsets)):
            raise UserError(
                f"the saved score table ({len(offsets) - 1} videos, {scores.size} clip "
                f"positions) does not match this one ({self.num_videos} videos, "
                f"{self._flat.size} positions): the training videos or clip length changed")
        self._flat[:] = scores
        self.publish(int(state["published_epoch"]))


def _flatten(init, offsets: np.ndarray) -> np.ndarray:
    """``init`` (flat or a sequence of rows) → float32 [offsets[-1]]; UserError on a length
    mismatch."""
    if isinstance(init, np.ndarray) and init.ndim == 1 or (
            isinstance(init, Sequence) and len(init) and np.ndim(init[0]) == 0):
        flat = np.asarray(init, np.float32)
        if flat.shape != (offsets[-1],):
            raise UserError(f"initial scores have shape {flat.shape}; the table has "
                            f"{offsets[-1]} clip positions")
        return flat
    if len(init) != len(offsets) - 1:
        raise UserError(f"initial scores have {len(init)} rows; the table has "
                        f"{len(offsets) - 1} videos")
    lengths = np.array([np.size(r) for r in init], np.int64)
    bad = np.flatnonzero(lengths != np.diff(offsets))
    if bad.size:
        v = int(bad[0])
        raise UserError(f"initial scores of video {v} have {lengths[v]} values; it has "
                        f"{offsets[v + 1] - offsets[v]} clip positions")
    return np.concatenate([np.ravel(r) for r in init] + [np.zeros(0)]).astype(np.float32)
