"""Curriculum stage 2: images + 17-frame clips (see base.py)."""

from configs.stages import base


def get_config(arg=None):
  return base.stage_config(2, arg)
