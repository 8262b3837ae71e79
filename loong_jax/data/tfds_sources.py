"""TFDS: the built-in dataset as a TFDS dataset, and reading TFDS video/image datasets.

Neither needs TensorFlow, because both stay inside what TFDS supports without it (STACK_NOTES):
the builder writes the `array_record` file format and stores clips as
`Tensor(shape=(T, H, W, 3), dtype=uint8)`, and reading goes through `tfds.data_source` (random
access, grain-compatible). What does need TensorFlow: datasets whose video feature is
`tfds.features.Video` (decoding it), datasets stored as tfrecord, and `tfds.load` /
`as_dataset`; prepare those with TensorFlow installed and re-save as array_record, or read their
files with `FolderSource`.

    builder = LoongSynthetic(config="clips17_64", data_dir=d)
    builder.download_and_prepare()          # no download: the data are generated
    videos = TfdsVideos("loong_synthetic/clips17_64", "train", data_dir=d, resolution=64,
                        num_frames=17)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from loong_jax.data import synthetic, video_io


@dataclasses.dataclass
class LoongSyntheticConfig(tfds.core.BuilderConfig):
  """One fixed clip shape of the built-in dataset (TFDS tensors have static shapes)."""

  num_frames: int = 17
  resolution: int = 64
  num_train: int = 10_000
  num_heldout: int = 500
  seed: int = 0


def _configs():
  out = []
  for resolution in (64, 128):
    for frames, label in ((1, "images"), (17, "clips17"), (65, "clips65")):
      out.append(LoongSyntheticConfig(name=f"{label}_{resolution}", num_frames=frames,
                                      resolution=resolution,
                                      description=f"{frames}-frame {resolution}px samples"))
  return out


class LoongSynthetic(tfds.core.GeneratorBasedBuilder):
  """The built-in captioned video dataset (`synthetic.SyntheticVideos`) as TFDS."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = _configs()

  def __init__(self, *, file_format: str = "array_record", **kwargs):
    # array_record: random access through `tfds.data_source`, and no TensorFlow (tfrecord, the
    # TFDS default, needs it to write).
    super().__init__(file_format=file_format, **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default locates the module through `importlib_resources`, a package it does not
    # depend on; the path only serves to find a checksums file, which a generated dataset lacks.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(
                shape=(cfg.num_frames, cfg.resolution, cfg.resolution, 3), dtype=np.uint8),
            "caption": tfds.features.Text(),
            "fps": tfds.features.Tensor(shape=(), dtype=np.int32),
            "key": tfds.features.Text(),
        }),
        description="Shapes moving over backgrounds with templated captions (generated).")

  def _split_generators(self, dl_manager):
    del dl_manager  # generated, nothing to download
    return {"train": self._generate_examples("train"),
            "heldout": self._generate_examples("heldout")}

  def _generate_examples(self, split):
    cfg = self.builder_config
    data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
        seed=cfg.seed, resolution=cfg.resolution, num_frames=(cfg.num_frames,),
        num_train=cfg.num_train, num_heldout=cfg.num_heldout), split)
    for i in range(len(data)):
      sample = data.sample(i)
      yield sample["key"], {"video": sample["video"], "caption": sample["caption"],
                            "fps": np.int32(sample["fps"]), "key": sample["key"]}


class TfdsVideos:
  """A TFDS dataset with a video (or image) feature and a text feature, as clips.

  Items: `{"video": uint8 [num_frames, resolution, resolution, 3], "caption": str, "fps": float,
  "key": str}`. Images (`[H, W, 3]`) become one frame. A clip shorter than `num_frames` raises
  `VideoReadError` (counted and skipped by the pipelines).
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None,
               video_feature: str = "video", text_feature: str = "caption",
               resolution: int = 64, num_frames: int = 17, fps_feature: str = "fps",
               default_fps: float = 8.0):
    self.name, self.split = name, split
    self._source = tfds.data_source(name, split=split, data_dir=data_dir)
    features = self._source.dataset_info.features
    for field, feature in (("video_feature", video_feature), ("text_feature", text_feature)):
      if feature not in features:
        raise ValueError(f"TfdsVideos: {name} has no feature {feature!r} ({field}); has "
                         f"{sorted(features.keys())}")
    self.video_feature, self.text_feature = video_feature, text_feature
    self.fps_feature = fps_feature if fps_feature in features else None
    self.resolution, self.num_frames, self.default_fps = resolution, num_frames, default_fps

  def __len__(self) -> int:
    return len(self._source)

  def caption(self, index: int) -> str:
    return _text(self._source[index][self.text_feature])

  def __getitem__(self, index: int) -> dict:
    record = self._source[index]
    key = f"{self.name}/{self.split}/{index}"
    video = np.asarray(record[self.video_feature])
    if video.ndim == 3:
      video = video[None]
    if video.ndim != 4 or video.shape[-1] != 3:
      raise video_io.VideoReadError(key, f"feature {self.video_feature!r} has shape "
                                         f"{video.shape}, expected [T, H, W, 3] or [H, W, 3]")
    if len(video) < self.num_frames:
      raise video_io.VideoReadError(key, f"{len(video)} frames, need {self.num_frames}")
    clip = video_io.resize_center_crop(video[: self.num_frames], self.resolution)
    fps = float(record[self.fps_feature]) if self.fps_feature else self.default_fps
    return {"video": clip, "caption": _text(record[self.text_feature]), "fps": fps, "key": key}


def _text(value) -> str:
  value = value.item() if isinstance(value, np.ndarray) else value
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
