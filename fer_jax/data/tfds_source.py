"""Random access to a preprocessed dataset (TFDS ArrayRecord) as a pipeline ``VideoSource``.

``open_split(config, split)`` finds the records that ``--mode=preprocess`` wrote with the
config's ``preprocess`` settings, applies the experiment protocol (``dataset.protocol``,
``dataset.fold``, ``dataset.split_seed``; ``data/protocols.py``) to their metadata and returns
the chosen split. ``load`` decodes only the JPEG frames a clip needs, and the stored AU maps
(zlib-compressed, every frame of the video at once) only when asked for: the pipeline draws
its AU heatmaps from the augmented landmarks instead, and inflating the stored maps of a
64-frame 224-pixel video cost several times the JPEG decoding of an 8-frame clip
(``benchmarks/pipeline.py``).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import tensorflow_datasets as tfds

from fer_jax.data import layouts, preprocess, protocols, tfds_builders
from fer_jax.errors import UserError


LAZY_FEATURES = ("au_maps",)
"""Record features read compressed and inflated only when ``load`` is asked for them."""


def decode_jpegs(jpegs, frames: np.ndarray) -> np.ndarray:
    """RGB frames uint8 [F, H, W, 3] of the JPEG byte strings ``jpegs[i]`` for ``i`` in
    ``frames`` (int [F]): each decoded by OpenCV and converted from BGR straight into its
    slot of the output array (no per-frame copies stacked afterwards)."""
    out = None
    for k, i in enumerate(np.asarray(frames).tolist()):
        bgr = cv2.imdecode(np.frombuffer(jpegs[i], np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"frame {i} of a record is not a decodable JPEG")
        if out is None:
            out = np.empty((len(frames), *bgr.shape), np.uint8)
        elif bgr.shape != out.shape[1:]:
            raise UserError(f"frame {i} of a record is {bgr.shape[1]}×{bgr.shape[0]}, "
                            f"unlike the {out.shape[2]}×{out.shape[1]} of the clip's first")
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out[k])
    if out is None:
        raise ValueError("no frames asked for")
    return out


def meta_of(builder: tfds_builders.VideoBuilder) -> tuple[protocols.Meta, np.ndarray]:
    """The per-record metadata of a prepared dataset, and its lengths int32 [N]."""
    m = builder.info.metadata
    meta = protocols.Meta(
        names=np.asarray(m["names"], str), labels=np.asarray(m["labels"], np.int32),
        subjects=np.asarray(m["subjects"], str), partitions=np.asarray(m["partitions"], str),
        info={k: np.asarray(v, np.int32) for k, v in m["info"].items()},
        class_names=tuple(m["class_names"]))
    return meta, np.asarray(m["lengths"], np.int32)


class TfdsVideos:
    """One protocol split of a prepared dataset (implements ``pipeline.VideoSource``).

    Attributes: ``labels`` int32 [N] (under the protocol's classes), ``class_names``,
    ``subjects`` str [N], ``names`` str [N], ``records`` int64 [N] (record indices).
    ``load(i, frame_indices, au_masks=False)`` returns 'frames' uint8 [F, H, W, 3] RGB,
    'frame_indices' int32 [F] (source frame numbers), 'label', 'index', and when stored
    'valid' bool [F], 'landmarks' float32 [F, 68, 2] (crop pixels), 'frame_labels' float32
    [F], and with ``au_masks`` the stored AU maps as 'au_masks' float32 [F, S, S] in [0, 1].
    ``face_fraction``: share of the crop side the face spans (AU heatmaps scale their radii to
    the face, ``pipeline.au_masks``).
    """

    def __init__(self, builder: tfds_builders.VideoBuilder, meta: protocols.Meta,
                 lengths: np.ndarray, subset: protocols.Subset, class_names: tuple[str, ...],
                 face_fraction: float = 1.0):
        """``meta``, ``lengths``: ``meta_of(builder)``; ``subset``: records of this split."""
        self._builder = builder
        self.face_fraction = face_fraction
        self.records = np.asarray(subset.indices, np.int64)
        self.labels = np.asarray(subset.labels, np.int32)
        self.class_names = tuple(class_names)
        self.subjects = meta.subjects[self.records]
        self.names = meta.names[self.records]
        self._lengths = lengths[self.records]

    @functools.cached_property
    def _records(self):
        """The records, with the AU maps left compressed (``load`` inflates them on demand)."""
        lazy = {k: tfds.decode.SkipDecoding() for k in LAZY_FEATURES
                if k in self._builder.info.features}
        return self._builder.as_data_source(tfds_builders.SPLIT, decoders=lazy or None)

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self):  # Grain workers reopen the ArrayRecord files
        state = dict(self.__dict__)
        state.pop("_records", None)
        return state

    def num_frames(self, index: int) -> int:
        return int(self._lengths[index])

    def load(self, index: int, frame_indices: np.ndarray | None = None,
             au_masks: bool = False) -> dict:
        """Frames ``frame_indices`` (int [F], all if None) of video ``index`` (class
        docstring); ``au_masks`` adds the stored AU maps of those frames."""
        record = self._records[int(self.records[index])]
        length = self.num_frames(index)
        frames = np.arange(length) if frame_indices is None else np.asarray(frame_indices)
        if frames.size and (frames.min() < 0 or frames.max() >= length):
            raise ValueError(f"frame_indices must lie in 0..{length - 1} for video {index}")
        out = {"frames": decode_jpegs(record["frames"], frames),
               "frame_indices": np.asarray(record["frame_indices"])[frames],
               "label": np.int32(self.labels[index]), "index": np.int32(index)}
        for key in ("valid", "landmarks", "frame_labels"):
            if key in record:
                out[key] = np.asarray(record[key])[frames]
        if au_masks and "au_maps" in record:
            maps = self._builder.info.features["au_maps"].decode_example_np(record["au_maps"])
            out["au_masks"] = maps[frames].astype(np.float32) / 255
        return out


def open_builder(config) -> tfds_builders.VideoBuilder:
    """The prepared builder of ``config.dataset.name`` with the config's preprocessing."""
    layout = layouts.get(config.dataset.name)
    settings = preprocess.settings_from_config(config)
    root = preprocess.data_dir(config.dataset)
    builder = tfds_builders.builder(layout.name, str(root), settings)
    if not builder.is_prepared():
        raise UserError(
            f"{layout.name} is not prepared in {root} with settings "
            f"{settings.name(layout.faces)}: run --mode=preprocess with this config and "
            f"--config.preprocess.manual_dir=/path/to/the/raw/files first")
    return builder


def open_split(config, split: str) -> TfdsVideos:
    """Split 'train' | 'validation' | 'test' of the configured dataset and protocol."""
    d = config.dataset
    builder = open_builder(config)
    meta, lengths = meta_of(builder)
    splits = protocols.split(d.name, meta, d.get("protocol", ""), int(d.get("fold", 0)),
                             int(d.get("split_seed", 0)))
    if len(splits.class_names) != d.num_classes:
        raise UserError(f"dataset.num_classes is {d.num_classes} but protocol "
                        f"{splits.protocol!r} of {d.name} has {len(splits.class_names)} "
                        f"classes ({', '.join(splits.class_names)})")
    face_fraction = builder.builder_config.settings.face_fraction(layouts.get(d.name).faces)
    return TfdsVideos(builder, meta, lengths, getattr(splits, split), splits.class_names,
                      face_fraction)
