"""Pre-tokenize a video source into token shards (resumable, data-parallel over devices).

  python -m loong_jax.pretokenize --config configs/data/pretokenize.py:clips17,demo \
      --config.encoder=pooling --config.out_dir=/tmp/tokens/clips17

Re-running the same command resumes: finished shards are kept. `--config.encoder=pooling` is a
test stand-in for the video tokenizer (see `configs/data/pretokenize.py`). Multi-host: run the
same command on every host (after `jax.distributed.initialize`); hosts split the shards.
Progress goes to stdout, skipped items to the log (WARNING) and the manifest.
"""

from __future__ import annotations

from loong_jax import cli
from loong_jax.data import pretokenize

# Flag holders, created by define_flags() when the module runs as a program.
_CONFIG = None


def define_flags():
  """Define this entry point's flags (only when run as a program, so that modules that
  define flags of the same names can be imported side by side, e.g. by tests)."""
  global _CONFIG
  _CONFIG = cli.define_config_flag()


def main(argv):
  del argv
  pretokenize.run(_CONFIG.value)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
