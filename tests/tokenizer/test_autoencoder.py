"""Shapes, id range and causality of the whole tokenizer; parameter counts of the big configs."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.tokenizer import autoencoder, inflate
from loong_jax.train import state as state_lib
from tests.tokenizer.conftest import load


@pytest.fixture(scope="module")
def tiny_model():
  """The tiny tokenizer with jitted encoder / decoder / ids functions, shared by the tests below."""
  model = autoencoder.make_tokenizer(load("tiny").tokenizer)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 1, 16, 16, 3)))["params"])
  apply = lambda method: jax.jit(lambda x: model.apply({"params": params}, x, method=method))
  return dict(encoder=apply(lambda m, x: m.encoder(x)), decoder=apply(lambda m, x: m.decoder(x)),
              encode=apply(model.encode), decode=apply(model.decode),
              reencode=jax.jit(lambda x, p, m: model.apply({"params": params}, x, p, m,
                                                           method=model.reencode)))


def test_shapes_at_128px_without_compute(tiny_config):
  model = autoencoder.make_tokenizer(tiny_config.tokenizer)
  for frames, latent in ((17, 5), (1, 1)):
    video = jax.ShapeDtypeStruct((2, frames, 128, 128, 3), jnp.float32)
    ids = jax.eval_shape(lambda v: model.init_with_output(jax.random.key(0), v,
                                                          method=model.encode)[0], video)
    assert ids.shape == (2, latent, 16, 16) and ids.dtype == jnp.int32


def test_clip_and_image_ids_and_decode(tiny_model, tiny_config):
  clip = jax.random.uniform(jax.random.key(0), (1, 9, 16, 16, 3), minval=-1, maxval=1)
  ids = tiny_model["encode"](clip)
  assert ids.shape == (1, 3, 2, 2) and ids.dtype == jnp.int32
  k = tiny_config.tokenizer.quantizer.codebook_size
  assert 0 <= int(ids.min()) and int(ids.max()) < k
  image_ids = tiny_model["encode"](clip[:, :1])
  assert image_ids.shape == (1, 1, 2, 2)
  # The image path is the clip path restricted to frame 0 (causality).
  np.testing.assert_array_equal(image_ids[:, 0], ids[:, 0])
  assert tiny_model["decode"](ids).shape == (1, 9, 16, 16, 3)


def test_reencode_keeps_codes_within_the_margin(tiny_model, tiny_config):
  """`reencode(video, previous, margin)`: margin 0 is `encode`; a video's own codes are kept
  at any margin; a margin wider than the code space keeps any previous codes."""
  clip = jax.random.uniform(jax.random.key(2), (2, 5, 16, 16, 3), minval=-1, maxval=1)
  ids = tiny_model["encode"](clip)
  other = (ids + 1) % tiny_config.tokenizer.quantizer.codebook_size
  np.testing.assert_array_equal(tiny_model["reencode"](clip, other, 0.0), ids)
  np.testing.assert_array_equal(tiny_model["reencode"](clip, ids, 0.4), ids)
  np.testing.assert_array_equal(tiny_model["reencode"](clip, other, 1e6), other)
  blurred = tiny_model["decode"](ids)
  plain = tiny_model["encode"](blurred)
  sticky = tiny_model["reencode"](blurred, ids, 0.5)
  assert np.mean(sticky == ids) >= np.mean(plain == ids)


def test_encoder_and_decoder_are_causal(tiny_model):
  clip = jax.random.uniform(jax.random.key(1), (1, 9, 16, 16, 3), minval=-1, maxval=1)
  z = tiny_model["encoder"](clip)
  assert z.shape[1] == 3   # latents cover frames {0}, {1..4}, {5..8}
  changed = tiny_model["encoder"](clip.at[:, 5].set(0.5))
  np.testing.assert_allclose(z[:, :2], changed[:, :2], atol=1e-6)
  assert not np.allclose(z[:, 2], changed[:, 2])
  codes = jnp.sign(z)
  out = tiny_model["decoder"](codes)
  out_changed = tiny_model["decoder"](codes.at[:, 2].multiply(-1.0))
  np.testing.assert_allclose(out[:, :5], out_changed[:, :5], atol=1e-6)
  assert not np.allclose(out[:, 5:], out_changed[:, 5:])


def test_bad_clip_shape_is_reported(tiny_config):
  config = autoencoder.AutoencoderConfig.from_config(tiny_config.tokenizer)
  assert config.latent_shape(17, 128, 128) == (5, 16, 16)
  with pytest.raises(ValueError, match="frames = 1 \\+ 4k"):
    config.latent_shape(16, 128, 128)


@pytest.mark.parametrize("variant,target", [("loong_246m", 246e6), ("om2_video", None)])
def test_generator_parameter_counts(variant, target):
  trees = autoencoder.abstract_params(load(variant).tokenizer)
  assert set(trees) == {"generator", "discriminator"}
  n = state_lib.count_params(trees["generator"])
  if target:
    assert abs(n - target) / target < 0.05, n
  assert state_lib.count_params(trees["discriminator"]) > 0


def test_patch_size_shapes_and_causality(tiny_config):
  """patch_size=2 folds pixels into channels: the same id grid with one stride level fewer, and
  the model stays causal."""
  config = tiny_config.tokenizer
  config.patch_size, config.ch_mult = 2, (1, 2, 2)
  config.down_strides = ((2, 2, 2), (2, 2, 2))
  model = autoencoder.make_tokenizer(config)
  assert autoencoder.AutoencoderConfig.from_config(config).spatial_factor == 8
  clip = jax.random.uniform(jax.random.key(2), (1, 9, 16, 16, 3), minval=-1, maxval=1)
  params = jax.jit(model.init)(jax.random.key(0), clip)
  encode = jax.jit(lambda x: model.apply(params, x, method=model.encode))
  ids = encode(clip)
  assert ids.shape == (1, 3, 2, 2)
  np.testing.assert_array_equal(encode(clip.at[:, 5:].set(0.0))[:, :2], ids[:, :2])
  decode = lambda i: model.apply(params, i, method=model.decode)  # noqa: E731
  assert jax.eval_shape(decode, ids).shape == (1, 9, 16, 16, 3)


def test_bad_patch_size_is_reported(tiny_config):
  tiny_config.tokenizer.patch_size = 0
  with pytest.raises(ValueError, match="patch_size"):
    autoencoder.make_tokenizer(tiny_config.tokenizer)


def test_local_encoder_latents_see_only_their_own_block(tiny_config):
  """local_encoder=True: changing one pixel block changes the latents of that block only (at
  its latent frame and, through causal time, later ones), never a neighbour's; the default
  encoder's 3x3 kernels spread the same change to the neighbours. Ids keep their shape, and the
  image twin inflates into the local video encoder."""
  config = tiny_config.tokenizer
  config.norm = "none"  # second convs start at zero: perturb them so no block is the identity
  clip = jax.random.uniform(jax.random.key(3), (1, 9, 16, 16, 3), minval=-1, maxval=1)
  changed_clip = clip.at[:, 5, 8:16, 0:8].set(0.9)  # frame 5 (latent 2), block (1, 0)
  spread = {}
  for local in (False, True):
    config.local_encoder = local
    model = autoencoder.make_tokenizer(config)
    params = jax.jit(model.init)(jax.random.key(0), clip)
    params = jax.tree_util.tree_map(lambda p: p + 0.05, params)
    encoder = jax.jit(lambda x, p=params, m=model: m.apply(p, x, method=lambda m, v: m.encoder(v)))
    z = encoder(clip)
    assert z.shape == (1, 3, 2, 2, config.z_channels)
    moved = np.abs(np.asarray(encoder(changed_clip) - z)).max(-1)[0]  # [t, h, w]
    spread[local] = moved > 1e-6
  assert spread[True][2, 1, 0] and spread[True].sum() == 1, spread[True]
  assert spread[False][2].sum() > 1   # the default encoder mixes blocks
  image = autoencoder.make_tokenizer(inflate.image_config(config))
  image_params = jax.jit(image.init)(jax.random.key(0), clip[:, :1])
  video_params = jax.jit(model.init)(jax.random.key(0), clip)
  inflated = inflate.inflate_params(image_params["params"], video_params["params"])
  chex.assert_trees_all_equal_shapes(inflated, nn.unbox(video_params["params"]))


def test_last_frame_encoder_codes_each_latent_from_its_last_frame(tiny_config):
  """encoder_frames='last': latent j is the encoding of frame 4j alone, so a clip's latents are
  its frames' image latents (frames between are never read), and the image twin inflates into
  the encoder exactly (no temporal taps to fill)."""
  config = tiny_config.tokenizer
  config.encoder_frames = "last"
  clip = jax.random.uniform(jax.random.key(4), (1, 9, 16, 16, 3), minval=-1, maxval=1)
  model = autoencoder.make_tokenizer(config)
  params = jax.jit(model.init)(jax.random.key(0), clip)
  encoder = jax.jit(lambda x: model.apply(params, x, method=lambda m, v: m.encoder(v)))
  z = np.asarray(encoder(clip))
  assert z.shape == (1, 3, 2, 2, config.z_channels)
  for j in range(3):
    np.testing.assert_allclose(z[:, j], np.asarray(encoder(clip[:, 4 * j:4 * j + 1]))[:, 0],
                               atol=1e-5)
  between = np.asarray(encoder(clip.at[:, 5:8].set(0.5)))  # frames latent 2 covers, not its last
  np.testing.assert_allclose(between, z, atol=1e-6)
  assert not np.allclose(np.asarray(encoder(clip.at[:, 8].set(0.5)))[:, 2], z[:, 2])
  image = autoencoder.make_tokenizer(inflate.image_config(config))
  image_params = jax.jit(image.init)(jax.random.key(1), clip[:, :1])["params"]
  assert inflate.temporal_downsamplers(config) == ()  # no temporal taps: nothing on the middle
  inflated = inflate.inflate_params(image_params, params["params"])
  image_z = jax.jit(lambda x: image.apply({"params": image_params}, x,
                                          method=lambda m, v: m.encoder(v)))
  video_z = model.apply({"params": inflated}, clip, method=lambda m, v: m.encoder(v))
  np.testing.assert_allclose(np.asarray(video_z)[:, 2], np.asarray(image_z(clip[:, 8:9]))[:, 0],
                             atol=1e-5)


def test_bad_encoder_frames_is_reported(tiny_config):
  tiny_config.tokenizer.encoder_frames = "first"
  with pytest.raises(ValueError, match="encoder_frames"):
    autoencoder.make_tokenizer(tiny_config.tokenizer)


def test_color_channels_split_colour_from_pattern(tiny_config):
  """color_channels=k: latent channels 0..k-1 depend on a block's colour range only (the same
  coloured blob anywhere in the block, or dimmer, gives the same values), the others on its
  brightness pattern only (the same blob in another hue of the same brightness gives the same
  values); the image twin inflates into it; the split needs the local, last-frame encoder."""
  config = tiny_config.tokenizer
  config.update(dict(local_encoder=True, encoder_frames="last", color_channels=2))
  black = -jnp.ones((1, 1, 16, 16, 3))
  def blob(color, y, x):  # a 3x3 blob of `color` at (y, x) of block (0, 0)
    return black.at[:, :, y:y + 3, x:x + 3].set(jnp.asarray(color, jnp.float32))
  model = autoencoder.make_tokenizer(config)
  params = jax.jit(model.init)(jax.random.key(0), black)
  params = jax.tree_util.tree_map(lambda p: p + 0.05, params)  # no zero-init identity paths
  encoder = jax.jit(lambda x: model.apply(params, x, method=lambda m, v: m.encoder(v)))
  red_a, red_b = encoder(blob((1, -1, -1), 0, 0)), encoder(blob((1, -1, -1), 4, 3))
  blue_a = encoder(blob((-1, -1, 1), 0, 0))
  assert red_a.shape == (1, 1, 2, 2, config.z_channels)
  np.testing.assert_allclose(red_a[..., :2], red_b[..., :2], atol=1e-5)   # colour: place-blind
  dim_red = encoder(blob((0, -1, -1), 0, 0))  # half as bright: a partly covered edge
  np.testing.assert_allclose(red_a[..., :2], dim_red[..., :2], atol=1e-5)
  assert not np.allclose(red_a[0, 0, 0, 0, 2:], red_b[0, 0, 0, 0, 2:])    # pattern: place
  np.testing.assert_allclose(red_a[..., 2:], blue_a[..., 2:], atol=1e-5)  # pattern: hue-blind
  assert not np.allclose(red_a[0, 0, 0, 0, :2], blue_a[0, 0, 0, 0, :2])   # colour: hue
  image = autoencoder.make_tokenizer(inflate.image_config(config))
  image_params = jax.jit(image.init)(jax.random.key(1), black)["params"]
  video_params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 9, 16, 16, 3)))["params"]
  inflated = inflate.inflate_params(image_params, video_params)
  chex.assert_trees_all_equal_shapes(inflated, nn.unbox(video_params))
  config.encoder_frames = "all"
  with pytest.raises(ValueError, match="color_channels"):
    autoencoder.make_tokenizer(config)
