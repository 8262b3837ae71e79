"""Where training metrics go: TensorBoard (tensorboardX), `metrics.jsonl`, and the console.

Only process 0 writes. The console line shows the step, the main scalars and an ETA from the
recent step rate.
"""

from __future__ import annotations

import json
import os
import time

import jax
from tensorboardX import SummaryWriter

CONSOLE_KEYS = ("loss", "loss_first_frame", "loss_later_frames", "grad_norm",
                # the video tokenizer
                "generator_loss", "reconstruction_loss", "psnr", "disc_loss", "eval_psnr",
                "eval_ema_psnr",
                "tokens_per_s", "frames_per_s", "mfu", "data_wait_frac", "eval_loss")


class MetricWriter:
  """Writes scalar rows `{name: float}` for a step to TensorBoard, JSONL and the console."""

  def __init__(self, workdir: str, total_steps: int, console: bool = True):
    self.enabled = jax.process_index() == 0
    self.total_steps = total_steps
    self.console = console
    self._start_time = time.perf_counter()
    self._start_step: int | None = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write(self, step: int, scalars: dict[str, float], prefix: str = "train"):
    if not self.enabled:
      return
    for name, value in scalars.items():
      self._tb.add_scalar(f"{prefix}/{name}", value, step)
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()
    if self.console:
      print(self._console_line(step, scalars), flush=True)

  def _console_line(self, step: int, scalars: dict[str, float]) -> str:
    if self._start_step is None:
      self._start_step, self._start_time = step, time.perf_counter()
      eta = ""
    else:
      rate = (step - self._start_step) / max(time.perf_counter() - self._start_time, 1e-9)
      eta = f"  eta {_duration((self.total_steps - step) / rate)}" if rate > 0 else ""
    shown = "  ".join(f"{k} {scalars[k]:.4g}" for k in CONSOLE_KEYS if k in scalars)
    return f"step {step:>7}/{self.total_steps}  {shown}{eta}"

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
