"""Object-region tokenizer metrics: masks match the renderer, real clips are visible, a
background-only reconstruction is not."""

import numpy as np
import pytest

from loong_jax.data import synthetic
from loong_jax.eval import objects


def _clips(n=4, max_objects=1, frames=17):
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=3, resolution=32, num_frames=(frames,), max_objects=max_objects, num_heldout=n),
      "heldout")
  real = np.stack([data[i]["video"] for i in range(n)])
  masks, backgrounds = zip(*(objects.object_masks(data, i) for i in range(n)))
  return real, np.stack(masks), np.stack(backgrounds)


@pytest.mark.parametrize("max_objects", [1, 3])
def test_masks_and_background_rebuild_the_render(max_objects):
  real, masks, backgrounds = _clips(max_objects=max_objects)
  outside = ~masks
  assert np.array_equal(real[outside], np.broadcast_to(backgrounds[:, None], real.shape)[outside])
  assert masks.any((2, 3)).all()
  assert not np.array_equal(real[masks], np.broadcast_to(backgrounds[:, None], real.shape)[masks])


def test_real_clip_is_visible_and_background_only_is_not():
  real, masks, backgrounds = _clips()
  assert objects.object_visible(real, real, masks, backgrounds) == 1.0
  empty = np.broadcast_to(backgrounds[:, None], real.shape)
  assert objects.object_visible(real, empty, masks, backgrounds) == 0.0
  assert objects.object_psnr(real, real, masks) == pytest.approx(100.0)
  assert objects.object_psnr(real, empty, masks) < 15.0


def test_one_wrong_colour_everywhere_is_not_visible():
  """Mid-grey is nearer to most object colours than to a black background: not enough."""
  real, masks, backgrounds = _clips()
  grey = np.full_like(real, 128)
  assert objects.object_visible(real, grey, masks, backgrounds) == 0.0
  blurred = ((real.astype(np.float32) * 3 + backgrounds[:, None]) / 4).astype(np.uint8)
  assert objects.object_visible(real, blurred, masks, backgrounds) == 1.0


def test_object_lost_in_one_frame_is_not_visible():
  real, masks, backgrounds = _clips(n=1)
  fake = real.copy()
  fake[0, 5] = backgrounds[0]
  assert not objects.visible(real, fake, masks, backgrounds)[0]


def test_object_psnr_matches_a_direct_computation():
  real, masks, _ = _clips(n=2)
  rng = np.random.default_rng(0)
  fake = np.clip(real.astype(int) + rng.integers(-20, 21, real.shape), 0, 255).astype(np.uint8)
  expected = []
  for r, f, m in zip(real, fake, masks):
    err = (r[m].astype(np.float64) - f[m]) / 255.0
    expected.append(-10 * np.log10(np.mean(err ** 2)))
  assert objects.object_psnr(real, fake, masks) == pytest.approx(np.mean(expected), abs=1e-3)


def test_shape_mismatch_is_named():
  real, masks, backgrounds = _clips(n=1)
  with pytest.raises(ValueError, match="masks"):
    objects.object_psnr(real, real, masks[:, :3])
