"""Shared fixtures: small token shards of the built-in dataset, made with the pooling stand-in."""

import ml_collections
import pytest

from loong_jax import tokens
from loong_jax.data import encoders, pretokenize, synthetic, text

VOCAB = tokens.Vocab(text_size=256, video_size=4096)
RESOLUTION = 32  # 4x4 = 16 tokens per latent frame with the 8x8 pooling stand-in


def pytest_collection_modifyitems(items):
  # imageio-ffmpeg and the CLI test start subprocesses (fork + exec, no deadlock risk).
  for item in items:
    if "tests/data/" in str(item.fspath):
      item.add_marker(pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning"))


def synthetic_source(num_frames, n, split="train", seed=0):
  return synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=seed, resolution=RESOLUTION, num_frames=(num_frames,), num_train=n, num_heldout=n),
      split)


@pytest.fixture(scope="session")
def text_model(tmp_path_factory):
  corpus = synthetic.SyntheticVideos(synthetic.SyntheticConfig(num_frames=(1, 17), num_train=400))
  path = str(tmp_path_factory.mktemp("text") / "text.model")
  return text.train((corpus.caption(i) for i in range(len(corpus))), path, VOCAB.text_size)


@pytest.fixture(scope="session")
def token_dirs(tmp_path_factory, text_model):
  """`{"images": dir, "clips9": dir}`: 24 images and 16 nine-frame clips as token shards."""
  root = tmp_path_factory.mktemp("tokens")
  encode = encoders.pooling_stand_in_encoder(VOCAB.video_size)
  dirs = {}
  for name, frames, n in (("images", 1, 24), ("clips9", 9, 16)):
    dirs[name] = str(root / name)
    pretokenize.pretokenize(synthetic_source(frames, n, seed=frames), encode, text_model,
                            dirs[name], vocab=VOCAB, shard_size=10, batch_size=4)
  return dirs


def data_config(sources, **overrides):
  """A `data` block like configs/data/stages.py's, for the test shards."""
  config = ml_collections.ConfigDict(dict(
      sources=[dict(path=p, weight=w, max_frames=f) for p, w, f in sources],
      seq_len=None, batch_size=4, max_text_len=24, text_dropout=0.0,
      loss=dict(scheme="first_frame", first_frame_weight=5.0, text_weight=0.0),
      seed=0, shuffle=True, worker_count=0))
  config.update(overrides)
  return config
