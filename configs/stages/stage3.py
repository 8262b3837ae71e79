"""Curriculum stage 3: images + clips up to 65 frames (see base.py)."""

from configs.stages import base


def get_config(arg=None):
  return base.stage_config(3, arg)
