"""Shift invariance of a tokenizer's codes: 1 for a translation-equivariant encoder, lower for
one whose codes depend on the position in the frame."""

import jax
import numpy as np
import pytest

from loong_jax.data import encoders
from loong_jax.eval import shift_invariance


def test_block_pooling_codes_move_with_the_object():
  got = shift_invariance.measure(jax.jit(encoders.pooling_stand_in_encoder(4096)), objects=4)
  assert got["same"] == 1.0
  assert got["pairs"] == 4 * len(shift_invariance.DEFAULT_SHIFTS) and got["blocks"] > 0


def test_codes_that_depend_on_the_position_are_caught():
  pooling = jax.jit(encoders.pooling_stand_in_encoder(4096))

  def positional(video):
    codes = np.asarray(pooling(video))
    column = np.arange(codes.shape[-1])
    return np.where(codes > 0, (codes + column) % 4096, codes)  # object blocks only

  got = shift_invariance.measure(positional, objects=4, shifts=((1, 0),), ring=0)
  vertical = shift_invariance.measure(positional, objects=4, shifts=((0, 1),), ring=0)
  assert got["same"] < 0.5 and vertical["same"] == 1.0  # background corners still match


def test_shifts_that_do_not_fit_are_refused():
  with pytest.raises(ValueError, match="does not fit"):
    shift_invariance.measure(jax.jit(encoders.pooling_stand_in_encoder(4096)), objects=1,
                             shifts=((4, 0),), sizes=("large",))
  with pytest.raises(ValueError, match="multiple"):
    shift_invariance.measure(lambda v: v, resolution=60)
