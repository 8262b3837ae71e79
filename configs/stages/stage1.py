"""Curriculum stage 1: text-to-image, 1 latent frame (see base.py)."""

from configs.stages import base


def get_config(arg=None):
  return base.stage_config(1, arg)
