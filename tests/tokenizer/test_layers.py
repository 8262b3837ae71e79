"""Causal conv, depth-to-space, blur-pool and the norms of tokenizer/layers.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn

from loong_jax.tokenizer import layers


def conv_apply(x, strides=(1, 1, 1), impl="native_3d", padding="zeros", seed=0):
  conv = layers.CausalConv3d(4, (3, 3, 3), strides, temporal_padding=padding, conv_impl=impl)
  params = conv.init(jax.random.key(seed), x)
  return conv.apply(params, x)


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_causal_conv_frame_t_sees_only_earlier_frames(padding):
  x = jax.random.normal(jax.random.key(1), (1, 6, 8, 8, 3))
  y = conv_apply(x, padding=padding)
  x2 = x.at[:, 3].add(1.0)
  y2 = conv_apply(x2, padding=padding)
  np.testing.assert_allclose(y[:, :3], y2[:, :3], atol=1e-6)
  assert not np.allclose(y[:, 3], y2[:, 3])


def test_replicate_padding_repeats_first_frame():
  x = jax.random.normal(jax.random.key(1), (1, 4, 8, 8, 3))
  y = conv_apply(x, padding="replicate")
  # Replicate padding == zero padding applied to a clip that starts with two extra copies of frame 0.
  padded = jnp.concatenate([x[:, :1], x[:, :1], x], axis=1)
  np.testing.assert_allclose(y, conv_apply(padded, padding="zeros")[:, 2:], atol=1e-5)


@pytest.mark.parametrize("strides,frames,out", [((1, 2, 2), 17, 17), ((2, 2, 2), 17, 9),
                                                ((2, 2, 2), 9, 5), ((2, 2, 2), 1, 1)])
def test_strided_causal_conv_shapes_and_impls_agree(strides, frames, out):
  x = jax.random.normal(jax.random.key(2), (2, frames, 8, 8, 3))
  native = conv_apply(x, strides, "native_3d")
  stacked = conv_apply(x, strides, "stacked_2d")
  assert native.shape == (2, out, 4, 4, 4)
  np.testing.assert_allclose(native, stacked, atol=1e-5)


@pytest.mark.parametrize("frames,latent,expected", [(17, 5, [0, 1, 1, 1, 1, 2]), (9, 5, [0, 1, 1, 2]),
                                                    (3, 1, [0, 0, 0])])
def test_latent_frame_index(frames, latent, expected):
  index = layers.latent_frame_index(frames, latent)
  assert index.shape == (frames,)
  np.testing.assert_array_equal(index[:len(expected)], expected)
  assert index[-1] == latent - 1


@pytest.mark.parametrize("frames,out", [(5, 9), (1, 1)])
def test_depth_to_space_drops_leading_duplicate(frames, out):
  module = layers.DepthToSpace3d(4, (2, 2, 2))
  x = jax.random.normal(jax.random.key(3), (1, frames, 4, 4, 8))
  y, _ = module.init_with_output(jax.random.key(0), x)
  assert y.shape == (1, out, 8, 8, 4)


def test_depth_to_space_rearranges_channels_in_bt_bh_bw_c_order():
  module = layers.DepthToSpace3d(1, (2, 2, 2))
  x = jnp.ones((1, 2, 1, 1, 1))
  params = module.init(jax.random.key(0), x)
  # A conv that outputs channel k = k (bias only) makes the rearrangement visible.
  params = jax.tree.map(jnp.zeros_like, nn.unbox(params))
  params["params"]["conv"]["bias"] = jnp.arange(8.0)
  y = module.apply(params, x)
  assert y.shape == (1, 3, 2, 2, 1)
  np.testing.assert_array_equal(y[0, 0, :, :, 0], [[4, 5], [6, 7]])  # second temporal half of 0
  np.testing.assert_array_equal(y[0, 1, :, :, 0], [[0, 1], [2, 3]])


def test_blur_pool_shapes_and_preserves_constants():
  x = jnp.ones((1, 9, 16, 16, 2))
  y = layers.BlurPool3d((2, 2, 2)).apply({}, x)
  assert y.shape == (1, 5, 8, 8, 2)
  np.testing.assert_allclose(y[0, 1:-1, 1:-1, 1:-1], 1.0, atol=1e-6)
  assert layers.BlurPool3d((1, 2, 2)).apply({}, x).shape == (1, 9, 8, 8, 2)


def test_frame_group_norm_is_per_frame():
  x = jax.random.normal(jax.random.key(4), (1, 3, 4, 4, 8)) * jnp.array([1.0, 5.0, 20.0])[:, None,
                                                                                            None, None]
  norm = layers.FrameGroupNorm(4)
  y = norm.apply(norm.init(jax.random.key(0), x), x)
  groups = np.asarray(x).reshape(1, 3, 4, 4, 4, 2)
  mean = groups.mean(axis=(2, 3, 5), keepdims=True)
  var = groups.var(axis=(2, 3, 5), keepdims=True)
  expected = ((groups - mean) / np.sqrt(var + 1e-6)).reshape(x.shape)
  np.testing.assert_allclose(y, expected, atol=1e-4)


def test_adaptive_group_norm_uses_covering_latent_frame():
  norm = layers.AdaptiveGroupNorm(2)
  x = jax.random.normal(jax.random.key(5), (1, 5, 4, 4, 4))
  latent = jax.random.normal(jax.random.key(6), (1, 2, 2, 2, 3))
  params = nn.unbox(norm.init(jax.random.key(0), x, latent))
  params = jax.tree.map(lambda p: p + 0.5, params)   # non-zero projections
  y = norm.apply(params, x, latent)
  y2 = norm.apply(params, x, latent.at[:, 1].mul(3.0))
  np.testing.assert_allclose(y[:, 0], y2[:, 0], atol=1e-6)     # frame 0 <- latent 0
  assert not np.allclose(y[:, 1:], y2[:, 1:])                  # frames 1..4 <- latent 1


def test_space_to_depth_round_trip_and_layout():
  x = np.arange(2 * 3 * 4 * 6 * 5, dtype=np.float32).reshape(2, 3, 4, 6, 5)
  folded = layers.space_to_depth(x, 2)
  assert folded.shape == (2, 3, 2, 3, 20)
  # Channels are grouped (ph, pw, c): channel block 1 of cell (0, 0) is pixel (0, 1).
  np.testing.assert_array_equal(folded[:, :, 0, 0, 5:10], x[:, :, 0, 1])
  np.testing.assert_array_equal(layers.depth_to_space(folded, 2), x)
  assert layers.space_to_depth(x, 1) is x


@pytest.mark.parametrize("features", [4, 6])
def test_norm_free_res_block_starts_as_identity_or_shortcut(features):
  block = layers.ResBlock3d(features, num_groups=2, norm="none")
  x = jax.random.normal(jax.random.key(0), (1, 3, 4, 4, 4))
  params = block.init(jax.random.key(1), x)
  assert not any("norm" in "/".join(map(str, path))
                 for path, _ in jax.tree_util.tree_flatten_with_path(params)[0])
  out = block.apply(params, x)
  if features == 4:
    np.testing.assert_array_equal(out, x)
  else:
    shortcut = layers.CausalConv3d(features, (1, 1, 1)).apply(
        {"params": params["params"]["shortcut"]}, x)
    np.testing.assert_allclose(out, shortcut, atol=1e-6)
  with pytest.raises(ValueError, match="config.tokenizer.norm"):
    layers.ResBlock3d(4, num_groups=2, norm="batch").init(jax.random.key(1), x)
