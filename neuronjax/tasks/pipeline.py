"""Grain pipeline: tokenized proxies -> left-padded, masked, length-bucketed batches.

The batch plan is made once, from the seed alone, and is the same on every process: proxies are
grouped by bucket (prompt length rounded up to `bucket_multiple`, and continuation length for
whole-text scoring), cut into global batches of `batch_size * process_count` rows, and process p
takes rows [p * batch_size, (p + 1) * batch_size) of every global batch. So all processes run
the same number of steps with the same shapes (what a multi-host jit needs), and across processes
every proxy is a valid row exactly once. Rows that only fill up a batch repeat a real proxy and
have valid=False.

A batch is a dict of numpy arrays:
    input_ids       int32 [batch, seq]             prompt tokens, LEFT-padded with pad_id
    attention_mask  int32 [batch, seq]             1 on prompt tokens
    option_tokens   int32 [batch, option, variant] answer token candidates (-1 = none)
    continuation    int32 [batch, option, cont]    option text tokens for whole scoring (-1 = pad)
    gold            int32 [batch]                  gold letter of the proxy
    item_index      int32 [batch]                  item of the proxy (index into the encoded items)
    proxy_index     int32 [batch]
    valid           bool  [batch]                  False on filler rows
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Sequence

import grain.python as grain
import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.tasks.encoding import ProxyRecord


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Batching of proxy prompts."""

    batch_size: int = 8  # rows per process per step
    bucket_multiple: int = 32  # padded lengths are multiples of this (fewer distinct shapes)
    # the rows' own tokens after a prefix common to the batch, run once (`cached.split_prefix`),
    # are padded to multiples of this: less padding in the prompt pass than bucket_multiple
    # (the same default as `cached.SUFFIX_BUCKET`, attribute's own)
    suffix_multiple: int = 16
    # the prompt caches the one-token steps read (IG's replay, the evaluation's scoring) are
    # left-padded with empty slots to multiples of this: those steps, the costly ones to compile,
    # then compile once for all suffix widths within it (the same default as `cached.CACHE_BUCKET`)
    cache_multiple: int = 64
    shuffle: bool = False  # seeded shuffle of proxies within a bucket and of the batch order
    seed: int = 0  # the shuffle seed; the same seed gives the same batches
    worker_count: int = 0  # grain worker processes (0: in this process)


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def bucket_key(record: ProxyRecord, multiple: int) -> tuple[int, int]:
    """(padded prompt length, padded continuation length) of one record."""
    cont = record.continuation.shape[1]
    return _round_up(len(record.prompt_ids), multiple), (_round_up(cont, 8) if cont else 0)


def plan_batches(records: Sequence[ProxyRecord], config: PipelineConfig, process_count: int = 1) -> list[np.ndarray]:
    """Global batches as int arrays [batch_size * process_count] of record indices (-1 = filler)."""
    if config.batch_size < 1 or process_count < 1:
        raise ConfigError(
            f"pipeline: batch_size and process_count must be >= 1, got {config.batch_size}, {process_count}"
        )
    for name in ("bucket_multiple", "suffix_multiple", "cache_multiple"):
        if getattr(config, name) < 1:
            raise ConfigError(f"pipeline.{name} = {getattr(config, name)}: expected an int >= 1 (padded lengths are its multiples)")
    rng = np.random.default_rng(config.seed)
    buckets: dict[tuple[int, int], list[int]] = {}
    for index, record in enumerate(records):
        buckets.setdefault(bucket_key(record, config.bucket_multiple), []).append(index)
    width = config.batch_size * process_count
    plan = []
    for key in sorted(buckets):
        members = np.asarray(buckets[key], np.int64)
        if config.shuffle:
            members = rng.permutation(members)
        for start in range(0, len(members), width):
            chunk = np.full(width, -1, np.int64)
            part = members[start : start + width]
            chunk[: len(part)] = part
            plan.append(chunk)
    if config.shuffle:
        plan = [plan[k] for k in rng.permutation(len(plan))]
    return plan


def collate(
    records: Sequence[ProxyRecord], indices: np.ndarray, pad_id: int, multiple: int, filler: int
) -> dict[str, np.ndarray]:
    """One batch from record indices; -1 rows copy record `filler` and get valid=False."""
    chosen = [records[int(i) if i >= 0 else filler] for i in indices]
    seq = max(bucket_key(r, multiple)[0] for r in chosen)
    cont = max(bucket_key(r, multiple)[1] for r in chosen)
    variants = max(r.option_tokens.shape[1] for r in chosen)
    batch, options = len(chosen), chosen[0].option_tokens.shape[0]
    input_ids = np.full((batch, seq), pad_id, np.int32)
    attention_mask = np.zeros((batch, seq), np.int32)
    option_tokens = np.full((batch, options, variants), -1, np.int32)
    continuation = np.full((batch, options, cont), -1, np.int32)
    for row, record in enumerate(chosen):
        n = len(record.prompt_ids)
        input_ids[row, seq - n :] = record.prompt_ids
        attention_mask[row, seq - n :] = 1
        option_tokens[row, :, : record.option_tokens.shape[1]] = record.option_tokens
        continuation[row, :, : record.continuation.shape[1]] = record.continuation
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "option_tokens": option_tokens,
        "continuation": continuation,
        "gold": np.asarray([r.gold for r in chosen], np.int32),
        "item_index": np.asarray([r.item_index for r in chosen], np.int32),
        "proxy_index": np.asarray([r.proxy_index for r in chosen], np.int32),
        "valid": indices >= 0,
    }


def _mark_flags_parsed() -> None:
    # Grain's worker processes read absl flags; outside an absl app nobody has parsed them.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class _PlanSource:
    """Grain random-access source over the global batch plan (record = one global batch)."""

    def __init__(self, plan: Sequence[np.ndarray]):
        self._plan = list(plan)

    def __len__(self) -> int:
        return len(self._plan)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._plan[index]


class CollateSlice(grain.MapTransform):
    """This process's rows of a global batch, padded and masked (a module-level class, so that
    grain can send it to worker processes)."""

    def __init__(self, records, pad_id: int, multiple: int, batch_size: int, process_index: int):
        self.records, self.pad_id, self.multiple = records, pad_id, multiple
        self.start, self.stop = process_index * batch_size, (process_index + 1) * batch_size

    def map(self, global_batch: np.ndarray) -> dict[str, np.ndarray]:
        # Filler rows copy the global batch's first proxy, so every process gets the same shapes.
        filler = int(global_batch[0])
        return collate(self.records, global_batch[self.start : self.stop], self.pad_id, self.multiple, filler)


def make_loader(
    records: Sequence[ProxyRecord],
    pad_id: int,
    config: PipelineConfig = PipelineConfig(),
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
):
    """A grain DataLoader over this process's batches (process index/count default to JAX's)."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ConfigError(f"pipeline: process_index {process_index} outside 0..{process_count - 1}")
    if config.worker_count > 0:
        _mark_flags_parsed()
    plan = plan_batches(records, config, process_count)
    source = _PlanSource(plan)
    sampler = grain.IndexSampler(
        num_records=len(source), shard_options=grain.NoSharding(), shuffle=False, num_epochs=1, seed=config.seed
    )
    transform = CollateSlice(list(records), pad_id, config.bucket_multiple, config.batch_size, process_index)
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[transform],
        worker_count=config.worker_count,
        read_options=grain.ReadOptions(num_threads=1, prefetch_buffer_size=4),
    )


def iterate_batches(
    records: Sequence[ProxyRecord],
    pad_id: int,
    config: PipelineConfig = PipelineConfig(),
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
) -> Iterator[dict[str, np.ndarray]]:
    """The batches of `make_loader`, in order."""
    yield from make_loader(records, pad_id, config, process_index, process_count)
