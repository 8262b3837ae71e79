"""Device mesh, logical-axis rules and the activation sharding helper.

Models name their axes logically (`'embed'`, `'mlp'`, `'activation_batch'`, ...); the config's
`sharding.rules` table maps those names onto the physical mesh axes `('data', 'fsdp', 'tensor')`.
No model file mentions a physical axis.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, ...]:
  """Resolve `mesh_config` (`data`, `fsdp`, `tensor`; one of them may be -1 = the rest)."""
  sizes = [int(mesh_config[name]) for name in MESH_AXES]
  fill = [i for i, s in enumerate(sizes) if s == -1]
  if len(fill) > 1:
    raise ValueError(f"config.mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh: axis sizes must be positive or -1, got "
                     f"{dict(zip(MESH_AXES, sizes))}")
  known = math.prod(s for s in sizes if s != -1)
  if fill:
    if num_devices % known:
      raise ValueError(f"config.mesh: {num_devices} devices cannot be split into "
                       f"{dict(zip(MESH_AXES, sizes))}")
    sizes[fill[0]] = num_devices // known
  if math.prod(sizes) > num_devices:
    raise ValueError(f"config.mesh: {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} "
                     f"devices, only {num_devices} available")
  return tuple(sizes)


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `('data', 'fsdp', 'tensor')` mesh with Auto axes (GSPMD-style sharding propagation).

  Uses the first `prod(shape)` devices when the shape does not fill all of them.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  n = math.prod(shape)
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if n == len(jax.devices()) and devices == list(jax.devices()):
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto)
  return Mesh(np.asarray(devices[:n]).reshape(shape), MESH_AXES, axis_types=auto)


def rules(sharding_config) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
  """The config's rules table as the tuple-of-pairs Flax expects."""
  out = []
  for logical, physical in sharding_config.rules:
    if isinstance(physical, list):
      physical = tuple(physical)
    out.append((logical, physical))
  return tuple(out)


def shard(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
  """Constrain activation `x` to the logical axes `names` (no-op outside a mesh + rules context)."""
  return nn.with_logical_constraint(x, names)


@contextlib.contextmanager
def mesh_context(mesh: Mesh, axis_rules):
  """Enter the mesh and the logical-axis rules together (for jit calls and `shard`)."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(axis_rules):
    yield


def logical_to_sharding(logical_specs, mesh: Mesh, axis_rules):
  """Tree of logical `PartitionSpec`s -> tree of `NamedSharding`s."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, axis_rules)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Sharding of a `[B, ...]` input batch: batch over ('data', 'fsdp'), the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_param_sharding(abstract_params, shardings, mesh: Mesh, max_replicated_fraction: float):
  """Start-up check of a parameter tree's sharding.

  Fails (ValueError naming the parameter) when a dimension is not divisible by the mesh axes it
  is split over, and when more than `max_replicated_fraction` of all parameter elements would be
  fully replicated although the mesh has model-parallel axes (`fsdp * tensor > 1`): that is
  almost always a missing or misspelt rule, and costs memory on every device.

  Returns:
    the replicated fraction (0..1).
  """
  flat_params = jax.tree_util.tree_leaves_with_path(abstract_params)
  flat_shard = jax.tree_util.tree_leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  total = replicated_elems = 0
  for (path, leaf), sharding in zip(flat_params, flat_shard, strict=True):
    name = jax.tree_util.keystr(path)
    size = math.prod(leaf.shape)
    total += size
    spec = tuple(sharding.spec) + (None,) * (len(leaf.shape) - len(sharding.spec))
    split = 1
    for dim, axes in zip(leaf.shape, spec):
      axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
      parts = math.prod(mesh.shape[a] for a in axes)
      split *= parts
      if dim % parts:
        raise ValueError(f"parameter {name}: dimension {dim} of shape {leaf.shape} is split over "
                         f"mesh axes {axes} of size {parts}, which does not divide it; change "
                         "config.mesh or config.sharding.rules")
    if split == 1:
      replicated_elems += size
  fraction = replicated_elems / max(total, 1)
  model_parallel = mesh.shape["fsdp"] * mesh.shape["tensor"]
  if model_parallel > 1 and fraction > max_replicated_fraction:
    raise ValueError(f"{fraction:.1%} of parameters are replicated on mesh {dict(mesh.shape)} "
                     f"(limit config.sharding.max_replicated_fraction={max_replicated_fraction}); "
                     "check config.sharding.rules")
  return fraction
