"""Rendered clips of the built-in dataset standing in for generated videos."""

from loong_jax.data import synthetic

RESOLUTION = 64


def single_object(split: str, num_frames: int = 17, fps: int = 8, seed: int = 0,
                  n: int = 1000) -> synthetic.SyntheticVideos:
  """Single-object clips of `split` ("train" or "heldout")."""
  return synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=seed, resolution=RESOLUTION, num_frames=(num_frames,), fps=(fps,), max_objects=1,
      num_train=n, num_heldout=n), split)


def first_object(sample: dict) -> dict:
  """`{"color", "shape", "motion"}` of the sample's (only) object."""
  obj = sample["attributes"]["objects"][0]
  return {k: obj[k] for k in ("color", "shape", "motion")}
