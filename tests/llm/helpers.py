"""Small LM configs for tests."""

import ml_collections

from configs.lm import llama
from loong_jax.llm import transformer


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """configs/lm/llama.py:tiny with a 1k-text vocabulary (fast) and field overrides."""
  config = llama.get_config("tiny")
  config.vocab.text_size = 1_000
  config.vocab.video_size = 256
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def tiny_model(**lm_overrides):
  config = tiny_config(**{f"lm.{k}": v for k, v in lm_overrides.items()})
  return transformer.Transformer(transformer.LMConfig.from_config(config.lm)), config
