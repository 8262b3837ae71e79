"""Could the LM choose a faithful first frame, and does it? A demo run's first-frame candidates.

  python -m loong_jax.demo_candidates --workdir RUN [--candidates 16] [--out FILE.json]

A video's first latent frame decides its colour and shape (every later frame carries it on), and
the default recipe keeps the best-scored of `generate.first_frame_candidates` drawn frames
(`inference/rerank.py`). For the run's stage-3 LM this draws `--candidates` first frames per
faithfulness prompt (the generation's prompts, sampling settings and seed), decodes each with the
run's codec, reads it with the probe (the evaluation's reader), and prints, seen / held-out:
  * the pool: the fraction of candidates with the prompted colour (shape), and of prompts with
    at least one such candidate among the first 8 and among all;
  * per scorer, the chosen candidate's colour and shape (only candidates with at least
    `generate.first_frame_min_object_pixels` object pixels, as generation): `likelihood`, log
    p(x | caption) (best-of-N's score); `+ colour`, `+ colour + shape`: plus the caption's
    log-posterior among its copies naming every other colour (shape) of the world, the LM's own
    reading of the candidate (`rerank.caption_posterior`, `generate.first_frame_contrast_*`);
    `colour posterior`: that reading alone.
A pool that holds the prompted colour while every scorer misses it means the LM cannot tell the
faithful frame from the others: its likelihood, not its sampling, is what fails.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from loong_jax import demo_prompts, demo_steps, demo_workdir, generate as generate_lib, tokens
from loong_jax.data import video_io
from loong_jax.eval import probe
from loong_jax.inference import decode, long_video, rerank
from loong_jax.llm import transformer

SPLITS = ("seen", "heldout")
POOL_ANY = 8  # the default's first_frame_candidates: "any of 8" beside "any of all"


def summarise(color_ok: np.ndarray, shape_ok: np.ndarray, splits, scores: dict, ok: np.ndarray
              ) -> dict:
  """Rates per split of `[P, N]` candidates (`color_ok`, `shape_ok`: the prompted attribute
  read; `ok`: eligible for the choice, as generation's object filter; a prompt with no eligible
  candidate chooses among all) and of each scorer's choice (`scores`: name -> `[P, N]`)."""
  splits = np.asarray(splits)
  ok = np.asarray(ok, bool)
  eligible = ok | ~ok.any(axis=1, keepdims=True)
  rows = {"pool": {}, "any_of_8": {}, "any": {}}
  chosen = {name: {} for name in scores}
  for split in SPLITS:
    m = splits == split
    if not m.any():
      continue
    for key, hit in (("color", color_ok), ("shape", shape_ok)):
      hit = np.asarray(hit, bool)
      rows["pool"][f"{key}.{split}"] = float(hit[m].mean())
      rows["any_of_8"][f"{key}.{split}"] = float(hit[m][:, :POOL_ANY].any(axis=1).mean())
      rows["any"][f"{key}.{split}"] = float(hit[m].any(axis=1).mean())
      for name, s in scores.items():
        best = np.where(eligible, np.asarray(s, np.float64), -np.inf).argmax(axis=1)
        chosen[name][f"{key}.{split}"] = float(hit[np.arange(len(hit)), best][m].mean())
  return {**rows, "chosen": chosen}


def measure(run: str, candidates: int) -> dict:
  """Draw, read and score `candidates` first frames per faithfulness prompt of RUN (module
  docstring): `summarise`'s dict plus `candidates` and `prompts`."""
  config = demo_workdir.load_run_config(run)
  ic = demo_steps.inference_config(config, run, True)
  mesh, rules, params, codec, encode_text = demo_steps.load_generation(ic, run)
  vocab = tokens.Vocab(ic.vocab.text_size, ic.vocab.video_size)
  decoder = generate_lib.make_decoder(
      ic, transformer.Transformer(transformer.LMConfig.from_config(ic.lm)), vocab, mesh, rules)
  params = decoder.place_params(params)
  prompts = demo_prompts.faithfulness_prompts(config)

  def text(prompt):
    return generate_lib.encode_prompt(prompt, encode_text, ic.inference.max_text_len, vocab)

  n, h = candidates, config.data.resolution // codec.spatial_downsample
  cond = [decode.prompt_ids(vocab, text(p["prompt"])) for p in prompts for _ in range(n)]
  uncond = [decode.prompt_ids(vocab, None)] * len(cond)
  plan = decode.frame_plan(vocab, 1, h * h, end_video=False, frame_width=h)
  key = jax.random.fold_in(jax.random.key(config.generate.seed), rerank.CANDIDATE_STREAM)
  frames = decode.frame_codes(decoder(params, cond, plan, key, uncond_prompts=uncond), vocab, 1,
                              h, h)[:, 0].astype(np.int32)
  flat = frames.reshape(len(cond), -1)
  likelihood = rerank.log_likelihood(decoder, params, cond, flat, h)
  posterior = {field: rerank.contrast_posterior(
      decoder, params, likelihood, flat,
      [[text(a) for a in demo_prompts.alternatives(p, field)] for p in prompts], n, h)
      for field in ("color", "shape")}
  pixels = np.asarray(codec.decode(frames[:, None]))
  readings = [probe.read(v) for v in video_io.to_uint8(pixels)]
  min_pixels = config.generate.get("first_frame_min_object_pixels", 0)
  ok = long_video.object_pixels(pixels[:, 0], long_video.LongVideoConfig.object_contrast)
  ok = (ok >= min_pixels).reshape(-1, n)
  color_ok = np.array([r.color == prompts[i // n]["color"] for i, r in enumerate(readings)])
  shape_ok = np.array([r.shape == prompts[i // n]["shape"] for i, r in enumerate(readings)])
  shaped = {"likelihood": likelihood, "+ colour": likelihood + posterior["color"],
            "+ colour + shape": likelihood + posterior["color"] + posterior["shape"],
            "colour posterior": posterior["color"]}
  out = summarise(color_ok.reshape(-1, n), shape_ok.reshape(-1, n),
                  [p["split"] for p in prompts], {k: v.reshape(-1, n) for k, v in shaped.items()},
                  ok)
  return {**out, "candidates": n, "prompts": len(prompts)}


def table(result: dict) -> str:
  """The result as a markdown table (colour, shape; seen / held-out)."""
  def cells(row):
    return " | ".join(" / ".join(f"{row.get(f'{k}.{s}', float('nan')):.2f}" for s in SPLITS)
                      for k in ("color", "shape"))
  n = result["candidates"]
  lines = [f"| {result['prompts']} prompts x {n} candidates | colour seen / held-out | shape "
           "seen / held-out |", "|---|---|---|",
           f"| pool: each candidate | {cells(result['pool'])} |",
           f"| pool: any of the first {min(POOL_ANY, n)} | {cells(result['any_of_8'])} |",
           f"| pool: any of {n} | {cells(result['any'])} |"]
  lines += [f"| chosen by {name} | {cells(row)} |" for name, row in result["chosen"].items()]
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="a demo run with its stage-3 LM")
  parser.add_argument("--candidates", type=int, default=16)
  parser.add_argument("--out", default=None, help="also write the result as JSON")
  args = parser.parse_args(argv)
  if args.candidates < 1:
    parser.error("--candidates must be >= 1")
  result = measure(args.workdir, args.candidates)
  print(table(result))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
