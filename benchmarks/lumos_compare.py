"""Loong vs Lumos-1 options on one demo run: the same token shards, the same training steps.

  python -m loong_jax.demo --workdir RUN --config configs/demo_cpu.py:quick   # once
  PYTHONPATH=. python benchmarks/lumos_compare.py --run RUN --steps 20 --out /tmp/lumos.md

Three LM variants (`configs/lm/llama.py:VARIANTS`) are trained through the demo's curriculum
(stages 1 -> 2 -> 3 on RUN/tokens, `demo_steps.lm_stage_config` with `lm.variant`), each stage
for `--steps` steps, in `--workdir/<variant>/stage{1,2,3}` (re-running resumes / reuses them):

| variant | positions | attention           | objective  | decoder                          |
|---------|-----------|---------------------|------------|----------------------------------|
| loong   | 1D RoPE   | causal              | next token | token by token                   |
| mmrope  | MM-RoPE   | causal              | next token | token by token                   |
| ardf    | MM-RoPE   | frame-bidirectional | AR-DF      | masked, per frame (`--masked_steps`) |

Then, per variant:
* held-out loss on the video tokens of `--heldout_clips` 17-frame clips of the built-in
  dataset's held-out split, pre-tokenized with the run's tokenizer (RUN/lumos_compare/heldout):
  mean cross-entropy on latent frame 0 and on later frames. For next-token models, every video
  token predicted from the tokens before it; for AR-DF, the masked-token loss (tube masks with
  ratio >= 0.7, the training distribution, one fixed key), which is a different quantity:
  compare it across AR-DF runs, not with the next-token columns.
* faithfulness (`loong_jax/eval/faithfulness.py`: the probe's colour / shape / direction
  against the prompt) of one video per demo prompt (`config.generate.prompts`), `--seconds`
  long, generated with the variant's own decoder;
* generation speed: wall seconds per second of video, timed on a second generation call (the
  first compiles).

Prints a markdown table and writes it to `--out` (.md) with the figures beside it (.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from configs.lm import llama
from loong_jax import demo_codec, demo_steps, demo_workdir, tokens, train_lm
from loong_jax import generate as generate_lib
from loong_jax import sharding as sharding_lib
from loong_jax.data import pipeline
from loong_jax.data import pretokenize as pretokenize_lib
from loong_jax.data import text as text_lib
from loong_jax.eval import faithfulness
from loong_jax.llm import transformer
from loong_jax.train import lm_step

HELDOUT_FRAMES = 17  # pixel frames of the held-out clips (5 latent frames)


def parse_steps(spec: str | None, config) -> tuple[int, int, int]:
  """`N` (every stage) or `N1,N2,N3`; None: the demo config's own steps."""
  if spec is None:
    return tuple(int(s) for s in config.lm.steps)
  steps = [int(s) for s in spec.split(",")]
  if len(steps) == 1:
    steps *= 3
  if len(steps) != 3 or min(steps) < 1:
    raise SystemExit(f"--steps={spec!r}: give N or N1,N2,N3 (positive)")
  return tuple(steps)


def with_variant(config, variant: str):
  """A copy of the demo config with `lm.variant` = `variant`."""
  out = config.copy_and_resolve_references()
  out.lm.variant = variant
  return out


def stage_config(config, run: str, stage: int, variant: str, steps: int):
  """The demo's stage config of `variant`, trained for `steps` steps."""
  out = demo_steps.lm_stage_config(with_variant(config, variant), run, stage)
  out.train.steps = steps
  out.optim.warmup_steps = min(out.optim.warmup_steps, steps - 1)  # short smoke runs
  return out


def train_variant(config, run: str, workdir: str, variant: str, steps):
  """Stages 1 -> 3 of `variant` in `workdir/<variant>`; the stage-3 config."""
  for stage, n in enumerate(steps, 1):
    cfg = stage_config(config, run, stage, variant, n)
    print(f"[{variant}] stage {stage}: {n} steps", flush=True)
    train_lm.train(cfg, os.path.join(workdir, variant))
  return cfg


def heldout_shards(config, run: str, workdir: str, clips: int) -> str:
  """Pre-tokenize `clips` held-out 17-frame clips with the run's tokenizer (once)."""
  out_dir = os.path.join(workdir, "heldout", "clips17")
  stage = demo_steps.lm_stage_config(config, run, 1)
  vocab = tokens.Vocab(stage.vocab.text_size, stage.vocab.video_size)
  encode_fn = demo_codec.video_encoder(config, run, vocab.video_size)
  source = demo_steps.synthetic_source(config, (HELDOUT_FRAMES,), clips, "heldout")
  pretokenize_lib.pretokenize(
      source, encode_fn, text_lib.TextTokenizer(os.path.join(run, "text.model")), out_dir,
      vocab=vocab, shard_size=clips, batch_size=config.pretokenize.batch_size,
      max_text_len=stage.data.max_text_len, settings={"source": "synthetic heldout clips17"})
  return out_dir


def heldout_batches(stage3, shards: str, batch_size: int) -> list[dict]:
  """One pass over the held-out shards as LM batches (no text dropout, no shuffling)."""
  data = stage3.data.copy_and_resolve_references()
  data.update(sources=[dict(path=shards, weight=1.0, max_frames=HELDOUT_FRAMES)], seq_len=None,
              batch_size=batch_size, text_dropout=0.0, shuffle=False, seed=0)
  vocab = tokens.Vocab(stage3.vocab.text_size, stage3.vocab.video_size)
  return list(pipeline.make_pipeline(data, vocab, num_epochs=1))


def heldout_loss(cfg, params, batches) -> dict:
  """Mean CE on video tokens of latent frame 0 / later frames (AR-DF: masked tokens only)."""
  vocab = tokens.Vocab(cfg.vocab.text_size, cfg.vocab.video_size)
  model = transformer.Transformer(transformer.LMConfig.from_config(cfg.lm))
  keys = train_lm.batch_keys(model.config)
  transform = train_lm.objective_transform(cfg, model.config)
  logits_fn = jax.jit(lambda p, b: lm_step.weighted_cross_entropy(
      model.apply({"params": p}, b["inputs"], b.get("positions"),
                  frame_ids=b.get("input_frame")), b["targets"], b["weights"])[1]["ce_per_token"])
  sums = np.zeros(4)
  for i, raw in enumerate(batches):
    batch = train_lm.with_layout(dict(raw), keys, vocab, cfg.data.frame_width)
    if transform is None:
      counted = vocab.is_video(batch["targets"])
    else:
      batch = jax.device_get(transform(jax.random.key(i), batch))
      counted = batch["weights"] > 0
    ce = np.asarray(logits_fn(params, batch))
    first, later = counted & (batch["frame"] == 0), counted & (batch["frame"] > 0)
    sums += [(ce * first).sum(), first.sum(), (ce * later).sum(), later.sum()]
  return {"first_frame": float(sums[0] / max(sums[1], 1)),
          "later_frames": float(sums[2] / max(sums[3], 1)),
          "kind": "masked tokens (AR-DF)" if transform is not None else "next token"}


def inference_config(config, run: str, variant: str, masked_steps: int | None):
  """The demo's generation settings for this variant's model and decoder
  (`demo_steps.inference_config`; masked decoding steps: `masked_steps` when given)."""
  ic = demo_steps.inference_config(with_variant(config, variant), run, reencode=True)
  if masked_steps:
    ic.inference.masked.steps = masked_steps
  return ic


def generate_and_score(config, run: str, ic, workdir: str, seconds: float, seed: int) -> dict:
  """Faithfulness of one video per demo prompt, and generation seconds per video second."""
  model = transformer.Transformer(transformer.LMConfig.from_config(ic.lm))
  mesh, rules = sharding_lib.make_mesh(ic.mesh), sharding_lib.rules(ic.sharding)
  params = generate_lib.restore_params(workdir, model, mesh, rules)
  codec = generate_lib.load_codec(ic.inference.tokenizer_config, ic.inference.tokenizer_dir,
                                  ic.inference.tokenizer_kind, ic.vocab.video_size,
                                  ic.inference.oracle_frames, ic.inference.flat_codes)
  encode_text = generate_lib.load_text_encoder(ic.inference.text_model)
  prompts = list(config.generate.prompts)
  run_once = lambda: generate_lib.generate_videos(ic, params, [p["prompt"] for p in prompts],
                                                  seconds, seed, codec, encode_text, mesh, rules)
  run_once()  # compiles
  start = time.perf_counter()
  videos = run_once().video
  elapsed = time.perf_counter() - start
  uint8 = np.clip(np.round((videos + 1.0) * 127.5), 0, 255).astype(np.uint8)
  items = [(video, {k: p[k] for k in ("color", "shape", "motion")}, p["split"])
           for video, p in zip(uint8, prompts)]
  return {"faithfulness": faithfulness.faithfulness(items),
          "gen_s_per_video_s": elapsed / (seconds * len(prompts)),
          "videos": len(prompts), "frames": int(videos.shape[1])}


def _fraction(result: dict, key: str) -> str:
  return " / ".join(f"{result['faithfulness'][key].get(s, float('nan')):.2f}"
                    for s in faithfulness.SPLITS)


def markdown(results: dict, steps, seconds: float) -> str:
  lines = [f"Steps per stage {list(steps)}; {seconds:g} s videos; faithfulness as seen / "
           "held-out colour-shape pairs.", "",
           "| variant | loss kind | loss frame 0 | loss later frames | colour | shape | "
           "direction | gen s per video s |",
           "|---|---|---|---|---|---|---|---|"]
  for variant, r in results.items():
    loss = r["heldout_loss"]
    lines.append(f"| {variant} | {loss['kind']} | {loss['first_frame']:.3f} | "
                 f"{loss['later_frames']:.3f} | {_fraction(r, 'color')} | "
                 f"{_fraction(r, 'shape')} | {_fraction(r, 'direction')} | "
                 f"{r['gen_s_per_video_s']:.2f} |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run", required=True, help="a finished demo run directory")
  parser.add_argument("--steps", default=None, help="steps per stage: N or N1,N2,N3 "
                      "(default: the run's demo config)")
  parser.add_argument("--variants", default=",".join(llama.VARIANTS))
  parser.add_argument("--workdir", default=None, help="default RUN/lumos_compare")
  parser.add_argument("--heldout_clips", type=int, default=8)
  parser.add_argument("--eval_batch_size", type=int, default=4)
  parser.add_argument("--seconds", type=float, default=None,
                      help="video length; default: the demo's faithfulness frames")
  parser.add_argument("--masked_steps", type=int, default=None,
                      help="AR-DF decoding steps per frame (default: configs/inference.py)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="lumos_compare.md", help="table (.md); figures beside "
                      "it (.json)")
  args = parser.parse_args()
  run = os.path.abspath(args.run)
  config = demo_workdir.load_run_config(run)
  workdir = os.path.abspath(args.workdir or os.path.join(run, "lumos_compare"))
  steps = parse_steps(args.steps, config)
  seconds = args.seconds or config.generate.faithfulness_frames / config.data.fps
  shards = heldout_shards(config, run, workdir, args.heldout_clips)
  results = {}
  for variant in args.variants.split(","):
    cfg = train_variant(config, run, workdir, variant, steps)
    ic = inference_config(config, run, variant, args.masked_steps)
    model = transformer.Transformer(transformer.LMConfig.from_config(cfg.lm))
    mesh, rules = sharding_lib.make_mesh(cfg.mesh), sharding_lib.rules(cfg.sharding)
    params = generate_lib.restore_params(os.path.join(workdir, variant, "stage3"), model, mesh,
                                         rules)
    batches = heldout_batches(cfg, shards, args.eval_batch_size)
    results[variant] = {"heldout_loss": heldout_loss(cfg, params, batches)}
    print(f"[{variant}] held-out loss {results[variant]['heldout_loss']}", flush=True)
    results[variant].update(generate_and_score(
        config, run, ic, os.path.join(workdir, variant, "stage3"), seconds, args.seed))
    results[variant]["decoder"] = ic.inference.decoder
  table = markdown(results, steps, seconds)
  print(table)
  out = os.path.abspath(args.out)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    f.write(table)
  with open(os.path.splitext(out)[0] + ".json", "w") as f:
    json.dump({"run": run, "steps": list(steps), "seconds": seconds, "results": results}, f,
              indent=1, default=float)
  print(f"wrote {out} and {os.path.splitext(out)[0]}.json")


if __name__ == "__main__":
  main()
