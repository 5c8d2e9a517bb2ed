"""TFDS builders of the real datasets: preprocessed videos → ArrayRecord, one record per video.

One builder per layout of ``data/layouts.py`` (``cremad``, ``afew``, ``ckplus``, ``samm``,
``hmdb51``, ``hmdb8``, ``unbc``, ``biovid``, ``rafdb``, ``affectnet``), all made from
``VideoBuilder``. The
face work happens before, in ``data/preprocess.py``, which caches one ``.npz`` per video and
a ``manifest.json``; the builder turns that cache into records. The builder config is the
preprocessing ``Settings`` (its name, e.g. ``dlib-224px-m25-s5-carry``, is part of the data
directory), so data made with other settings never mixes.

Every record holds (T = kept frames, S = crop size):
  ``name``, ``subject``, ``partition`` (text), ``label`` (class label), ``info`` (the
  layout's integer facts), ``frames`` (T JPEG-encoded RGB images), ``frame_indices`` int32
  [T] (source frame numbers), and for face datasets ``valid`` bool [T] (a face was detected
  in that frame), ``landmarks`` float32 [T, 68, 2] (crop pixels; NaN when the backend has
  none), ``au_maps`` uint8 [T, S, S] (AU heatmaps of Belharbi et al. × 255, zeros for classes
  without AUs); with per-frame labels (UNBC) ``frame_labels`` float32 [T].

There is one TFDS split, ``videos``, in manifest order (sorted names); the experimental
protocols (``data/protocols.py``) select records from it by their metadata, which
``info.metadata`` holds in record order (``names``, ``labels``, ``subjects``, ``partitions``,
``info``, ``lengths``) so that no record has to be decoded to split a dataset.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from fer_jax.data import layouts
from fer_jax.data.faces import BACKENDS, MISSING_POLICIES

SPLIT = "videos"
"""The one TFDS split of every builder."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How faces are made from raw frames (``config.preprocess``).

    backend: face detector/landmarker (``faces.FaceProcessor``); crop_size: side S of the
    square aligned crops (for datasets without faces, the shorter side of the resized frames);
    margin: context added on each side, a fraction of the face size; smoothing: frames of the
    centred moving average over face boxes (1 = none); missing: frames without a face are
    'carry' (kept, previous face reused, ``valid`` False) or 'drop' (removed); jpeg_quality of
    the stored frames; codebook of the AU maps; fan_weights / detector_weights: local weight
    files of the face_alignment backend.
    """

    backend: str = "dlib"
    crop_size: int = 224
    margin: float = 0.25
    smoothing: int = 5
    missing: str = "carry"
    jpeg_quality: int = 95
    codebook: str = "figure"
    fan_weights: str = ""
    detector_weights: str = ""

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"preprocess.backend {self.backend!r} is not one of {BACKENDS}")
        if self.missing not in MISSING_POLICIES:
            raise ValueError(f"preprocess.missing {self.missing!r} is not one of "
                             f"{MISSING_POLICIES}")
        if int(self.crop_size) < 16:
            raise ValueError(f"preprocess.crop_size must be >= 16, got {self.crop_size}")
        if not 0 <= self.margin <= 2:
            raise ValueError(f"preprocess.margin must lie in [0, 2], got {self.margin}")
        if int(self.smoothing) < 1:
            raise ValueError(f"preprocess.smoothing must be >= 1, got {self.smoothing}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ValueError(f"preprocess.jpeg_quality must lie in 1..100, "
                             f"got {self.jpeg_quality}")

    def name(self, faces: str) -> str:
        """Builder-config name: every setting that changes the stored data."""
        if faces == "none":
            return f"frames-{self.crop_size}px-q{self.jpeg_quality}"
        return (f"{self.backend}-{self.crop_size}px-m{round(self.margin * 100)}"
                f"-s{self.smoothing}-{self.missing}-q{self.jpeg_quality}")

    def face_fraction(self, faces: str) -> float:
        """Share of the crop side the face spans: detected faces have ``margin`` of context
        on each side; aligned inputs (RAF-DB) are the face."""
        return 1.0 if faces == "aligned" else 1 / (1 + 2 * self.margin)


@dataclasses.dataclass(eq=False)
class VideoConfig(tfds.core.BuilderConfig):
    """Builder config carrying the preprocessing settings."""

    settings: Settings = Settings()


def builder_config(layout: layouts.Layout, settings: Settings) -> VideoConfig:
    return VideoConfig(name=settings.name(layout.faces), settings=settings,
                       description=f"{layout.name} preprocessed with {settings}")


def _features(layout: layouts.Layout, size: int) -> tfds.features.FeaturesDict:
    features = {
        "name": tfds.features.Text(),
        "subject": tfds.features.Text(),
        "partition": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=list(layout.class_names)),
        "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
        "frame_indices": tfds.features.Tensor(shape=(None,), dtype=np.int32),
    }
    if layout.info_keys:
        features["info"] = tfds.features.FeaturesDict(
            {key: tfds.features.Scalar(dtype=np.int32) for key in layout.info_keys})
    if layout.faces != "none":
        features.update(
            valid=tfds.features.Tensor(shape=(None,), dtype=np.bool_),
            landmarks=tfds.features.Tensor(shape=(None, 68, 2), dtype=np.float32,
                                           encoding="zlib"),
            au_maps=tfds.features.Tensor(shape=(None, size, size), dtype=np.uint8,
                                         encoding="zlib"))
    if layout.frame_labels:
        features["frame_labels"] = tfds.features.Tensor(shape=(None,), dtype=np.float32)
    return tfds.features.FeaturesDict(features)


def decode_frames(blob: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """The per-frame JPEG byte strings of a cache entry (``blob`` uint8 [B], offsets [T+1])."""
    data = blob.tobytes()
    return [data[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


class VideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Records of one dataset from the preprocessing cache (see module docstring).

    ``cache_dir`` (only needed to prepare) holds ``manifest.json`` and the per-video ``.npz``
    files written by ``data/preprocess.py``.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Aligned face crops (JPEG), 68 landmarks, AU maps, validity."}
    LAYOUT = ""

    def __init__(self, *, cache_dir: str | None = None, **kwargs):
        self._cache_dir = None if cache_dir is None else Path(cache_dir)
        super().__init__(**kwargs)

    @classmethod
    def layout(cls) -> layouts.Layout:
        return layouts.get(cls.LAYOUT)

    def _info(self) -> tfds.core.DatasetInfo:
        settings = self.builder_config.settings
        return tfds.core.DatasetInfo(
            builder=self, description=f"{self.LAYOUT} videos, {self.builder_config.name}",
            features=_features(self.layout(), settings.crop_size),
            disable_shuffling=True, metadata=tfds.core.MetadataDict())

    def _manifest(self) -> list[dict]:
        if self._cache_dir is None:
            raise ValueError("preparing needs cache_dir (run data/preprocess.py)")
        return json.loads((self._cache_dir / "manifest.json").read_text())["videos"]

    def _split_generators(self, dl_manager):
        del dl_manager  # the raw files were read by the preprocessing
        entries = self._manifest()
        layout = self.layout()
        meta = self.info.metadata
        meta["names"] = [e["name"] for e in entries]
        meta["labels"] = [int(e["label"]) for e in entries]
        meta["subjects"] = [e["subject"] for e in entries]
        meta["partitions"] = [e["partition"] for e in entries]
        meta["lengths"] = [int(e["length"]) for e in entries]
        meta["info"] = {k: [int(e["info"][k]) for e in entries] for k in layout.info_keys}
        meta["class_names"] = list(layout.class_names)
        meta["settings"] = dataclasses.asdict(self.builder_config.settings)
        return {SPLIT: self._generate_examples(entries)}

    def _generate_examples(self, entries):
        layout = self.layout()
        for index, entry in enumerate(entries):
            with np.load(self._cache_dir / entry["file"]) as arrays:
                example = {
                    "name": entry["name"], "subject": entry["subject"],
                    "partition": entry["partition"], "label": int(entry["label"]),
                    "frames": decode_frames(arrays["jpeg"], arrays["offsets"]),
                    "frame_indices": arrays["frame_indices"].astype(np.int32),
                }
                if layout.info_keys:
                    example["info"] = {k: int(entry["info"][k]) for k in layout.info_keys}
                if layout.faces != "none":
                    example.update(valid=arrays["valid"], landmarks=arrays["landmarks"],
                                   au_maps=arrays["au_maps"])
                if layout.frame_labels:
                    example["frame_labels"] = arrays["frame_labels"].astype(np.float32)
            yield index, example


def _builder_class(name: str) -> type:
    camel = "".join(part.capitalize() for part in name.split("_"))
    return type(camel, (VideoBuilder,), {
        "name": name, "LAYOUT": name, "__module__": __name__,
        "MANUAL_DOWNLOAD_INSTRUCTIONS": layouts.get(name).instructions,
        "__doc__": f"TFDS builder of {name} (see fer_jax.data.tfds_builders)."})


BUILDERS: dict[str, type] = {name: _builder_class(name) for name in layouts.LAYOUTS}
"""Dataset name → its builder class (registered with TFDS under that name)."""
globals().update({cls.__name__: cls for cls in BUILDERS.values()})  # picklable by name


def builder(name: str, data_dir: str, settings: Settings,
            cache_dir: str | None = None) -> VideoBuilder:
    """The builder of dataset ``name`` with ``settings`` in ``data_dir`` (ArrayRecord files)."""
    cls = BUILDERS[name]
    return cls(data_dir=data_dir, config=builder_config(cls.layout(), settings),
               file_format="array_record", cache_dir=cache_dir)
