"""A built-in stream of already-tokenized "videos" for LM training without a video tokenizer.

Each example is a unified sequence (`tokens.build_sequence`) whose text names a pattern and a
motion, and whose latent frames are that pattern's codes shifted one step per frame along the
motion. The first frame is predictable only from the text, later frames from the previous frame:
the two regimes Loong's loss re-weighting is about. Deterministic in (seed, index).
"""

from __future__ import annotations

import grain
import numpy as np

from loong_jax import tokens

MOTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (rows, cols) shift per latent frame


def max_sequence_length(cfg) -> int:
  """The longest example `cfg` can produce (for the start-up check of `train.seq_len`)."""
  longest = max(frames for frames, _ in cfg.clip_mix)
  return tokens.sequence_length(cfg.text_len, longest, cfg.frame_width**2)


def example(index: int, seed: int, cfg, vocab: tokens.Vocab) -> np.ndarray:
  """One unified sequence, int32, for `index`.

  Its number of latent frames is drawn from `cfg.clip_mix`, pairs `(latent_frames, weight)`:
  1 = an image, 5 = a 17-frame clip, 17 = a 65-frame clip.
  """
  rng = np.random.default_rng([seed, index])
  choices, weights = zip(*cfg.clip_mix)
  num_frames = int(rng.choice(choices, p=np.asarray(weights) / np.sum(weights)))
  pattern = int(rng.integers(cfg.num_patterns))
  motion = int(rng.integers(len(MOTIONS)))
  # Pattern codes come from a fixed table, so the same pattern id always draws the same frame.
  table = np.random.default_rng([seed, 1 << 30, pattern]).integers(
      vocab.video_size, size=(cfg.frame_width, cfg.frame_width))
  frames = np.stack([np.roll(table, (f * MOTIONS[motion][0], f * MOTIONS[motion][1]), (0, 1))
                     for f in range(num_frames)])
  # Text: a pattern word, a motion word and filler, all from the text range.
  filler = rng.integers(cfg.num_patterns + len(MOTIONS), vocab.text_size,
                        size=cfg.text_len - 2)
  text = np.concatenate([[pattern, cfg.num_patterns + motion], filler])
  return tokens.build_sequence(text, frames, vocab)


# Enough batches for any run; grain's range dataset is lazy, so its length costs nothing.
_NUM_BATCHES = 2**40


def _batch(global_index: int, cfg, vocab: tokens.Vocab, batch_size: int, seq_len: int,
           seed: int, rows: slice) -> dict[str, np.ndarray]:
  """Rows `rows` of global batch `global_index` as `[R, L]` arrays (see `dataset`)."""
  seqs = [example(global_index * batch_size + i, seed, cfg, vocab)
          for i in range(batch_size)[rows]]
  need = max(len(s) for s in seqs)
  if need > seq_len + 1:
    raise ValueError(f"config.train.seq_len={seq_len} cannot hold a token-stream example of "
                     f"{need} tokens (config.data: clip_mix, frame_width, text_len)")
  full = np.full((len(seqs), seq_len + 1), vocab.pad, np.int32)
  for i, s in enumerate(seqs):
    full[i, : len(s)] = s
  targets = full[:, 1:]
  frame = tokens.frame_index(targets, vocab)
  weights = ((frame >= 0) | (targets == vocab.eov)).astype(np.float32)
  if cfg.loss_weighting == "first_frame":
    weights = np.where(frame == 0, cfg.first_frame_weight * weights, weights)
  return {"inputs": full[:, :-1], "targets": targets, "weights": weights, "frame": frame}


def dataset(cfg, vocab: tokens.Vocab, batch_size: int, seq_len: int, seed: int,
            process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """Batches of LM training data, dicts of `[B / P, seq_len]` arrays: `inputs`, `targets` (next
  token), `weights` and `frame` (latent frame of each target, -1 outside frames), the format of
  `data/pipeline.py`.

  Element b is process `process_index`'s rows of global batch b: every host builds only its own
  rows, and the hosts' rows stacked in process order are the global batch, so a run on P hosts
  sees exactly the batches of a run on one. Sequences are right-padded with `<pad>` (weight 0);
  only video ids, frame markers and `<eov>` are targets: text is conditioning (SPEC §4, text
  weight 0). `cfg.loss_weighting` is `uniform` or `first_frame` (tokens of latent frame 0 weighted
  `cfg.first_frame_weight`). Iterate with `iter(ds.to_iter_dataset())` for a checkpointable
  position.
  """
  if cfg.loss_weighting not in ("uniform", "first_frame"):
    raise ValueError(f"config.data.loss_weighting={cfg.loss_weighting!r}: the token stream "
                     "supports 'uniform' and 'first_frame'")
  if max_sequence_length(cfg) > seq_len + 1:
    raise ValueError(f"config.train.seq_len={seq_len} cannot hold this stage's longest clip: "
                     f"{max_sequence_length(cfg)} tokens (config.data.clip_mix={cfg.clip_mix})")
  if batch_size % process_count:
    raise ValueError(f"config.train.batch_size={batch_size} must be divisible by the "
                     f"{process_count} processes")
  per_host = batch_size // process_count
  rows = slice(process_index * per_host, (process_index + 1) * per_host)
  return grain.MapDataset.range(_NUM_BATCHES).map(
      lambda b: _batch(b, cfg, vocab, batch_size, seq_len, seed, rows))
