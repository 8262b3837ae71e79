"""The continuation check (loong_jax/eval/continuation.py) with stand-in LMs whose answers are
known: one that copies the previous latent frame, one that only ever draws the background."""

import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.eval import continuation

VOCAB = tokens.Vocab(text_size=16, video_size=8)
H = W = 2


def _copying_logits(inputs):
  """Logits at each position that predict, for the next token, the token one frame (h * w + 2
  ids) before it."""
  back = np.zeros_like(inputs)
  back[:, H * W + 1:] = inputs[:, :-(H * W + 1)]
  logits = np.zeros((*inputs.shape, VOCAB.size), np.float32)
  np.put_along_axis(logits, back[..., None], 1.0, axis=-1)
  return logits


class FakeDecoder:
  """Greedy frame: `frame_fn(context codes [context, h, w]) -> codes [h, w]`, as decoder ids."""

  def __init__(self, frame_fn, context):
    self.frame_fn, self.context = frame_fn, context

  def __call__(self, params, prompts, plan, key):
    del params, plan, key
    out = []
    for prompt in prompts:
      body = prompt[-self.context * (H * W + 2):].reshape(self.context, H * W + 2)[:, 1:-1]
      frame = self.frame_fn(VOCAB.tokens_to_video(body).reshape(self.context, H, W))
      out.append(np.concatenate([[VOCAB.boi], VOCAB.video_to_tokens(frame.reshape(-1)),
                                 [VOCAB.eoi]]))
    return np.stack(out).astype(np.int32)


def _clips():
  """4 clips of 3 latent frames: background 0, a still object of code 5 at one block."""
  codes = np.zeros((4, 3, H, W), np.int32)
  masks = np.zeros((4, 3, H, W), bool)
  for i in range(4):
    codes[i, :, i // 2, i % 2] = 5
    masks[i, :, i // 2, i % 2] = True
  return [np.array([1, 2, 3])] * 4, codes, masks


def test_a_copying_lm_keeps_the_object():
  texts, codes, masks = _clips()
  out = continuation.measure(_copying_logits, FakeDecoder(lambda c: c[-1], 2), None, VOCAB,
                             texts, codes, masks, max_text_len=8)
  assert out == {"teacher_forced": 1.0, "free_running": 1.0, "object_started": 1.0, "clips": 4}


def test_a_background_only_generator_is_caught():
  texts, codes, masks = _clips()
  out = continuation.measure(_copying_logits, FakeDecoder(lambda c: np.zeros_like(c[-1]), 2),
                             None, VOCAB, texts, codes, masks, max_text_len=8)
  assert out["teacher_forced"] == 1.0   # the teacher-forced loss would hide it
  assert out["free_running"] == 0.0 and out["object_started"] == 0.0


def test_bad_inputs_are_reported():
  texts, codes, masks = _clips()
  decoder = FakeDecoder(lambda c: c[-1], 3)
  with pytest.raises(ValueError, match="context=3"):
    continuation.measure(_copying_logits, decoder, None, VOCAB, texts, codes, masks, 8, context=3)
  with pytest.raises(ValueError, match="no object tokens"):
    continuation.measure(_copying_logits, decoder, None, VOCAB, texts, codes,
                         np.zeros_like(masks), 8)
