"""GAN / LeCam / R1 / PSNR values, the discriminators, and the perceptual weights file."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.tokenizer import discriminator, losses, perceptual
from tests.tokenizer.conftest import load


def test_gan_losses_match_formulas():
  real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.3, 1.5])
  hinge = np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake))
  np.testing.assert_allclose(losses.hinge_discriminator_loss(real, fake), hinge, rtol=1e-6)
  np.testing.assert_allclose(losses.generator_adversarial_loss(fake),
                             np.mean(np.log1p(np.exp(-np.asarray(fake)))), rtol=1e-6)
  lecam = np.mean(np.maximum(0, real - 0.2) ** 2) + np.mean(np.maximum(0, 0.4 - fake) ** 2)
  np.testing.assert_allclose(losses.lecam_regularizer(real, fake, 0.4, 0.2), lecam, rtol=1e-6)
  ema = losses.update_lecam_ema(jnp.zeros(2), real, fake, 0.9)
  np.testing.assert_allclose(ema, 0.1 * np.array([np.mean(real), np.mean(fake)]), rtol=1e-6)


def test_r1_of_a_linear_discriminator():
  w = jnp.arange(12.0).reshape(1, 2, 2, 3)
  r1 = losses.r1_penalty(lambda v: jnp.sum(v * w, axis=(1, 2, 3)), jnp.ones((4, 1, 2, 2, 3)))
  np.testing.assert_allclose(r1, 0.5 * np.sum(np.arange(12.0) ** 2), rtol=1e-6)


def test_reconstruction_and_psnr():
  x = jnp.zeros((2, 1, 4, 4, 3))
  y = x + 0.2            # 0.1 on the [0, 1] scale -> 20 dB
  np.testing.assert_allclose(losses.reconstruction_loss(x, y, "l1"), 0.2, rtol=1e-6)
  np.testing.assert_allclose(losses.reconstruction_loss(x, y, "l2"), 0.04, rtol=1e-6)
  np.testing.assert_allclose(losses.psnr(y, x), 20.0, rtol=1e-5)
  with pytest.raises(ValueError, match="l1"):
    losses.reconstruction_loss(x, y, "huber")


@pytest.mark.parametrize("kind,shape", [("stylegan", (2, 1)), ("patchgan", (2, 1, 2, 2, 1))])
def test_discriminator_outputs(kind, shape):
  config = load("tiny").tokenizer.discriminator
  config.type = kind
  video = jnp.zeros((2, 5, 16, 16, 3))
  model = discriminator.make_discriminator(config)
  logits, _ = jax.jit(lambda v: model.init_with_output(jax.random.key(0), v))(video)
  assert logits.shape == shape


def test_perceptual_weights_round_trip(tmp_path):
  frames = jax.random.uniform(jax.random.key(0), (1, 2, 32, 32, 3), minval=-1, maxval=1)
  params = nn.unbox(jax.jit(perceptual.LPIPS().init)(jax.random.key(1), frames[0], frames[0]))
  path = str(tmp_path / "lpips.npz")
  perceptual.save_params(path, params["params"])
  loaded = perceptual.load_params(path)
  jax.tree.map(np.testing.assert_array_equal, loaded, params["params"])
  distance = jax.jit(perceptual.video_distance)
  assert abs(float(distance(loaded, frames, frames))) < 1e-6
  assert abs(float(distance(loaded, frames, -frames))) > 1e-6
  np.savez(path, **{"conv_0/kernel": np.zeros((3, 3, 3, 64), np.float32)})
  with pytest.raises(ValueError, match="missing perceptual weight"):
    perceptual.load_params(path)
