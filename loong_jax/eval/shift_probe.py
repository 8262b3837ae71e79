"""Can an LM config learn a *prompted* one-block shift? A controlled learnability check.

`python -m loong_jax.eval.shift_probe [--steps 300] [--variants plain,copy,copy_summary]`

The demo's LM draws the prompted colour but not the prompted direction (issue 13). This check
takes the data question away: it trains a fresh LM, from scratch, on synthetic token clips in
which the direction is exactly one of five words of the caption and nothing else. Each clip is
`frames` latent frames of `width` x `width` codes: background code 0 and one `obj` x `obj`
square of code 1 + colour that moves one block per latent frame (or stays still) as the caption's
motion word says; the caption is `[filler, filler, colour, filler x3, motion, filler x3]` (text
ids: colours 0-7, motions 8-12, fillers 13-31).

It reports, on 64 fixed held-out clips, every `eval_every` steps:
  * `changed_loss`: the mean loss on the video targets of latent frame 1 whose code differs from
    the one at the same place in frame 0 (the blocks the move changes);
  * `motion_gap`: the same loss with the caption's motion word swapped for another minus with the
    true word (nats; > 0 = the LM reads the motion word).

Teacher-forced, only the *first* changed block of frame 1 needs the word: the raster order gives
the others away (frame 1's own earlier blocks show which way the square went). So an LM can drive
`changed_loss` down without reading the word at all, and that is what the plain demo LM does.
Measured with this module's defaults on the 2-core CPU (`--steps 300`): after 300 steps the
previous-frame-input LM has `changed_loss` 1.07 nats and `motion_gap` 0.003; with the copy head
(`prev_frame_radius=1, copy_head=True`) 0.14 and 3.83 nats; with `text_summary_input` as well
0.29 and 5.13 (3.42 already at step 200). The same held on the demo's own
oracle tokens (`oracle_frames=last`, 64 held-out clips of the run; this check's first version,
pointed at the run's token shards): the copy head reached 6.6 nats after 300 clip steps from
scratch; after 1,000 stage-1 image steps and 300 steps of 60% clips, 0.57 nats, and 5.8 with
`text_summary_input` (README, "Motion, fifth round").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
import optax

from loong_jax import tokens
from loong_jax.data import loss_weights
from loong_jax.llm import transformer
from loong_jax.train import lm_step
from loong_jax.train import state as state_lib

NUM_COLORS = 8
MOTIONS = {"still": (0, 0), "left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
MOTION_IDS = {name: NUM_COLORS + i for i, name in enumerate(MOTIONS)}
TEXT_SIZE = 32          # colours 0-7, motions 8-12, fillers 13-31
MOTION_SLOT = 6         # caption position of the motion word

# LM options compared by default (`configs/lm/llama.py` field overrides).
VARIANTS = {
    "plain": dict(prev_frame_input=False),
    "prev_frame": dict(prev_frame_input=True),
    "copy": dict(prev_frame_input=True, prev_frame_radius=1, copy_head=True),
    "copy_summary": dict(prev_frame_input=True, prev_frame_radius=1, copy_head=True,
                         text_summary_input=True),
}


@dataclasses.dataclass(frozen=True)
class World:
  """The synthetic clips: `frames` latent frames of `width` x `width` codes, an `obj`-block
  square."""
  frames: int = 5
  width: int = 8
  obj: int = 2

  @property
  def vocab(self) -> tokens.Vocab:
    return tokens.Vocab(text_size=TEXT_SIZE, video_size=1 + NUM_COLORS)


def clip(rng: np.random.Generator, world: World, motion: str | None = None):
  """`(caption ids [10], codes [F, W, W], motion)`; the square stays inside every frame."""
  motion = motion or list(MOTIONS)[rng.integers(len(MOTIONS))]
  dy, dx = MOTIONS[motion]
  span, free = world.frames - 1, world.width - world.obj
  y = rng.integers(max(0, -dy * span), free - max(0, dy * span) + 1)
  x = rng.integers(max(0, -dx * span), free - max(0, dx * span) + 1)
  color = int(rng.integers(NUM_COLORS))
  codes = np.zeros((world.frames, world.width, world.width), np.int32)
  for f in range(world.frames):
    codes[f, y + dy * f: y + dy * f + world.obj, x + dx * f: x + dx * f + world.obj] = 1 + color
  caption = rng.integers(NUM_COLORS + len(MOTIONS), TEXT_SIZE, 10)
  caption[2], caption[MOTION_SLOT] = color, MOTION_IDS[motion]
  return caption, codes, motion


def make_batch(sequences: Sequence[np.ndarray], world: World, lm: transformer.LMConfig) -> dict:
  """The train step's batch (`train/lm_step.py`) of equal-length sequences."""
  seqs = np.stack(sequences)
  inputs, targets = seqs[:, :-1], seqs[:, 1:]
  vocab = world.vocab
  batch = dict(inputs=inputs, targets=targets,
               weights=loss_weights.frame_loss_weights(targets, vocab, "uniform"))
  if lm.prev_frame_input:
    batch["input_prev"] = tokens.previous_frame_inputs(inputs, vocab, world.width,
                                                       lm.prev_frame_radius)
  return batch


def lm_config(overrides: dict, world: World) -> transformer.LMConfig:
  """The demo's LM shape (`configs/demo_cpu.py`) on the world's vocabulary, with `overrides`."""
  from configs.lm import llama  # pylint: disable=import-outside-toplevel
  vocab = world.vocab
  cfg = llama.lm_config("tiny", ml_collections.ConfigDict(dict(text_size=vocab.text_size,
                                                               video_size=vocab.video_size)))
  cfg.update(dict(num_layers=3, d_model=128, head_dim=32, mlp_dim=256), **overrides)
  return transformer.LMConfig.from_config(cfg)


def _held_out(world: World, lm: transformer.LMConfig, count: int = 64):
  """True-caption and swapped-caption batches of `count` clips, and frame 1's changed targets."""
  rng = np.random.default_rng(10_000)
  true, swapped = [], []
  for _ in range(count):
    caption, codes, motion = clip(rng, world)
    true.append(tokens.build_sequence(caption, codes, world.vocab))
    others = [m for m in MOTIONS if m != motion]
    caption = caption.copy()
    caption[MOTION_SLOT] = MOTION_IDS[others[rng.integers(len(others))]]
    swapped.append(tokens.build_sequence(caption, codes, world.vocab))
  true, swapped = make_batch(true, world, lm), make_batch(swapped, world, lm)
  frame = loss_weights.target_frame_index(true["targets"], world.vocab)
  changed = (frame == 1) & loss_weights.changed_targets(true["inputs"], true["targets"],
                                                        world.vocab)
  return true, swapped, changed


def run(overrides: dict, *, world: World = World(), steps: int = 300, batch_size: int = 16,
        learning_rate: float = 3e-3, eval_every: int = 100, seed: int = 0) -> list[dict]:
  """Train a fresh LM with `overrides` on the world's clips; `[{step, changed_loss,
  motion_gap}]` every `eval_every` steps (step 0 included)."""
  lm = lm_config(overrides, world)
  model = transformer.Transformer(lm)
  rng = np.random.default_rng(seed)

  def train_batch():
    return make_batch([tokens.build_sequence(*clip(rng, world)[:2], world.vocab)
                       for _ in range(batch_size)], world, lm)

  first = train_batch()
  state = state_lib.TrainState.create(
      apply_fn=model.apply, params=model.init(jax.random.key(seed), first["inputs"])["params"],
      tx=optax.adamw(optax.warmup_constant_schedule(0.0, learning_rate, 20), weight_decay=0.1))
  step = jax.jit(lm_step.train_step)

  @jax.jit
  def ce(params, batch):
    logits = model.apply({"params": params}, batch["inputs"], prev_ids=batch.get("input_prev"))
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])

  true, swapped, changed = _held_out(world, lm)
  curve = []
  for i in range(steps + 1):
    if i % eval_every == 0 or i == steps:
      ce_true = np.asarray(ce(state.params, true))
      ce_swapped = np.asarray(ce(state.params, swapped))
      curve.append(dict(step=i, changed_loss=float(ce_true[changed].mean()),
                        motion_gap=float((ce_swapped - ce_true)[changed].mean())))
    if i < steps:
      state, _ = step(state, first if i == 0 else train_batch())
  return curve


def table(results: dict[str, list[dict]]) -> str:
  """Markdown table: one row per variant and evaluation step."""
  rows = ["| variant | step | frame-1 changed-block loss | motion gap (nats) |",
          "|---|---|---|---|"]
  for name, curve in results.items():
    rows += [f"| {name} | {r['step']} | {r['changed_loss']:.3f} | {r['motion_gap']:.3f} |"
             for r in curve]
  return "\n".join(rows)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  results = {}
  for name in f.variants:
    if name not in VARIANTS:
      raise ValueError(f"--variants: unknown {name!r}; known: {sorted(VARIANTS)}")
    results[name] = run(VARIANTS[name], steps=f.steps, batch_size=f.batch_size,
                        learning_rate=f.learning_rate, eval_every=f.eval_every, seed=f.seed)
    print(json.dumps({name: results[name]}), flush=True)
  print(table(results))


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=ungrouped-imports
  flags.DEFINE_list("variants", list(VARIANTS), f"LM options to compare: {sorted(VARIANTS)}")
  flags.DEFINE_integer("steps", 300, "Training steps per variant.")
  flags.DEFINE_integer("batch_size", 16, "Clips per step.")
  flags.DEFINE_float("learning_rate", 3e-3, "AdamW rate (20 warmup steps, then constant).")
  flags.DEFINE_integer("eval_every", 100, "Steps between held-out measurements.")
  flags.DEFINE_integer("seed", 0, "Initialisation and data seed.")
  app.run(main)
