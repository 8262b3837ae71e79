"""Checks that need an NVIDIA GPU: cuDNN attention against XLA's, bfloat16 training steps of the
LM and the tokenizer, and KV-cached decoding against the full forward on the GPU.

Skipped on machines without a GPU (the suite's default: tests/conftest.py selects the CPU). Run
them on a GPU machine with

  JAX_PLATFORMS=cuda,cpu XLA_FLAGS= python -m pytest -m gpu tests/gpu -n 0
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from loong_jax import tokens
from loong_jax.inference import decode, sampling
from loong_jax.llm import transformer
from loong_jax.train import lm_step
from loong_jax.train import state as state_lib
from tests.inference.conftest import small_lm_config

VOCAB = tokens.Vocab(text_size=40, video_size=32)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (JAX_PLATFORMS=cuda)"),
]


def _params(model, length=8, seed=0):
  return jax.jit(lambda: nn.unbox(model.init(jax.random.key(seed),
                                             jnp.zeros((1, length), jnp.int32))["params"]))()


def test_cudnn_attention_matches_xla_in_bfloat16():
  # cuDNN's fused attention needs bfloat16 / float16 and head_dim a multiple of 8.
  base = small_lm_config(num_heads=4, num_kv_heads=2, head_dim=64, d_model=256, mlp_dim=512,
                         dtype=jnp.bfloat16, init_std=0.02)
  xla = transformer.Transformer(dataclasses.replace(base, attention_impl="xla"))
  cudnn = transformer.Transformer(dataclasses.replace(base, attention_impl="cudnn"))
  params = _params(xla)
  ids = jax.random.randint(jax.random.key(1), (4, 256), 0, VOCAB.size)
  want = jax.jit(xla.apply)({"params": params}, ids)
  got = jax.jit(cudnn.apply)({"params": params}, ids)
  real = slice(0, VOCAB.size)
  np.testing.assert_allclose(np.asarray(got[..., real]), np.asarray(want[..., real]),
                             atol=5e-2, rtol=5e-2)


def test_bfloat16_lm_steps_lower_the_loss_on_a_fixed_batch():
  config = small_lm_config(dtype=jnp.bfloat16, init_std=0.02)
  model = transformer.Transformer(config)
  params = _params(model)
  state = state_lib.TrainState.create(apply_fn=model.apply, params=params,
                                      tx=optax.adamw(1e-2))
  rng = np.random.default_rng(0)
  seq = rng.integers(0, VOCAB.size, (8, 65)).astype(np.int32)
  batch = {"inputs": seq[:, :-1], "targets": seq[:, 1:],
           "weights": np.ones((8, 64), np.float32), "frame": np.full((8, 64), -1, np.int32)}
  step = jax.jit(lm_step.train_step)
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0], losses


def test_cached_decoding_matches_the_full_forward_on_the_gpu():
  # float32 at the highest matmul precision: the same program as the CPU test, on the GPU.
  model = transformer.Transformer(small_lm_config(prev_frame_input=True))
  params = _params(model)
  n = 4
  plan = decode.frame_plan(VOCAB, 3, n)
  prompts = [decode.prompt_ids(VOCAB, [1, 2, 3]),
             decode.prompt_ids(VOCAB, [7], np.arange(n)[None] % VOCAB.video_size)]
  with jax.default_matmul_precision("highest"):
    decoder = decode.Decoder(model, VOCAB, sampling.SamplingConfig(top_k=5), prompt_multiple=4)
    ids, logits = decoder(params, prompts, plan, jax.random.key(0), return_logits=True)
    for i, prompt in enumerate(prompts):
      seq = np.concatenate([prompt, ids[i]])[None, :-1]
      full = model.apply({"params": params}, seq,
                         prev_ids=tokens.previous_frame_inputs(seq, VOCAB))[0]
      want = np.asarray(full[len(prompt) - 1:])[plan.video_only]
      got = logits[i][plan.video_only]
      video = slice(VOCAB.video_offset, VOCAB.special_offset)
      np.testing.assert_allclose(got[:, video], want[:, video], rtol=1e-4, atol=1e-4)


def test_tokenizer_train_step_with_the_gan_runs_on_the_gpu():
  from loong_jax import sharding as sharding_lib  # noqa: PLC0415
  from loong_jax.train import tokenizer_step  # noqa: PLC0415
  from tests.tokenizer.test_tokenizer_step import micro_config  # noqa: PLC0415
  config = micro_config()
  mesh = sharding_lib.make_mesh(config.mesh, jax.devices()[:1])
  rules = sharding_lib.rules(config.sharding)
  state, shardings = tokenizer_step.create_state(config, jax.random.key(0), mesh, rules)
  step = tokenizer_step.jit_train_step(config, shardings, mesh, use_gan=True)
  batch = np.random.default_rng(1).uniform(-1, 1, (8, 5, 8, 8, 3)).astype(np.float32)
  with sharding_lib.mesh_context(mesh, rules):
    for _ in range(3):
      state, metrics = step(state, jax.device_put(batch, sharding_lib.batch_sharding(mesh, 5)))
  assert all(np.isfinite(float(v)) for v in jax.device_get(metrics).values())
