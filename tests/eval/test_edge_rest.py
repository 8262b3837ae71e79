"""The edge-rest check (loong_jax/eval/edge_rest.py): frame kinds from a trajectory, and
accuracies of stand-in LMs whose answers are known: one that copies the previous latent frame
(right wherever the object rests, wrong where it moves) and one that reads the true next token."""

import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.eval import edge_rest

VOCAB = tokens.Vocab(text_size=16, video_size=8)
H, W = 1, 4


def _copying_logits(inputs):
  """Predicts, for the next token, the token one frame (h * w + 2 ids) before it."""
  back = np.zeros_like(inputs)
  back[:, H * W + 1:] = inputs[:, :-(H * W + 1)]
  logits = np.zeros((*inputs.shape, VOCAB.size), np.float32)
  np.put_along_axis(logits, back[..., None], 1.0, axis=-1)
  return logits


def _clip():
  """A 1 x 4 frame, 5 latent frames (17 pixel frames): the object (code 3) on a background
  (code 0) moves one block right per latent frame until it reaches the last column, then rests."""
  columns = [0, 1, 2, 3, 3]
  codes = np.zeros((5, H, W), np.int32)
  for k, c in enumerate(columns):
    codes[k, 0, c] = 3
  centers = np.zeros((17, 2))
  centers[:, 0] = np.minimum(np.arange(17) * 2.0, 24.0)  # 2 px a frame, at rest from frame 12
  return codes, codes == 3, centers


def test_frame_kinds_follow_the_trajectory():
  *_, centers = _clip()
  assert edge_rest.frame_kinds(centers) == [None, "move", "move", "move", "stop"]
  longer = np.concatenate([centers, np.repeat(centers[-1:], 8, 0)])  # 25 frames: 7 latent
  assert edge_rest.frame_kinds(longer) == [None, "move", "move", "move", "stop", "rest", "rest"]
  assert edge_rest.frame_kinds(np.zeros((9, 2))) == [None, None, None]  # still: no stop


def test_copying_lm_is_right_at_rest_and_wrong_in_motion():
  codes, masks, centers = _clip()
  kinds = [edge_rest.frame_kinds(np.concatenate([centers, np.repeat(centers[-1:], 4, 0)]))]
  codes = np.concatenate([codes, codes[-1:]])[None]   # 6 latent frames: stop, then rest
  masks = np.concatenate([masks, masks[-1:]])[None]
  out = edge_rest.measure(_copying_logits, VOCAB, [np.array([1, 2])], codes, masks, kinds,
                          max_text_len=8, batch_size=1)
  assert out["stop"] == 1.0 and out["rest"] == 1.0
  assert out["move"] == 0.0          # the object's block was background one frame earlier
  assert (out["move_frames"], out["stop_frames"], out["rest_frames"], out["clips"]) == (3, 1, 1, 1)


def test_truth_reading_lm_is_right_everywhere_and_missing_kinds_are_left_out():
  codes, masks, centers = _clip()
  truth = {}

  def reading_logits(inputs):
    logits = np.zeros((*inputs.shape, VOCAB.size), np.float32)
    target = truth["seq"][None, 1:inputs.shape[1] + 1]
    np.put_along_axis(logits, target[..., None], 1.0, axis=-1)
    return logits

  truth["seq"] = tokens.build_sequence(np.array([1, 2]), codes, VOCAB)
  out = edge_rest.measure(reading_logits, VOCAB, [np.array([1, 2])], codes[None], masks[None],
                          [edge_rest.frame_kinds(centers)], max_text_len=8, batch_size=1)
  assert out["move"] == 1.0 and out["stop"] == 1.0
  assert "rest" not in out and out["rest_frames"] == 0   # report.json holds numbers only


def test_mismatched_inputs_are_reported():
  codes, masks, centers = _clip()
  with pytest.raises(ValueError, match="edge_rest"):
    edge_rest.measure(_copying_logits, VOCAB, [np.array([1])], codes[None], masks[None, :4],
                      [edge_rest.frame_kinds(centers)], max_text_len=8, batch_size=1)
