"""Previous-frame input (`config.lm.prev_frame_input`): the layout helper against a naive
reference, the model's use of the input, KV-cached decoding against the full forward, and the
training batch that carries it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax import tokens, train_lm
from loong_jax.inference import decode, sampling
from loong_jax.llm import transformer
from loong_jax.train import lm_step
from tests.inference.conftest import small_lm_config

VOCAB = tokens.Vocab(text_size=40, video_size=32)
N = 4  # video ids per latent frame


def naive_previous_frame_source(seq, vocab):
  """Slot i -> the slot of slot i + 1's frame-mate one latent frame earlier (same video), by
  walking the sequence. Slot i + 1 is a video id when slot i is a <boi> or a video id and the
  frame before has an id at the next offset (read so even for the array's last slot)."""
  seq = list(seq)
  video, frame_starts, place = -1, {}, {}
  for j, t in enumerate(seq):  # place[j] = (video, frame, offset of slot j's target)
    if t == vocab.bov:
      video += 1
    elif t == vocab.boi:
      frame_starts.setdefault(video, []).append(j)
      place[j] = (video, len(frame_starts[video]) - 1, 0)
    elif vocab.is_video(t) and j - 1 in place:
      v, f, o = place[j - 1]
      place[j] = (v, f, o + 1)
  out = [-1] * len(seq)
  for i, (v, f, o) in place.items():
    if f == 0 or (i + 1 < len(seq) and not vocab.is_video(seq[i + 1])):
      continue
    j = frame_starts[v][f - 1] + 1 + o
    if j < frame_starts[v][f] and vocab.is_video(seq[j]):
      out[i] = j
  return np.asarray(out)


def packed_sequences(rng, count=3):
  """Whole sequences of 1-3 latent frames (the last one cut short), packed with <pad>."""
  parts = []
  for k in range(count):
    frames = rng.integers(1, 4)
    text = rng.integers(0, VOCAB.text_size, rng.integers(1, 5))
    codes = rng.integers(0, VOCAB.video_size, (frames, N))
    parts.append(tokens.build_sequence(text, codes, VOCAB))
  seq = np.concatenate(parts)
  return seq[:-3]  # a sequence cut inside its last frame (as a packed window may be)


def test_previous_frame_source_matches_a_naive_walk():
  rng = np.random.default_rng(0)
  for _ in range(20):
    seq = packed_sequences(rng)
    np.testing.assert_array_equal(tokens.previous_frame_source(seq, VOCAB),
                                  naive_previous_frame_source(seq, VOCAB))
  batch = np.stack([packed_sequences(np.random.default_rng(s))[:30] for s in range(4)])
  np.testing.assert_array_equal(tokens.previous_frame_source(batch, VOCAB),
                                [naive_previous_frame_source(r, VOCAB) for r in batch])


def test_previous_frame_inputs_of_a_clip():
  codes = np.arange(3 * N).reshape(3, N)
  seq = tokens.build_sequence([1, 2], codes, VOCAB)
  prev = tokens.previous_frame_inputs(seq, VOCAB)
  ids = VOCAB.video_to_tokens(codes)
  # <bos> t t <bov> then frame 0 (<boi> 4 ids <eoi>) at slots 4..9: no earlier frame.
  assert np.all(prev[:10] == -1)
  # Slot 10 is frame 1's <boi>: it predicts frame 1's first id, whose frame-mate is codes[0, 0].
  np.testing.assert_array_equal(prev[10:14], ids[0])
  assert prev[14] == -1  # the last id of frame 1 predicts <eoi>
  np.testing.assert_array_equal(prev[16:20], ids[1])
  assert np.all(prev[20:] == -1)


def _model_and_params(**overrides):
  model = transformer.Transformer(small_lm_config(prev_frame_input=True, **overrides))
  params = jax.jit(lambda: nn.unbox(model.init(jax.random.key(2),
                                                jnp.zeros((1, 8), jnp.int32))["params"]))()
  return model, params


def test_the_previous_frame_input_changes_only_the_slots_that_have_one():
  model, params = _model_and_params()
  assert params["prev_frame_embed"]["embedding"].shape == params["embed"]["embedding"].shape
  seq = tokens.build_sequence([1, 2], np.arange(3 * N).reshape(3, N) % VOCAB.video_size, VOCAB)
  inputs = seq[None, :-1]
  prev = tokens.previous_frame_inputs(inputs, VOCAB)
  with_prev = model.apply({"params": params}, inputs, prev_ids=prev)[0]
  without = model.apply({"params": params}, inputs, prev_ids=np.full_like(prev, -1))[0]
  first = int(np.argmax(prev[0] >= 0))
  np.testing.assert_allclose(with_prev[:first], without[:first], rtol=1e-6, atol=1e-6)
  assert not np.allclose(with_prev[first], without[first], atol=1e-3)
  with pytest.raises(ValueError, match="prev_ids"):
    model.apply({"params": params}, inputs)


def test_prev_frame_input_needs_a_causal_mask():
  with pytest.raises(ValueError, match="config.lm.prev_frame_input"):
    small_lm_config(prev_frame_input=True, attention_mask="frame_bidirectional").validate()


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_cached_decoding_feeds_the_previous_frame_as_training_does(guidance_scale):
  # Guided rows have shorter (unconditional) prompts, left-padded; row 1 continues from a
  # context frame, so its first generated frame reads the prompt's codes.
  model, params = _model_and_params()
  rng = np.random.default_rng(3)
  cond = rng.integers(0, VOCAB.video_size, (1, N))
  prompts = [decode.prompt_ids(VOCAB, rng.integers(0, VOCAB.text_size, 5)),
             decode.prompt_ids(VOCAB, [7], cond)]
  uncond = [decode.prompt_ids(VOCAB), decode.prompt_ids(VOCAB, None, cond)]
  plan = decode.frame_plan(VOCAB, 3, N)
  decoder = decode.Decoder(model, VOCAB, sampling.SamplingConfig(guidance_scale=guidance_scale),
                           prompt_multiple=4)
  ids, logits = decoder(params, prompts, plan, jax.random.key(0), uncond_prompts=uncond,
                        return_logits=True)
  forward = jax.jit(lambda x, prev: model.apply({"params": params}, x, prev_ids=prev))
  for i in range(2):
    outs = []
    for prompt in (prompts[i], uncond[i]):
      seq = np.concatenate([prompt, ids[i]])[None, :-1]
      out = np.asarray(forward(seq, tokens.previous_frame_inputs(seq, VOCAB))[0])
      outs.append(out[len(prompt) - 1:])
    want = outs[0] if guidance_scale == 1 else sampling.guide(outs[0], outs[1], guidance_scale)
    video = plan.video_only
    got = logits[i][video][:, VOCAB.video_offset:VOCAB.special_offset]
    np.testing.assert_allclose(got, want[video][:, VOCAB.video_offset:VOCAB.special_offset],
                               rtol=1e-4, atol=1e-4)


def test_the_training_batch_carries_the_previous_frame_ids():
  model, params = _model_and_params()
  keys = train_lm.batch_keys(model.config)
  assert "input_prev" in keys
  seq = tokens.build_sequence([1, 2], np.arange(2 * N).reshape(2, N), VOCAB)[None]
  batch = train_lm.with_layout(
      {"inputs": seq[:, :-1], "targets": seq[:, 1:], "weights": np.ones(seq[:, 1:].shape),
       "frame": tokens.frame_index(seq[:, 1:], VOCAB)}, keys, VOCAB, frame_width=2)
  np.testing.assert_array_equal(batch["input_prev"], tokens.previous_frame_inputs(seq[:, :-1],
                                                                                 VOCAB))
  loss, _ = lm_step.weighted_cross_entropy(
      lm_step._logits(model.apply, params, batch), batch["targets"], batch["weights"])
  grads = jax.grad(lambda p: lm_step.weighted_cross_entropy(
      lm_step._logits(model.apply, p, batch), batch["targets"], batch["weights"])[0])(params)
  assert np.isfinite(float(loss))
  # The previous-frame rows of the clip's frame-0 ids get gradient; rows never used get none.
  g = np.asarray(grads["prev_frame_embed"]["embedding"])
  used = VOCAB.video_to_tokens(np.arange(N))
  assert np.all(np.abs(g[used]).sum(-1) > 0)
  assert np.abs(g[VOCAB.video_to_tokens(np.arange(N, 2 * N))]).sum() == 0
