"""Dataset registry: the experiment config → a random-access ``VideoSource`` per split.

``synthetic`` renders the built-in benchmark; every real dataset (``data/layouts.py``) reads
the records written by ``--mode=preprocess`` and splits them by ``dataset.protocol``.
"""
from __future__ import annotations

import numpy as np

from fer_jax.data.pipeline import VideoSource
from fer_jax.errors import UserError

SPLITS = ("train", "validation", "test")
SHUFFLE_SALT = 0x5A17  # keeps the label permutation apart from other draws of the same seed


class ShuffledLabels:
    """A split whose labels are permuted over its videos (the data randomisation test of
    Adebayo et al., ``config.train.shuffle_labels``): video ``i`` gets the label of video
    ``permutation[i]``, so the class counts stay those of the split while a label says
    nothing about the video. Frames and every other field are the source's; ``load`` returns
    the permuted ``label``. The permutation depends on ``seed`` alone (and the split size)."""

    def __init__(self, source: VideoSource, seed: int):
        self.source = source
        self.permutation = np.random.default_rng([int(seed), SHUFFLE_SALT]).permutation(
            len(source))
        self.labels = np.asarray(source.labels, np.int32)[self.permutation]

    def __len__(self) -> int:
        return len(self.source)

    def num_frames(self, index: int) -> int:
        return self.source.num_frames(index)

    def load(self, index: int, frame_indices=None, **kwargs) -> dict:
        example = self.source.load(index, frame_indices, **kwargs)
        example["label"] = np.int32(self.labels[index])
        return example

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "source":  # unpickling: no source yet
            raise AttributeError(name)
        return getattr(self.source, name)


# ``config.dataset`` fields of the synthetic benchmark's event phases (inclusive (min, max)
# frame ranges; configs written before they existed use SyntheticConfig's defaults).
PHASE_FIELDS = ("onset_frames", "apex_frames", "offset_frames")


def _synthetic(config, split: str) -> VideoSource:
    from fer_jax.data import synthetic

    dataset_config = config.dataset
    num_videos = dataset_config[f"{split}_videos"]
    if num_videos < 1:  # every split is used: training, validation after each epoch, eval
        raise UserError(f"config.dataset.{split}_videos must be at least 1, got {num_videos}")
    try:
        config = synthetic.SyntheticConfig(
            num_classes=dataset_config.num_classes,
            num_frames=dataset_config.num_frames,
            image_size=dataset_config.image_size,
            num_subjects=dataset_config.num_subjects,
            nuisance=dataset_config.nuisance,
            seed=dataset_config.seed,
            **{name: dataset_config[name] for name in PHASE_FIELDS
               if name in dataset_config},
        )
        return synthetic.SyntheticFaces(split, num_videos, config)
    except ValueError as e:
        raise UserError(f"config.dataset: {e}") from None


def _preprocessed(config, split: str) -> VideoSource:
    from fer_jax.data import tfds_source

    return tfds_source.open_split(config, split)


def names() -> tuple[str, ...]:
    """Every dataset a config can name."""
    from fer_jax.data import layouts

    return ("synthetic", *layouts.LAYOUTS)


def build(config, split: str) -> VideoSource:
    """The ``split`` ('train' | 'validation' | 'test') of the dataset of the experiment
    ``config`` (its ``dataset`` section; real datasets also read ``preprocess``)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    name = config.dataset.name
    if name not in names():
        raise UserError(f"unknown dataset {name!r}; available: {', '.join(names())}")
    return (_synthetic if name == "synthetic" else _preprocessed)(config, split)
