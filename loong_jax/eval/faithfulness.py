"""Text-to-video faithfulness on the built-in dataset: do the generated videos show what their
prompts name?

Each generated video is read by the probe (`loong_jax.eval.probe.read`) and compared with its
prompt's ground truth, the attributes of the object the prompt names first (`color`, `shape`,
`motion`; the probe reads one object, so prompts should name one). Fractions are kept apart for
seen colour-shape combinations and for those held out from training (`synthetic.HELDOUT_PAIRS`).
"direction" is the motion label (`synthetic.MOTIONS`: still, eight directions, bouncing, growing,
shrinking).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from loong_jax.eval import probe

ATTRIBUTES = {"color": "color", "shape": "shape", "direction": "motion"}  # report key -> field
SPLITS = ("seen", "heldout")


def matches(video: np.ndarray, attributes: dict) -> dict[str, bool]:
  """`{"color", "shape", "direction"}` -> whether the probe's reading of a uint8
  `[T, H, W, 3]` video equals the prompt's `attributes` (`color`, `shape`, `motion`)."""
  missing = [f for f in ATTRIBUTES.values() if f not in attributes]
  if missing:
    raise KeyError(f"prompt attributes {attributes} lack the fields {missing}")
  reading = probe.read(video)
  return {key: getattr(reading, field) == attributes[field]
          for key, field in ATTRIBUTES.items()}


def faithfulness(items: Iterable[tuple[np.ndarray, dict, str]]) -> dict:
  """Fractions of videos whose colour / shape / direction match their prompt, per split.

  Args:
    items: `(video uint8 [T, H, W, 3], attributes, split)` with split "seen" or "heldout".
  Returns:
    `{"color": {"seen": f, "heldout": f}, "shape": ..., "direction": ..., "count": {"seen": n,
    "heldout": n}}`; a split without videos is left out (its fractions would be undefined).
  """
  hits = {key: {split: 0 for split in SPLITS} for key in ATTRIBUTES}
  count = {split: 0 for split in SPLITS}
  for video, attributes, split in items:
    if split not in SPLITS:
      raise ValueError(f"split {split!r} unknown; known: {SPLITS}")
    count[split] += 1
    for key, ok in matches(video, attributes).items():
      hits[key][split] += ok
  out = {key: {s: hits[key][s] / count[s] for s in SPLITS if count[s]} for key in ATTRIBUTES}
  out["count"] = {s: n for s, n in count.items() if n}
  return out
