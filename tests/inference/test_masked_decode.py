"""AR-DF masked decoding: against a naive one-token-at-a-time reference, the schedule, history
re-masking, guidance, frame structure, long videos, sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax import cli, tokens
from loong_jax import sharding as sharding_lib
from loong_jax.inference import decode, long_video, masked_decode, sampling
from loong_jax.llm import transformer
from loong_jax.train import ardf
from tests.inference.conftest import small_lm_config

WIDTH = 2
N = WIDTH * WIDTH  # 2x2 tokens per latent frame
GREEDY = sampling.SamplingConfig(temperature=0.0)


@pytest.fixture(scope="module")
def ardf_lm():
  """A frame-bidirectional MM-RoPE model (an AR-DF model's shape) with random weights."""
  model = transformer.Transformer(small_lm_config(
      rope="mm_rope", attention_mask="frame_bidirectional", num_heads=2, num_kv_heads=1,
      head_dim=32))
  params = jax.jit(lambda: nn.unbox(model.init(jax.random.key(2),
                                                jnp.zeros((1, 8), jnp.int32))["params"]))()
  return model, params


def _prompts(vocab):
  rng = np.random.default_rng(0)
  cond = rng.integers(0, vocab.video_size, (1, N))
  return [decode.prompt_ids(vocab, rng.integers(0, vocab.text_size, 4)),
          decode.prompt_ids(vocab, [3], cond)]


def _plan(vocab, frames):
  return decode.frame_plan(vocab, frames, N, frame_width=WIDTH)


@pytest.mark.parametrize("n, steps", [(4, 4), (16, 5), (256, 50), (7, 20), (1, 50)])
def test_schedule_is_cosine_strictly_decreasing_and_ends_unmasked(n, steps):
  left = masked_decode.mask_schedule(n, steps)
  assert len(left) == min(n, steps)
  assert left[-1] == 0 and left[0] < n
  assert (np.diff(left) < 0).all()                      # at least one revealed per step
  cosine = np.floor(n * np.cos(np.pi / 2 * np.arange(1, len(left) + 1) / len(left)))
  cosine[-1] = 0
  # The cosine count, lowered only where a step would otherwise reveal nothing.
  np.testing.assert_array_equal(left, np.minimum(cosine, np.concatenate([[n], left[:-1]]) - 1))
  if (n, steps) == (256, 50):
    np.testing.assert_array_equal(left[6:], cosine[6:])
  np.testing.assert_array_equal(masked_decode.mask_schedule(n, n), np.arange(n)[::-1])


def _reference(model, params, vocab, prompts, frames, key):
  """One forward of the whole sequence per revealed token, no cache: greedy, the most probable
  masked position first. Returns (video ids [B, F, N], step at which each was revealed)."""
  plan = _plan(vocab, frames)
  # Jitted: one compile per sequence length (4 here), not op-by-op dispatch for each forward.
  forward = jax.jit(lambda seq, pos, frame_ids: model.apply({"params": params}, seq, pos,
                                                            frame_ids=frame_ids))
  history_key, _ = jax.random.split(key)
  hidden = np.asarray(masked_decode.history_mask(history_key, len(prompts), N, 0.7))
  video = np.zeros((len(prompts), frames, N), np.int32)
  order = np.zeros((len(prompts), frames, N), np.int32)
  for b, prompt in enumerate(prompts):
    lay = decode.layout(vocab, [prompt], plan, "mm_rope")
    positions, frame_ids = lay.positions[0], lay.frames[0]
    # Context frames of the prompt are history: the same positions are masked.
    offsets = np.asarray(ardf.frame_offsets(prompt[None], vocab.boi))[0] % N
    prefix = np.where(vocab.is_video(prompt) & hidden[b][offsets], vocab.mask, prompt)
    for f in range(frames):
      current = np.full(N, vocab.mask, np.int32)
      for s in range(N):
        seq = np.concatenate([prefix, [vocab.boi], current, [vocab.eoi]])
        logits = forward(seq[None], positions[None, :len(seq)],
                         frame_ids[None, :len(seq)])[0, -N - 1:-1]
        logits = np.asarray(sampling.restrict_to_range(logits, vocab.video_offset,
                                                       vocab.special_offset))
        best = logits.argmax(-1)
        logp = np.asarray(jax.nn.log_softmax(logits, -1))[np.arange(N), best]
        logp[current != vocab.mask] = -np.inf
        i = int(logp.argmax())
        current[i], order[b, f, i] = best[i], s
      video[b, f] = current
      prefix = np.concatenate([prefix, [vocab.boi], np.where(hidden[b], vocab.mask, current),
                               [vocab.eoi]])
  return video, order


def test_parallel_decoding_with_one_token_per_step_is_greedy_one_at_a_time(ardf_lm, vocab):
  model, params = ardf_lm
  decoder = masked_decode.MaskedDecoder(
      model, vocab, GREEDY, masked_decode.MaskedConfig(steps=N, gumbel_temperature=0.0),
      prompt_multiple=4)
  prompts, frames, key = _prompts(vocab), 2, jax.random.key(7)
  ids, trace = decoder(params, prompts, _plan(vocab, frames), key, return_trace=True)
  want_video, want_order = _reference(model, params, vocab, prompts, frames, key)
  video = ids[:, :frames * (N + 2)].reshape(2, frames, N + 2)[:, :, 1:-1]
  np.testing.assert_array_equal(video, want_video)
  # Revealed sets: step s adds exactly one new position, the sets are disjoint and cover the
  # frame, in the reference's order.
  revealed = trace.revealed                                 # [B, F, S, N]
  new = np.diff(revealed.astype(int), axis=2, prepend=0)
  assert (new >= 0).all() and (new.sum(axis=2) == 1).all() and (new.sum(axis=3) == 1).all()
  np.testing.assert_array_equal(new.argmax(axis=2), want_order)


def test_history_frames_are_masked_exactly_and_deterministically(ardf_lm, vocab):
  model, params = ardf_lm
  width, n = 4, 16
  decoder = masked_decode.MaskedDecoder(model, vocab, sampling.SamplingConfig(top_k=8),
                                        masked_decode.MaskedConfig(steps=5))
  plan = decode.frame_plan(vocab, 3, n, frame_width=width)
  prompts = _prompts(vocab)[:1] * 3
  ids, trace = decoder(params, prompts, plan, jax.random.key(1), return_trace=True)
  video = ids[:, :3 * (n + 2)].reshape(3, 3, n + 2)[:, :, 1:-1]
  hidden = trace.history == vocab.mask
  assert (hidden.sum(-1) == round(0.7 * n)).all()
  np.testing.assert_array_equal(trace.history[~hidden], video[~hidden])
  assert (hidden == hidden[:, :1]).all()                    # the same tube in every frame
  np.testing.assert_array_equal(hidden[:, 0], masked_decode.history_mask(
      jax.random.split(jax.random.key(1))[0], 3, n, 0.7))
  again_ids, again = decoder(params, prompts, plan, jax.random.key(1), return_trace=True)
  np.testing.assert_array_equal(again.history, trace.history)
  np.testing.assert_array_equal(again_ids, ids)
  other = masked_decode.history_mask(jax.random.key(2), 3, n, 0.7)
  assert not np.array_equal(other, hidden[:, 0])


def test_guidance_scale_one_and_equal_branches_are_no_guidance(ardf_lm, vocab):
  model, params = ardf_lm
  masked = masked_decode.MaskedConfig(steps=3)
  prompts, plan, key = _prompts(vocab), _plan(vocab, 2), jax.random.key(3)
  config = sampling.SamplingConfig(top_k=8)
  plain = masked_decode.MaskedDecoder(model, vocab, config, masked)(params, prompts, plan, key)
  uncond = [decode.prompt_ids(vocab)] * 2
  one = masked_decode.MaskedDecoder(model, vocab, sampling.SamplingConfig(
      top_k=8, guidance_scale=1.0), masked)(params, prompts, plan, key, uncond_prompts=uncond)
  np.testing.assert_array_equal(one, plain)
  # Guided for real (cond and uncond rows in one batch), with uncond = cond: the guided logits
  # equal the conditional ones.
  same = masked_decode.MaskedDecoder(model, vocab, sampling.SamplingConfig(
      top_k=8, guidance_scale=3.0), masked)(params, prompts, plan, key, uncond_prompts=prompts)
  np.testing.assert_array_equal(same, plain)
  guided = masked_decode.MaskedDecoder(model, vocab, sampling.SamplingConfig(
      top_k=8, guidance_scale=3.0), masked)(params, prompts, plan, key, uncond_prompts=uncond)
  assert not np.array_equal(guided, plain)


def test_output_parses_into_whole_frames(ardf_lm, vocab):
  model, params = ardf_lm
  decoder = masked_decode.MaskedDecoder(
      model, vocab, sampling.SamplingConfig(top_k=8, guidance_scale=3.0),
      masked_decode.MaskedConfig(steps=50))
  prompts = _prompts(vocab)
  ids = decoder(params, prompts, _plan(vocab, 3), jax.random.key(0),
                uncond_prompts=[decode.prompt_ids(vocab)] * 2)
  for prompt, generated in zip(prompts, ids):
    text, codes = tokens.parse_sequence(np.concatenate([prompt, generated]), vocab, N)
    np.testing.assert_array_equal(text, prompt[1:prompt.tolist().index(vocab.bov)])
    assert codes.shape == (3 + (vocab.boi in prompt), N)


def test_long_video_with_the_masked_decoder_has_exactly_the_frames_asked(ardf_lm, vocab,
                                                                         stand_in_codec):
  model, params = ardf_lm
  decoder = masked_decode.MaskedDecoder(model, vocab, sampling.SamplingConfig(top_k=8),
                                        masked_decode.MaskedConfig(steps=3))
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                      width=16)
  out = long_video.generate(decoder, params, [[1, 2], None], 22, stand_in_codec.codec(), config,
                            jax.random.key(0))
  assert out.video.shape == (2, 22, 16, 16, 3)
  assert out.codes.shape == (2, 7, 2, 2)


def test_models_and_plans_the_masked_decoder_refuses(lm, ardf_lm, vocab):
  with pytest.raises(ValueError, match="decoder='autoregressive'"):
    masked_decode.MaskedDecoder(lm[0], vocab, GREEDY)
  model, params = ardf_lm
  decoder = masked_decode.MaskedDecoder(model, vocab, GREEDY)
  with pytest.raises(ValueError, match="frame_plan"):
    decoder(params, _prompts(vocab), decode.free_plan(6), jax.random.key(0))
  scaled = decode.frame_plan(vocab, 2, N, frame_width=WIDTH, frame_scales=[1.0, 2.0])
  with pytest.raises(ValueError, match="frame_temperature"):
    decoder(params, _prompts(vocab), scaled, jax.random.key(0))


def test_sharded_masked_decoding_matches_one_device(ardf_lm, vocab):
  if jax.device_count() < 8:
    pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
  model, params = ardf_lm
  config = sampling.SamplingConfig(top_k=8, guidance_scale=2.0)
  masked = masked_decode.MaskedConfig(steps=2)
  prompts, plan = _prompts(vocab) + _prompts(vocab)[:1], _plan(vocab, 2)
  uncond = [decode.prompt_ids(vocab)] * 3
  want = masked_decode.MaskedDecoder(model, vocab, config, masked)(
      params, prompts, plan, jax.random.key(0), uncond_prompts=uncond)
  rules = sharding_lib.rules(cli.load_config_file("configs/lm/llama.py:tiny").sharding)
  # One kv head cannot split over 'tensor': batch over ('data', 'fsdp'), params over 'fsdp'.
  mesh = sharding_lib.make_mesh(dict(data=4, fsdp=2, tensor=1))
  sharded = masked_decode.MaskedDecoder(model, vocab, config, masked, mesh=mesh, rules=rules)
  got = sharded(sharded.place_params(params), prompts, plan, jax.random.key(0),
                uncond_prompts=uncond)
  np.testing.assert_array_equal(got, want)
