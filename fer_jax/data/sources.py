"""Dataset registry: the experiment config → a random-access ``VideoSource`` per split.

``synthetic`` renders the built-in benchmark; every real dataset (``data/layouts.py``) reads
the records written by ``--mode=preprocess`` and splits them by ``dataset.protocol``.
"""
from __future__ import annotations

from fer_jax.data.pipeline import VideoSource
from fer_jax.errors import UserError

SPLITS = ("train", "validation", "test")


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
