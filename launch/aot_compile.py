"""Compile the LM train step ahead of time for a TPU topology, on a CPU-only machine (libtpu).

Prints the per-device memory XLA plans for one train step (arguments, outputs, temporaries,
program) and its FLOPs per device, or searches the largest global batch that fits a chip's HBM.
A step that does not fit fails as a real pod would: RESOURCE_EXHAUSTED with the memory the step
needs against the memory a device has. Nothing is allocated: the train state is abstract
(`state.abstract_sharded_state`), the batch is `jax.ShapeDtypeStruct`s with shardings.

Usage (from the repository root; libtpu comes with `pip install -e ".[aot]"`):
  python -m launch.aot_compile --config configs/lm/llama.py:7b --topology v5p-128 \
      --seq_len 4608 --batch_size 64
  python -m launch.aot_compile --config configs/lm/llama.py:700m --topology v5e-256 \
      --seq_len 4608 --find_max_batch
  python -m launch.aot_compile --config configs/lm/llama.py:tiny --platform cpu --num_devices 8

`--topology` is a Cloud TPU slice name `GEN-N` (N counts TensorCores for v4 / v5p, chips for
v5e / v6e) or a chip grid `GEN:AxB[xC]`. `--mesh fsdp` (default) shards parameters and batch over
all chips; `--mesh config` uses config.mesh (with its `--config.mesh.*` overrides); `--mesh 2,-1,1`
gives (data, fsdp, tensor) explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
from absl import flags

from loong_jax import cli
from loong_jax import sharding as sharding_lib
from loong_jax.llm import transformer
from loong_jax.train import lm_step
from loong_jax.train import state as state_lib

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU generation: HBM per device, dense bf16 peak per chip, how slice names count."""

  hbm_gib: float
  peak_tflops: float
  cores_per_chip: int        # TensorCores that `GEN-N` counts per chip (2 for megacore chips)
  grid_dims: int             # 3D torus (v4, v5p) or 2D (v5e, v6e)
  chip_config: str | None    # `chip_config_name` for get_topology_desc (one device per chip)


CHIPS = {
    # gen    HBM GiB, TFLOP/s, cores/chip, dims, chip config
    "v4": Chip(32, 275, 2, 3, "megacore"),
    "v5p": Chip(95, 459, 2, 3, "megacore"),
    "v5e": Chip(16, 197, 1, 2, None),
    "v6e": Chip(32, 918, 1, 2, None),
}
ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6": "v6e"}

# Chip grids of the standard slices, by chip count (libtpu needs at least one 2x2 host).
SLICE_GRIDS = {
    3: {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
        256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"},
    2: {4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"},
}


def parse_topology(name: str) -> tuple[str, str, int]:
  """`'v5p-128'` or `'v5p:4x4x4'` -> `(generation, chip grid, chips)`; errors name --topology."""
  if ":" in name:
    gen, grid = name.split(":", 1)
  else:
    gen, _, count = name.rpartition("-")
    grid = None
  gen = ALIASES.get(gen, gen)
  if gen not in CHIPS:
    raise ValueError(f"--topology={name!r}: unknown TPU generation {gen!r}; known: {sorted(CHIPS)}")
  chip = CHIPS[gen]
  grids = SLICE_GRIDS[chip.grid_dims]
  if grid is None:
    if not count.isdigit() or int(count) % chip.cores_per_chip:
      raise ValueError(f"--topology={name!r}: expected {gen}-N with N a multiple of "
                       f"{chip.cores_per_chip}")
    chips = int(count) // chip.cores_per_chip
    if chips not in grids:
      raise ValueError(f"--topology={name!r}: no standard {gen} slice of {chips} chips; known "
                       f"sizes: {[f'{gen}-{c * chip.cores_per_chip}' for c in grids]}")
    return gen, grids[chips], chips
  dims = grid.split("x")
  if len(dims) != chip.grid_dims or not all(d.isdigit() and int(d) > 0 for d in dims):
    raise ValueError(f"--topology={name!r}: {gen} grids have {chip.grid_dims} dimensions, "
                     "e.g. " + grids[64])
  chips = 1
  for d in dims:
    chips *= int(d)
  return gen, grid, chips


def tpu_devices(topology: str) -> tuple[list, Chip]:
  """The devices of a TPU topology description (compile targets, not live devices)."""
  from jax.experimental import topologies  # noqa: PLC0415  (needs libtpu only here)
  # Compiling needs no chip: do not wait for /tmp/libtpu_lockfile, which any other process on
  # this machine that initialised JAX with libtpu installed may hold.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  gen, grid, _ = parse_topology(topology)
  chip = CHIPS[gen]
  kwargs = {"chip_config_name": chip.chip_config} if chip.chip_config else {}
  desc = topologies.get_topology_desc(topology_name=f"{gen}:{grid}", platform="tpu", **kwargs)
  return list(desc.devices), chip


@dataclasses.dataclass(frozen=True)
class StepReport:
  """Per-device memory (bytes) and FLOPs of one compiled train step."""

  batch_size: int
  seq_len: int
  mesh: dict
  argument_bytes: int        # train state + batch shards
  output_bytes: int          # new state + metrics
  alias_bytes: int           # outputs written in place of donated arguments
  temp_bytes: int            # activations, gradients, collectives' buffers
  code_bytes: int            # the compiled program
  flops: float               # per device, from XLA's cost analysis (see `model_flops`)
  model_flops: float         # per device, 6 N D + attention (PaLM's count; no remat)
  compile_s: float

  @property
  def total_bytes(self) -> int:
    return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
            + self.code_bytes)


class OutOfMemory(RuntimeError):
  """The step needs more memory per device than the target has."""


def _size(n: float) -> str:
  return f"{n / GIB:.2f} GiB" if abs(n) >= GIB else f"{n / 2**20:.1f} MiB"


def out_of_memory_message(report: StepReport, capacity_bytes: int, device: str) -> str:
  """The RESOURCE_EXHAUSTED message of a step that does not fit `capacity_bytes` per device."""
  need = report.total_bytes
  return (f"RESOURCE_EXHAUSTED: ran out of memory in memory space hbm. The train step at global "
          f"batch {report.batch_size} x seq_len {report.seq_len} on mesh {report.mesh} needs "
          f"{_size(need)} per device; a {device} has {_size(capacity_bytes)} (exceeded by "
          f"{_size(need - capacity_bytes)}). Per device: arguments {_size(report.argument_bytes)} "
          f"(train state and batch), outputs {_size(report.output_bytes)} "
          f"({_size(report.alias_bytes)} in place of the donated state), temporaries "
          f"{_size(report.temp_bytes)}, program {_size(report.code_bytes)}. Lower --batch_size, "
          "shard over more chips (--mesh) or pick a larger --topology.")


def resolve_mesh(spec: str, config) -> dict:
  """`--mesh` value -> `{data, fsdp, tensor}` (one may be -1: the remaining devices)."""
  if spec == "fsdp":
    return {"data": 1, "fsdp": -1, "tensor": 1}
  if spec == "config":
    return dict(config.mesh)
  parts = spec.split(",")
  try:
    sizes = [int(p) for p in parts]
  except ValueError:
    sizes = []
  if len(sizes) != len(sharding_lib.MESH_AXES):
    raise ValueError(f"--mesh={spec!r}: expected 'fsdp', 'config' or three integers "
                     "data,fsdp,tensor (one may be -1)")
  return dict(zip(sharding_lib.MESH_AXES, sizes))


def model_flops(params, lm_config, batch_size: int, seq_len: int) -> float:
  """Training FLOPs of one step over all devices: `(6 N + 12 layers seq heads head_dim)` per token.

  N counts the parameters that multiply (everything but the embedding table), as in PaLM's MFU.
  XLA's `cost_analysis()` counts the body of the scanned layer loop once, not once per layer, so
  for a scanned model its number is far below this one.
  """
  embedding = params["embed"]["embedding"]
  matmul_params = state_lib.count_params(params) - embedding.shape[0] * embedding.shape[1]
  attention = 12 * lm_config.num_layers * seq_len * lm_config.num_heads * lm_config.head_dim
  return float((6 * matmul_params + attention) * batch_size * seq_len)


def compile_step(config, devices, mesh_config: dict, batch_size: int, seq_len: int) -> StepReport:
  """Lower and compile the sharded, donated LM train step for `devices`; nothing is allocated.

  Raises:
    ValueError: the batch does not split over the batch-sharding mesh axes.
    OutOfMemory: the compiler itself refused the program for lack of memory.
  """
  lm_config = transformer.LMConfig.from_config(config.lm)
  model = transformer.Transformer(lm_config)
  mesh = sharding_lib.make_mesh(mesh_config, devices=devices)
  rules = sharding_lib.rules(config.sharding)
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if batch_size % shards:
    raise ValueError(f"--batch_size={batch_size} must be divisible by the batch-sharding mesh "
                     f"axes data*fsdp={shards} (mesh {dict(mesh.shape)})")
  tx = state_lib.make_optimizer(config.optim, config.train.steps)
  dummy = jnp.zeros((1, seq_len), jnp.int32)
  _, abstract, shardings = state_lib.abstract_sharded_state(
      lambda key: model.init(key, dummy)["params"], model.apply, tx, mesh, rules,
      config.sharding.max_replicated_fraction)
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                       abstract, shardings)
  batch_sharding = sharding_lib.batch_sharding(mesh, 2)
  batch = {key: jax.ShapeDtypeStruct((batch_size, seq_len),
                                     jnp.float32 if key == "weights" else jnp.int32,
                                     sharding=batch_sharding)
           for key in lm_step.BATCH_KEYS}
  step = lm_step.jit_train_step(shardings, mesh, rules, z_loss=config.train.z_loss)
  start = time.perf_counter()
  with sharding_lib.mesh_context(mesh, rules):
    try:
      compiled = step.lower(state, batch).compile()
    except Exception as e:  # noqa: BLE001  (XLA raises its runtime error type)
      if "RESOURCE_EXHAUSTED" not in str(e) and "Ran out of memory" not in str(e):
        raise
      state_bytes = sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
                        for x in jax.tree.leaves(state))
      raise OutOfMemory(
          f"{e}\nThe train step at global batch {batch_size} x seq_len {seq_len} on mesh "
          f"{dict(mesh.shape)} does not fit a {devices[0].device_kind}: the train state alone "
          f"takes {_size(state_bytes)} per device, activations and gradients the rest. Lower "
          "--batch_size, shard over more chips (--mesh) or pick a larger --topology.") from e
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return StepReport(
      batch_size=batch_size, seq_len=seq_len, mesh=dict(mesh.shape),
      argument_bytes=memory.argument_size_in_bytes, output_bytes=memory.output_size_in_bytes,
      alias_bytes=memory.alias_size_in_bytes, temp_bytes=memory.temp_size_in_bytes,
      code_bytes=memory.generated_code_size_in_bytes, flops=float(cost.get("flops", 0.0)),
      model_flops=model_flops(abstract.params, lm_config, batch_size, seq_len) / mesh.size,
      compile_s=compile_s)


def find_max_batch(measure: Callable[[int], StepReport], unit: int, capacity_bytes: int,
                   max_batch: int) -> tuple[StepReport | None, list]:
  """Largest multiple of `unit` up to `max_batch` whose step fits `capacity_bytes` per device.

  Doubles the batch from `unit` until a step does not fit, then bisects between the last fit and
  the first failure. `measure(batch)` compiles (or models) the step; it may raise `OutOfMemory`.

  Returns:
    `(report of the largest fitting batch, or None when even `unit` does not fit, attempts)`:
    attempts are `(batch, fits, StepReport | OutOfMemory)` in the order tried.
  """
  attempts = []

  def fits(batch):
    try:
      report = measure(batch)
    except OutOfMemory as e:
      attempts.append((batch, False, e))
      return None
    ok = report.total_bytes <= capacity_bytes
    attempts.append((batch, ok, report))
    return report if ok else None

  best, low, high = None, 0, None
  batch = unit
  while batch <= max_batch:
    report = fits(batch)
    if report is None:
      high = batch
      break
    best, low = report, batch
    batch *= 2
  if best is None or high is None:
    return best, attempts
  while high - low > unit:
    mid = low + (high - low) // unit // 2 * unit
    report = fits(mid)
    if report is None:
      high = mid
    else:
      best, low = report, mid
  return best, attempts


TABLE_HEADER = ("| target | config | mesh (data, fsdp, tensor) | seq len | global batch "
                "| arguments "
                "| outputs (aliased) | temporaries | program | total / device | capacity "
                "| model TFLOP / device | XLA TFLOP / device | compile s |\n" + "|---" * 14 + "|")


def table_row(target: str, config_name: str, report: StepReport,
              capacity_bytes: int | None) -> str:
  """One markdown row under `TABLE_HEADER`."""
  mesh = ", ".join(str(report.mesh[a]) for a in sharding_lib.MESH_AXES)
  capacity = _size(capacity_bytes) if capacity_bytes else "-"
  return (f"| {target} | {config_name} | {mesh} | {report.seq_len} | {report.batch_size} "
          f"| {_size(report.argument_bytes)} "
          f"| {_size(report.output_bytes)} ({_size(report.alias_bytes)}) "
          f"| {_size(report.temp_bytes)} | {_size(report.code_bytes)} "
          f"| {_size(report.total_bytes)} | {capacity} | {report.model_flops / 1e12:.2f} "
          f"| {report.flops / 1e12:.2f} "
          f"| {report.compile_s:.0f} |")


FLAGS = flags.FLAGS


def define_flags():
  """The command line (defined only when run as a program, so the module imports cleanly)."""
  cli.define_config_flag(None)
  flags.DEFINE_string("topology", None, "TPU slice, e.g. v5p-128, v5e-256, v4:4x4x4.")
  flags.DEFINE_enum("platform", "tpu", ["tpu", "cpu"],
                    "tpu: compile for --topology through libtpu; cpu: fake CPU devices.")
  flags.DEFINE_integer("num_devices", 8, "Fake CPU devices (--platform=cpu).")
  flags.DEFINE_string("mesh", "fsdp", "'fsdp', 'config' or data,fsdp,tensor.")
  flags.DEFINE_integer("seq_len", None, "Sequence length (default config.train.seq_len).")
  flags.DEFINE_integer("batch_size", None, "Global batch (default config.train.batch_size).")
  flags.DEFINE_bool("find_max_batch", False, "Search the largest global batch that fits.")
  flags.DEFINE_integer("max_batch_size", 4096, "Upper end of --find_max_batch.")
  flags.DEFINE_float("memory_gib", None,
                     "Memory per device (default: the chip's HBM; none on cpu).")
  flags.DEFINE_string("json_out", None, "Also write the report as JSON here.")


def _search_or_measure(measure, mesh_config, num_devices, capacity, device_name) -> StepReport:
  """The `--batch_size` step, or with --find_max_batch the largest that fits `capacity`."""
  if not FLAGS.find_max_batch:
    return measure(FLAGS.batch_size or FLAGS.config.train.batch_size)
  if capacity is None:
    raise SystemExit("error: --find_max_batch on --platform=cpu needs --memory_gib")
  mesh = sharding_lib.mesh_shape(mesh_config, num_devices)
  report, attempts = find_max_batch(measure, mesh[0] * mesh[1], capacity, FLAGS.max_batch_size)
  print("tried global batch: " + ", ".join(
      f"{b} {'fits' if ok else 'OOM'}" for b, ok, _ in attempts))
  if report is None:
    failed = attempts[0][2]
    raise SystemExit(str(failed) if isinstance(failed, OutOfMemory)
                     else out_of_memory_message(failed, capacity, device_name))
  return report


def main(argv):
  del argv
  config = FLAGS.config
  if config is None:
    raise SystemExit("error: --config is required, e.g. --config=configs/lm/llama.py:7b")
  # The live backend is always the CPU: a TPU topology is only a compile target.
  jax.config.update("jax_platforms", "cpu")
  if FLAGS.platform == "cpu":
    jax.config.update("jax_num_cpu_devices", FLAGS.num_devices)
    devices, target, device_name = jax.devices()[:FLAGS.num_devices], "cpu", "CPU device"
    capacity = None
  else:
    if not FLAGS.topology:
      raise SystemExit("error: --topology is required with --platform=tpu, e.g. v5p-128")
    try:
      devices, chip = tpu_devices(FLAGS.topology)
    except ValueError as e:
      raise SystemExit(f"error: {e}") from e
    target, device_name = FLAGS.topology, devices[0].device_kind
    capacity = int(chip.hbm_gib * GIB)
  if FLAGS.memory_gib:
    capacity = int(FLAGS.memory_gib * GIB)
  seq_len = FLAGS.seq_len or config.train.seq_len
  try:
    mesh_config = resolve_mesh(FLAGS.mesh, config)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from e
  config_name = FLAGS["config"].config_filename

  def measure(batch):
    return compile_step(config, devices, mesh_config, batch, seq_len)

  try:
    report = _search_or_measure(measure, mesh_config, len(devices), capacity, device_name)
  except (ValueError, OutOfMemory) as e:
    raise SystemExit(f"error: {e}" if isinstance(e, ValueError) else str(e)) from e
  print(TABLE_HEADER)
  print(table_row(target, config_name, report, capacity))
  if FLAGS.platform == "tpu":
    seconds = report.model_flops / (chip.peak_tflops * 1e12)
    tokens = report.batch_size * report.seq_len / math.prod(report.mesh.values())
    print(f"at 100% MFU ({chip.peak_tflops:g} bf16 TFLOP/s per chip) a step takes "
          f"{seconds:.2f} s: {tokens / seconds:,.0f} tokens/s per chip")
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w") as f:
      json.dump({"target": target, "config": config_name, "device": device_name,
                 "capacity_bytes": capacity, "total_bytes": report.total_bytes,
                 **dataclasses.asdict(report)}, f, indent=1)
  if capacity is not None and report.total_bytes > capacity:
    raise SystemExit(out_of_memory_message(report, capacity, device_name))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
