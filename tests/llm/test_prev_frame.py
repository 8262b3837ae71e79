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


def naive_neighbourhood(seq, vocab, width, radius):
  """`[L, (2r + 1)**2]`: the naive frame-mate's neighbours, read by row and column."""
  centre = naive_previous_frame_source(seq, vocab)
  height = N // width
  out = np.full((len(seq), (2 * radius + 1)**2), -1)
  for i, j in enumerate(centre):
    if j < 0:
      continue
    start = j - np.flatnonzero(np.asarray(seq[:j + 1]) == vocab.boi)[-1] - 1  # j's offset
    row, col = divmod(start, width)
    k = 0
    for dy in range(-radius, radius + 1):
      for dx in range(-radius, radius + 1):
        if 0 <= row + dy < height and 0 <= col + dx < width:
          out[i, k] = j + dy * width + dx
        k += 1
  return out


@pytest.mark.parametrize("radius", [1, 2])
def test_previous_frame_neighbourhood_matches_a_naive_walk(radius):
  rng = np.random.default_rng(1)
  for _ in range(20):
    seq = packed_sequences(rng)
    got = tokens.previous_frame_source(seq, VOCAB, frame_width=2, radius=radius)
    np.testing.assert_array_equal(got, naive_neighbourhood(seq, VOCAB, 2, radius))
    # The centre is the frame-mate itself.
    np.testing.assert_array_equal(got[:, (2 * radius + 1)**2 // 2],
                                  tokens.previous_frame_source(seq, VOCAB))
  with pytest.raises(ValueError, match="frame_width"):
    tokens.previous_frame_source(seq, VOCAB, radius=1)


def test_previous_frame_neighbourhood_of_a_clip():
  # Frames of 2 x 2 ids: frame 1's first id (row 0, col 0) sees frame 0's ids at (0, 0), (0, 1),
  # (1, 0), (1, 1) as its centre, right, below and below-right neighbours; the rest is outside.
  codes = np.arange(2 * N).reshape(2, N)
  seq = tokens.build_sequence([1, 2], codes, VOCAB)
  prev = tokens.previous_frame_inputs(seq, VOCAB, frame_width=2, radius=1)
  ids = VOCAB.video_to_tokens(codes)
  assert prev.shape == (len(seq), 9)
  np.testing.assert_array_equal(prev[10], [-1, -1, -1, -1, ids[0, 0], ids[0, 1], -1, ids[0, 2],
                                           ids[0, 3]])
  # Frame 1's last id (row 1, col 1): up-left, up, left and centre.
  np.testing.assert_array_equal(prev[13], [ids[0, 0], ids[0, 1], -1, ids[0, 2], ids[0, 3], -1,
                                           -1, -1, -1])
  assert np.all(prev[:10] == -1) and np.all(prev[14:] == -1)


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
  with pytest.raises(ValueError, match="config.lm.prev_frame_radius"):
    small_lm_config(prev_frame_radius=1).validate()


def test_neighbours_are_embedded_as_inputs_are():
  # With digit codes, a neighbour's row is the sum of its digits' rows: no parameter per id.
  model, params = _model_and_params(prev_frame_radius=1, video_code_levels=(2, 4, 4),
                                    video_offset=VOCAB.video_offset)
  assert set(params) >= {"video_digits", "prev_frame_mix"} and "prev_frame_embed" not in params
  seq = tokens.build_sequence([1, 2], np.arange(2 * N).reshape(2, N), VOCAB)[None, :-1]
  prev = tokens.previous_frame_inputs(seq, VOCAB, frame_width=2, radius=1)
  grads = jax.grad(lambda p: model.apply({"params": p}, seq, prev_ids=prev)[0, 10:14].sum())(
      params)
  assert np.abs(np.asarray(grads["prev_frame_mix"]["kernel"])).sum() > 0


def test_each_neighbour_reaches_the_slot_through_its_own_weights():
  model, params = _model_and_params(prev_frame_radius=1)
  d = params["embed"]["embedding"].shape[1]
  assert params["prev_frame_mix"]["kernel"].shape == (9 * d, d)
  assert "prev_frame_embed" not in params  # neighbours are embedded as inputs are
  seq = tokens.build_sequence([1, 2], np.arange(3 * N).reshape(3, N) % VOCAB.video_size, VOCAB)
  inputs = seq[None, :-1]
  prev = tokens.previous_frame_inputs(inputs, VOCAB, frame_width=2, radius=1)
  out = model.apply({"params": params}, inputs, prev_ids=prev)[0]
  # The same ids in another arrangement (left and right neighbours swapped) give other logits.
  swapped = prev.copy()
  swapped[..., [3, 5]] = swapped[..., [5, 3]]
  changed = model.apply({"params": params}, inputs, prev_ids=swapped)[0]
  moved = np.flatnonzero(np.any(prev[0, :, [3, 5]] != swapped[0, :, [3, 5]], axis=0))
  assert len(moved)
  np.testing.assert_allclose(out[:moved[0]], changed[:moved[0]], rtol=1e-6, atol=1e-6)
  assert not np.allclose(out[moved[0]], changed[moved[0]], atol=1e-4)
  with pytest.raises(ValueError, match="prev_frame_radius"):
    model.apply({"params": params}, inputs, prev_ids=prev[..., 4])


def test_the_copy_head_mixes_the_vocabulary_with_the_previous_frame_ids():
  with pytest.raises(ValueError, match="config.lm.copy_head"):
    small_lm_config(copy_head=True).validate()
  model, params = _model_and_params(prev_frame_radius=1, copy_head=True)
  seq = tokens.build_sequence([1, 2], np.arange(3 * N).reshape(3, N) % VOCAB.video_size, VOCAB)
  inputs = seq[None, :-1]
  prev = tokens.previous_frame_inputs(inputs, VOCAB, frame_width=2, radius=1)
  # A zero selector weighs the vocabulary and every present neighbour alike: the reference
  # mixture is softmax(vocab logits) / (1 + n) + (copies of the id among the n) / (1 + n).
  flat = dict(params, copy_select={"kernel": np.zeros_like(params["copy_select"]["kernel"])})
  got = np.asarray(model.apply({"params": flat}, inputs, prev_ids=prev)[0], np.float64)
  plain = transformer.Transformer(small_lm_config(prev_frame_input=True, prev_frame_radius=1))
  base = np.asarray(plain.apply({"params": {k: v for k, v in params.items()
                                            if k != "copy_select"}}, inputs, prev_ids=prev)[0],
                    np.float64)
  vocab_p = np.exp(base - base.max(-1, keepdims=True))
  vocab_p /= vocab_p.sum(-1, keepdims=True)
  for i in range(inputs.shape[1]):
    ids = prev[0, i][prev[0, i] >= 0]
    want = vocab_p[i].copy()
    np.add.at(want, ids, 1.0)
    want /= 1 + len(ids)
    np.testing.assert_allclose(np.exp(got[i]), want, rtol=1e-4, atol=1e-7)
  # Slots without previous-frame ids keep the vocabulary's distribution exactly.
  first = int(np.argmax(prev[0, :, 4] >= 0))
  np.testing.assert_allclose(got[:first], base[:first] - np.log(np.exp(base[:first]).sum(
      -1, keepdims=True)), atol=1e-4)
  grads = jax.grad(
      lambda p: model.apply({"params": p}, inputs, prev_ids=prev)[0, first:, 3].sum())(params)
  assert np.abs(np.asarray(grads["copy_select"]["kernel"])).sum() > 0


@pytest.mark.parametrize("guidance_scale,radius,levels,copy,summary", [
    (1.0, 0, (), False, False), (3.0, 0, (), False, False), (3.0, 1, (2, 4, 4), False, False),
    (3.0, 1, (), True, False), (3.0, 1, (2, 4, 4), True, True)])
def test_cached_decoding_feeds_the_previous_frame_as_training_does(guidance_scale, radius,
                                                                   levels, copy, summary):
  # Guided rows have shorter (unconditional) prompts, left-padded; row 1 continues from a
  # context frame, so its first generated frame reads the prompt's codes. The neighbourhood
  # case embeds the video ids as digits (the demo's LM); the last two copy, and the last one
  # also carries the caption summary (text_summary_input) through the cache.
  model, params = _model_and_params(prev_frame_radius=radius, video_code_levels=levels,
                                    video_offset=VOCAB.video_offset, copy_head=copy,
                                    text_summary_input=summary)
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
      prev = tokens.previous_frame_inputs(seq, VOCAB, frame_width=2, radius=radius)
      out = np.asarray(forward(seq, prev)[0])
      outs.append(out[len(prompt) - 1:])
    want = outs[0] if guidance_scale == 1 else sampling.guide(outs[0], outs[1], guidance_scale)
    video = plan.video_only
    got = logits[i][video][:, VOCAB.video_offset:VOCAB.special_offset]
    np.testing.assert_allclose(got, want[video][:, VOCAB.video_offset:VOCAB.special_offset],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("radius", [0, 1])
def test_the_training_batch_carries_the_previous_frame_ids(radius):
  model, params = _model_and_params(prev_frame_radius=radius)
  keys = train_lm.batch_keys(model.config)
  assert "input_prev" in keys
  seq = tokens.build_sequence([1, 2], np.arange(2 * N).reshape(2, N), VOCAB)[None]
  batch = train_lm.with_layout(
      {"inputs": seq[:, :-1], "targets": seq[:, 1:], "weights": np.ones(seq[:, 1:].shape),
       "frame": tokens.frame_index(seq[:, 1:], VOCAB)}, keys, VOCAB, frame_width=2,
      prev_radius=radius)
  np.testing.assert_array_equal(batch["input_prev"], tokens.previous_frame_inputs(
      seq[:, :-1], VOCAB, frame_width=2, radius=radius))
  loss, _ = lm_step.weighted_cross_entropy(
      lm_step._logits(model.apply, params, batch), batch["targets"], batch["weights"])
  grads = jax.grad(lambda p: lm_step.weighted_cross_entropy(
      lm_step._logits(model.apply, p, batch), batch["targets"], batch["weights"])[0])(params)
  assert np.isfinite(float(loss))
  if radius:  # the neighbours are embedded by the input table, then mixed
    assert np.abs(np.asarray(grads["prev_frame_mix"]["kernel"])).sum() > 0
    assert "prev_frame_embed" not in grads
    return
  # The previous-frame rows of the clip's frame-0 ids get gradient; rows never used get none.
  g = np.asarray(grads["prev_frame_embed"]["embedding"])
  used = VOCAB.video_to_tokens(np.arange(N))
  assert np.all(np.abs(g[used]).sum(-1) > 0)
  assert np.abs(g[VOCAB.video_to_tokens(np.arange(N, 2 * N))]).sum() == 0
