"""The built-in captioned video dataset: deterministic, seedable, no downloads.

One to three objects (`synthetic_render.SHAPES` x `COLORS` x three sizes) move over a plain or
textured background; each sample draws its own frame count and frame rate from the config, and
carries its ground-truth attributes (colours, shapes, sizes, motions, per-frame centres and radii)
for evaluating text-to-video faithfulness and long-range consistency.

    data = SyntheticVideos(SyntheticConfig(resolution=64), split="train")
    sample = data.sample(7)   # {"video": uint8 [T, H, W, 3], "caption", "attributes", "fps", "key"}

Sample `i` of a split depends only on `(seed, split, i)`. The `heldout` split uses colour-shape
pairs (`HELDOUT_PAIRS`) that never occur in `train`, for compositional generalisation tests.
A `SyntheticVideos` is a grain `RandomAccessDataSource` (`len`, `__getitem__`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from loong_jax.data import synthetic_render as render_lib

SIZES = {"small": 0.09, "medium": 0.14, "large": 0.2}  # radius / image side
TRAVEL = (0.25, 0.45)  # straight motions travel this fraction of the side over their whole clip
DIRECTIONS = {  # unit (x, y) steps, y down
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
    "up-left": (-1, -1), "up-right": (1, -1), "down-left": (-1, 1), "down-right": (1, 1),
}
MOTIONS = ("still", *DIRECTIONS, "bouncing", "growing", "shrinking")
# Varied wordings. No phrase is a prefix of another motion's phrase, so a caption names one
# motion per object unambiguously (the tests rely on it).
MOTION_PHRASES = {
    "still": ("stays still", "rests in place", "does not move"),
    "left": ("drifts to the left", "moves left", "slides to the left"),
    "right": ("drifts to the right", "moves right", "slides to the right"),
    "up": ("rises", "moves upward", "drifts upward"),
    "down": ("falls", "moves downward", "sinks"),
    "up-left": ("moves toward the top left", "drifts up and to the left"),
    "up-right": ("moves toward the top right", "drifts up and to the right"),
    "down-left": ("moves toward the bottom left", "drifts down and to the left"),
    "down-right": ("moves toward the bottom right", "drifts down and to the right"),
    "bouncing": ("bounces around", "bounces off the walls", "ricochets around the frame"),
    "growing": ("grows", "expands", "gets bigger"),
    "shrinking": ("shrinks", "contracts", "gets smaller"),
}
TEXTURE_WORDS = {"plain": "", "striped": " striped", "checkered": " checkered",
                 "speckled": " speckled"}
# Compositional split [ours]: these colour-shape pairs appear only in `heldout`.
HELDOUT_PAIRS = (("red", "triangle"), ("blue", "ring"), ("green", "cross"),
                 ("yellow", "square"), ("purple", "circle"), ("orange", "diamond"))
SPLITS = ("train", "heldout")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Generator settings.

  Attributes:
    seed: base seed; sample i of a split is a function of (seed, split, i).
    resolution: square frame side in pixels (64 for the CPU demo, 128 for real runs).
    num_frames: frame counts to draw from (each 1 + 4k); `long_clip_frames` gives a minute.
    fps: frame rates to draw from.
    max_objects: 1 to 3 objects per sample.
    num_train, num_heldout: split lengths (`len()` of the data source).
    motions, sizes, textures, background_colors: the world's choices (subsets of `MOTIONS`,
      `SIZES`, `synthetic_render.TEXTURES` and `BACKGROUND_COLORS`); an easier world for a small
      budget (the CPU demo: plain backgrounds, five motions) keeps the held-out colour-shape pairs.
    speed: 0: a straight motion travels a fraction of the side drawn from `TRAVEL` over its whole
      clip, so a 65-frame clip moves 4x slower than a 17-frame one. > 0: every straight motion
      moves `speed` of the side per frame whatever the clip's length (1/32: 2 px per frame at
      64 px, one 8-px token block per 4-frame latent frame) and rests at the frame's edge once it
      gets there; it starts where as much of its path as fits stays inside.
    wall_fraction: with `speed > 0`, the fraction of straight motions that start anywhere in the
      frame instead, so that the object may reach the edge within the clip and rest there, as it
      does in every minute-long clip (a model that never saw it carries the object out of the
      frame). Drawn only when > 0, so 0 leaves every sample as it was.
    grid: > 0: every object starts with its centre on a multiple of `grid` pixels (the nearest
      one its path allows; none: where it was drawn), so with `grid` = the tokenizer's block and
      `speed` one block per latent frame, an object's blocks look the same wherever it is and
      every latent frame is a whole-block shift of the last. 0: anywhere (the draws are the
      same either way).
  """

  seed: int = 0
  resolution: int = 64
  num_frames: tuple[int, ...] = (1, 17, 65)
  fps: tuple[int, ...] = (8, 12, 16)
  max_objects: int = 3
  num_train: int = 100_000
  num_heldout: int = 1_000
  motions: tuple[str, ...] = MOTIONS
  sizes: tuple[str, ...] = tuple(SIZES)
  textures: tuple[str, ...] = render_lib.TEXTURES
  background_colors: tuple[str, ...] = tuple(render_lib.BACKGROUND_COLORS)
  speed: float = 0.0
  wall_fraction: float = 0.0
  grid: int = 0

  def __post_init__(self):
    for name, known in (("motions", MOTIONS), ("sizes", tuple(SIZES)),
                        ("textures", render_lib.TEXTURES),
                        ("background_colors", tuple(render_lib.BACKGROUND_COLORS))):
      chosen = getattr(self, name)
      unknown = [v for v in chosen if v not in known]
      if not chosen or unknown:
        raise ValueError(f"SyntheticConfig.{name}={chosen!r}: give a non-empty subset of {known}")
    bad = [f for f in self.num_frames if f < 1 or (f - 1) % 4]
    if bad:
      raise ValueError(f"SyntheticConfig.num_frames: {bad} are not 1 + 4k")
    if not 1 <= self.max_objects <= 3:
      raise ValueError(f"SyntheticConfig.max_objects={self.max_objects} must be 1, 2 or 3")
    if self.resolution < 16:
      raise ValueError(f"SyntheticConfig.resolution={self.resolution} must be at least 16")
    if not 0.0 <= self.speed < 0.5:
      raise ValueError(f"SyntheticConfig.speed={self.speed} must be in [0, 0.5) of the side per "
                       "frame (0: the whole-clip travel of `TRAVEL`)")
    if not 0.0 <= self.wall_fraction <= 1.0:
      raise ValueError(f"SyntheticConfig.wall_fraction={self.wall_fraction} must be in [0, 1]")
    if not 0 <= self.grid < self.resolution:
      raise ValueError(f"SyntheticConfig.grid={self.grid} must be in [0, resolution) pixels "
                       "(0: off)")
    if self.wall_fraction and not self.speed:
      raise ValueError("SyntheticConfig.wall_fraction needs speed > 0 (with speed 0 every "
                       "straight path fits inside the frame)")

  @classmethod
  def from_config(cls, config) -> "SyntheticConfig":
    """From a ConfigDict (lists become tuples); unknown fields are an error naming them."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config.keys()) - fields)
    if unknown:
      raise ValueError(f"synthetic config: unknown fields {unknown}; known: {sorted(fields)}")
    values = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in config.items()}
    return cls(**values)


def long_clip_frames(fps: int, seconds: float = 60.0) -> int:
  """Smallest 1 + 4k frame count covering `seconds` at `fps` (481 for a minute at 8 fps)."""
  return 1 + 4 * int(np.ceil(seconds * fps / 4))


def _snap(value: float, low: float, high: float, grid: int) -> float:
  """The multiple of `grid` in [low, high] nearest `value` (`value` when there is none)."""
  if grid <= 0:
    return value
  first, last = np.ceil(low / grid) * grid, np.floor(high / grid) * grid
  if first > last:
    return value
  return float(np.clip(np.round(value / grid) * grid, first, last))


def _trajectory(motion: str, size: str, num_frames: int, side: int, rng: np.random.Generator,
                speed: float = 0.0, wall_fraction: float = 0.0, grid: int = 0):
  """`(centers [T, 2], radii [T])` in pixels, staying inside the frame (`speed`,
  `wall_fraction`, `grid`: see `SyntheticConfig`)."""
  r0 = SIZES[size] * side
  t = np.linspace(0.0, 1.0, num_frames)[:, None] if num_frames > 1 else np.zeros((1, 1))
  radii = np.full(num_frames, r0)
  if motion == "growing":
    radii = r0 * (0.6 + 0.8 * t[:, 0])
  elif motion == "shrinking":
    radii = r0 * (1.4 - 0.8 * t[:, 0])
  margin = radii.max()
  lo, hi = margin, side - margin
  if motion in DIRECTIONS:
    step = np.asarray(DIRECTIONS[motion], np.float64)
    if speed > 0:  # the part of the path that fits: every axis it moves along has hi - lo
      travel = min(speed * side * (num_frames - 1), hi - lo)
    else:
      travel = rng.uniform(*TRAVEL) * side
    path = step * travel
    if speed > 0 and wall_fraction > 0 and rng.random() < wall_fraction:
      path = np.zeros_like(path)  # anywhere: the edge may come within the clip
    # Start where the path (the part that fits) stays inside [lo, hi].
    bounds = [(lo - min(p, 0.0), max(hi - max(p, 0.0), lo - min(p, 0.0))) for p in path]
    start = np.array([_snap(rng.uniform(a, b), a, b, grid) for a, b in bounds])
    if speed > 0:
      frames = np.arange(num_frames, dtype=np.float64)[:, None]
      centers = np.clip(start + frames * speed * side * step, lo, hi)
    else:
      centers = start + t * path
  elif motion == "bouncing":
    angle = rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(1.0, 2.0) * side
    raw = rng.uniform(lo, hi, size=2) + t * distance * np.array([np.cos(angle), np.sin(angle)])
    # Reflect at the walls: a triangle wave of period 2 (hi - lo).
    span = hi - lo
    phase = np.mod(raw - lo, 2 * span)
    centers = lo + np.where(phase > span, 2 * span - phase, phase)
  else:
    start = [_snap(v, lo, hi, grid) for v in rng.uniform(lo, hi, size=2)]
    centers = np.broadcast_to(np.asarray(start, np.float64), (num_frames, 2))
  return centers.astype(np.float32), radii.astype(np.float32)


def _draw_object(rng: np.random.Generator, split: str, first: bool, video: bool,
                 taken: set, cfg: SyntheticConfig) -> dict:
  """One object's attributes; its colour-shape pair differs from the `taken` ones, so that a
  caption names every object unambiguously."""
  heldout = set(HELDOUT_PAIRS)
  if split == "heldout" and first:
    color, shape = HELDOUT_PAIRS[rng.integers(len(HELDOUT_PAIRS))]
  else:
    while True:  # rejection: a train object never has a held-out pair (6 of 54 pairs)
      color = str(rng.choice(list(render_lib.COLORS)))
      shape = str(rng.choice(render_lib.SHAPES))
      if (split == "heldout" or (color, shape) not in heldout) and (color, shape) not in taken:
        break
  taken.add((color, shape))
  size = str(rng.choice(list(cfg.sizes)))
  motion = str(rng.choice(list(cfg.motions))) if video else "still"
  return {"color": color, "shape": shape, "size": size, "motion": motion}


def caption(objects: list[dict], bg_color: str, texture: str, video: bool,
            rng: np.random.Generator) -> str:
  """A templated caption naming every object's size, colour, shape and (for videos) motion."""
  clauses = []
  for obj in objects:
    name = f"a {obj['size']} {obj['color']} {obj['shape']}"
    if video:
      name += " " + str(rng.choice(MOTION_PHRASES[obj["motion"]]))
    clauses.append(name)
  things = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
  bg = f"{bg_color}{TEXTURE_WORDS[texture]} background"
  templates = (f"{things} over a {bg}", f"{things} on a {bg}", f"on a {bg}, {things}")
  if not video:
    templates += (f"a picture of {things} on a {bg}",)
  return str(rng.choice(templates))


class SyntheticVideos:
  """One split of the built-in dataset; a grain `RandomAccessDataSource` of sample dicts."""

  def __init__(self, config: SyntheticConfig | None = None, split: str = "train"):
    if split not in SPLITS:
      raise ValueError(f"SyntheticVideos: split {split!r} unknown; known: {SPLITS}")
    self.config = config or SyntheticConfig()
    self.split = split

  def __len__(self) -> int:
    return self.config.num_train if self.split == "train" else self.config.num_heldout

  def __getitem__(self, index: int) -> dict:
    return self.sample(index)

  def __repr__(self) -> str:
    return f"SyntheticVideos({self.config}, split={self.split!r})"

  def attributes(self, index: int) -> tuple[dict, np.random.Generator]:
    """Ground truth and caption of sample `index` (no pixels), and the generator left for
    rendering the background texture."""
    if not 0 <= index < len(self):
      raise IndexError(f"SyntheticVideos[{self.split}]: index {index} outside [0, {len(self)})")
    cfg = self.config
    rng = np.random.default_rng([cfg.seed, SPLITS.index(self.split), int(index)])
    num_frames = int(rng.choice(cfg.num_frames))
    fps = int(rng.choice(cfg.fps))
    video = num_frames > 1
    taken = set()
    objects = [_draw_object(rng, self.split, i == 0, video, taken, cfg)
               for i in range(int(rng.integers(1, cfg.max_objects + 1)))]
    for obj in objects:
      obj["centers"], obj["radii"] = _trajectory(obj["motion"], obj["size"], num_frames,
                                                 cfg.resolution, rng, cfg.speed,
                                                 cfg.wall_fraction, cfg.grid)
    texture = str(rng.choice(list(cfg.textures)))
    bg_color = str(rng.choice(list(cfg.background_colors)))
    text = caption(objects, bg_color, texture, video, rng)
    attrs = {"objects": objects, "background": {"color": bg_color, "texture": texture},
             "num_frames": num_frames, "fps": fps, "split": self.split, "index": int(index),
             "caption": text}
    return attrs, rng

  def caption(self, index: int) -> str:
    """The caption of sample `index` without rendering it (for training the text model)."""
    return self.attributes(index)[0]["caption"]

  def sample(self, index: int) -> dict:
    """`{"video": uint8 [T, H, W, 3], "caption": str, "attributes": dict, "fps": int,
    "key": str}`."""
    attrs, rng = self.attributes(index)
    side = self.config.resolution
    bg = render_lib.background(attrs["background"]["texture"], attrs["background"]["color"],
                               side, side, rng)
    frames = render_lib.render(bg, attrs["objects"], attrs["num_frames"])
    return {"video": frames, "caption": attrs["caption"], "attributes": attrs, "fps": attrs["fps"],
            "key": f"synthetic/{self.split}/{index}"}
