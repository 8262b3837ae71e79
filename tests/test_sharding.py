import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from loong_jax import sharding


def test_mesh_shape_fills_the_minus_one_axis():
  assert sharding.mesh_shape(dict(data=-1, fsdp=2, tensor=2), 8) == (2, 2, 2)
  assert sharding.mesh_shape(dict(data=1, fsdp=-1, tensor=1), 8) == (1, 8, 1)
  assert sharding.mesh_shape(dict(data=1, fsdp=2, tensor=1), 8) == (1, 2, 1)


@pytest.mark.parametrize("mesh,match", [
    (dict(data=4, fsdp=4, tensor=1), "needs 16 devices, only 8"),
    (dict(data=-1, fsdp=-1, tensor=1), "at most one axis"),
    (dict(data=-1, fsdp=3, tensor=1), "cannot be split"),
])
def test_bad_mesh_names_the_config_field(mesh, match):
  with pytest.raises(ValueError, match=match) as err:
    sharding.mesh_shape(mesh, 8)
  assert "config.mesh" in str(err.value)


def test_make_mesh_uses_a_subset_of_devices():
  mesh = sharding.make_mesh(dict(data=2, fsdp=1, tensor=1))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 1, "tensor": 1}
  assert len(jax.devices()) == 8


def _check(specs, mesh_cfg, limit=0.05):
  mesh = sharding.make_mesh(mesh_cfg)
  params = {name: jax.ShapeDtypeStruct(shape, jnp.float32) for name, (shape, _) in specs.items()}
  shardings = {name: NamedSharding(mesh, spec) for name, (_, spec) in specs.items()}
  return sharding.check_param_sharding(params, shardings, mesh, limit)


def test_replicated_parameters_are_caught_on_a_model_parallel_mesh():
  specs = {"big": ((64, 64), P()), "small": ((64,), P("fsdp"))}
  with pytest.raises(ValueError, match="replicated"):
    _check(specs, dict(data=2, fsdp=2, tensor=2))
  # Pure data parallelism replicates by design.
  assert _check(specs, dict(data=8, fsdp=1, tensor=1)) == 1.0
  assert _check({"big": ((64, 64), P("fsdp", "tensor"))}, dict(data=2, fsdp=2, tensor=2)) == 0


def test_indivisible_dimension_names_the_parameter():
  with pytest.raises(ValueError, match="parameter \\['odd'\\].*dimension 6"):
    _check({"odd": ((6, 8), P(("fsdp", "tensor")))}, dict(data=2, fsdp=2, tensor=2))
