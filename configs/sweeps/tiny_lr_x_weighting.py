"""2x2 sweep of `tiny`: learning rate x loss re-weighting (`uniform` vs `first_frame`), 30 steps.

  python -m launch.sweep --config configs/sweeps/tiny_lr_x_weighting.py --workdir /tmp/sweep

Four short CPU runs of configs/lm/llama.py:tiny on the built-in token stream; the sweep writes a
summary table of their final losses (launch/sweep.py).
"""

from configs.lm import llama


def get_config(arg: str | None = None):
  """configs/lm/llama.py:tiny, shortened to 30 steps (`arg` is ignored: one variant)."""
  del arg
  config = llama.get_config("tiny")
  config.train.steps = 30
  config.train.log_every = 10
  config.train.checkpoint_every = 30
  config.optim.warmup_steps = 5
  return config


def get_hyper(h):
  return h.product([
      h.sweep("config.optim.learning_rate", [1e-3, 3e-3]),
      h.sweep("config.data.loss_weighting", ["uniform", "first_frame"]),
  ])
