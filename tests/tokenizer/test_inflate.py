"""An inflated video tokenizer reproduces the image tokenizer frame by frame at init."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.tokenizer import autoencoder, inflate


def _image_and_video_models(video_cfg, frames: int):
  """`(clip [1, frames, 16, 16, 3], image model, video model, image params)`: the image twin of
  `video_cfg` with weights perturbed to be non-zero everywhere, so every inflated slice matters."""
  clip = jax.random.uniform(jax.random.key(0), (1, frames, 16, 16, 3), minval=-1, maxval=1)
  image_model = autoencoder.make_tokenizer(inflate.image_config(video_cfg))
  video_model = autoencoder.make_tokenizer(video_cfg)
  image_params = nn.unbox(jax.jit(image_model.init)(jax.random.key(1), clip[:, :1])["params"])
  image_params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape),
                              image_params)
  return clip, image_model, video_model, image_params


def test_inflated_video_tokenizer_equals_per_frame_image_tokenizer(tiny_config):
  video_cfg = tiny_config.tokenizer
  clip, image_model, video_model, image_params = _image_and_video_models(video_cfg, 5)
  video_params = inflate.inflate_params(
      image_params, jax.eval_shape(video_model.init, jax.random.key(3), clip[:, :1])["params"])

  encoder = lambda m, x: m.encoder(x)
  z_video = jax.jit(lambda v: video_model.apply({"params": video_params}, v, method=encoder))(clip)
  # The image model sees every frame as a separate 1-frame clip: [B * T, 1, H, W, C].
  frames = clip.reshape((-1, 1) + clip.shape[2:])
  z_image = jax.jit(lambda v: image_model.apply({"params": image_params}, v, method=encoder))(frames)
  z_image = z_image.reshape(clip.shape[:2] + z_image.shape[2:])        # [B, T, h, w, z]
  assert z_video.shape[1] == 2
  np.testing.assert_allclose(z_video, z_image[:, ::4], atol=1e-4)   # latent j <- frame 4j

  codes = jnp.sign(z_video)
  decoder = lambda m, x: m.decoder(x)
  out_video = jax.jit(lambda c: video_model.apply({"params": video_params}, c, method=decoder))(
      codes)
  per_latent = codes.reshape((-1, 1) + codes.shape[2:])
  out_image = jax.jit(lambda c: image_model.apply({"params": image_params}, c, method=decoder))(
      per_latent)
  out_image = out_image.reshape(codes.shape[:2] + out_image.shape[2:])
  cover = [0, 1, 1, 1, 1]                                          # ceil(f / 4)
  np.testing.assert_allclose(out_video, out_image[:, cover], atol=1e-4)


def test_inflation_rejects_mismatched_trees(tiny_config):
  video_cfg = tiny_config.tokenizer
  wider = inflate.image_config(video_cfg)
  wider.ch = 16
  shape = autoencoder.init_input_shape(video_cfg)
  x = jnp.zeros(shape)
  abstract = lambda cfg: jax.eval_shape(autoencoder.make_tokenizer(cfg).init, jax.random.key(0),
                                        x)["params"]
  image_params, video_params = abstract(wider), abstract(video_cfg)
  with pytest.raises(ValueError, match="cannot inflate parameter .*: image shape"):
    inflate.inflate_params(image_params, video_params)


def test_middle_tap_inflation_encodes_the_first_frame_of_each_latent_group(tiny_config):
  """Norm-free blocks, replicate padding, encoder temporal-downsampling kernels on the middle tap:
  latent k starts as the image encoding of frame 4k - 3 (frame 0 for k = 0)."""
  video_cfg = tiny_config.tokenizer
  video_cfg.norm, video_cfg.temporal_padding = "none", "replicate"
  clip, image_model, video_model, image_params = _image_and_video_models(video_cfg, 9)
  middle = inflate.temporal_downsamplers(video_cfg)
  assert middle == ("encoder/down_1_downsample/kernel", "encoder/down_2_downsample/kernel")
  video_params = inflate.inflate_params(
      image_params, jax.eval_shape(video_model.init, jax.random.key(3), clip[:, :1])["params"],
      middle)
  encoder = lambda m, x: m.encoder(x)
  z_video = jax.jit(lambda v: video_model.apply({"params": video_params}, v, method=encoder))(clip)
  frames = clip.reshape((-1, 1) + clip.shape[2:])
  z_image = jax.jit(lambda v: image_model.apply({"params": image_params}, v,
                                                method=encoder))(frames)
  z_image = z_image.reshape(clip.shape[:2] + z_image.shape[2:])
  assert z_video.shape[1] == 3
  np.testing.assert_allclose(z_video, z_image[:, [0, 1, 5]], atol=1e-4)


def test_middle_tap_must_name_an_inflated_kernel(tiny_config):
  shape = autoencoder.init_input_shape(tiny_config.tokenizer)
  abstract = lambda cfg: jax.eval_shape(autoencoder.make_tokenizer(cfg).init, jax.random.key(0),
                                        jnp.zeros(shape))["params"]
  image_params = abstract(inflate.image_config(tiny_config.tokenizer))
  with pytest.raises(ValueError, match="middle_tap names no inflatable kernel"):
    inflate.inflate_params(image_params, abstract(tiny_config.tokenizer), ("encoder/nope/kernel",))
