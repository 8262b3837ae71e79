"""Train-step time of a finished demo run's LM stages, rows padded to the stage's longest source
(as the demo trains) against length groups (`data.length_groups`, `data/pipeline.py`).

  python benchmarks/length_groups.py --run runs/demo [--stages 1,2,3] [--steps 10] [--out F]

Real batches from the run's token shards, the run's LM config per stage (`demo_steps`), the
jitted step of `train_lm.build`; the first two steps (compilation) are not timed. Prints per
stage and mode the rows x positions of a batch, seconds per step and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from loong_jax import demo_steps, demo_workdir, sharding, tokens, train_lm  # noqa: E402


def time_stage(config, steps: int) -> tuple[float, str]:
  """(seconds per step, layout) of `steps` timed train steps of a stage config."""
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  model, mesh, rules, state, _, step_fn = train_lm.build(config)
  keys = train_lm.batch_keys(model.config)
  data = iter(train_lm.data_source(config, vocab, config.train.seed).map(
      lambda b: train_lm.layout_groups(b, keys, vocab, config.data.frame_width,
                                       model.config.prev_frame_radius)))
  groups = train_lm.length_groups(config) or [(config.train.seq_len, None,
                                               config.train.batch_size)]
  layout = " + ".join(f"{rows} x {n}" for n, _, rows in groups)
  with sharding.mesh_context(mesh, rules):
    batches = [jax.device_put(next(data)) for _ in range(steps + 2)]
    for batch in batches[:2]:
      state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for batch in batches[2:]:
      state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
  return (time.perf_counter() - start) / steps, layout


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run", required=True, help="a demo run with token shards (RUN/tokens)")
  parser.add_argument("--stages", default="1,2,3")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  config = demo_workdir.load_run_config(args.run)
  rows = []
  print(f"{'stage':>5} {'mode':>13} {'rows x positions':>24} {'s/step':>8} {'speed-up':>8}")
  for stage in (int(s) for s in args.stages.split(",")):
    padded = None
    for grouped in (False, True):
      stage_config = demo_steps.lm_stage_config(config, args.run, stage)
      stage_config.data.length_groups = grouped
      seconds, layout = time_stage(stage_config, args.steps)
      padded = padded or seconds
      mode = "length groups" if grouped else "padded"
      rows.append(dict(stage=stage, mode=mode, layout=layout, seconds_per_step=seconds,
                       speedup=padded / seconds))
      print(f"{stage:>5} {mode:>13} {layout:>24} {seconds:>8.3f} {padded / seconds:>7.2f}x",
            flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
