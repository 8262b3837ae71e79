"""Tokenizer throughput and memory: encode / decode frames per second and peak memory.

  python benchmarks/tokenizer.py --out /tmp/tokenizer.json
  python benchmarks/tokenizer.py --variants loong_246m --batches 1 --frames 17 --resolution 128
  python benchmarks/tokenizer.py --variants loong_246m --frames 17 --resolution 128 --compile_only

For each (config variant, batch size): jit-compiled `encode` (pixels -> ids) and `decode`
(ids -> pixels), timed over `--iters` calls after one warm-up call. Frames/s counts input frames.
Peak memory is XLA's compile-time estimate (arguments + outputs + temporaries) and, where the
backend reports it (GPU/TPU), the device's measured `peak_bytes_in_use`. Weights are random
(throughput does not depend on them). Variants other than the CPU ones compute in `bfloat16`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import flax.linen as nn
import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loong_jax import cli  # noqa: E402
from loong_jax.tokenizer import autoencoder  # noqa: E402

CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "tokenizer", "magvit2.py")


def compiled_peak_bytes(compiled) -> int:
  stats = compiled.memory_analysis()
  if stats is None:
    return -1
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes)


def device_peak_bytes() -> int:
  stats = jax.devices()[0].memory_stats() or {}
  return int(stats.get("peak_bytes_in_use", -1))


def mib(num_bytes: int) -> float | None:
  """Bytes -> MiB; None where the backend does not report it (-1)."""
  return None if num_bytes < 0 else num_bytes / 2**20


def time_call(fn, *args, iters: int) -> float:
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(iters):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / iters


def bench(variant: str, batch: int, frames: int | None, resolution: int | None, iters: int,
          compile_only: bool = False):
  config = cli.load_config_file(f"{CONFIG_FILE}:{variant}")
  frames = frames or config.data.frames
  resolution = resolution or config.data.resolution
  model = autoencoder.make_tokenizer(config.tokenizer)
  shape = (batch, frames, resolution, resolution, 3)
  init = lambda v: nn.unbox(model.init(jax.random.key(1), v[:1, :1]))
  encode = jax.jit(lambda p, v: model.apply(p, v, method=model.encode))
  decode = jax.jit(lambda p, i: model.apply(p, i, method=model.decode))
  if compile_only:  # shapes only: nothing is allocated or run
    video = jax.ShapeDtypeStruct(shape, jax.numpy.float32)
    params = jax.eval_shape(init, video)
    ids = jax.eval_shape(encode, params, video)
  else:
    video = jax.random.uniform(jax.random.key(0), shape, minval=-1.0, maxval=1.0)
    params = jax.jit(init)(video)
    ids = encode(params, video)
  rows = []
  for name, fn, arg in (("encode", encode, video), ("decode", decode, ids)):
    compiled = fn.lower(params, arg).compile()
    seconds = float("nan") if compile_only else time_call(compiled, params, arg, iters=iters)
    rows.append(dict(variant=variant, op=name, batch=batch, frames=frames, resolution=resolution,
                     dtype=config.tokenizer.dtype, seconds=seconds,
                     frames_per_s=batch * frames / seconds,
                     peak_mib_compiled=mib(compiled_peak_bytes(compiled)),
                     peak_mib_device=mib(device_peak_bytes()),
                     device=jax.devices()[0].device_kind, iters=iters))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="JSON file for the rows")
  parser.add_argument("--variants", default="demo,loong_246m")
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--frames", type=int, default=None, help="override the config's clip length")
  parser.add_argument("--resolution", type=int, default=None, help="override the config's size")
  parser.add_argument("--iters", type=int, default=2)
  parser.add_argument("--compile_only", action="store_true",
                      help="only XLA's peak-memory estimate (for configs too slow to run here)")
  args = parser.parse_args()
  rows = []
  for variant in args.variants.split(","):
    for batch in (int(b) for b in args.batches.split(",")):
      rows.extend(bench(variant, batch, args.frames, args.resolution, args.iters,
                        args.compile_only))
      with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
  header = (f"{'variant':<11} {'op':<6} {'batch':>5} {'clip':>11} {'dtype':>8} {'s/call':>8} "
            f"{'frames/s':>9} {'peak MiB (XLA)':>14} {'peak MiB (dev)':>14}")
  print(header)
  for r in rows:
    clip = f"{r['frames']}x{r['resolution']}x{r['resolution']}"
    print(f"{r['variant']:<11} {r['op']:<6} {r['batch']:>5} {clip:>11} {r['dtype']:>8} "
          f"{r['seconds']:>8.3f} {r['frames_per_s']:>9.2f} {fmt(r['peak_mib_compiled']):>14} "
          f"{fmt(r['peak_mib_device']):>14}")


def fmt(value: float | None) -> str:
  return "n/a" if value is None else f"{value:.1f}"


if __name__ == "__main__":
  main()
