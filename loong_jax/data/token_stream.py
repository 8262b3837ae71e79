"""A built-in stream of already-tokenized "videos" for LM training without a video tokenizer.

Each example is a unified sequence (`tokens.build_sequence`) whose text names a pattern and a
motion, and whose latent frames are that pattern's codes shifted one step per frame along the
motion. The first frame is predictable only from the text, later frames from the previous frame:
the two regimes Loong's loss re-weighting is about. Deterministic in (seed, index).
"""

from __future__ import annotations

import numpy as np

from loong_jax import tokens

MOTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (rows, cols) shift per latent frame


def example(index: int, seed: int, cfg, vocab: tokens.Vocab) -> np.ndarray:
  """Sequence `[sequence_length(text_len, latent_frames, frame_size**2)]` int32 for `index`."""
  rng = np.random.default_rng([seed, index])
  pattern = int(rng.integers(cfg.num_patterns))
  motion = int(rng.integers(len(MOTIONS)))
  # Pattern codes come from a fixed table, so the same pattern id always draws the same frame.
  table = np.random.default_rng([seed, 1 << 30, pattern]).integers(
      vocab.video_size, size=(cfg.frame_size, cfg.frame_size))
  frames = np.stack([np.roll(table, (f * MOTIONS[motion][0], f * MOTIONS[motion][1]), (0, 1))
                     for f in range(cfg.latent_frames)])
  # Text: a pattern word, a motion word and filler, all from the text range.
  filler = rng.integers(cfg.num_patterns + len(MOTIONS), vocab.text_size,
                        size=cfg.text_len - 2)
  text = np.concatenate([[pattern, cfg.num_patterns + motion], filler])
  return tokens.build_sequence(text, frames, vocab)


def batches(cfg, vocab: tokens.Vocab, batch_size: int, seq_len: int, seed: int, start: int = 0):
  """Infinite iterator of LM batches `{inputs, targets, weights}`, each `[batch_size, seq_len]`.

  Sequences are right-padded with `<pad>` (weight 0). Only video ids and frame markers are
  targets: text is conditioning (SPEC §4, text weight 0). `start` is the first batch index, so a
  resumed run continues the stream exactly.
  """
  step = start
  while True:
    seqs = [example(step * batch_size + i, seed, cfg, vocab) for i in range(batch_size)]
    need = max(len(s) for s in seqs)
    if need > seq_len + 1:
      raise ValueError(f"config.train.seq_len={seq_len} cannot hold a token-stream example of "
                       f"{need} tokens (config.data: latent_frames, frame_size, text_len)")
    full = np.full((batch_size, seq_len + 1), vocab.pad, np.int32)
    for i, s in enumerate(seqs):
      full[i, : len(s)] = s
    targets = full[:, 1:]
    in_video = tokens.frame_index(targets, vocab) >= 0
    weights = (in_video | (targets == vocab.eov)).astype(np.float32)
    yield {"inputs": full[:, :-1], "targets": targets, "weights": weights}
    step += 1
