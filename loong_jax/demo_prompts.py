"""The demo's prompts beyond its long videos: the faithfulness clips' prompt set, and the parts of
a prompt that composed first frames condition on (`generate.first_frame_without_*`).

Prompts are the dicts of `configs/demo_cpu.py:prompt_entries` (`prompt`, `color`, `shape`,
`motion`, `split`).
"""

from __future__ import annotations


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
