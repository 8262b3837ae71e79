"""KV-cached decoding: teacher forcing against the full forward, frame structure, guidance,
determinism, sharding, compile caching."""

import dataclasses

import jax
import numpy as np
import pytest

from loong_jax import cli, tokens
from loong_jax import sharding as sharding_lib
from loong_jax.inference import decode, sampling
from loong_jax.llm import transformer
from tests.inference.conftest import small_lm_config

TOKENS_PER_FRAME = 4


def text_prompts(vocab, lengths, seed=0):
  rng = np.random.default_rng(seed)
  return [decode.prompt_ids(vocab, rng.integers(0, vocab.text_size, n)) for n in lengths]


def test_teacher_forcing_reproduces_full_forward_logits(lm, vocab):
  model, params = lm
  rng = np.random.default_rng(0)
  prompts = [rng.integers(0, vocab.size, n).astype(np.int32) for n in (5, 9, 2)]
  steps = 6
  targets = rng.integers(0, vocab.size, (3, steps)).astype(np.int32)
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(), prompt_multiple=4)
  forward = jax.jit(model.apply)
  for i, prompt in enumerate(prompts):
    # The plan forces one row's continuation; run each row so every row is checked.
    plan = decode.Plan(targets[i], np.zeros(steps, bool))
    ids, logits = decoder(params, prompts, plan, jax.random.key(0), return_logits=True)
    np.testing.assert_array_equal(ids[i], targets[i])
    full = forward({"params": params}, np.concatenate([prompt, targets[i]])[None])[0]
    want = full[len(prompt) - 1: len(prompt) - 1 + steps]
    np.testing.assert_allclose(logits[i], want, rtol=2e-5, atol=2e-5)


def test_mm_rope_teacher_forcing_reproduces_full_forward_logits(vocab):
  # A causal model trained with MM-RoPE: the decoder feeds each slot the 3D position of the
  # planned layout, as `tokens.mm_rope_positions` gives it for the whole training sequence.
  model = transformer.Transformer(small_lm_config(rope="mm_rope", num_heads=2, num_kv_heads=1,
                                                  head_dim=32))
  params = jax.jit(model.init)(jax.random.key(3), np.zeros((1, 4), np.int32))["params"]
  forward = jax.jit(model.apply)
  rng = np.random.default_rng(1)
  frames, width = 2, 2
  cond = rng.integers(0, vocab.video_size, (1, TOKENS_PER_FRAME))
  prompts = [decode.prompt_ids(vocab, rng.integers(0, vocab.text_size, 5)),
             decode.prompt_ids(vocab, [7], cond)]
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(), prompt_multiple=4)
  for i, prompt in enumerate(prompts):
    plan = decode.frame_plan(vocab, frames, TOKENS_PER_FRAME, frame_width=width)
    codes = rng.integers(0, vocab.video_size, (frames, TOKENS_PER_FRAME))
    full_seq = tokens.build_sequence(prompt[1:-1] if i == 0 else [7],
                                     np.concatenate([cond, codes]) if i else codes, vocab)
    targets = full_seq[len(prompt):]
    forced = decode.Plan(targets, np.zeros(len(targets), bool), width)
    ids, logits = decoder(params, prompts, forced, jax.random.key(0), return_logits=True)
    np.testing.assert_array_equal(ids[i], targets)
    positions = tokens.mm_rope_positions(full_seq, vocab, width)
    full = forward({"params": params}, full_seq[None], positions[None])[0]
    want = full[len(prompt) - 1: len(full_seq) - 1]
    np.testing.assert_allclose(logits[i], want, rtol=2e-5, atol=2e-5)
    # 1D positions would give other logits: the 3D positions are really used.
    assert not np.allclose(want, forward({"params": params}, full_seq[None])[0][
        len(prompt) - 1: len(full_seq) - 1], atol=1e-3)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_generated_sequences_parse_into_whole_frames(lm, vocab, guidance_scale):
  model, params = lm
  config = sampling.SamplingConfig(temperature=1.0, top_k=8, guidance_scale=guidance_scale)
  decoder = decode.Decoder(model, vocab, config)
  prompts = text_prompts(vocab, (3, 7))
  uncond = [decode.prompt_ids(vocab)] * 2
  frames = 3
  plan = decode.frame_plan(vocab, frames, TOKENS_PER_FRAME)
  ids = decoder(params, prompts, plan, jax.random.key(0), uncond_prompts=uncond)
  for prompt, generated in zip(prompts, ids):
    text, codes = tokens.parse_sequence(np.concatenate([prompt, generated]), vocab,
                                        TOKENS_PER_FRAME)
    np.testing.assert_array_equal(text, prompt[1:-1])
    assert codes.shape == (frames, TOKENS_PER_FRAME)


def test_continuation_prompt_with_condition_frames_parses(lm, vocab):
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=4))
  cond = np.arange(2 * TOKENS_PER_FRAME).reshape(2, TOKENS_PER_FRAME) % vocab.video_size
  prompt = decode.prompt_ids(vocab, [1, 2, 3], cond)
  ids = decoder(params, [prompt], decode.frame_plan(vocab, 2, TOKENS_PER_FRAME),
                jax.random.key(0))
  _, codes = tokens.parse_sequence(np.concatenate([prompt, ids[0]]), vocab, TOKENS_PER_FRAME)
  np.testing.assert_array_equal(codes[:2], cond)
  assert codes.shape == (4, TOKENS_PER_FRAME)


def test_empty_prompt_is_the_unconditional_prompt(vocab):
  np.testing.assert_array_equal(decode.prompt_ids(vocab, []),
                                [vocab.bos, vocab.no_text, vocab.bov])


def test_same_key_same_tokens_other_key_other_tokens(lm, vocab):
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=16))
  prompts = text_prompts(vocab, (4,))
  plan = decode.frame_plan(vocab, 3, TOKENS_PER_FRAME)
  a = decoder(params, prompts, plan, jax.random.key(5))
  b = decoder(params, prompts, plan, jax.random.key(5))
  c = decoder(params, prompts, plan, jax.random.key(6))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_second_call_with_same_shapes_does_not_recompile(lm, vocab):
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=3, temperature=0.7))
  plan = decode.frame_plan(vocab, 2, TOKENS_PER_FRAME)
  decoder(params, text_prompts(vocab, (3, 4)), plan, jax.random.key(0))
  compiled = decode._generate._cache_size()
  # Other prompts (of lengths in the same padding bucket), another key, another plan of the
  # same length: all reuse the program.
  decoder(params, text_prompts(vocab, (5, 2), seed=1), plan, jax.random.key(1))
  decoder(params, text_prompts(vocab, (1, 1), seed=2), decode.free_plan(len(plan.forced)),
          jax.random.key(2))
  assert decode._generate._cache_size() == compiled


def test_sharded_decoding_matches_one_device(lm, vocab):
  if jax.device_count() < 8:
    pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
  model, params = lm
  config = sampling.SamplingConfig(top_k=8, guidance_scale=2.0)
  prompts = text_prompts(vocab, (3, 6, 2))
  uncond = [decode.prompt_ids(vocab)] * 3
  plan = decode.frame_plan(vocab, 2, TOKENS_PER_FRAME)
  want = decode.Decoder(model, vocab, config)(params, prompts, plan, jax.random.key(0),
                                              uncond_prompts=uncond)
  rules = sharding_lib.rules(cli.load_config_file("configs/lm/llama.py:tiny").sharding)
  mesh = sharding_lib.make_mesh(dict(data=4, fsdp=1, tensor=2))
  sharded = decode.Decoder(model, vocab, config, mesh=mesh, rules=rules)
  placed = sharded.place_params(params)
  assert placed["layers"]["attention"]["query"]["kernel"].sharding.spec[2] == "tensor"
  got = sharded(placed, prompts, plan, jax.random.key(0), uncond_prompts=uncond)
  np.testing.assert_array_equal(got, want)


def test_guidance_needs_unconditional_prompts(lm, vocab):
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(guidance_scale=2.0))
  with pytest.raises(ValueError, match="unconditional"):
    decoder(params, text_prompts(vocab, (3,)), decode.free_plan(2), jax.random.key(0))


def test_frame_bidirectional_models_are_sent_to_the_masked_decoder(vocab):
  config = dataclasses.replace(small_lm_config(), attention_mask="frame_bidirectional")
  with pytest.raises(ValueError, match="attention_mask"):
    decode.Decoder(transformer.Transformer(config), vocab, sampling.SamplingConfig())


def test_frame_logit_scale_samples_that_frame_at_its_own_temperature(lm, vocab):
  """A huge logit scale on frame 1 makes its ids the argmax of the logits they were drawn
  from, while frame 0 (scale 1) still samples; a plan without scales is unchanged by ones."""
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(temperature=1.0))
  prompts = text_prompts(vocab, (3, 5, 4, 6))
  plan = decode.frame_plan(vocab, 2, TOKENS_PER_FRAME, frame_scales=[1.0, 1e4])
  ids, logits = decoder(params, prompts, plan, jax.random.key(1), return_logits=True)
  second = np.flatnonzero(plan.forced < 0)[TOKENS_PER_FRAME:]
  first = np.flatnonzero(plan.forced < 0)[:TOKENS_PER_FRAME]
  np.testing.assert_array_equal(ids[:, second], logits[:, second].argmax(-1))
  assert (ids[:, first] != logits[:, first].argmax(-1)).any()
  plain = decode.frame_plan(vocab, 2, TOKENS_PER_FRAME)
  ones = plain._replace(logit_scale=np.ones(len(plain.forced), np.float32))
  np.testing.assert_array_equal(decoder(params, prompts, plain, jax.random.key(1)),
                                decoder(params, prompts, ones, jax.random.key(1)))


def test_frame_scales_must_match_frames_and_be_positive(vocab):
  with pytest.raises(ValueError, match="frame_scales"):
    decode.frame_plan(vocab, 2, TOKENS_PER_FRAME, frame_scales=[1.0])
  plan = decode.frame_plan(vocab, 2, TOKENS_PER_FRAME, frame_scales=[1.0, 0.0])
  with pytest.raises(ValueError, match="positive"):
    plan.scales()


def test_composed_branches_weight_each_branchs_logits(lm, vocab):
  """Composed conditioning: the logits a token is drawn from are `sum_k w_k logits_k` (checked
  against each branch decoded alone with the same forced tokens), and the branch
  `(1 - g, uncond)` samples exactly what guidance g samples."""
  model, params = lm
  prompts, parts, uncond = (text_prompts(vocab, (3, 6), seed=s) for s in (0, 1, 2))
  steps = 5
  forced = np.random.default_rng(3).integers(vocab.video_offset, vocab.special_offset,
                                             steps).astype(np.int32)
  plan = decode.Plan(forced, np.ones(steps, bool))
  plain = decode.Decoder(model, vocab, sampling.SamplingConfig())

  video = slice(vocab.video_offset, vocab.special_offset)  # elsewhere -inf

  def alone(rows):
    return plain(params, rows, plan, jax.random.key(0), return_logits=True)[1][..., video]

  _, composed = plain(params, prompts, plan, jax.random.key(0), return_logits=True,
                      branches=[(0.5, parts), (-0.25, uncond)])
  want = 0.75 * alone(prompts) + 0.5 * alone(parts) - 0.25 * alone(uncond)
  np.testing.assert_allclose(composed[..., video], want, rtol=1e-4, atol=1e-4)

  free = decode.frame_plan(vocab, 2, TOKENS_PER_FRAME)
  guided = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=8, guidance_scale=3.0))
  plain8 = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=8))
  np.testing.assert_array_equal(
      guided(params, prompts, free, jax.random.key(4), uncond_prompts=uncond),
      plain8(params, prompts, free, jax.random.key(4), branches=[(-2.0, uncond)]))


def test_composed_branches_are_checked(lm, vocab):
  model, params = lm
  prompts = text_prompts(vocab, (3, 4))
  plain = decode.Decoder(model, vocab, sampling.SamplingConfig())
  with pytest.raises(ValueError, match="one prompt per prompt"):
    plain(params, prompts, decode.free_plan(2), jax.random.key(0), branches=[(1.0, prompts[:1])])
  guided = decode.Decoder(model, vocab, sampling.SamplingConfig(guidance_scale=2.0))
  with pytest.raises(ValueError, match="composed branches"):
    guided(params, prompts, decode.free_plan(2), jax.random.key(0),
           uncond_prompts=[decode.prompt_ids(vocab)] * 2, branches=[(1.0, prompts)])
