"""Attribute binding in drawn first frames: which words of the caption decide what the LM draws?

A video's first latent frame is drawn from the caption alone, and the colour and shape it shows
decide the whole video (later frames carry it on). For held-out colour-shape pairs an LM may know
each word and still draw the wrong colour: it binds the two words into one of the pairs it was
trained on. This measures it by drawing `samples` first frames per prompt from three captions:

  * `full`: the prompt itself;
  * `without_shape`: the prompt with its shape word left out (only the colour word names the
    object);
  * `without_color`: with its colour word left out;

and reading each frame (`probe.read`, or the blocks reader for oracle codes). Each frame counts,
not the best of them: these are the rates of the LM's own distribution. An LM that binds shows
held-out colour far higher `without_shape` than `full` (the shape word pulls the colour to a
trained pair); one that composes shows them alike. Measured on the default demo (README,
"Composed first frames"): held-out colour 0.51 full, 0.73 without the shape word.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from loong_jax.eval import probe

VARIANTS = {"full": (), "without_shape": ("shape",), "without_color": ("color",)}
SPLITS = ("seen", "heldout")
KEYS = ("color", "shape", "none")


def without_words(prompt: dict, fields: Sequence[str]) -> str:
  """`prompt["prompt"]` with the words of its attributes `fields` (e.g. "color": its colour
  word, surrounded by spaces) left out, each once."""
  text = prompt["prompt"]
  for field in fields:
    word = f" {prompt[field]} "
    if word not in text:
      raise ValueError(f"prompt {prompt['prompt']!r} does not contain its {field} "
                       f"{prompt[field]!r}")
    text = text.replace(word, " ", 1)
  return text


def measure(draw: Callable[[list[str]], np.ndarray], prompts: Sequence[dict], samples: int,
            reader: Callable[[np.ndarray], probe.Reading] = probe.read,
            variants: Sequence[str] = tuple(VARIANTS)) -> dict:
  """Rates of the prompted colour and shape (and of frames with no object) in drawn first frames.

  Args:
    draw: texts (R) -> uint8 first frames `[R, 1, H, W, 3]`, one independent draw per text.
    prompts: `{"prompt", "color", "shape", "split"}` each (split "seen" or "heldout").
    samples: frames drawn per prompt and caption variant.
    reader: reads a uint8 `[T, H, W, 3]` video.
    variants: keys of `VARIANTS`.
  Returns:
    `{variant: {"color" | "shape" | "none": {split: fraction}}, "samples": samples}`, each
    fraction over every drawn frame of the split's prompts.
  """
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown or samples < 1 or not prompts:
    raise ValueError(f"binding: variants {unknown} unknown (known {list(VARIANTS)}), or "
                     f"samples={samples} < 1, or no prompts")
  bad = {p.get("split") for p in prompts} - set(SPLITS)
  if bad:
    raise ValueError(f"binding: splits {sorted(bad)} unknown; known: {SPLITS}")
  out = {"samples": samples}
  for variant in variants:
    texts = [without_words(p, VARIANTS[variant]) for p in prompts for _ in range(samples)]
    frames = np.asarray(draw(texts))
    if frames.shape[:2] != (len(texts), 1):
      raise ValueError(f"binding: draw returned {frames.shape}, expected [{len(texts)}, 1, ...]")
    hits = {key: {s: 0 for s in SPLITS} for key in KEYS}
    count = {s: 0 for s in SPLITS}
    for k, frame in enumerate(frames):
      prompt = prompts[k // samples]
      reading, split = reader(frame), prompt["split"]
      count[split] += 1
      hits["color"][split] += reading.color == prompt["color"]
      hits["shape"][split] += reading.shape == prompt["shape"]
      hits["none"][split] += reading.color is None
    out[variant] = {key: {s: hits[key][s] / count[s] for s in SPLITS if count[s]}
                    for key in KEYS}
  return out
