"""grain pipelines of the curriculum stages: token shards -> LM batches.

    batches = pipeline.stage_pipeline(config)    # config.data, config.vocab
    it = iter(batches)
    batch = next(it)  # {"inputs", "targets", "frame": int32 [B, L], "weights": f32 [B, L]}

This is the batch of `loong_jax.train.lm_step` with its optional `frame` (the latent frame of each
target, -1 outside frames, for the first- vs later-frame loss metrics); B is the per-host batch
and `L = data.seq_len`. Each
stage mixes token sources (`data.sources`: images, 17-frame clips, 65-frame clips) with weights
[Loong stages 1-3]. One example:

  1. a record of `sources.TokenShards` (codes `[F_lat, h, w]`, text ids);
  2. its latent frames cut to the source's `max_frames` -- a prefix, which is exactly the encoding
     of the first frames because the tokenizer is causal (SPEC §2);
  3. its text cut to `max_text_len`, or replaced by `<no_text>` with probability `text_dropout`
     (classifier-free guidance, SPEC §4); otherwise each of its text ids is left out with
     probability `text_word_dropout` [ours] (0: off), so the LM also learns captions that name
     only some attributes, the parts that composed conditioning combines (inference/decode.py);
  4. the sequence of `tokens.build_sequence`, padded with `<pad>` to `seq_len + 1`; `inputs` is
     `seq[:-1]`, `targets` `seq[1:]`, `weights` `loss_weights.frame_loss_weights(targets)`,
     `frame` `tokens.frame_index(targets)`.

Sequences are padded, not packed: `lm_step` batches carry no segment ids, and a causal model
would attend across packed neighbours.

Length groups (`data.length_groups`) [ours]: padding every row to the stage's longest source
spends most of a mixed stage's positions on `<pad>` (the demo's stage 3 pads its images, 84
positions, to the 65-frame clips' 1,140). With the option on, the sources that need the same
sequence length form a group; each batch is a dict `{"group0": batch, "group1": ...}` of fixed
row counts (`length_groups`: the group's share of the weights, at least one row), each group's
rows padded to its own length, its sources mixed by their weights within it.
`lm_step.train_step` sums the groups' losses over the whole batch's weight, so a step's loss and
gradients are those of the same rows padded to one length (`tests/data/test_length_groups.py`);
only the per-step mix becomes exact (stratified) where the shared stream's varied a little.

Determinism and resume: every random choice (shuffle order, mixing, text dropout) is a function of
`data.seed` and the element index, so the iterator state is one index; save and restore it with
orbax (`grain.checkpoint.CheckpointSave/CheckpointRestore` in `ocp.args.Composite`).
Multi-host: each process reads the disjoint slice `source[process_index::process_count]` of every
source before shuffling.
"""

from __future__ import annotations

import dataclasses

import grain
import jax
import numpy as np

from loong_jax import tokens
from loong_jax.data import loss_weights, sources

BATCH_KEYS = ("inputs", "targets", "weights", "frame")


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
  """How a token record becomes one `[seq_len]` example (picklable for grain workers)."""

  vocab: tokens.Vocab
  seq_len: int
  max_text_len: int
  text_dropout: float
  scheme: str
  first_frame_weight: float
  text_weight: float
  changed_weight: float = 1.0  # `loss_weights.changed_token_weights`; 1: off
  text_word_dropout: float = 0.0  # each text id left out with this probability; 0: off

  def __call__(self, record: dict, rng: np.random.Generator) -> dict:
    codes = record["video_ids"]
    text = record["text_ids"][: self.max_text_len]
    if rng.random() < self.text_dropout:
      text = text[:0]
    elif self.text_word_dropout > 0:
      text = text[rng.random(len(text)) >= self.text_word_dropout]
    seq = tokens.build_sequence(text, codes, self.vocab)
    if not len(text):  # dropped, or every word left out: the unconditional sequence
      seq = np.concatenate([seq[:1], [self.vocab.no_text], seq[1:]]).astype(np.int32)
    if len(seq) > self.seq_len + 1:
      raise ValueError(f"data.seq_len={self.seq_len} is too short for item {record['key']!r} "
                       f"({len(seq) - 1} tokens); raise it or lower max_text_len / max_frames")
    padded = np.full(self.seq_len + 1, self.vocab.pad, np.int32)
    padded[: len(seq)] = seq
    inputs, targets = padded[:-1], padded[1:]
    weights = loss_weights.frame_loss_weights(targets, self.vocab, self.scheme,
                                              self.first_frame_weight, self.text_weight)
    if self.changed_weight != 1.0:
      weights = weights * loss_weights.changed_token_weights(inputs, targets, self.vocab,
                                                             self.changed_weight)
    return {"inputs": inputs, "targets": targets, "weights": weights,
            "frame": tokens.frame_index(targets, self.vocab)}


@dataclasses.dataclass(frozen=True)
class CropFrames:
  """Keep the first `max_latent_frames` latent frames of a record's codes."""

  max_latent_frames: int

  def __call__(self, record: dict) -> dict:
    return {**record, "video_ids": record["video_ids"][: self.max_latent_frames]}


def required_seq_len(max_text_len: int, max_frames: int, tokens_per_frame: int) -> int:
  """Model input length for the longest example: the sequence length minus one."""
  return tokens.sequence_length(max(max_text_len, 1), tokens.latent_frames(max_frames),
                                tokens_per_frame) - 1


def host_slice(dataset: grain.MapDataset, process_index: int | None = None,
               process_count: int | None = None) -> grain.MapDataset:
  """The elements `process_index::process_count` (default: this JAX process's share)."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  return dataset[index::count]


def _tokens_per_frame(source, path: str) -> int:
  if len(source) == 0:
    raise ValueError(f"data source {path} has no records")
  codes = source[0]["video_ids"]
  return int(np.prod(codes.shape[1:]))


def make_pipeline(data_config, vocab: tokens.Vocab, *, process_index: int | None = None,
                  process_count: int | None = None, num_epochs: int | None = None
                  ) -> grain.IterDataset:
  """The mixed, batched pipeline of one stage.

  Args:
    data_config: a `configs/data/stages.py` `data` block: `sources` (list of `{path, weight,
      max_frames}`), `seq_len` (None = the longest example), `batch_size` (global; each process
      gets `batch_size // process_count`), `max_text_len`, `text_dropout`, `text_word_dropout`
      (optional, 0), `loss` (`scheme`,
      `first_frame_weight`, `text_weight`), `seed`, `shuffle`, `worker_count`.
    vocab: the id layout.
    process_index, process_count: override the JAX process (tests, tools).
    num_epochs: None repeats forever (training); an int stops after that many passes over each
      source (evaluation, coverage checks).
  Returns:
    A `grain.IterDataset` of batches `{inputs, targets, weights, frame}` `[B_host, L]`.
  """
  cfg = data_config
  count = jax.process_count() if process_count is None else process_count
  if cfg.batch_size % count:
    raise ValueError(f"data.batch_size={cfg.batch_size} must be a multiple of the "
                     f"{count} processes")
  if not cfg.sources:
    raise ValueError("data.sources is empty: give at least one {path, weight, max_frames}")
  datasets, weights, longest = [], [], 0
  for k, src in enumerate(cfg.sources):
    shards = sources.TokenShards(src["path"])
    longest = max(longest, required_seq_len(cfg.max_text_len, src["max_frames"],
                                             _tokens_per_frame(shards, src["path"])))
    ds = host_slice(grain.MapDataset.source(shards), process_index, process_count)
    if cfg.shuffle:  # before repeat: grain reshuffles every epoch
      ds = ds.seed(cfg.seed + k).shuffle()
    ds = ds.repeat(num_epochs)
    ds = ds.map(CropFrames(tokens.latent_frames(src["max_frames"])))
    datasets.append(ds)
    weights.append(float(src["weight"]))
  seq_len = cfg.seq_len or longest
  groups = length_groups(cfg, vocab, count) if num_epochs is None else []
  if seq_len < longest:
    raise ValueError(f"data.seq_len={seq_len} is below the longest example of this stage "
                     f"({longest} tokens: max_text_len={cfg.max_text_len}, frames up to "
                     f"{max(s['max_frames'] for s in cfg.sources)})")
  spec = ExampleSpec(vocab=vocab, seq_len=seq_len, max_text_len=cfg.max_text_len,
                     text_dropout=cfg.text_dropout, scheme=cfg.loss.scheme,
                     first_frame_weight=cfg.loss.first_frame_weight,
                     text_weight=cfg.loss.text_weight,
                     changed_weight=float(cfg.loss.get("changed_weight", 1.0)),
                     text_word_dropout=float(cfg.get("text_word_dropout", 0.0)))
  if not 0.0 <= spec.text_word_dropout < 1.0:
    raise ValueError(f"data.text_word_dropout={spec.text_word_dropout} must lie in [0, 1)")
  loss_weights.frame_loss_weights(np.zeros(1, np.int32), vocab, spec.scheme)  # validates scheme
  loss_weights.changed_token_weights(np.zeros(1, np.int32), np.zeros(1, np.int32), vocab,
                                     spec.changed_weight)  # validates changed_weight
  if len(groups) > 1:
    batches = _ZipBatches([
        _mix(datasets, weights, members).random_map(
            dataclasses.replace(spec, seq_len=group_len), seed=cfg.seed + 7_919 * g
        ).batch(rows // count, drop_remainder=True)
        for g, (group_len, members, rows) in enumerate(groups)])
  else:
    if num_epochs is None:
      mixed = grain.MapDataset.mix(datasets, weights) if len(datasets) > 1 else datasets[0]
    else:
      # Finite passes: proportional mixing would stop at the first exhausted source.
      mixed = grain.MapDataset.concatenate(datasets) if len(datasets) > 1 else datasets[0]
    examples = mixed.random_map(spec, seed=cfg.seed)
    batches = examples.batch(cfg.batch_size // count, drop_remainder=num_epochs is None)
  it = batches.to_iter_dataset()
  if cfg.worker_count:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.worker_count))
  return it


def length_groups(data_config, vocab: tokens.Vocab, process_count: int = 1
                  ) -> list[tuple[int, list[int], int]]:
  """`[(seq_len, source indices, rows), ...]` of a stage with `data.length_groups` on, shortest
  first (`[]` when off, or when every source needs one length): the sources that need the same
  sequence length (the longest group: `data.seq_len` when set), and their rows of the global
  batch (the group's share of the weights, rounded, at least one; the rounding remainder goes
  to the largest share). Each group's rows must split over the processes."""
  cfg = data_config
  if not cfg.get("length_groups", False):
    return []
  lengths = {}
  for k, src in enumerate(cfg.sources):
    if float(src["weight"]) <= 0:
      continue
    shards = sources.TokenShards(src["path"])
    lengths.setdefault(required_seq_len(cfg.max_text_len, src["max_frames"],
                                        _tokens_per_frame(shards, src["path"])), []).append(k)
  if len(lengths) < 2:
    return []
  total = sum(float(src["weight"]) for src in cfg.sources if float(src["weight"]) > 0)
  order = sorted(lengths)
  shares = [sum(float(cfg.sources[k]["weight"]) for k in lengths[n]) / total for n in order]
  rows = [max(1, round(share * cfg.batch_size)) for share in shares]
  rows[int(np.argmax(shares))] += cfg.batch_size - sum(rows)
  if min(rows) < 1 or any(r % process_count for r in rows):
    raise ValueError(f"data.length_groups: rows {rows} per length group (lengths {order}) of "
                     f"batch_size={cfg.batch_size} must be >= 1 and split over the "
                     f"{process_count} processes")
  # The longest group keeps `data.seq_len` when that is set (the stage's fixed length).
  return [(max(n, cfg.seq_len or 0) if n == order[-1] else n, lengths[n], r)
          for n, r in zip(order, rows)]


def _mix(datasets: list, weights: list[float], members) -> grain.MapDataset:
  """The sources `members` of `datasets` mixed by their weights."""
  if len(members) == 1:
    return datasets[members[0]]
  return grain.MapDataset.mix([datasets[k] for k in members], [weights[k] for k in members])


class _ZipBatches(grain.MapDataset):
  """Element i: `{"group<g>": parents[g][i]}`, one batch of each length group."""

  def __init__(self, parents: list[grain.MapDataset]):
    super().__init__(parents)
    self._groups = parents

  def __len__(self) -> int:
    return min(len(p) for p in self._groups)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return {f"group{g}": p[index] for g, p in enumerate(self._groups)}

  def __str__(self) -> str:
    return f"ZipBatches({len(self._groups)} length groups)"


def stage_pipeline(config, **kwargs) -> grain.IterDataset:
  """`make_pipeline(config.data, Vocab(config.vocab))`."""
  vocab = tokens.Vocab(text_size=config.vocab.text_size, video_size=config.vocab.video_size)
  return make_pipeline(config.data, vocab, **kwargs)
