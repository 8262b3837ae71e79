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

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from loong_jax.data import synthetic, synthetic_render as render_lib
from loong_jax.eval import probe

ATTRIBUTES = {"color": "color", "shape": "shape", "direction": "motion"}  # report key -> field
SPLITS = ("seen", "heldout")
Reader = Callable[[np.ndarray], probe.Reading]


def matches(video: np.ndarray, attributes: dict, reader: Reader = probe.read,
            keys: Sequence[str] = tuple(ATTRIBUTES)) -> dict[str, bool]:
  """`{key: bool}` for `keys` of `ATTRIBUTES`: whether `reader`'s reading of a uint8
  `[T, H, W, 3]` video equals the prompt's `attributes` (`color`, `shape`, `motion`)."""
  return _compare(reader(video), attributes, keys)


def _compare(reading: probe.Reading, attributes: dict, keys: Sequence[str]) -> dict[str, bool]:
  missing = [ATTRIBUTES[k] for k in keys if ATTRIBUTES[k] not in attributes]
  if missing:
    raise KeyError(f"prompt attributes {attributes} lack the fields {missing}")
  return {key: getattr(reading, ATTRIBUTES[key]) == attributes[ATTRIBUTES[key]] for key in keys}


def faithfulness(items: Iterable[tuple[np.ndarray, dict, str]], reader: Reader = probe.read,
                 keys: Sequence[str] = tuple(ATTRIBUTES)) -> dict:
  """Fractions of videos whose attributes `keys` (default colour, shape, direction) match their
  prompt, per split, as read by `reader` (`probe.read`; `blocks.read` for oracle videos, which
  cannot show shape).

  Args:
    items: `(video uint8 [T, H, W, 3], attributes, split)` with split "seen" or "heldout".
  Returns:
    `{"color": {"seen": f, "heldout": f}, ..., "count": {"seen": n, "heldout": n},
    "num_videos": n, "confusion": {key: {prompted: {read: n}}}, "objects": {...}}`; a split
    without videos is left out (its fractions would be undefined). `confusion` counts what was
    read for each prompted value, both splits together ("none": no object found): it tells a
    model that draws one shape for every prompt from one that draws random ones. `objects`
    (`probe.parts`, both splits): `single_first_frame`, the fraction of videos whose first frame
    shows exactly one object-coloured part (the prompts name one object; a real clip scores 1),
    `single_frames`, the mean fraction of a video's frames that do, and `first_frame_parts`, the
    mean number of parts in the first frame. Classifier-free guidance scatters stray blocks of
    the prompted colour over the background, which only these figures show.
  """
  unknown = sorted(set(keys) - set(ATTRIBUTES))
  if unknown:
    raise ValueError(f"faithfulness: keys {unknown} unknown; known: {list(ATTRIBUTES)}")
  hits = {key: {split: 0 for split in SPLITS} for key in keys}
  count = {split: 0 for split in SPLITS}
  confusion = {key: {} for key in keys}
  part_counts = []  # [T] per video
  for video, attributes, split in items:
    if split not in SPLITS:
      raise ValueError(f"split {split!r} unknown; known: {SPLITS}")
    count[split] += 1
    reading = reader(video)
    part_counts.append(probe.parts(video))
    for key, ok in _compare(reading, attributes, keys).items():
      hits[key][split] += ok
      row = confusion[key].setdefault(str(attributes[ATTRIBUTES[key]]), {})
      read = str(getattr(reading, ATTRIBUTES[key]) or "none")
      row[read] = row.get(read, 0) + 1
  out = {key: {s: hits[key][s] / count[s] for s in SPLITS if count[s]} for key in keys}
  out["count"] = {s: n for s, n in count.items() if n}
  out["num_videos"] = sum(count.values())
  out["confusion"] = confusion
  if part_counts:
    out["objects"] = {
        "single_first_frame": float(np.mean([p[0] == 1 for p in part_counts])),
        "single_frames": float(np.mean([np.mean(p == 1) for p in part_counts])),
        "first_frame_parts": float(np.mean([p[0] for p in part_counts]))}
  return out


def read_through(real: np.ndarray, recon: np.ndarray, reader: Reader = probe.read,
                 keys: Sequence[str] = tuple(ATTRIBUTES)) -> dict[str, float]:
  """Does a clip's reading survive the tokenizer? `{key: fraction}`: of the uint8 clips `real`
  `[N, T, H, W, 3]`, those whose reconstruction `recon` (same shape) reads (`reader`) as the
  probe reads the real clip, per attribute `keys`, and `"clips"`. Near 1 = what the prompt
  names reaches the LM's tokens and back, so a miss in generated videos is the LM's."""
  if real.shape != recon.shape or real.ndim != 5 or not len(real):
    raise ValueError(f"read_through: real {real.shape} and recon {recon.shape} must be the same "
                     "non-empty [N, T, H, W, 3]")
  hits = {key: 0 for key in keys}
  for clip, rebuilt in zip(real, recon):
    want, got = probe.read(clip), reader(rebuilt)
    for key in keys:
      hits[key] += getattr(want, ATTRIBUTES[key]) == getattr(got, ATTRIBUTES[key])
  out = {key: n / len(real) for key, n in hits.items()}
  out["clips"] = len(real)
  return out


def judged_motions(motions: Sequence[str]) -> tuple[str, ...]:
  """The motions of `motions` that a short clip's direction is judged on: `still` and the
  straight directions (bouncing, growing and shrinking at the slow speed of long clips do not
  show within a short clip)."""
  return tuple(m for m in motions if m == "still" or m in synthetic.DIRECTIONS)


def prompt_set(count: int, motions: Sequence[str], background: str = "black",
               size: str = "medium", seed: int = 0) -> list[dict]:
  """`count` single-object prompts: the first half held-out colour-shape pairs
  (`synthetic.HELDOUT_PAIRS`, in turn), the rest seen pairs (a seeded spread over the training
  pairs), the motions `judged_motions(motions)` in turn over both halves; each worded by the
  dataset's own caption template (`synthetic.caption`, a medium object over a plain
  `background`).

  Returns:
    `[{"prompt", "color", "shape", "motion", "split"}]`.
  """
  judged = judged_motions(motions)
  if not judged:
    raise ValueError(f"faithfulness prompts: none of the motions {list(motions)} is still or a "
                     "direction")
  rng = np.random.default_rng(seed)
  held = list(synthetic.HELDOUT_PAIRS)
  seen = [(c, s) for c in render_lib.COLORS for s in render_lib.SHAPES
          if (c, s) not in set(held)]
  seen = [seen[i] for i in rng.permutation(len(seen))]
  n_held = (count + 1) // 2
  out = []
  for i in range(count):
    split, k = ("heldout", i) if i < n_held else ("seen", i - n_held)
    pairs = held if split == "heldout" else seen
    color, shape = pairs[k % len(pairs)]
    # Shift the motion every round of pairs, so a pair meets different motions.
    motion = judged[(k + k // len(held)) % len(judged)]
    obj = {"size": size, "color": color, "shape": shape, "motion": motion}
    text = synthetic.caption([obj], background, "plain", True, rng)
    out.append({"prompt": text, "color": color, "shape": shape, "motion": motion,
                "split": split})
  return out
