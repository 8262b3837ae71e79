"""Videos -> token shards: run a video encoder over a source and write ArrayRecord shards.

The encoder is any `encode_fn` with the contract of `encoders.py` (float32 `[B, T, H, W, 3]` in
[-1, 1] -> int32 codes `[B, T_lat, h, w]`), made data-parallel over this host's devices by
`encoders.data_parallel`. Hosts split the shards round-robin, so no host waits for another.
`run(config)` is `python -m loong_jax.pretokenize`: source, encoder and text model from config.

Output folder:
  `tokens-00003-of-00010.array_record`   records of `sources.encode_token_record`
  `tokens-00003-of-00010.json`           that shard's item range, record count and skipped items
  `manifest.json`                        all finished shards, totals (records; skipped = unreadable
                                         items + malformed caption rows), the run's settings
Resume: a shard is finished when its `.array_record` exists. It is written under a temporary
name and renamed when complete, so a crash mid-shard leaves no file that counts; the next run
redoes that shard and keeps the finished ones. Items are assigned to shards by index, so a resumed
run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import glob
import json
import math
import os
import time

import jax
import numpy as np
from array_record.python import array_record_module

from loong_jax import tokens
from loong_jax.data import encoders, sources, synthetic, text as text_lib

EncodeFn = encoders.EncodeFn
MANIFEST = "manifest.json"


def shard_name(index: int, count: int) -> str:
  return f"tokens-{index:05d}-of-{count:05d}"


def _to_model_range(videos: list[np.ndarray]) -> np.ndarray:
  return np.stack(videos).astype(np.float32) * (2.0 / 255.0) - 1.0


def _encode_batch(videos: list[np.ndarray], encode_fn: EncodeFn, batch_size: int,
                  vocab: tokens.Vocab) -> np.ndarray:
  """Codes `[len(videos), T_lat, h, w]`; a short last batch is padded (one compiled shape)."""
  real = len(videos)
  videos = videos + [videos[-1]] * (batch_size - real)
  out = np.asarray(encode_fn(_to_model_range(videos)))
  t_lat = tokens.latent_frames(videos[0].shape[0])
  if out.ndim != 4 or out.shape[:2] != (batch_size, t_lat):
    raise ValueError(f"pretokenize: encoder returned shape {out.shape}, expected "
                     f"[{batch_size}, {t_lat}, h, w]")
  if out.min() < 0 or out.max() >= vocab.video_size:
    raise ValueError(f"pretokenize: encoder codes span [{out.min()}, {out.max()}], outside "
                     f"[0, {vocab.video_size})")
  return out[:real].astype(np.int32)


def write_shard(source, indices: range, path: str, encode_fn: EncodeFn,
                text_tokenizer: text_lib.TextTokenizer, batch_size: int, vocab: tokens.Vocab,
                max_text_len: int) -> dict:
  """Encode `source[indices]` into the shard `path` (+ `.json` sidecar); returns the sidecar.

  Streams batch by batch, so memory holds one batch of pixels, not a shard.
  """
  counter = sources.SkipCounter()
  tmp = f"{path}.array_record.tmp-{os.getpid()}"
  writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
  records, pending = 0, []

  def flush():
    codes = _encode_batch([item["video"] for item in pending], encode_fn, batch_size, vocab)
    for item, code in zip(pending, codes):
      writer.write(sources.encode_token_record(
          code, text_tokenizer.encode(item["caption"], max_text_len), item["video"].shape[0],
          item["fps"], item["key"], item["caption"]))
    pending.clear()

  for i in indices:
    try:
      pending.append(source[i])
    except sources.VideoReadError as e:
      counter.skip(i, e)
      continue
    records += 1
    if len(pending) == batch_size:
      flush()
  if pending:
    flush()
  writer.close()
  info = {"shard": os.path.basename(path), "first_item": indices.start,
          "end_item": indices.stop, "records": records, "skipped": counter.reasons}
  with open(f"{path}.json.tmp-{os.getpid()}", "w") as f:
    json.dump(info, f, indent=1)
  os.replace(f"{path}.json.tmp-{os.getpid()}", f"{path}.json")
  # The record file last: its presence is what marks the shard finished.
  os.replace(tmp, f"{path}.array_record")
  return info


def write_manifest(out_dir: str, num_shards: int, settings: dict,
                   bad_rows: list[str] = ()) -> dict:
  """Collect the finished shards' sidecars into `manifest.json` (atomically).

  `bad_rows`: the source's malformed caption rows (`"file:line: reason"`), skipped before any
  shard; counted in `skipped` next to the shards' unreadable items.
  """
  shards = []
  for record_path in sorted(glob.glob(os.path.join(out_dir, "tokens-*.array_record"))):
    with open(record_path[: -len(".array_record")] + ".json") as f:
      shards.append(json.load(f))
  unreadable = sum(len(s["skipped"]) for s in shards)
  manifest = {"num_shards": num_shards, "finished_shards": len(shards),
              "complete": len(shards) == num_shards,
              "records": sum(s["records"] for s in shards),
              "skipped": unreadable + len(bad_rows), "unreadable": unreadable,
              "malformed_rows": list(bad_rows), "settings": settings, "shards": shards}
  tmp = os.path.join(out_dir, f"{MANIFEST}.tmp-{os.getpid()}")
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(out_dir, MANIFEST))
  return manifest


def pretokenize(source, encode_fn: EncodeFn, text_tokenizer: text_lib.TextTokenizer,
                out_dir: str, *, vocab: tokens.Vocab, shard_size: int, batch_size: int,
                max_text_len: int = 64, max_shards: int | None = None,
                process_index: int = 0, process_count: int = 1, settings: dict | None = None
                ) -> dict:
  """Write this host's unfinished shards of `source`, then the manifest.

  Args:
    source: items `{"video": uint8 [T, H, W, 3], "caption", "fps", "key"}`, all with the same
      T and size; `__getitem__` may raise `VideoReadError` (counted and skipped). Its
      `bad_rows` (malformed caption rows a `FolderSource` skipped), if any, go to the manifest.
    encode_fn: see the module docstring; wrap with `data_parallel` to use every device.
    text_tokenizer: caption -> text ids (cut to `max_text_len`).
    out_dir: output folder (created).
    vocab: checks the encoder's codes and the text model fit the unified vocabulary.
    shard_size: items per shard (before skipping).
    batch_size: encoder batch (a multiple of the device count).
    max_shards: write at most this many shards in this call (time-boxed jobs); None = all.
    process_index, process_count: this host's share, shards `i % process_count == process_index`.
    settings: recorded in the manifest (source, encoder, resolution, ...).
  Returns:
    The manifest dict (`complete` is False while shards are missing).
  """
  text_tokenizer.check_fits(vocab)
  os.makedirs(out_dir, exist_ok=True)
  num_shards = max(1, math.ceil(len(source) / shard_size))
  mine = [i for i in range(num_shards) if i % process_count == process_index]
  todo = [i for i in mine if not os.path.exists(
      os.path.join(out_dir, shard_name(i, num_shards) + ".array_record"))]
  print(f"pretokenize: {num_shards} shards, {len(mine)} for this host, "
        f"{len(mine) - len(todo)} of them already finished", flush=True)
  todo = todo if max_shards is None else todo[:max_shards]
  start, items_done = time.time(), 0
  for done, i in enumerate(todo, 1):
    indices = range(i * shard_size, min((i + 1) * shard_size, len(source)))
    info = write_shard(source, indices, os.path.join(out_dir, shard_name(i, num_shards)),
                       encode_fn, text_tokenizer, batch_size, vocab, max_text_len)
    items_done += len(indices)
    rate = items_done / max(time.time() - start, 1e-9)
    print(f"pretokenize: shard {done}/{len(todo)} ({info['records']} records, "
          f"{len(info['skipped'])} skipped), {rate:.1f} items/s, "
          f"ETA {(len(todo) - done) * shard_size / max(rate, 1e-9):.0f} s", flush=True)
  return write_manifest(out_dir, num_shards, settings or {}, getattr(source, "bad_rows", []))


# From config (python -m loong_jax.pretokenize) --------------------------------------------------------

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
                                       source_config.num_frames, fps=source_config.fps,
                                       max_bad_fraction=source_config.max_bad_fraction),
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
  """The first `n` items of a source (its `bad_rows` too: the caption file was read whole)."""

  def __init__(self, source, n):
    self.source, self.n = source, min(n, len(source))
    self.bad_rows = getattr(source, "bad_rows", [])

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
  print(f"pretokenize: training a {config.text.vocab_size}-piece text model on {n} captions "
        f"-> {path}", flush=True)
  return text_lib.train((corpus.caption(i) for i in range(n)), path, config.text.vocab_size)


def run(config) -> dict:
  """Pre-tokenize `config.source` as `configs/data/pretokenize.py` describes; returns the
  manifest."""
  vocab = tokens.Vocab(text_size=config.vocab.text_size, video_size=config.vocab.video_size)
  encode_fn = encoders.load_encoder(config)
  if config.batch_size % encode_fn.num_devices:
    raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of the "
                     f"{encode_fn.num_devices} local devices")
  source = make_source(config.source)
  text_tokenizer = load_text_tokenizer(config)
  manifest = pretokenize(
      source, encode_fn, text_tokenizer, config.out_dir, vocab=vocab,
      shard_size=config.shard_size, batch_size=config.batch_size,
      max_text_len=config.text.max_len, max_shards=config.max_shards,
      process_index=jax.process_index(), process_count=jax.process_count(),
      settings={"source": config.source.to_dict(), "encoder": config.encoder,
                "tokenizer_checkpoint": config.tokenizer_checkpoint,
                "text_model": os.path.relpath(text_tokenizer.model_path, config.out_dir)})
  print(f"pretokenize: {manifest['finished_shards']}/{manifest['num_shards']} shards, "
        f"{manifest['records']} records, {manifest['skipped']} skipped ({manifest['unreadable']} "
        f"unreadable + {len(manifest['malformed_rows'])} malformed caption rows) -> "
        f"{config.out_dir}")
  return manifest
