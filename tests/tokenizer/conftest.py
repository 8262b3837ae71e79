"""Shared tokenizer test configs (tiny shapes; see configs/tokenizer/magvit2.py:tiny)."""

import pytest

from loong_jax import cli

CONFIG_FILE = "configs/tokenizer/magvit2.py"


def load(variant: str):
  return cli.load_config_file(f"{CONFIG_FILE}:{variant}")


@pytest.fixture
def tiny_config():
  return load("tiny")
