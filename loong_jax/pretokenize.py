"""Pre-tokenize a video source into token shards (resumable, data-parallel over devices).

  python -m loong_jax.pretokenize --config configs/data/pretokenize.py:clips17,demo \
      --config.encoder=pooling --config.out_dir=/tmp/tokens/clips17

Re-running the same command resumes: finished shards are kept. `--config.encoder=pooling` is a
test stand-in for the video tokenizer (see `configs/data/pretokenize.py`). Multi-host: run the
same command on every host (after `jax.distributed.initialize`); hosts split the shards.
"""

from __future__ import annotations

import os

import jax
from absl import logging

from loong_jax import cli, tokens
from loong_jax.data import pretokenize as pretok
from loong_jax.data import sources, synthetic, text as text_lib

_CONFIG = cli.define_config_flag()


def make_source(source_config, for_text: bool = False):
  """The source named by `config.source` (`for_text`: the synthetic corpus of all lengths, so
  one text model covers images and clips)."""
  kind = source_config.kind
  if kind == "synthetic":
    num = source_config.num_samples
    frames = (1, 17, 65) if for_text else (source_config.num_frames,)
    cfg = synthetic.SyntheticConfig(
        seed=source_config.seed, resolution=source_config.resolution, num_frames=frames,
        num_train=num or synthetic.SyntheticConfig.num_train,
        num_heldout=num or synthetic.SyntheticConfig.num_heldout)
    return synthetic.SyntheticVideos(cfg, source_config.split)
  if kind == "folder":
    if not source_config.path:
      raise ValueError("config.source.path: give the folder of videos (kind='folder')")
    return _limit(sources.FolderSource(source_config.path, source_config.resolution,
                                       source_config.num_frames, fps=source_config.fps),
                  source_config.num_samples)
  if kind == "tfds":
    from loong_jax.data import tfds_sources  # noqa: PLC0415 -- tensorflow_datasets is heavy
    return _limit(tfds_sources.TfdsVideos(
        source_config.name, source_config.split, data_dir=source_config.path or None,
        video_feature=source_config.video_feature, text_feature=source_config.text_feature,
        resolution=source_config.resolution, num_frames=source_config.num_frames),
        source_config.num_samples)
  raise ValueError(f"config.source.kind={kind!r} unknown; known: synthetic, folder, tfds")


class _Limited:
  """The first `n` items of a source."""

  def __init__(self, source, n):
    self.source, self.n = source, min(n, len(source))

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    if index >= self.n:
      raise IndexError(index)
    return self.source[index]

  def caption(self, index):
    return self.source.caption(index)


def _limit(source, n):
  return source if n is None else _Limited(source, n)


def load_text_tokenizer(config) -> text_lib.TextTokenizer:
  """The configured SentencePiece model; trained on the source's captions when absent."""
  path = config.text.model or os.path.join(os.path.dirname(config.out_dir.rstrip("/")),
                                           "text.model")
  if os.path.exists(path):
    return text_lib.TextTokenizer(path)
  if config.text.model:
    raise FileNotFoundError(f"config.text.model: no SentencePiece model at {path}")
  corpus = make_source(config.source, for_text=True)
  n = min(len(corpus), config.text.train_captions)
  logging.info("training a %d-piece text model on %d captions -> %s", config.text.vocab_size, n,
               path)
  return text_lib.train((corpus.caption(i) for i in range(n)), path, config.text.vocab_size)


def load_encoder(config) -> pretok.EncodeFn:
  """The video encoder named by `config.encoder`, data-parallel over this host's devices.

  `tokenizer`: the trained tokenizer at `config.tokenizer_checkpoint`. `pooling`: a test
  stand-in (not a learned tokenizer).
  """
  if config.encoder == "pooling":
    return pretok.data_parallel(pretok.pooling_stand_in_encoder(config.vocab.video_size))
  if config.encoder == "tokenizer":
    if not config.tokenizer_checkpoint:
      raise ValueError("config.tokenizer_checkpoint is empty: give a trained video tokenizer "
                       "checkpoint (or --config.encoder=pooling, a test stand-in)")
    raise ValueError(f"config.encoder='tokenizer': this checkout cannot load tokenizer "
                     f"checkpoints yet ({config.tokenizer_checkpoint}); loong_jax/tokenizer "
                     "provides the encoder")
  raise ValueError(f"config.encoder={config.encoder!r} unknown; known: tokenizer, pooling")


def run(config) -> dict:
  vocab = tokens.Vocab(text_size=config.vocab.text_size, video_size=config.vocab.video_size)
  encode_fn = load_encoder(config)
  if config.batch_size % encode_fn.num_devices:
    raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of the "
                     f"{encode_fn.num_devices} local devices")
  source = make_source(config.source)
  text_tokenizer = load_text_tokenizer(config)
  manifest = pretok.pretokenize(
      source, encode_fn, text_tokenizer, config.out_dir, vocab=vocab,
      shard_size=config.shard_size, batch_size=config.batch_size,
      max_text_len=config.text.max_len, max_shards=config.max_shards,
      process_index=jax.process_index(), process_count=jax.process_count(),
      settings={"source": config.source.to_dict(), "encoder": config.encoder,
                "tokenizer_checkpoint": config.tokenizer_checkpoint,
                "text_model": os.path.relpath(text_tokenizer.model_path, config.out_dir)})
  print(f"pretokenize: {manifest['finished_shards']}/{manifest['num_shards']} shards, "
        f"{manifest['records']} records, {manifest['skipped']} skipped -> {config.out_dir}")
  return manifest


def main(argv):
  del argv
  run(_CONFIG.value)


if __name__ == "__main__":
  cli.run(main)
