"""SPEC §4 loss re-weighting, per option, against hand-written expectations."""

import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.data import loss_weights

VOCAB = tokens.Vocab(text_size=100, video_size=50)
N = 3  # video tokens per latent frame


def _targets(num_text, num_frames, pad=4):
  """`sequence[1:]` padded, plus the frame of every target (-1 = not a video target)."""
  seq = tokens.build_sequence(np.arange(num_text) + 1, np.zeros((num_frames, N), int), VOCAB)
  targets = np.concatenate([seq[1:], np.full(pad, VOCAB.pad)])
  frame = np.full(len(targets), -1)
  first = num_text + 1  # targets: text..., <bov>, then <boi> of frame 0
  for f in range(num_frames):  # <boi> N ids <eoi>
    frame[first + f * (N + 2) : first + (f + 1) * (N + 2)] = f
  frame[first + num_frames * (N + 2)] = num_frames - 1  # <eov> counts with the last frame
  return targets, frame


def _expected(targets, frame, scheme, w0=5.0, text_weight=0.0):
  num_frames = frame.max() + 1
  per_frame = {
      "uniform": np.ones(num_frames),
      "first_frame": np.where(np.arange(num_frames) == 0, w0, 1.0),
      "linear_decay": np.linspace(w0, 1.0, num_frames),
      "per_frame_mean": np.full(num_frames, 1.0 / num_frames),
  }[scheme]
  out = np.where(frame >= 0, per_frame[np.maximum(frame, 0)], 0.0)
  return np.where(VOCAB.is_text(targets), text_weight, out)


@pytest.mark.parametrize("scheme", loss_weights.SCHEMES)
@pytest.mark.parametrize("num_frames", [1, 2, 5])
def test_matches_spec(scheme, num_frames):
  targets, frame = _targets(4, num_frames)
  got = loss_weights.frame_loss_weights(targets, VOCAB, scheme, first_frame_weight=5.0,
                                        text_weight=0.25)
  np.testing.assert_allclose(got, _expected(targets, frame, scheme, 5.0, 0.25), rtol=1e-6)
  assert got.dtype == np.float32


def test_what_carries_loss():
  targets, _ = _targets(2, 3)
  got = loss_weights.frame_loss_weights(targets, VOCAB, "uniform", text_weight=0.5)
  zero = np.isin(targets, [VOCAB.bov, VOCAB.pad])
  assert np.all(got[zero] == 0) and np.all(got[~zero] > 0)
  assert got.sum() == 3 * (N + 2) + 1 + 2 * 0.5  # frames, <eov>, text


def test_per_frame_mean_equalises_rows():
  """An image row and a 5-frame row carry the same total weight (one frame's worth + <eov>)."""
  image, _ = _targets(2, 1, pad=4 + 4 * (N + 2))
  clip, _ = _targets(2, 5)
  got = loss_weights.frame_loss_weights(np.stack([image, clip]), VOCAB, "per_frame_mean")
  np.testing.assert_allclose(got.sum(-1), [N + 3, N + 2 + 1 / 5])


def test_batched_and_jax_agree():
  rows = [_targets(3, f, pad=4 + (5 - f) * (N + 2))[0] for f in (1, 3, 5)]
  batch = np.stack(rows)
  for scheme in loss_weights.SCHEMES:
    np_w = loss_weights.frame_loss_weights(batch, VOCAB, scheme)
    jnp_w = loss_weights.frame_loss_weights(jnp.asarray(batch), VOCAB, scheme, xp=jnp)
    np.testing.assert_allclose(np.asarray(jnp_w), np_w, rtol=1e-6)
    for row, w in zip(rows, np_w):
      np.testing.assert_allclose(loss_weights.frame_loss_weights(row, VOCAB, scheme), w)


def test_unknown_scheme():
  with pytest.raises(ValueError, match="scheme"):
    loss_weights.frame_loss_weights(np.zeros(3, int), VOCAB, "nope")


def test_changed_tokens_get_changed_weight():
  """Only the video ids that differ from one latent frame earlier are up-weighted."""
  codes = np.array([[1, 2, 3], [1, 7, 3], [1, 7, 9]])  # frame 1 changes id 1, frame 2 id 2
  seq = tokens.build_sequence(np.array([5, 6]), codes, VOCAB)
  inputs, targets = seq[:-1], seq[1:]
  got = loss_weights.changed_token_weights(inputs, targets, VOCAB, 4.0)
  assert got.dtype == np.float32 and got.shape == targets.shape
  changed = np.flatnonzero(got == 4.0)
  np.testing.assert_array_equal(targets[changed], [7 + VOCAB.video_offset, 9 + VOCAB.video_offset])
  assert np.all(got[np.setdiff1d(np.arange(len(got)), changed)] == 1.0)
  np.testing.assert_array_equal(loss_weights.changed_token_weights(inputs, targets, VOCAB, 1.0),
                                np.ones(len(targets)))
  with pytest.raises(ValueError, match="changed_weight"):
    loss_weights.changed_token_weights(inputs, targets, VOCAB, 0.0)
