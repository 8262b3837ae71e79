"""Data pipeline throughput per curriculum stage vs the `tiny` LM train step's consumption.

  PYTHONPATH=. python benchmarks/data.py --out /tmp/data_bench.json   # CPU demo scale (64 px)
  PYTHONPATH=. python benchmarks/data.py --scale full --batch 2 --out f.json  # 128 px

Token shards of the built-in dataset are made first with the pooling stand-in encoder (the
pipeline's cost does not depend on which encoder made the codes). For each stage the pipeline
(`configs/data/stages.py`, 0 worker processes, grain's default read threads) is timed from
`iter()` over `--batches` batches, start-up included; the `tiny` LM (`configs/lm/llama.py:tiny`)
train step is timed on a batch of that pipeline (with its `frame` metrics). The pipeline keeps up when its
sequences/s exceed the step's. Both share the machine's cores; they are timed one after the other.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time

import jax
import numpy as np

from loong_jax import sharding as sharding_lib
from loong_jax import tokens
from loong_jax.data import encoders, pipeline, pretokenize, synthetic, text
from loong_jax.llm import transformer
from loong_jax.train import lm_step, state as state_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(path, arg):
  spec = importlib.util.spec_from_file_location("_bench_config", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def make_shards(root: str, resolution: int, records: int, vocab: tokens.Vocab) -> float:
  """Token shards `root/{images,clips17,clips65}` + `root/text.model`; returns seconds taken."""
  start = time.time()
  corpus = synthetic.SyntheticVideos(synthetic.SyntheticConfig(num_train=2_000))
  model = text.train((corpus.caption(i) for i in range(len(corpus))),
                     os.path.join(root, "text.model"), vocab.text_size)
  encode = encoders.data_parallel(encoders.pooling_stand_in_encoder(vocab.video_size))
  for name, frames in (("images", 1), ("clips17", 17), ("clips65", 65)):
    source = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
        resolution=resolution, num_frames=(frames,), num_train=records))
    pretokenize.pretokenize(source, encode, model, os.path.join(root, name), vocab=vocab,
                            shard_size=64, batch_size=8)
  return time.time() - start


def time_pipeline(config, batches: int) -> tuple[float, dict]:
  """(sequences/s from `iter()` over `batches` batches, the last batch)."""
  start = time.time()
  it = iter(pipeline.stage_pipeline(config))
  seqs = 0
  for _ in range(batches):
    batch = next(it)
    seqs += len(batch["inputs"])
  return seqs / (time.time() - start), batch


def time_lm_step(vocab_config, batch: dict, steps: int) -> float:
  """Sequences/s of the `tiny` LM train step on pipeline batches shaped like `batch`."""
  config = _config("configs/lm/llama.py", "tiny")
  config.vocab.update(vocab_config)
  model = transformer.Transformer(transformer.LMConfig.from_config(config.lm))
  mesh = sharding_lib.make_mesh(config.mesh)
  rules = sharding_lib.rules(config.sharding)
  tx = state_lib.make_optimizer(config.optim, total_steps=1_000)
  example = np.zeros_like(batch["inputs"])
  state, shardings = state_lib.create_sharded_state(
      lambda key: model.init(key, example)["params"], model.apply, tx, jax.random.key(0), mesh,
      rules, config.sharding.max_replicated_fraction)
  step = lm_step.jit_train_step(shardings, mesh, rules, batch_keys=pipeline.BATCH_KEYS)
  with sharding_lib.mesh_context(mesh, rules):
    for _ in range(2):  # compile + one warm step
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    start = time.time()
    for _ in range(steps):
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
  return len(example) * steps / (time.time() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="JSON file for the result rows")
  parser.add_argument("--scale", choices=("demo", "full"), default="demo",
                      help="demo: 64 px, small text vocab; full: 128 px, Loong's lengths")
  parser.add_argument("--batch", type=int, default=8, help="batch size (sequences)")
  parser.add_argument("--records", type=int, default=64, help="records per token source")
  parser.add_argument("--batches", type=int, default=60, help="pipeline batches timed")
  parser.add_argument("--steps", type=int, default=5, help="LM steps timed")
  args = parser.parse_args()

  header = (f"{'stage':>5}  {'seq_len':>7}  {'batch':>5}  {'pipeline seq/s':>14}  "
            f"{'tiny LM step seq/s':>18}  {'headroom':>8}")
  rows = []
  with tempfile.TemporaryDirectory() as root:
    probe = _config("configs/data/stages.py", f"1{',demo' if args.scale == 'demo' else ''}")
    vocab = tokens.Vocab(text_size=probe.vocab.text_size, video_size=probe.vocab.video_size)
    resolution = 64 if args.scale == "demo" else 128
    shard_seconds = make_shards(root, resolution, args.records, vocab)
    print(f"made token shards ({args.records} records x 3 sources, {resolution} px, pooling "
          f"stand-in encoder) in {shard_seconds:.1f} s")
    for stage in (1, 2, 3):
      config = _config("configs/data/stages.py",
                       f"{stage}{',demo' if args.scale == 'demo' else ''}")
      config.data.batch_size = args.batch
      for source in config.data.sources:
        source["path"] = os.path.join(root, os.path.basename(source["path"]))
      data_rate, batch = time_pipeline(config, args.batches)
      seq_len = batch["inputs"].shape[1]
      step_rate = time_lm_step(config.vocab.to_dict(), batch, args.steps)
      rows.append({"stage": stage, "scale": args.scale, "resolution": resolution,
                   "seq_len": seq_len, "batch": args.batch,
                   "pipeline_seq_per_s": round(data_rate, 1),
                   "tiny_lm_step_seq_per_s": round(step_rate, 3),
                   "headroom": round(data_rate / step_rate, 1),
                   "cpu_count": os.cpu_count(), "jax": jax.__version__})
      with open(args.out, "w") as f:  # after every stage, so a cut-short run keeps its rows
        json.dump(rows, f, indent=1)
  print(header)
  for r in rows:
    print(f"{r['stage']:>5}  {r['seq_len']:>7}  {r['batch']:>5}  {r['pipeline_seq_per_s']:>14.1f}"
          f"  {r['tiny_lm_step_seq_per_s']:>18.3g}  {r['headroom']:>7.1f}x")


if __name__ == "__main__":
  main()
