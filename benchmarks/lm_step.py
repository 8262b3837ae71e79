"""LM train-step throughput and MFU against this machine's measured matmul peak.

  python benchmarks/lm_step.py --out lm_step.json [--configs tiny,bench] [--steps 5]

`bench` is the shared benchmark shape of ../shared/BENCHMARKS.md (12 x 768, 12 heads, FFN 2048,
vocabulary 42,240, sequence 1,024, batch 4, float32), so its row compares with the peers' figures
there. Model FLOPs per token = 6 * (matmul parameters, embedding lookup excluded) +
6 * layers * seq_len * heads * head_dim (causal attention, forward and backward), as in those
figures. The peak is the best of several jitted 2048^2 float32 matmuls, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs.lm import llama  # noqa: E402
from loong_jax import sharding, tokens  # noqa: E402
from loong_jax.llm import transformer  # noqa: E402
from loong_jax.train import lm_step  # noqa: E402
from loong_jax.train import state as state_lib  # noqa: E402

# The shared benchmark shape (BENCHMARKS.md); tiny keeps its own config.
SHAPES = {"tiny": dict(batch_size=8, seq_len=256, vocab=None),
          "bench": dict(batch_size=4, seq_len=1_024, vocab=42_240)}


def matmul_peak_flops(size: int = 2_048, repeats: int = 10) -> float:
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = math.inf
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * size**3 / best


def flops_per_token(cfg: transformer.LMConfig, params, seq_len: int) -> float:
  matmul = state_lib.count_params(params) - cfg.padded_vocab_size * cfg.d_model  # no lookup
  return 6 * matmul + 6 * cfg.num_layers * seq_len * cfg.num_heads * cfg.head_dim


def bench_config(name: str, steps: int, peak: float) -> dict:
  config = llama.get_config(name)
  shape = SHAPES[name]
  if shape["vocab"]:
    config.vocab.text_size = shape["vocab"] - config.vocab.video_size - 10
  config.train.batch_size, config.train.seq_len = shape["batch_size"], shape["seq_len"]
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  lm_cfg = transformer.LMConfig.from_config(config.lm)
  model = transformer.Transformer(lm_cfg)
  mesh, rules = sharding.make_mesh(config.mesh), sharding.rules(config.sharding)
  tx = state_lib.make_optimizer(config.optim, 1_000)
  dummy = jnp.zeros((1, 8), jnp.int32)
  state, shardings = state_lib.create_sharded_state(
      lambda k: model.init(k, dummy)["params"], model.apply, tx, jax.random.key(0), mesh, rules,
      1.0)
  step = lm_step.jit_train_step(shardings, mesh, rules)
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  b, l = shape["batch_size"], shape["seq_len"]
  ids = jax.random.randint(jax.random.key(1), (b, l + 1), 0, vocab.size)
  batch = {"inputs": ids[:, :-1], "targets": ids[:, 1:], "weights": jnp.ones((b, l))}
  times = []
  with sharding.mesh_context(mesh, rules):
    state, m = step(state, batch)  # compile
    jax.block_until_ready(m)
    for _ in range(steps):
      t = time.perf_counter()
      state, m = step(state, batch)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t)
  step_s = sorted(times)[len(times) // 2]
  fpt = flops_per_token(lm_cfg, state.params, l)
  tokens_s = b * l / step_s
  return {"config": name, "params": state_lib.count_params(state.params), "batch": b,
          "seq_len": l, "step_s": step_s, "tokens_per_s": tokens_s,
          "model_tflop_per_step": fpt * b * l / 1e12, "flops_per_token": fpt,
          "mfu": fpt * tokens_s / peak}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--out", help="write the rows as JSON here too")
  parser.add_argument("--configs", default="tiny,bench")
  parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
  args = parser.parse_args()
  peak = matmul_peak_flops()
  rows = [bench_config(name, args.steps, peak) for name in args.configs.split(",")]
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
        f"measured float32 matmul peak {peak / 1e9:.0f} GFLOP/s")
  print(f"{'config':<7} {'params':>12} {'batch x seq':>12} {'step s':>8} {'tokens/s':>10} "
        f"{'TFLOP/step':>10} {'MFU':>6}")
  for r in rows:
    print(f"{r['config']:<7} {r['params']:>12,} {r['batch']:>5} x {r['seq_len']:<5} "
          f"{r['step_s']:>8.3f} {r['tokens_per_s']:>10.1f} {r['model_tflop_per_step']:>10.3f} "
          f"{r['mfu']:>6.1%}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"peak_flops": peak, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
