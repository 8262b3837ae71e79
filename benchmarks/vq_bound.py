"""What PSNR the tokenizer's bit budget allows on the built-in data: a k-means reference.

  python benchmarks/vq_bound.py --out /tmp/vq_bound.json
  python benchmarks/vq_bound.py --codes 4096 --train_clips 200 --iters 5     # quicker

The video tokenizer spends one token of log2(K) bits on each latent cell: a `p x p` pixel patch of
the first frame, then a `r x p x p` block (r frames) of every later group (`p` = spatial factor,
`r` = temporal factor; the demo: p=8, r=4, K=4,096). This benchmark codes each such block on its
own with a K-word codebook fitted by k-means (Lloyd's algorithm, one codebook per block shape)
on training clips of the built-in dataset, and reports the PSNR of held-out clips decoded from
those codes, overall and per background texture.

It is a reference point, not a bound in the strict sense: a CNN tokenizer sees neighbouring
blocks and can do better than independent block coding after long training, and k-means is a
local optimum. It answers "is this PSNR target a question of training time, or of the rate?":
a target far above the k-means figure needs a long-trained tokenizer, or more bits per block.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loong_jax.data import synthetic  # noqa: E402
from loong_jax.data.synthetic_render import TEXTURES  # noqa: E402
from loong_jax.eval import recon  # noqa: E402

def blocks(video: np.ndarray, frames: int, patch: int) -> np.ndarray:
  """`[N, F, H, W, 3]` (F = 1 or r) -> `[N * (H / p) * (W / p), F * p * p * 3]` block vectors."""
  n, f, h, w, c = video.shape
  x = video.reshape(n, f, h // patch, patch, w // patch, patch, c)
  return x.transpose(0, 2, 4, 1, 3, 5, 6).reshape(-1, frames * patch * patch * c)


def unblocks(vectors: np.ndarray, shape: tuple[int, ...], patch: int) -> np.ndarray:
  """Inverse of `blocks` for a `[N, F, H, W, 3]` shape."""
  n, f, h, w, c = shape
  x = vectors.reshape(n, h // patch, w // patch, f, patch, patch, c)
  return x.transpose(0, 3, 1, 4, 2, 5, 6).reshape(shape)


def groups(videos: np.ndarray, temporal: int) -> list[np.ndarray]:
  """`[N, 1 + r k, H, W, 3]` -> [first frames `[N, 1, ...]`, then `[N * k, r, ...]`] (causal groups)."""
  n, t = videos.shape[:2]
  if (t - 1) % temporal:
    raise ValueError(f"{t} frames are not 1 + {temporal}k")
  rest = videos[:, 1:].reshape(n * ((t - 1) // temporal), temporal, *videos.shape[2:])
  return [videos[:, :1], rest] if t > 1 else [videos[:, :1]]


@jax.jit
def _nearest(codebook: jax.Array, x: jax.Array) -> jax.Array:
  return jnp.argmin(jnp.sum(codebook * codebook, 1)[None] - 2.0 * x @ codebook.T, axis=1)


def nearest(codebook: jax.Array, x: jax.Array, chunk: int = 16_384) -> jax.Array:
  """Index of the nearest code (squared L2) for each row of `x` `[N, D]`, in chunks of rows."""
  return jnp.concatenate([_nearest(codebook, x[i:i + chunk]) for i in range(0, len(x), chunk)])


def kmeans(x: np.ndarray, num_codes: int, iters: int, rng: np.random.Generator) -> jax.Array:
  """Lloyd's algorithm from `num_codes` random rows; an empty cluster restarts at a random row."""
  x = jnp.asarray(x, jnp.float32)
  codebook = x[rng.choice(len(x), num_codes, replace=len(x) < num_codes)]
  for _ in range(iters):
    assign = nearest(codebook, x)
    sums = jax.ops.segment_sum(x, assign, num_codes)
    counts = jax.ops.segment_sum(jnp.ones(len(x)), assign, num_codes)
    restart = x[rng.choice(len(x), num_codes)]
    codebook = jnp.where((counts > 0)[:, None], sums / jnp.maximum(counts, 1)[:, None], restart)
  return codebook


def run(args) -> list[dict]:
  config = synthetic.SyntheticConfig(
      resolution=args.resolution, num_frames=(args.frames,), fps=(args.fps,),
      max_objects=args.max_objects, num_train=args.train_clips, num_heldout=args.eval_clips)
  train = synthetic.SyntheticVideos(config, "train")
  held = synthetic.SyntheticVideos(config, "heldout")
  train_videos = np.stack([train[i]["video"] for i in range(len(train))]).astype(np.float32)
  held_videos = np.stack([held[i]["video"] for i in range(len(held))])
  textures = [held.attributes(i)[0]["background"]["texture"] for i in range(len(held))]
  rows = []
  for num_codes in args.codes:
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    decoded = []
    for train_part, held_part in zip(groups(train_videos, args.temporal),
                                     groups(held_videos.astype(np.float32), args.temporal)):
      frames = train_part.shape[1]
      codebook = kmeans(blocks(train_part, frames, args.patch), num_codes, args.iters, rng)
      codes = nearest(codebook, jnp.asarray(blocks(held_part, frames, args.patch)))
      decoded.append(unblocks(np.asarray(codebook[codes]), held_part.shape, args.patch))
    n = len(held_videos)
    video = np.concatenate([decoded[0]] + ([decoded[1].reshape(n, -1, *decoded[1].shape[2:])]
                                          if len(decoded) > 1 else []), axis=1)
    video = np.clip(np.round(video), 0, 255).astype(np.uint8)
    per_clip = recon.psnr_per_frame(held_videos, video).reshape(n, -1).mean(axis=1)
    row = dict(codes=num_codes, bits=float(np.log2(num_codes)), patch=args.patch,
               temporal=args.temporal, psnr=float(per_clip.mean()),
               seconds=time.perf_counter() - start)
    for name in TEXTURES:
      mask = np.asarray([t == name for t in textures])
      row[f"psnr_{name}"] = float(per_clip[mask].mean()) if mask.any() else float("nan")
    rows.append(row)
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--codes", type=int, nargs="+", default=[4096, 8192])
  parser.add_argument("--patch", type=int, default=8, help="spatial factor p")
  parser.add_argument("--temporal", type=int, default=4, help="temporal factor r")
  parser.add_argument("--resolution", type=int, default=64)
  parser.add_argument("--frames", type=int, default=17)
  parser.add_argument("--fps", type=int, default=8)
  parser.add_argument("--max_objects", type=int, default=1, help="1: the CPU demo's data")
  parser.add_argument("--train_clips", type=int, default=400)
  parser.add_argument("--eval_clips", type=int, default=64)
  parser.add_argument("--iters", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  rows = run(args)
  cols = ["codes", "bits", "patch", "temporal", "psnr"] + [f"psnr_{t}" for t in TEXTURES]
  print(f"k-means block coding, {args.frames} frames at {args.resolution}px, "
        f"{args.train_clips} training clips, {args.eval_clips} held-out clips (PSNR in dB)")
  print(" | ".join(f"{c:>15}" for c in cols + ["seconds"]))
  for row in rows:
    print(" | ".join(f"{row[c]:>15.2f}" if isinstance(row[c], float) else f"{row[c]:>15}"
                     for c in cols + ["seconds"]))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(rows, f, indent=2)
  return rows


if __name__ == "__main__":
  main()
