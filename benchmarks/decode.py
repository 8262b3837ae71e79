"""Decoding speed: our KV-cached decoder vs no cache vs Hugging Face `generate`, same weights.

  PYTHONPATH=. python benchmarks/decode.py --out /tmp/decode_bench.json
  PYTHONPATH=. python benchmarks/decode.py --configs bench --batches 8 --repeats 3 --out f.json

Shape (benchmarks/BENCHMARKS.md): a 256-token prompt, 64 new tokens, top-k 50, temperature 1,
float32 on CPU, every slot sampled from the whole vocabulary (`decode.free_plan`), random weights
(`configs/lm/llama.py:<config>`), the same for all systems. For each config and batch size:

* `jax_kv`: `inference.decode.Decoder` -- prefill, then one compiled `lax.scan` over the KV cache.
* `jax_prefill`: the same call with one new token (the prefill's share of `jax_kv`).
* `jax_nocache`: a compiled full forward over the whole `[B, prompt + new]` buffer per new token
  (causal, so the unwritten tail does not matter). Timed over `--nocache_tokens` tokens and
  extrapolated linearly to `--new_tokens` (every step costs the same full forward).
* `hf`: transformers `LlamaForCausalLM.generate` (sdpa attention, its dynamic KV cache, PyTorch
  CPU float32, `torch.get_num_threads()` threads) on the weights exported by
  `convert.hf_llama.export_hf`, with `min_new_tokens = max_new_tokens` so it never stops early;
  in a child process (see `HFWorker`), timed there.

Every figure is the wall time of the whole call, prompt processing included (as `generate`
measures it), after one warm-up call: `ms_per_token` = time / new tokens (one decoding step of the
batch), `tokens_per_s` = batch * new tokens / time. Systems run alternately (A B C A B C ...) for
`--repeats` rounds, since the machine is shared; rows keep every round and the table shows the best.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from loong_jax import tokens
from loong_jax.convert import hf_llama
from loong_jax.inference import decode, sampling
from loong_jax.llm import transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lm_config(size: str):
  spec = importlib.util.spec_from_file_location("_bench_config",
                                                os.path.join(ROOT, "configs/lm/llama.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(size).lm


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def jax_systems(model, params, vocab, prompts, new_tokens: int, nocache_tokens: int, top_k: int):
  """`{name: (callable, extrapolation factor)}`; each callable blocks until its result is ready."""
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=top_k))
  key = jax.random.key(0)
  batch, prompt_len = prompts.shape
  rows = list(prompts)

  @jax.jit
  def full_step(params, buffer, t, key):
    logits = model.apply({"params": params}, buffer)
    last = jax.lax.dynamic_index_in_dim(logits, prompt_len - 1 + t, axis=1, keepdims=False)
    token = sampling.sample(last, key, sampling.SamplingConfig(top_k=top_k))
    return jax.lax.dynamic_update_index_in_dim(buffer, token, prompt_len + t, axis=1)

  def nocache():
    buffer = jnp.zeros((batch, prompt_len + new_tokens), jnp.int32).at[:, :prompt_len].set(prompts)
    for t in range(nocache_tokens):
      buffer = full_step(params, buffer, t, jax.random.fold_in(key, t))
    jax.block_until_ready(buffer)

  return {
      "jax_kv": (lambda: decoder(params, rows, decode.free_plan(new_tokens), key), 1.0),
      "jax_prefill": (lambda: decoder(params, rows, decode.free_plan(1), key), 1.0),
      "jax_nocache": (nocache, new_tokens / nocache_tokens),
  }


class HFWorker:
  """transformers `generate` in a child process, timed on request.

  PyTorch's OpenMP threads spin after each parallel region and XLA's pool does the same; in one
  process each framework's spinning threads steal the 2 cores from the other's timed run.
  """

  def __init__(self, params, lm_config, prompts, new_tokens: int, top_k: int, workdir: str):
    hf_llama.export_hf(params, lm_config, workdir, "float32",
                       max_position_embeddings=prompts.shape[1] + new_tokens)
    np.save(os.path.join(workdir, "prompts.npy"), prompts)
    self.proc = subprocess.Popen(
        [sys.executable, __file__, "--hf_worker", workdir, "--new_tokens", str(new_tokens),
         "--top_k", str(top_k), "--out", os.devnull],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self.note = self.proc.stdout.readline().strip()

  def __call__(self) -> float:
    self.proc.stdin.write("run\n")
    self.proc.stdin.flush()
    return float(self.proc.stdout.readline())

  def close(self):
    self.proc.stdin.close()
    self.proc.wait()


def hf_worker(workdir: str, new_tokens: int, top_k: int):
  """The child's loop: load the exported model, answer each `run` line with seconds taken."""
  import torch  # the comparison's dependency only: not needed by the package
  import transformers

  model = transformers.LlamaForCausalLM.from_pretrained(workdir, dtype=torch.float32,
                                                        attn_implementation="sdpa").eval()
  inputs = torch.from_numpy(np.load(os.path.join(workdir, "prompts.npy")).astype(np.int64))
  mask = torch.ones_like(inputs)
  print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads", flush=True)
  for _ in sys.stdin:
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
      model.generate(inputs, attention_mask=mask, do_sample=True, top_k=top_k, top_p=1.0,
                     temperature=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                     use_cache=True, pad_token_id=0, eos_token_id=None)
    print(time.perf_counter() - start, flush=True)


def bench_config(size: str, batch_sizes, args) -> list[dict]:
  lm_fields = _lm_config(size)
  lm_config = transformer.LMConfig.from_config(lm_fields)
  model = transformer.Transformer(lm_config)
  params = jax.jit(lambda: nn.unbox(model.init(jax.random.key(0),
                                               jnp.zeros((1, 8), jnp.int32))["params"]))()
  vocab = tokens.Vocab()
  rng = np.random.default_rng(0)
  rows = []
  with tempfile.TemporaryDirectory() as hf_dir:
    for batch in batch_sizes:
      prompts = rng.integers(0, vocab.text_size, (batch, args.prompt_len)).astype(np.int32)
      systems = jax_systems(model, params, vocab, prompts, args.new_tokens, args.nocache_tokens,
                            args.top_k)
      systems = {name: (lambda f=f: _timed(lambda: jax.block_until_ready(f())), k)
                 for name, (f, k) in systems.items()}
      notes = {name: "" for name in systems}
      notes["jax_nocache"] = f"timed over {args.nocache_tokens} tokens, extrapolated"
      worker = None
      if args.hf:
        worker = HFWorker(jax.device_get(params), lm_fields, prompts, args.new_tokens,
                          args.top_k, hf_dir)
        systems["hf"], notes["hf"] = (worker, 1.0), worker.note
      for name, (fn, _) in systems.items():
        print(f"  {size} b={batch} {name}: warm-up {fn():.1f}s", flush=True)
      times = {name: [] for name in systems}
      for _ in range(args.repeats):
        for name, (fn, factor) in systems.items():
          times[name].append(fn() * factor)
      if worker is not None:
        worker.close()
      for name, samples in times.items():
        best = min(samples)
        new = 1 if name == "jax_prefill" else args.new_tokens
        rows.append(dict(config=size, batch=batch, system=name, prompt_len=args.prompt_len,
                         new_tokens=new, top_k=args.top_k, seconds=samples, best_s=best,
                         ms_per_token=1000 * best / new, tokens_per_s=batch * new / best,
                         note=notes[name]))
      # The compiled loop's own step time: the whole call minus its prefill share.
      step_ms = 1000 * (min(times["jax_kv"]) - min(times["jax_prefill"])) / (args.new_tokens - 1)
      rows[-len(times)]["note"] = f"decode step alone {step_ms:.1f} ms"
  return rows


def print_table(rows):
  print(f"{'config':<7}{'batch':>6}  {'system':<12}{'best s':>9}{'ms/token':>10}{'tokens/s':>10}"
        f"{'vs hf':>8}  all rounds (s)")
  hf = {(r["config"], r["batch"]): r["tokens_per_s"] for r in rows if r["system"] == "hf"}
  for r in rows:
    ratio = hf.get((r["config"], r["batch"]))
    ratio = f"{r['tokens_per_s'] / ratio:.2f}x" if ratio and r["system"] != "jax_prefill" else ""
    rounds = " ".join(f"{s:.2f}" for s in r["seconds"])
    print(f"{r['config']:<7}{r['batch']:>6}  {r['system']:<12}{r['best_s']:>9.2f}"
          f"{r['ms_per_token']:>10.1f}{r['tokens_per_s']:>10.1f}{ratio:>8}  {rounds}  {r['note']}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", default="tiny,bench", help="configs/lm/llama.py sizes")
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--prompt_len", type=int, default=256)
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--nocache_tokens", type=int, default=8)
  parser.add_argument("--top_k", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--no_hf", dest="hf", action="store_false", help="skip transformers")
  parser.add_argument("--out", required=True, help="JSON file for the rows")
  parser.add_argument("--hf_worker", help=argparse.SUPPRESS)  # internal: the child process
  args = parser.parse_args()
  if args.hf_worker:
    hf_worker(args.hf_worker, args.new_tokens, args.top_k)
    return
  batch_sizes = [int(b) for b in args.batches.split(",")]
  rows = []
  for size in args.configs.split(","):
    rows += bench_config(size, batch_sizes, args)
  load = os.getloadavg()
  meta = dict(devices=str(jax.devices()), cpu_count=os.cpu_count(),
              load_average_1_5_15=load, jax=jax.__version__)
  with open(args.out, "w") as fp:
    json.dump({"meta": meta, "rows": rows}, fp, indent=2)
  print_table(rows)
  print(f"load average at the end (1, 5, 15 min): {load}; rows in {args.out}")


if __name__ == "__main__":
  main()
