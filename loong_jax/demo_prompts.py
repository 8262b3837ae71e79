"""The demo's prompts beyond its long videos: the faithfulness clips' prompt set, the parts of a
prompt that composed first frames condition on (`generate.first_frame_without_*`), and the
alternative captions that re-rank first frames (`generate.first_frame_contrast_*`).

Prompts are the dicts of `configs/demo_cpu.py:prompt_entries` (`prompt`, `color`, `shape`,
`motion`, `split`).
"""

from __future__ import annotations

import os


def faithfulness_prompts(config) -> list[dict]:
  """`config.generate.faithfulness_prompts` short-clip prompts (`faithfulness.prompt_set`): half
  held-out colour-shape pairs, spread over the still and straight motions of the demo's world,
  a medium object over black (as the long-video prompts) where the world has them."""
  from loong_jax import demo_steps  # noqa: PLC0415 -- demo_steps imports this module
  from loong_jax.eval import faithfulness  # noqa: PLC0415 -- the evaluation stack, when needed

  world = demo_steps.synthetic_source(config, (17,), 1).config
  background = "black" if "black" in world.background_colors else world.background_colors[0]
  size = "medium" if "medium" in world.sizes else world.sizes[0]
  return faithfulness.prompt_set(config.generate.faithfulness_prompts, world.motions, background,
                                 size, seed=config.generate.seed)


COMPOSED_PARTS = {"first_frame_without_shape": ("shape",),
                  "first_frame_without_color": ("color",),
                  "first_frame_without_both": ("color", "shape")}


def first_frame_branches(config, prompts: list[dict]) -> list[tuple[float, list[str]]]:
  """Composed conditioning of the first latent frame (`generate.first_frame_without_*`, the
  weights of the caption without its shape word, its colour word, or both; `decode.Decoder`):
  `[(weight, one text per prompt)]`, the non-zero weights only."""
  from loong_jax.eval.binding import without_words  # noqa: PLC0415 -- see faithfulness_prompts

  g = config.generate
  return [(float(g[key]), [without_words(p, fields) for p in prompts])
          for key, fields in COMPOSED_PARTS.items() if g.get(key, 0.0)]


# generate.first_frame_contrast_<field> -> the attribute whose word the alternatives change.
CONTRAST_FIELDS = {"first_frame_contrast_color": "color", "first_frame_contrast_shape": "shape"}


def alternatives(prompt: dict, field: str) -> list[str]:
  """`prompt["prompt"]` with its `field` word ("color" or "shape") replaced by each other value
  of the built-in world (`synthetic_render.COLORS` / `SHAPES`), once each."""
  from loong_jax.data import synthetic_render  # noqa: PLC0415 -- see faithfulness_prompts

  values = {"color": list(synthetic_render.COLORS), "shape": list(synthetic_render.SHAPES)}
  if field not in values:
    raise ValueError(f"first-frame contrasts: unknown field {field!r}; known: {list(values)}")
  word = f" {prompt[field]} "
  if word not in prompt["prompt"]:
    raise ValueError(f"prompt {prompt['prompt']!r} does not contain its {field} "
                     f"{prompt[field]!r}")
  return [prompt["prompt"].replace(word, f" {v} ", 1) for v in values[field]
          if v != prompt[field]]


def first_frame_conditioning(config, prompts: list[dict]) -> dict:
  """`generate.generate_videos`' first-frame keywords for `prompts`: `first_frame_branches`
  (composed conditioning) and `first_frame_contrasts` (`[(weight, per prompt its alternative
  captions)]`, the non-zero `generate.first_frame_contrast_*` weights)."""
  g = config.generate
  contrasts = [(float(g[key]), [alternatives(p, field) for p in prompts])
               for key, field in CONTRAST_FIELDS.items() if g.get(key, 0.0)]
  return dict(first_frame_branches=first_frame_branches(config, prompts),
              first_frame_contrasts=contrasts)


def color_word_ids(run: str) -> tuple[int, ...]:
  """The text ids of the world's colour words (`synthetic_render.COLORS`) under the run's text
  model (RUN/text.model; a word model gives each one id), for `lm.caption_contrast`."""
  from loong_jax import generate as generate_lib  # noqa: PLC0415 -- see faithfulness_prompts
  from loong_jax.data import synthetic_render  # noqa: PLC0415

  encode = generate_lib.load_text_encoder(os.path.join(run, "text.model"))
  out = []
  for color in synthetic_render.COLORS:
    ids = [int(i) for i in encode(color)]
    if len(ids) != 1:
      raise ValueError(f"lm.caption_contrast: the text model splits {color!r} into {ids}; it "
                       "needs one id per colour word (text.model_type='word')")
    out.append(ids[0])
  if len(set(out)) != len(out):
    raise ValueError(f"lm.caption_contrast: colour words share ids {out}")
  return tuple(out)
