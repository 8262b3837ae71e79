"""The tokenizer train step: data-parallel on 8 fake devices equals 1 device; it learns."""

import jax
import numpy as np
import pytest

from loong_jax import sharding as sharding_lib
from loong_jax.train import tokenizer_step
from tests.tokenizer.conftest import load


def micro_config(quantizer="lfq"):
  """One downsampling level (both axes), 5x8x8 clips: the smallest model with every step part."""
  config = load("tiny")
  config.tokenizer.ch_mult = (1, 2)
  config.tokenizer.down_strides = ((2, 2, 2),)
  config.tokenizer.quantizer.type = quantizer
  config.tokenizer.discriminator.ch_mult = (2,)
  config.data.resolution = 8
  config.train.batch_size = 8
  return config


def run_step(config, devices, batch):
  mesh = sharding_lib.make_mesh(config.mesh, devices)
  rules = sharding_lib.rules(config.sharding)
  state, shardings = tokenizer_step.create_state(config, jax.random.key(0), mesh, rules)
  step = tokenizer_step.jit_train_step(config, shardings, mesh, use_gan=True)
  with sharding_lib.mesh_context(mesh, rules):
    state, metrics = step(state, jax.device_put(batch, sharding_lib.batch_sharding(mesh, 5)))
  return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.parametrize("quantizer", ["lfq", "cvq"])
def test_eight_devices_match_one(quantizer):
  assert len(jax.devices()) == 8
  config = micro_config(quantizer)
  batch = np.random.default_rng(0).uniform(-1, 1, (8, 5, 8, 8, 3)).astype(np.float32)
  state8, metrics8 = run_step(config, jax.devices(), batch)
  state1, metrics1 = run_step(config, jax.devices()[:1], batch)
  for key in metrics1:
    np.testing.assert_allclose(metrics8[key], metrics1[key], rtol=2e-4, atol=2e-5, err_msg=key)
  for tree in ("params", "disc_params", "codebook_stats", "lecam_ema"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5),
                 getattr(state8, tree), getattr(state1, tree))
  assert int(state8.step) == 1
  assert "disc_loss" in metrics8 and np.isfinite(metrics8["generator_loss"])


def test_generator_steps_reduce_reconstruction_loss():
  config = micro_config()
  config.train.steps = 40
  mesh = sharding_lib.make_mesh(config.mesh, jax.devices()[:1])  # learning, not sharding
  rules = sharding_lib.rules(config.sharding)
  state, shardings = tokenizer_step.create_state(config, jax.random.key(0), mesh, rules)
  step = tokenizer_step.jit_train_step(config, shardings, mesh, use_gan=False)
  batch = jax.device_put(np.random.default_rng(1).uniform(-1, 1, (8, 5, 8, 8, 3)).astype(np.float32),
                         sharding_lib.batch_sharding(mesh, 5))
  losses = []
  with sharding_lib.mesh_context(mesh, rules):
    for _ in range(15):
      state, metrics = step(state, batch)
      losses.append(float(metrics["reconstruction_loss"]))
  assert losses[-1] < 0.9 * losses[0], losses
  # The EMA moved, but less than the weights.
  assert not np.allclose(jax.tree.leaves(state.ema_params)[0], jax.tree.leaves(state.params)[0])
