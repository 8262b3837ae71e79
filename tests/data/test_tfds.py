"""The built-in dataset as a TFDS dataset (array_record, no TensorFlow), read back through
`tfds.data_source` and grain, and pre-tokenized from TFDS."""

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from loong_jax.data import encoders, pretokenize, sources, synthetic, tfds_sources
from tests.data.conftest import VOCAB

CONFIG = tfds_sources.LoongSyntheticConfig(name="test9_32", num_frames=9, resolution=32,
                                           num_train=6, num_heldout=3, seed=4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("tfds"))
  tfds_sources.LoongSynthetic(config=CONFIG, data_dir=directory).download_and_prepare()
  return directory


def test_built_in_dataset_through_grain(data_dir):
  reference = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=4, resolution=32, num_frames=(9,), num_train=6, num_heldout=3), "heldout")
  source = tfds.data_source("loong_synthetic/test9_32", split="heldout", data_dir=data_dir)
  records = list(grain.MapDataset.source(source).to_iter_dataset())
  assert len(records) == 3
  by_key = {r["key"].decode(): r for r in records}
  for i in range(3):
    want = reference.sample(i)
    got = by_key[want["key"]]
    np.testing.assert_array_equal(got["video"], want["video"])
    assert got["caption"].decode() == want["caption"] and got["fps"] == want["fps"]


def test_tfds_videos_and_pretokenize(data_dir, text_model, tmp_path):
  videos = tfds_sources.TfdsVideos("loong_synthetic/test9_32", "train", data_dir=data_dir,
                                   resolution=16, num_frames=5)
  item = videos[0]
  assert len(videos) == 6 and item["video"].shape == (5, 16, 16, 3)
  assert isinstance(item["caption"], str) and item["key"].startswith("loong_synthetic/")
  manifest = pretokenize.pretokenize(
      videos, encoders.pooling_stand_in_encoder(VOCAB.video_size), text_model,
      str(tmp_path), vocab=VOCAB, shard_size=4, batch_size=2)
  assert manifest["records"] == 6 and manifest["skipped"] == 0
  assert sources.TokenShards(str(tmp_path))[0]["video_ids"].shape == (2, 2, 2)


def test_tfds_errors(data_dir):
  with pytest.raises(ValueError, match="no feature 'frames'"):
    tfds_sources.TfdsVideos("loong_synthetic/test9_32", "train", data_dir=data_dir,
                            video_feature="frames")
  too_long = tfds_sources.TfdsVideos("loong_synthetic/test9_32", "train", data_dir=data_dir,
                                     num_frames=17)
  with pytest.raises(sources.VideoReadError, match="need 17"):
    too_long[0]
