"""Print a per-module parameter table for a config without allocating any weights.

  python -m loong_jax.params --config configs/lm/llama.py:7b
  python -m loong_jax.params --config configs/tokenizer/magvit2.py:loong_246m

Every model the config defines is listed (`config.lm`; `config.tokenizer` generator and,
separately, its discriminator). The last line is `params=<N>`: the LM plus the tokenizer's
generator, i.e. what generation needs (discriminators are training-only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from absl import flags

from loong_jax import cli
from loong_jax.llm import transformer
from loong_jax.train import state as state_lib

# Flag holders, created by define_flags() when the module runs as a program.
_CONFIG = _DEPTH = None


def define_flags():
  """Define this entry point's flags (only when run as a program, so that modules that
  define flags of the same names can be imported side by side, e.g. by tests)."""
  global _CONFIG, _DEPTH
  _CONFIG = cli.define_config_flag()
  _DEPTH = flags.DEFINE_integer("depth", 4, "Group parameters by this many leading path keys.")


def lm_abstract_params(lm_config):
  """Shapes of the LM parameters (`jax.eval_shape`: nothing is allocated)."""
  model = transformer.Transformer(transformer.LMConfig.from_config(lm_config))
  tokens = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  return jax.eval_shape(lambda t: model.init(jax.random.key(0), t)["params"], tokens)


def abstract_models(config) -> dict[str, tuple[object, bool]]:
  """`{name: (abstract params, counts towards params=)}` for every model in `config`."""
  models = {}
  if "lm" in config:
    models["lm"] = (lm_abstract_params(config.lm), True)
  if "tokenizer" in config:
    from loong_jax.tokenizer import autoencoder  # the tokenizer package is optional here
    for name, tree in autoencoder.abstract_params(config.tokenizer).items():
      models[f"tokenizer.{name}"] = (tree, name == "generator")
  if not models:
    raise ValueError("config defines no model: expected a `lm` or `tokenizer` block")
  return models


def format_table(name: str, params) -> list[str]:
  rows = state_lib.param_table(params, _DEPTH.value)
  width = max(len(r[0]) for r in rows)
  lines = [f"== {name}", f"{'module':<{width}}  {'shape':<24}  {'params':>15}"]
  for path, shape, count in rows:
    lines.append(f"{path:<{width}}  {str(shape or ''):<24}  {count:>15,}")
  lines.append(f"{'total ' + name:<{width}}  {'':<24}  {state_lib.count_params(params):>15,}")
  return lines


def main(argv):
  del argv
  total = 0
  for name, (params, counted) in abstract_models(_CONFIG.value).items():
    print("\n".join(format_table(name, params)) + "\n")
    if counted:
      total += state_lib.count_params(params)
  print(f"params={total}")


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config"])
  cli.run(main)
