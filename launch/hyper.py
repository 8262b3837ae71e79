"""The `h` that a config file's `get_hyper(h)` builds its sweep with (big_vision style).

A sweep is a list of points; a point is a dict `{'config.a.b': value, ...}`::

  def get_hyper(h):
    return h.product([
        h.sweep("config.optim.learning_rate", [1e-3, 3e-3]),
        h.sweep("config.data.loss_weighting", ["uniform", "first_frame"]),
    ])
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

Point = dict[str, Any]


def sweep(key: str, values: Iterable[Any]) -> list[Point]:
  """One point per value of `key`."""
  return [{key: v} for v in values]


def fixed(key: str, value: Any) -> list[Point]:
  """A single point setting `key` (to combine with `product` / `zipit`)."""
  return [{key: value}]


def _merge(parts: Sequence[Point]) -> Point:
  out: Point = {}
  for part in parts:
    for key, value in part.items():
      if key in out:
        raise ValueError(f"get_hyper: {key} is set by two combined sweeps")
      out[key] = value
  return out


def product(sweeps: Sequence[list[Point]]) -> list[Point]:
  """Every combination of the given sweeps' points (the last sweep varies fastest)."""
  return [_merge(parts) for parts in itertools.product(*sweeps)]


def zipit(sweeps: Sequence[list[Point]]) -> list[Point]:
  """The i-th points of the given sweeps together; they must have the same length."""
  lengths = sorted({len(s) for s in sweeps})
  if len(lengths) > 1:
    raise ValueError(f"get_hyper: zipit needs sweeps of one length, got lengths {lengths}")
  return [_merge(parts) for parts in zip(*sweeps)]
