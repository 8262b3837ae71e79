"""Attribute binding of drawn first frames (loong_jax/eval/binding.py), with a stand-in drawer
that renders what its caption names."""

import numpy as np
import pytest

from loong_jax.data import synthetic_render as render_lib
from loong_jax.eval import binding

PROMPTS = [
    dict(prompt="a medium red triangle moves left over a black background", color="red",
         shape="triangle", split="heldout"),
    dict(prompt="a medium blue square stays still over a black background", color="blue",
         shape="square", split="seen"),
    dict(prompt="a medium green circle moves right over a black background", color="green",
         shape="circle", split="seen"),
]


def binding_drawer(texts):
  """TEST STAND-IN for an LM: draws the colour and shape its caption names; without a colour
  word it draws orange, without a shape word a circle, and a caption naming neither (or
  'purple') draws nothing."""
  frames = []
  for text in texts:
    words = text.split()
    color = next((w for w in words if w in render_lib.COLORS), "orange")
    shape = next((w for w in words if w in render_lib.SHAPES), "circle")
    bg = render_lib.background("plain", "black", 64, 64, np.random.default_rng(0))
    objects = [] if color == "purple" else [dict(
        shape=shape, color=color, centers=np.array([[32.0, 32.0]]), radii=np.array([12.0]))]
    frames.append(render_lib.render(bg, objects, 1))
  return np.stack(frames)


def test_rates_follow_what_each_caption_variant_names():
  out = binding.measure(binding_drawer, PROMPTS, samples=2)
  assert out["samples"] == 2
  for key in ("color", "shape"):
    assert out["full"][key] == {"seen": 1.0, "heldout": 1.0}
  # Without the shape word every frame is a circle: only the green circle's shape is right.
  assert out["without_shape"]["color"] == {"seen": 1.0, "heldout": 1.0}
  assert out["without_shape"]["shape"] == {"seen": 0.5, "heldout": 0.0}
  # Without the colour word every frame is orange, of the prompted shape.
  assert out["without_color"]["color"] == {"seen": 0.0, "heldout": 0.0}
  assert out["without_color"]["shape"] == {"seen": 1.0, "heldout": 1.0}
  assert out["full"]["none"] == {"seen": 0.0, "heldout": 0.0}


def test_frames_without_an_object_count_as_none():
  prompts = [dict(PROMPTS[0], prompt="a medium purple triangle moves left", color="purple")]
  out = binding.measure(binding_drawer, prompts, samples=3, variants=("full",))
  assert out["full"] == {"color": {"heldout": 0.0}, "shape": {"heldout": 0.0},
                         "none": {"heldout": 1.0}}


def test_without_words_and_bad_input():
  assert binding.without_words(PROMPTS[0], ("shape", "color")) == (
      "a medium moves left over a black background")
  with pytest.raises(ValueError, match="does not contain its color"):
    binding.without_words(dict(PROMPTS[0], color="blue"), ("color",))
  with pytest.raises(ValueError, match="unknown"):
    binding.measure(binding_drawer, PROMPTS, samples=1, variants=("upside_down",))
  with pytest.raises(ValueError, match="splits"):
    binding.measure(binding_drawer, [dict(PROMPTS[0], split="train")], samples=1)
  with pytest.raises(ValueError, match="expected"):
    binding.measure(lambda texts: binding_drawer(texts)[:1], PROMPTS, samples=1)
