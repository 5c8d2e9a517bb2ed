"""Grain input pipelines: random-access video source → clip selection → augmentation → batches.

Training
  One Grain ``MapDataset`` spans all epochs. Flat element ``i`` is position ``i % S`` of
  epoch ``i // S`` where ``S = (N // B) · B`` (each epoch is a fresh permutation of the N
  training videos, its last ``N mod B`` dropped), so batches never straddle epochs and the
  iterator state checkpointed by Grain is a complete description of the position in training.
  For every (video, epoch) a ``ClipSelector`` chooses frame indices and a frame-consistent
  augmentation is drawn, both from ``np.random.default_rng([seed, epoch, video])``: a draw is a
  deterministic function of (seed, epoch, video), in any worker process and after a resume.

Evaluation
  Every video once, in order, with the deterministic ``eval_clip`` selection, no
  augmentation; the last batch is padded to the batch size and flagged by ``mask``.
  With ``eval.clips = K > 0`` (the multi-clip test protocol) each video gives K clips of F
  consecutive frames at evenly spaced starts instead, whose logits the trainer averages.
  Evaluations with ground truth (``truth``: the attribution measurements) keep one clip.

Video length (Ayral's thesis, §2.2.3.3)
  ``evenly_spaced`` resizes the video temporally: F frames spread over all L frames, so it
  never pads (a video shorter than F repeats frames by construction). The other selectors
  cut F consecutive frames and pad videos shorter than F by ``input.pad``: ``repeat`` the
  last frame, ``loop`` back to the first (frame ``t mod L``), or ``zeros`` (black frames:
  every per-frame array of the padded positions, model input, AU heatmaps and ground truth,
  is zero after augmentation).

Elements are dicts of NumPy arrays: ``video`` (the model input, by ``input.modality``:
``rgb`` uint8 ``[B, F, S, S, 3]``, ``gray`` uint8 ``[B, F, S, S, 1]`` (ITU-R BT.601 luma),
``landmarks`` float32 ``[B, F, 68, 2]`` (x, y divided by S, so the face crop spans [0, 1]);
normalisation happens on the accelerator), ``label`` int32 ``[B]``, ``index`` int32 ``[B]``
(video index), ``mask`` bool ``[B]`` (True for real examples). Training batches also hold
``start`` int32 ``[B]`` (first frame of the clip), with a score-table sampler
``clean_video`` (the same clip without augmentation, for clean scoring) and, for AU-guided
training, ``au_masks`` uint8 ``[B, F, S, S]`` (the AU heatmaps of Belharbi et al. × 255, drawn
from the augmented landmarks, so they follow flips, crops and rotations). With
``eval.full_video`` evaluation batches hold every frame, padded to ``eval.max_frames``, and
``length`` int32 ``[B]``; with ``eval.clips = K`` they hold ``video`` ``[B, K, F, S, S, C]``
(landmarks ``[B, K, F, 68, 2]``) and ``clip_starts`` int32 ``[B, K]``.

Clip selectors are callables ``(video_index, epoch, length, rng) → (frame indices int32 [F],
blank bool [F])``, ``blank`` marking the positions to black out (``zeros`` padding); the
stochastic softmax sampler plugs in here. They must be picklable (Grain workers).
"""
from __future__ import annotations

import dataclasses
import gc
import signal
from typing import Iterator, Protocol

import grain
import jax.numpy as jnp
import numpy as np

from fer_jax.data import action_units, augment
from fer_jax.errors import UserError


class VideoSource(Protocol):
    """What the pipeline needs from a dataset split (e.g. ``synthetic.SyntheticFaces``)."""

    labels: np.ndarray  # int32 [N]

    def __len__(self) -> int: ...

    def num_frames(self, index: int) -> int: ...

    def load(self, index: int, frame_indices: np.ndarray | None = None) -> dict: ...


class ClipSelector(Protocol):
    def __call__(self, video_index: int, epoch: int, length: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------- clip selection
PAD_MODES = ("repeat", "loop", "zeros")


def check_pad(pad: str) -> str:
    """``pad`` if it is one of ``PAD_MODES``, else a one-line UserError."""
    if pad not in PAD_MODES:
        raise UserError(f"unknown input.pad {pad!r}; choose one of {', '.join(PAD_MODES)}")
    return pad


def clip_at(start: int, num_frames: int, length: int,
            pad: str = "repeat") -> tuple[np.ndarray, np.ndarray]:
    """The clip of ``num_frames`` consecutive frames from ``start`` of a video of ``length``
    frames → ``(frame indices int32 [F], blank bool [F])``.

    Positions past the last frame are padding: ``repeat`` indexes the last frame, ``loop``
    wraps round (``t mod length``), ``zeros`` indexes the last frame and marks the position
    in ``blank`` (to be zeroed after loading; ``blank`` is all False in the other modes).
    E.g. ``length`` 5, ``num_frames`` 8: repeat and zeros ``[0 1 2 3 4 4 4 4]`` (zeros: blank
    ``[F F F F F T T T]``), loop ``[0 1 2 3 4 0 1 2]``.
    """
    positions = start + np.arange(num_frames)
    past_end = positions >= length
    if check_pad(pad) == "loop":
        indices = positions % length
    else:
        indices = np.minimum(positions, length - 1)
    blank = past_end if pad == "zeros" else np.zeros(num_frames, bool)
    return indices.astype(np.int32), blank


@dataclasses.dataclass(frozen=True)
class EvenlySpaced:
    """``num_frames`` evenly spaced frames over the whole video (Du Toit's 8 frames): the
    temporal resize of Ayral's thesis, §2.2.3.3. Never pads: a video shorter than
    ``num_frames`` repeats some of its frames by construction (``blank`` is all False)."""

    num_frames: int

    def __call__(self, video_index, epoch, length, rng):
        indices = np.round(np.linspace(0, length - 1, self.num_frames)).astype(np.int32)
        return indices, np.zeros(self.num_frames, bool)


class _Padding:
    """Checks the ``pad`` field of a padding selector when it is constructed."""

    def __post_init__(self):
        check_pad(self.pad)


@dataclasses.dataclass(frozen=True)
class RandomClip(_Padding):
    """``num_frames`` consecutive frames at a uniformly random start (Ayral, Eq. 3.7).
    Videos shorter than the clip start at 0 and are padded by ``pad`` (``clip_at``)."""

    num_frames: int
    pad: str = "repeat"

    def __call__(self, video_index, epoch, length, rng):
        start = int(rng.integers(0, max(length - self.num_frames, 0) + 1))
        return clip_at(start, self.num_frames, length, self.pad)


@dataclasses.dataclass(frozen=True)
class CentreClip(_Padding):
    """``num_frames`` consecutive frames in the middle of the video (short videos: from
    frame 0, padded by ``pad``)."""

    num_frames: int
    pad: str = "repeat"

    def __call__(self, video_index, epoch, length, rng):
        return clip_at(max(length - self.num_frames, 0) // 2, self.num_frames, length,
                       self.pad)


@dataclasses.dataclass(frozen=True)
class SamplerClip(_Padding):
    """Clip start drawn by a score-table sampler (fer_jax.sampling; Ayral, chapter 3);
    short videos are padded by ``pad``.

    Picklable into Grain workers: the sampler's table is shared memory, and a draw for
    ``epoch`` waits until the training loop has published that epoch's table (all updates
    of the previous epoch applied), so draws are a deterministic function of the seed, the
    epoch, the video and the table, however far the workers prefetch.
    """

    sampler: object
    num_frames: int
    pad: str = "repeat"

    def __call__(self, video_index, epoch, length, rng):
        self.sampler.table.wait_published(epoch)
        return clip_at(self.sampler.sample(video_index, epoch), self.num_frames, length,
                       self.pad)


CLIP_SELECTORS = {"evenly_spaced": EvenlySpaced, "random": RandomClip, "centre": CentreClip}


def clip_selector(name: str, num_frames: int, pad: str = "repeat") -> ClipSelector:
    """The registered selector ``name`` producing ``num_frames`` frame indices; clips of
    consecutive frames pad short videos by ``pad`` (``evenly_spaced`` never pads)."""
    if name not in CLIP_SELECTORS:
        raise UserError(f"unknown clip selection {name!r}; choose one of "
                        f"{', '.join(CLIP_SELECTORS)}")
    check_pad(pad)
    if name == "evenly_spaced":
        return EvenlySpaced(num_frames)
    return CLIP_SELECTORS[name](num_frames, pad)


def clip_starts(length: int, num_frames: int, clips: int) -> np.ndarray:
    """First frames int64 ``[clips]`` of the multi-clip test protocol: evenly spaced over
    ``0 … length − num_frames``, rounded (all 0 for a video shorter than a clip)."""
    return np.round(np.linspace(0, max(length - num_frames, 0), clips)).astype(np.int64)


def eval_clips(config) -> int:
    """``eval.clips`` (0 = one clip per video), validated: a count >= 0, not combined with
    ``eval.full_video``."""
    clips = config.eval.get("clips", 0)
    if not isinstance(clips, (int, np.integer)) or isinstance(clips, bool) or clips < 0:
        raise UserError(f"eval.clips must be a number of clips >= 0 (0 = off), got {clips!r}")
    if clips and config.eval.get("full_video"):
        raise UserError("eval.clips and eval.full_video are two test-time protocols; set one "
                        "of them (eval.clips=0 or eval.full_video=False)")
    return int(clips)


# --------------------------------------------------------------------------- model inputs
MODALITIES = ("rgb", "gray", "landmarks")


def input_shape(config) -> tuple[int, ...]:
    """Shape of one example's model input (without the batch axis) for ``config.input``."""
    c = config.input
    modality = c.get("modality", "rgb")
    if modality == "landmarks":
        return (c.clip_frames, 68, 2)
    if modality not in MODALITIES:
        raise UserError(f"unknown input.modality {modality!r}; use one of "
                        f"{', '.join(MODALITIES)}")
    return (c.clip_frames, c.image_size, c.image_size, 3 if modality == "rgb" else 1)


def normalise(video: jnp.ndarray, config) -> jnp.ndarray:
    """Model input → float32 ``(x − mean) / std``; uint8 pixels (``[B, T, H, W, C]``) are
    scaled to [0, 1] first, float inputs (landmarks ``[B, T, 68, 2]`` in [0, 1]) are not."""
    x = video.astype(jnp.float32)
    if video.dtype == jnp.uint8:
        x = x / 255.0
    mean = jnp.asarray(config.input.mean, jnp.float32)  # scalars or per-channel tuples
    return (x - mean) / jnp.asarray(config.input.std, jnp.float32)


def model_input(example: dict, modality: str, image_size: int) -> np.ndarray:
    """An augmented clip dict → the model input array for ``modality`` (module docstring)."""
    if modality == "rgb":
        return example["frames"]
    if modality == "gray":
        luma = example["frames"].astype(np.float32) @ augment.LUMA
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    if "landmarks" not in example:
        raise UserError("input.modality='landmarks' needs a dataset with per-frame landmarks "
                        "(run the face preprocessing first)")
    return (example["landmarks"] / np.float32(image_size)).astype(np.float32)


def au_masks(example: dict, source: VideoSource, size: int, codebook: str) -> np.ndarray:
    """AU heatmaps (Belharbi et al.) float32 ``[F, size, size]`` of a clip dict at ``size`` px:
    the AUs of the clip's expression (``source.class_names[label]``, or the project's class
    order without names) drawn from its landmarks, radii scaled to the face (``size ×
    source.face_fraction``, default the whole frame); zeros for neutral."""
    if "landmarks" not in example:
        raise UserError("AU heatmaps need per-frame landmarks, which this dataset does not "
                        "give (run the face preprocessing with a landmark backend: dlib or "
                        "face_alignment)")
    label = int(example["label"])
    class_names = getattr(source, "class_names", None)
    expression = class_names[label] if class_names else label
    return action_units.au_maps(np.asarray(example["landmarks"], np.float32), expression,
                                size, size, codebook=codebook,
                                face_size=size * getattr(source, "face_fraction", 1.0))


# --------------------------------------------------------------------------- transforms
@dataclasses.dataclass
class _TrainElement:
    """Flat training index → augmented clip dict (runs inside Grain workers)."""

    source: VideoSource
    selector: ClipSelector
    augment_config: object
    image_size: int
    seed: int
    epoch_size: int
    modality: str = "rgb"
    clean: bool = False  # also return the un-augmented clip (clean scoring of the sampler)
    au_codebook: str | None = None  # also return AU heatmaps drawn with this codebook

    def __post_init__(self):
        self._cached = (-1, None)  # (epoch, permutation), replaced atomically (threads)

    def video_at(self, flat_index: int) -> tuple[int, int]:
        """``flat_index → (epoch, video index)``."""
        epoch, position = divmod(flat_index, self.epoch_size)
        cached = self._cached
        if cached[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 2**31 - 1])
            cached = (epoch, rng.permutation(len(self.source)))
            self._cached = cached
        return epoch, int(cached[1][position])

    def __call__(self, flat_index: int) -> dict:
        epoch, video = self.video_at(flat_index)
        rng = np.random.default_rng([self.seed, epoch, video])
        frames, blank = self.selector(video, epoch, self.source.num_frames(video), rng)
        example = self.source.load(video, frames)
        example.pop("au_masks", None)  # stored maps are not needed: redrawn after augmenting
        height, width = example["frames"].shape[1:3]
        params = augment.draw_params(rng, self.augment_config, height, width, self.image_size)
        augmented = augment.apply(example, params, self.image_size)
        out = {"video": _blanked(model_input(augmented, self.modality, self.image_size), blank),
               "label": np.int32(example["label"]), "index": np.int32(video),
               "start": np.int32(frames[0]), "mask": np.bool_(True)}
        if self.au_codebook is not None:
            maps = au_masks(augmented, self.source, self.image_size, self.au_codebook)
            out["au_masks"] = _blanked(np.rint(maps * 255).astype(np.uint8), blank)
        if self.clean:
            out["clean_video"] = _blanked(model_input(_resized(example, self.image_size),
                                                      self.modality, self.image_size), blank)
        return out


@dataclasses.dataclass(frozen=True)
class _EvalElement:
    """Video index → un-augmented clip dict, with the ground truth named in ``truth``."""

    source: VideoSource
    selector: ClipSelector
    image_size: int
    modality: str = "rgb"
    truth: tuple[str, ...] = ()
    codebook: str = "figure"

    def __call__(self, video: int) -> dict:
        rng = np.random.default_rng(video)  # only used by random selectors
        frames, blank = self.selector(video, 0, self.source.num_frames(video), rng)
        example = _resized(self.source.load(video, frames), self.image_size)
        out = {"video": _blanked(model_input(example, self.modality, self.image_size), blank),
               "label": np.int32(example["label"]),
               "index": np.int32(video), "mask": np.bool_(True)}
        for name in self.truth:
            out[name] = _blanked(self._truth(example, name), blank)
        return out

    def _truth(self, example: dict, name: str) -> np.ndarray:
        if name == "au_masks":
            return au_masks(example, self.source, self.image_size, self.codebook)
        if name not in example:
            raise UserError(f"the dataset gives no {name!r} for its videos, which this "
                            f"evaluation needs (datasets with faces: run the face "
                            f"preprocessing first)")
        return np.asarray(example[name], np.float32)


@dataclasses.dataclass(frozen=True)
class _MultiClipElement:
    """Video index → ``clips`` un-augmented clips of ``num_frames`` consecutive frames at
    evenly spaced starts (``clip_starts``; short videos: the same clip padded by ``pad``):
    ``video`` ``[K, F, S, S, C]`` (landmarks ``[K, F, 68, 2]``), ``clip_starts`` int32 ``[K]``."""

    source: VideoSource
    num_frames: int
    clips: int
    image_size: int
    modality: str = "rgb"
    pad: str = "repeat"

    def __call__(self, video: int) -> dict:
        length = self.source.num_frames(video)
        starts = clip_starts(length, self.num_frames, self.clips)
        frames, blank = zip(*(clip_at(s, self.num_frames, length, self.pad) for s in starts))
        frames, blank = np.stack(frames), np.stack(blank)  # [K, F]
        # Overlapping clips share frames: each distinct frame is loaded once.
        unique, inverse = np.unique(frames, return_inverse=True)
        example = _resized(self.source.load(video, unique), self.image_size)
        inputs = model_input(example, self.modality, self.image_size)[inverse.reshape(-1)]
        return {"video": _blanked(inputs.reshape(frames.shape + inputs.shape[1:]), blank),
                "label": np.int32(example["label"]), "index": np.int32(video),
                "clip_starts": starts.astype(np.int32), "mask": np.bool_(True)}


@dataclasses.dataclass(frozen=True)
class _FullVideoElement:
    """Video index → every frame, un-augmented, padded to ``max_frames`` by repeating the last
    frame; ``length`` tells the real frame count (test-time pooling over all clips)."""

    source: VideoSource
    image_size: int
    max_frames: int
    modality: str = "rgb"

    def __call__(self, video: int) -> dict:
        length = self.source.num_frames(video)
        if length > self.max_frames:
            raise UserError(f"video {video} has {length} frames, more than "
                            f"eval.max_frames={self.max_frames}; raise it")
        example = self.source.load(video, clip_at(0, self.max_frames, length)[0])
        return {"video": model_input(_resized(example, self.image_size), self.modality,
                                     self.image_size),
                "label": np.int32(example["label"]), "index": np.int32(video),
                "length": np.int32(length), "mask": np.bool_(True)}


def _blanked(array: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """``array`` ``[*P, ...]`` with the positions where ``blank`` (bool ``P``: ``[F]`` or
    ``[K, F]``) is True set to zero (``zeros`` padding); ``array`` itself when none is."""
    if not blank.any():
        return array
    out = np.array(array)
    out[blank] = 0
    return out


def _resized(example: dict, image_size: int) -> dict:
    """The clip dict resized to ``image_size`` (frames, landmarks, AU masks), no augmentation."""
    height, width = example["frames"].shape[1:3]
    if (height, width) == (image_size, image_size):
        return example
    return augment.apply(example, augment.identity_params(height, width, image_size),
                         image_size)


# --------------------------------------------------------------------------- datasets
def _quiet_worker(worker_index: int, worker_count: int) -> None:
    """Grain worker set-up: Ctrl-C in a terminal reaches every process of the group; the
    workers leave it to the training loop (which saves and stops them) instead of each
    printing a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _to_iter(dataset: grain.MapDataset, num_workers: int) -> grain.IterDataset:
    """Worker processes when ``num_workers > 0``, else in-process with 2 reader threads
    (OpenCV releases the GIL, so threads overlap decoding with the accelerator)."""
    if num_workers > 0:
        return dataset.to_iter_dataset(grain.ReadOptions(num_threads=0)).mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers),
            worker_init_fn=_quiet_worker)
    return dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))


def close(iterator) -> None:
    """Stops the worker processes of an iterator of ``train_dataset`` / ``iterate_eval`` and
    frees the shared memory of the batches they had prefetched (a no-op for in-process
    iterators). Without it, the interpreter's resource tracker reclaims those blocks at exit
    and warns about each. Grain's reader thread keeps its last batch in a reference cycle
    (through the traceback of the exception that ended it): a garbage collection frees it.
    (Grain unlinks freed blocks on a background thread; one still pending at exit is
    reclaimed by the tracker, whose warning ``fer_jax.main`` filters.)"""
    if hasattr(iterator, "close"):
        iterator.close()
        gc.collect()


def steps_per_epoch(num_videos: int, batch_size: int) -> int:
    """Optimiser-independent training steps per epoch; raises if the split is too small."""
    if batch_size < 1:
        raise UserError(f"train.batch_size must be at least 1, got {batch_size}")
    if num_videos < batch_size:
        raise UserError(
            f"the training split has {num_videos} videos but train.batch_size is {batch_size}; "
            f"use --config.train.batch_size={max(num_videos, 1)} or fewer, or add videos")
    return num_videos // batch_size


@dataclasses.dataclass(frozen=True)
class _ProcessRows:
    """Local index ``i`` of one process → the training element at its global position:
    row ``process·local + i mod local`` of global batch ``i // local``."""

    element: _TrainElement
    batch_size: int
    local: int
    process: int

    def __call__(self, i: int) -> dict:
        batch, row = divmod(int(i), self.local)
        return self.element(batch * self.batch_size + self.process * self.local + row)


def train_dataset(source: VideoSource, config, num_epochs: int, seed: int,
                  selector: ClipSelector | None = None, clean: bool = False,
                  au_maps: bool = False, process_index: int = 0,
                  process_count: int = 1) -> grain.IterDataset:
    """Batched training clips for ``num_epochs`` epochs (see module docstring).

    ``config`` is the experiment config (``input.*``, ``train.batch_size``). ``selector``
    overrides ``input.train_clip`` (e.g. with a score-table sampler); ``clean`` adds the
    un-augmented clip as ``clean_video``; ``au_maps`` the AU heatmaps as ``au_masks``
    (codebook ``dataset.codebook``). In a multi-process run, process ``process_index`` of
    ``process_count`` loads rows ``[p·b, (p+1)·b)`` of every global batch (``b`` = batch
    size / process count): together the processes load exactly the batches of a
    one-process run.
    """
    batch_size = config.train.batch_size
    if batch_size % process_count:
        raise UserError(f"train.batch_size={batch_size} is not divisible by the "
                        f"{process_count} processes")
    epoch_size = steps_per_epoch(len(source), batch_size) * batch_size
    if selector is None:
        selector = clip_selector(config.input.train_clip, config.input.clip_frames,
                                 config.input.get("pad", "repeat"))
    input_shape(config)  # validates input.modality
    eval_clips(config)  # validates eval.clips before training rather than at validation
    codebook = (config.get("dataset") or {}).get("codebook", "figure") if au_maps else None
    element = _TrainElement(source, selector, config.input.augment, config.input.image_size,
                            seed, epoch_size, config.input.get("modality", "rgb"),
                            clean=clean, au_codebook=codebook)
    rows = _ProcessRows(element, batch_size, batch_size // process_count, process_index)
    dataset = grain.MapDataset.range(num_epochs * epoch_size // process_count).map(rows)
    return _to_iter(dataset.batch(rows.local, drop_remainder=True), config.input.num_workers)


def eval_dataset(source: VideoSource, config, truth: tuple[str, ...] = (),
                 batch_size: int = 0, videos=None, protocol: bool = False
                 ) -> grain.IterDataset:
    """Every video of ``source`` (or the indices ``videos``) once, in order, in batches of
    ``batch_size`` (0: ``train.batch_size``; the last one smaller, ``pad_batch`` fills it).

    ``truth`` adds ground truth at the model's input size: 'landmarks' float32 [B, F, 68, 2]
    (pixels), 'intensity' float32 [B, F], 'au_masks' float32 [B, F, S, S] (AU heatmaps
    of Belharbi et al. for the video's label drawn from its landmarks; zeros for neutral).

    ``protocol``: the test protocol of the trainer's evaluation, ``eval.full_video`` (every
    frame) or ``eval.clips`` (K clips, ``_MultiClipElement``) when set; otherwise, and always
    with ``truth``, one clip per video (``input.eval_clip``), which attribution methods
    explain."""
    modality = config.input.get("modality", "rgb")
    pad = config.input.get("pad", "repeat")
    clips = eval_clips(config)
    protocol = protocol and not truth
    if protocol and config.eval.get("full_video"):
        element = _FullVideoElement(source, config.input.image_size, config.eval.max_frames,
                                    modality)
    elif protocol and clips:
        element = _MultiClipElement(source, config.input.clip_frames, clips,
                                    config.input.image_size, modality, check_pad(pad))
    else:
        selector = clip_selector(config.input.eval_clip, config.input.clip_frames, pad)
        codebook = (config.get("dataset") or {}).get("codebook", "figure")
        element = _EvalElement(source, selector, config.input.image_size, modality,
                               tuple(truth), codebook)
    indices = np.arange(len(source)) if videos is None else np.asarray(videos, np.int64)
    dataset = grain.MapDataset.source(indices).map(lambda i: element(int(i)))
    size = batch_size or config.train.batch_size
    if size < 1:
        raise UserError(f"evaluation batch size must be at least 1, got {size} "
                        "(train.batch_size, or explain.batch_size for --mode=report)")
    return _to_iter(dataset.batch(size), num_workers=0)


def pad_batch(batch: dict, batch_size: int) -> dict:
    """Pads every array of ``batch`` along axis 0 to ``batch_size``; padding has mask False."""
    missing = batch_size - len(batch["label"])
    if missing == 0:
        return {k: np.asarray(v) for k, v in batch.items()}
    return {k: np.concatenate([v, np.zeros((missing,) + v.shape[1:], v.dtype)])
            for k, v in batch.items()}


def iterate_eval(source: VideoSource, config, truth: tuple[str, ...] = (),
                 batch_size: int = 0, videos=None, protocol: bool = False) -> Iterator[dict]:
    """Padded evaluation batches (dicts of NumPy arrays); arguments as ``eval_dataset``."""
    for batch in eval_dataset(source, config, truth, batch_size, videos, protocol):
        yield pad_batch(batch, batch_size or config.train.batch_size)
