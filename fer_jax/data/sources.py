"""Dataset registry: ``config.dataset`` → a random-access ``VideoSource`` per split."""
from __future__ import annotations

from fer_jax.data.pipeline import VideoSource
from fer_jax.errors import UserError

SPLITS = ("train", "validation", "test")


def _synthetic(dataset_config, split: str) -> VideoSource:
    from fer_jax.data import synthetic

    config = synthetic.SyntheticConfig(
        num_classes=dataset_config.num_classes,
        num_frames=dataset_config.num_frames,
        image_size=dataset_config.image_size,
        num_subjects=dataset_config.num_subjects,
        nuisance=dataset_config.nuisance,
        seed=dataset_config.seed,
    )
    num_videos = dataset_config[f"{split}_videos"]
    try:
        return synthetic.SyntheticFaces(split, num_videos, config)
    except ValueError as e:
        raise UserError(f"config.dataset: {e}") from None


_BUILDERS = {"synthetic": _synthetic}


def build(dataset_config, split: str) -> VideoSource:
    """The ``split`` ('train' | 'validation' | 'test') of the dataset named in the config."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if dataset_config.name not in _BUILDERS:
        raise UserError(f"unknown dataset {dataset_config.name!r}; available: "
                        f"{', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[dataset_config.name](dataset_config, split)
