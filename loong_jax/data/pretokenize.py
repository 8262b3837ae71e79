"""Videos -> token shards: run a video encoder over a source and write ArrayRecord shards.

The encoder is any `encode_fn(video) -> ids` with the contract

    video: float32 [B, T, H, W, 3] in [-1, 1]  ->  int32 [B, T_lat, h, w] codes in [0, video_size)
    (T = 1 + 4k, T_lat = 1 + (T - 1) // 4)

and is run data-parallel: each batch is split over this host's devices (`B` a multiple of their
number). Hosts split the shards round-robin, so no host waits for another.

Output folder:
  `tokens-00003-of-00010.array_record`   records of `sources.encode_token_record`
  `tokens-00003-of-00010.json`           that shard's item range, record count and skipped items
  `manifest.json`                        all finished shards, totals, the settings of the run
Resume: a shard is finished when its `.array_record` exists. It is written under a temporary
name and renamed when complete, so a crash mid-shard leaves no file that counts; the next run
redoes that shard and keeps the finished ones. Items are assigned to shards by index, so a resumed
run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import time
from collections.abc import Callable

import jax
import numpy as np
from array_record.python import array_record_module
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from loong_jax import tokens
from loong_jax.data import sources, text as text_lib

EncodeFn = Callable[[np.ndarray], np.ndarray]
MANIFEST = "manifest.json"


def shard_name(index: int, count: int) -> str:
  return f"tokens-{index:05d}-of-{count:05d}"


def data_parallel(encode_fn: Callable, devices=None) -> EncodeFn:
  """`encode_fn` jitted with its batch split over `devices` (default: this host's devices)."""
  devices = list(devices or jax.local_devices())
  mesh = Mesh(np.asarray(devices), ("data",))
  batch = NamedSharding(mesh, PartitionSpec("data"))
  jitted = jax.jit(encode_fn, in_shardings=batch, out_shardings=batch)

  def run(video: np.ndarray) -> np.ndarray:
    if len(video) % len(devices):
      raise ValueError(f"pretokenize: batch of {len(video)} does not split over "
                       f"{len(devices)} devices")
    return np.asarray(jitted(jax.device_put(video, batch)))

  run.num_devices = len(devices)
  return run


def pooling_stand_in_encoder(video_size: int, spatial: int = 8, temporal: int = 4) -> Callable:
  """A TEST STAND-IN for the video tokenizer, not a learned model: causal average pooling
  quantised to codes.

  Latent frame 0 is frame 0, latent frame k the mean of frames 4k-3 .. 4k (the tokenizer's causal
  grouping); each `spatial` x `spatial` patch's mean RGB is quantised to `b` bits per channel
  (3b <= log2(video_size)) and packed into one code. Deterministic, shapes as the real encoder's.
  """
  bits = int(math.log2(video_size)) // 3
  if bits < 1:
    raise ValueError(f"pooling encoder: video_size={video_size} is below 8 codes")
  levels = 2**bits

  def encode(video):
    import jax.numpy as jnp  # noqa: PLC0415 -- keeps this module importable without JAX work
    b, t, h, w, c = video.shape
    first = video[:, :1]
    rest = video[:, 1:].reshape(b, (t - 1) // temporal, temporal, h, w, c).mean(axis=2)
    frames = jnp.concatenate([first, rest], axis=1)
    pooled = frames.reshape(b, frames.shape[1], h // spatial, spatial, w // spatial, spatial,
                            c).mean(axis=(3, 5))
    q = jnp.clip(jnp.floor((pooled + 1.0) * 0.5 * levels), 0, levels - 1).astype(jnp.int32)
    return q[..., 0] + levels * q[..., 1] + levels * levels * q[..., 2]

  return encode


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


def write_manifest(out_dir: str, num_shards: int, settings: dict) -> dict:
  """Collect the finished shards' sidecars into `manifest.json` (atomically)."""
  shards = []
  for record_path in sorted(glob.glob(os.path.join(out_dir, "tokens-*.array_record"))):
    with open(record_path[: -len(".array_record")] + ".json") as f:
      shards.append(json.load(f))
  manifest = {"num_shards": num_shards, "finished_shards": len(shards),
              "complete": len(shards) == num_shards,
              "records": sum(s["records"] for s in shards),
              "skipped": sum(len(s["skipped"]) for s in shards),
              "settings": settings, "shards": shards}
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
      T and size; `__getitem__` may raise `VideoReadError` (counted and skipped).
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
  logging.info("pretokenize: %d shards, %d for this host, %d of them already finished",
               num_shards, len(mine), len(mine) - len(todo))
  todo = todo if max_shards is None else todo[:max_shards]
  start, items_done = time.time(), 0
  for done, i in enumerate(todo, 1):
    indices = range(i * shard_size, min((i + 1) * shard_size, len(source)))
    info = write_shard(source, indices, os.path.join(out_dir, shard_name(i, num_shards)),
                       encode_fn, text_tokenizer, batch_size, vocab, max_text_len)
    items_done += len(indices)
    rate = items_done / max(time.time() - start, 1e-9)
    logging.info("pretokenize: shard %d/%d (%d records, %d skipped), %.1f items/s, ETA %.0f s",
                 done, len(todo), info["records"], len(info["skipped"]), rate,
                 (len(todo) - done) * shard_size / max(rate, 1e-9))
  return write_manifest(out_dir, num_shards, settings or {})
