"""A stand-in for `loong_jax.train_lm` in launcher tests: joins the job, sums over all devices.

Reads the same three flags as the training entry point (`--coordinator_address`,
`--num_processes`, `--process_id`), feeds each process's rows through
`jax.make_array_from_process_local_data` and prints one JSON line with the global result.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec

_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
  del argv
  jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                             num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  mesh = jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  rows = jax.local_device_count()
  local = np.full((rows, 1), jax.process_index() + 1, np.float32)
  global_array = jax.make_array_from_process_local_data(sharding, local)
  total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, PartitionSpec()))(global_array)
  print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                    "devices": jax.device_count(), "sum": float(total)}), flush=True)
  jax.distributed.shutdown()


if __name__ == "__main__":
  app.run(main)
