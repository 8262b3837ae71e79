"""The shared training loop: exact resume, preemption, numerical guard, multi-host, checkpoints."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import chex
import flax.struct
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from loong_jax import sharding, train_lm
from loong_jax.train import checkpoint as checkpoint_lib
from loong_jax.train import loop
from loong_jax.train import state as state_lib
from tests import compile_settings
from tests.llm.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Fast tiny runs: small vocabulary, short sequences, one device unless a test says otherwise.
FLAGS = ["--config=configs/lm/llama.py:tiny", "--config.vocab.text_size=1000",
         "--config.vocab.video_size=256", "--config.train.seq_len=128",
         "--config.optim.warmup_steps=2", "--config.train.eval_every=0",
         "--config.train.log_every=1"]


def _env(devices: int = 1) -> dict:
  return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "JAX_PLATFORMS": "cpu",
          "JAX_NUM_CPU_DEVICES": str(devices), "PYTHONPATH": ROOT,
          **compile_settings.subprocess_env()}


def _train_cmd(workdir, *extra):
  return [sys.executable, "-m", "loong_jax.train_lm", *FLAGS, f"--workdir={workdir}", *extra]


def _losses(workdir) -> dict[int, float]:
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in rows}


def _final_params(workdir, step):
  """Read the params saved at `step` onto one device, whatever mesh wrote them."""
  config = tiny_config()
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  *_, state, _, _ = train_lm.build(config)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1,
                                     keep_last=10)
  restored = ckpt.restore(state, step=step)
  ckpt.close()
  return jax.device_get(restored.params)


KILL_AFTER_CHECKPOINT = """
import os, signal, sys
from loong_jax.train import checkpoint
original = checkpoint.Checkpointer.save
def save_then_die(self, step, *a, **k):
  started = original(self, step, *a, **k)
  if step == int(os.environ["KILL_AT"]):
    self.wait()
    os.kill(os.getpid(), signal.SIGKILL)
  return started
checkpoint.Checkpointer.save = save_then_die
from loong_jax import cli, train_lm
sys.argv = ["train_lm"] + sys.argv[1:]
train_lm.define_flags()
cli.run(train_lm.main)
"""


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path):
  n = 4
  args = [f"--config.train.steps={2 * n}", f"--config.train.checkpoint_every={n}"]
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  subprocess.run(_train_cmd(straight, *args), env=_env(), check=True, cwd=ROOT,
                 capture_output=True)
  died = subprocess.run([sys.executable, "-c", KILL_AFTER_CHECKPOINT, *FLAGS,
                         f"--workdir={killed}", *args], env={**_env(), "KILL_AT": str(n)},
                        cwd=ROOT, capture_output=True)
  assert died.returncode == -signal.SIGKILL
  assert sorted(_losses(killed)) == list(range(1, n + 1))
  subprocess.run(_train_cmd(killed, *args), env=_env(), check=True, cwd=ROOT,
                 capture_output=True)
  assert _losses(killed) == _losses(straight)  # exact float equality, steps 1..2n
  chex.assert_trees_all_equal(_final_params(killed, 2 * n), _final_params(straight, 2 * n))


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_exits_zero(tmp_path):
  proc = subprocess.Popen(_train_cmd(tmp_path, "--config.train.steps=100000",
                                     "--config.train.checkpoint_every=100000"),
                          env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 240
  while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
    assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == 0, err.decode()[-2000:]
  saved = checkpoint_lib.Checkpointer(tmp_path / "checkpoints", save_every=1, keep_last=2)
  step = saved.latest_step()
  saved.close()
  assert step == max(_losses(tmp_path)) >= 3
  assert b"preempted: checkpoint saved at step" in out
  _final_params(tmp_path, step)  # restorable


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_of_four_devices_match_one_process_of_eight(tmp_path):
  args = ["--config.train.steps=3", "--config.train.checkpoint_every=3",
          "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]
  single = tmp_path / "single"
  subprocess.run(_train_cmd(single, *args), env=_env(8), check=True, cwd=ROOT,
                 capture_output=True)
  port, multi = _free_port(), tmp_path / "multi"
  procs = [subprocess.Popen(_train_cmd(multi, *args, f"--coordinator_address=127.0.0.1:{port}",
                                       "--num_processes=2", f"--process_id={i}"),
                            env=_env(4), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()[-3000:]
  a, b = _losses(single), _losses(multi)
  assert sorted(a) == sorted(b) == [1, 2, 3]
  np.testing.assert_allclose([b[s] for s in a], list(a.values()), rtol=1e-4)
  chex.assert_trees_all_close(_final_params(multi, 3), _final_params(single, 3), rtol=1e-4,
                              atol=1e-6)


def _run_in_process(workdir, **overrides):
  config = tiny_config(**{"train.seq_len": 128, "optim.warmup_steps": 2, "train.log_every": 1,
                          "train.eval_every": 0, **overrides})
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  return train_lm.train(config, str(workdir))


@flax.struct.dataclass
class _Sum:
  step: jax.Array
  total: jax.Array


def _add(scale: float, extra_metric: bool):
  """A step adding `scale * batch` to the state; the metrics say which step function ran."""
  def step(state, batch):
    total = state.total + scale * batch["x"].sum()
    metrics = {"scale": scale}
    if extra_metric:
      metrics["late"] = 1.0
    return state.replace(step=state.step + 1, total=total), metrics
  return step


def _run_sum_loop(workdir, steps: int):
  cfg = ml_collections.ConfigDict(dict(
      steps=steps, log_every=2, eval_every=0, max_consecutive_skips=3, profile_steps=(),
      debug_nan_steps=()))
  data = iter(grain.MapDataset.range(100).map(lambda i: {"x": np.full((1,), i, np.float32)})
              .to_iter_dataset())
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), save_every=2,
                                             keep_last=2, fields=("step", "total"))
  early, late = _add(1.0, False), _add(10.0, True)
  try:
    return loop.train_loop(
        state=_Sum(step=jnp.zeros((), jnp.int32), total=jnp.zeros(())),
        step_fn_at=lambda step: early if step < 3 else late, data=data,
        mesh=sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1]),
        axis_rules=(), train_config=cfg, workdir=str(workdir), checkpointer=checkpointer,
        counts_per_batch={"items": 1})
  finally:
    checkpointer.close()


def test_step_fn_at_chooses_by_step_also_after_a_resume(tmp_path):
  straight = _run_sum_loop(tmp_path / "a", 6)
  # Items 0..5: steps 1-3 add x, steps 4-6 add 10 x.
  assert float(straight.state.total) == 0 + 1 + 2 + 10 * (3 + 4 + 5)
  # Each metric is averaged over the steps that reported it.
  assert [(r["step"], r["scale"], r.get("late")) for r in straight.history] == [
      (2, 1.0, None), (4, 5.5, 1.0), (6, 10.0, 1.0)]
  assert all(r["items_per_s"] == r["steps_per_s"] for r in straight.history)
  _run_sum_loop(tmp_path / "b", 2)
  resumed = _run_sum_loop(tmp_path / "b", 6)
  assert resumed.start_step == 2
  assert float(resumed.state.total) == float(straight.state.total)


def test_injected_nan_is_skipped_and_logged(tmp_path):
  result = _run_in_process(tmp_path, **{"train.steps": 5, "train.debug_nan_steps": (3,),
                                        "train.checkpoint_every": 100})
  assert result.skipped_steps == [3]
  assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5]
  assert result.history[2]["skipped_total"] == 1
  assert all(np.isfinite(r["loss"]) for r in result.history if r["step"] != 3)
  assert int(result.state.step) == 5


def test_consecutive_non_finite_steps_stop_the_run_naming_the_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteError, match="ending at step 5 .* last good checkpoint: "
                     "step 2"):
    _run_in_process(tmp_path, **{"train.steps": 8, "train.debug_nan_steps": (3, 4, 5),
                                 "train.max_consecutive_skips": 3,
                                 "train.checkpoint_every": 2})


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
  full = _run_in_process(tmp_path / "a", **{"train.steps": 3, "train.checkpoint_every": 100})
  accum = _run_in_process(tmp_path / "b", **{"train.steps": 3, "train.checkpoint_every": 100,
                                             "train.grad_accum_steps": 4})
  # Both runs add the same float32 terms in another order (one sum over the N = B * L tokens of
  # a step, or four sums of N / 4 added up), so each sum may differ by its rounding bound
  # N * eps * sum|terms| (Higham's gamma_N). The loss sums positive per-token terms: relative
  # error at most N * eps.
  config = tiny_config(**{"train.seq_len": 128, "train.steps": 3, "optim.warmup_steps": 2})
  n = config.train.batch_size * config.train.seq_len
  gamma_n = n * np.finfo(np.float32).eps
  np.testing.assert_allclose([r["loss"] for r in accum.history],
                             [r["loss"] for r in full.history], rtol=gamma_n)
  # AdamW's step lr * m / (sqrt(v) + eps) is invariant to the gradient's scale, so a gradient
  # entry with relative error rho moves its parameter by at most ~2 * lr * rho per step (rho
  # enters m and v). Gradient entries mix signs (an embedding row sums the positions of one
  # token); allowing a condition number sum|terms| / |sum| of 8 gives rho = 8 * gamma_N. A broken
  # accumulation (a lost micro-batch, a missing 1/k) moves entries by O(lr) = 1e-3 instead.
  schedule = state_lib.learning_rate_schedule(config.optim, config.train.steps)
  lr_sum = sum(float(schedule(t)) for t in range(config.train.steps))
  chex.assert_trees_all_close(accum.state.params, full.state.params, rtol=0,
                              atol=2 * lr_sum * 8 * gamma_n)


def test_restore_onto_other_meshes_and_ignore_half_written_steps(tmp_path):
  config = tiny_config()
  config.mesh = dict(data=2, fsdp=2, tensor=2)
  *_, state, _, _ = train_lm.build(config)
  ckpt = checkpoint_lib.Checkpointer(tmp_path, save_every=1, keep_last=3)
  ckpt.save(7, state)
  ckpt.close()
  # A crash mid-save leaves orbax's temporary directory behind; it must never be restored.
  os.makedirs(tmp_path / "9.orbax-checkpoint-tmp-1700000000")
  original = jax.device_get(state.params)
  for mesh in (dict(data=1, fsdp=2, tensor=2), dict(data=1, fsdp=1, tensor=1)):
    config.mesh = mesh
    *_, fresh, _, _ = train_lm.build(config)
    reader = checkpoint_lib.Checkpointer(tmp_path, save_every=1, keep_last=3)
    assert reader.latest_step() == 7
    restored = reader.restore(fresh)
    reader.close()
    n = int(np.prod(list(sharding.make_mesh(mesh).shape.values())))
    assert len(restored.params["lm_head"]["kernel"].sharding.device_set) == n
    chex.assert_trees_all_equal(jax.device_get(restored.params), original)


def test_retention_keeps_the_last_n_and_every_kth(tmp_path):
  config = tiny_config()
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  *_, state, _, _ = train_lm.build(config)
  ckpt = checkpoint_lib.Checkpointer(tmp_path, save_every=1, keep_last=2, keep_every=4,
                                     async_save=False)
  for step in range(1, 11):
    ckpt.save(step, state)
  ckpt.wait()
  assert ckpt.all_steps() == [4, 8, 9, 10]
  ckpt.close()
