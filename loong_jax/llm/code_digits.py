"""Digit structure of video codes: FSQ-style ids as digits, for factorised video embeddings.

An FSQ tokenizer's code (and the oracle codec's) is a mixed-radix number: code =
sum_i digit_i * prod(levels[:i]) with digit_i in [0, levels[i]) (channel 0 the lowest digit,
`tokenizer/quantizers.py:FSQ`, `data/encoders.py:pooling_stand_in_encoder`). Two codes that share
digits share meaning (e.g. the channels that carry colour), but a plain embedding table gives each
of the 8,192 ids its own row, learnt only from that id's occurrences. With `lm.video_code_levels`
the LM instead builds a video id's embedding as the sum of one row per digit
(`digit_matrix @ digit_table`) and adds per-digit logits to the output head's logits, so what is
learnt about a digit value is shared by every code that has it (transformer.py).
"""

from __future__ import annotations

import math

import numpy as np


def digits(codes: np.ndarray, levels: tuple[int, ...]) -> np.ndarray:
  """`[...]` codes in [0, prod(levels)) -> `[..., len(levels)]` digits, channel 0 lowest."""
  basis = np.cumprod((1,) + tuple(levels[:-1]))
  return (np.asarray(codes)[..., None] // basis) % np.asarray(levels)


def digit_matrix(levels: tuple[int, ...], video_offset: int, num_rows: int) -> np.ndarray:
  """`[num_rows, sum(levels)]` float32 0/1: row `video_offset + code` has a 1 in each digit's
  column (digit i's columns start at sum(levels[:i])); rows outside the video range are 0."""
  size = math.prod(levels)
  if video_offset < 0 or video_offset + size > num_rows:
    raise ValueError(f"video ids [{video_offset}, {video_offset + size}) exceed the "
                     f"{num_rows}-row vocabulary")
  out = np.zeros((num_rows, sum(levels)), np.float32)
  starts = np.cumsum((0,) + tuple(levels[:-1]))
  rows = video_offset + np.arange(size)
  for i, d in enumerate(digits(np.arange(size), levels).T):
    out[rows, starts[i] + d] = 1.0
  return out
