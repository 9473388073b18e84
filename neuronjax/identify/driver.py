"""Identification: a task's proxy prompts -> attributions -> complete items -> every method.

The task's batches (left-padded, length-bucketed, see `neuronjax.tasks.pipeline`) go through the
attribution engine once per target a method needs ("attr": the contrastive F, "attr_prob": the
gold answer's probability). Complete items (`neuronjax.identify.collect`) leave in fixed-size
blocks, and every method folds each block into its O(neurons) state. A method runs in the phases
it declares (`neuronjax.methods.base.Method`): the stream over the blocks, an optional fit on the
prompts afterwards, and, for a method derived from another's sets (the random control), the
derivation once the others are final.

    results = identify(lm, encoded_task, [NeuronLLM(k=100), KnowledgeNeurons(k=100)])
    results["neuronllm"].good    # bool [layers, mlp]
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from typing import Callable, Iterator, Optional, Sequence

import jax
import numpy as np

from neuronjax.attribution.engine import PromptBatch, attribute
from neuronjax.cached import CACHE_BUCKET, SUFFIX_BUCKET
from neuronjax.config import AttributionConfig
from neuronjax.distributed import global_batches, to_host
from neuronjax.errors import ConfigError
from neuronjax.identify.collect import IdentifyStats, ItemCollector, collect
from neuronjax.identify.state import Checkpointing, RunState, run_key
from neuronjax.io.neurons import NeuronSet, model_fingerprint
from neuronjax.methods.base import NEEDS, ItemBlock, Method, method_record, nonfinite_scores
from neuronjax.overlap import in_flight, in_order
from neuronjax.tasks.metrics import proxy_correct

log = logging.getLogger("neuronjax.identify")


def _needs(methods: Sequence[Method]) -> set[str]:
    needs = set()
    for m in methods:
        unknown = set(m.needs) - set(NEEDS)
        if unknown:
            raise ConfigError(f"method {m.name!r} needs {sorted(unknown)}; known: {NEEDS}")
        needs |= set(m.needs)
    return needs


def _check_task(encoded, block_items: int) -> None:
    if encoded.config.prompt.answer_format == "option_text" and encoded.config.prompt.option_score != "first_token":
        raise ConfigError(
            f"task {encoded.config.name!r}: prompt.option_score = {encoded.config.prompt.option_score!r}; "
            "attribution reads the answer from one next token, so identification needs "
            "answer_format letter or option_score first_token"
        )
    if block_items < 1:
        raise ConfigError(f"identify.block_items = {block_items}: expected >= 1")


def attribute_batch(lm, batch, needs: set[str], attribution: AttributionConfig, heads: Optional[dict] = None,
                    seq_bucket: int = SUFFIX_BUCKET, cache_bucket: Optional[int] = CACHE_BUCKET) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-row arrays of one global batch: the attributions in `needs`, activations, correctness.
    heads: the task's shared-prefix caches, kept by the caller across its batches (`attribute`);
    seq_bucket: the rows' suffixes after it are padded to its multiples (the task's
    `pipeline.suffix_multiple`); cache_bucket: the prompt caches' slots are padded to its
    multiples (the task's `pipeline.cache_multiple`)."""
    pb = PromptBatch(batch["input_ids"], batch["attention_mask"], batch["option_tokens"], batch["gold"])
    rows: dict[str, np.ndarray] = {}
    for key, target in (("attr", "ce"), ("attr_prob", "prob")):
        if key in needs:
            out = attribute(lm, pb, attribution.method, attribution.schedule(lm.config.num_layers),
                            groups=attribution.groups, target=target, rule=attribution.rule,
                            share_prefix=attribution.share_prefix, replay=attribution.replay, heads=heads,
                            seq_bucket=seq_bucket, cache_bucket=cache_bucket)  # fmt: skip
            rows[key] = to_host(out.scores)
    if not needs & {"attr", "attr_prob"}:  # activations (and correctness) only: one plain pass
        out = attribute(lm, pb, "activation", share_prefix=attribution.share_prefix, heads=heads, seq_bucket=seq_bucket,
                        cache_bucket=cache_bucket)
    if "activations" in needs:
        rows["activations"] = to_host(out.activations)
    rows["correct"] = np.asarray(proxy_correct(to_host(out.option_scores), np.asarray(batch["gold"])))
    return rows


def item_blocks(
    lm,
    encoded,
    needs: set[str],
    attribution: AttributionConfig = AttributionConfig(),
    block_items: int = 16,
    stats: Optional[IdentifyStats] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> Iterator[ItemBlock]:
    """Blocks of complete items of `encoded` (an `EncodedTask`) with the arrays in `needs`."""
    _check_task(encoded, block_items)
    stats = stats if stats is not None else IdentifyStats()
    c = lm.config
    collector = ItemCollector(needs, encoded.config.aqua.num_proxies, block_items, (c.num_layers, c.intermediate_size), stats)
    yield from _blocks(lm, encoded, needs, attribution, collector, progress)


def _blocks(lm, encoded, needs, attribution, collector: ItemCollector, progress, start: int = 0,
            after_batch: Optional[Callable[[int], None]] = None) -> Iterator[ItemBlock]:  # fmt: skip
    """Every global batch from `start` on through the attribution engine and the collector,
    yielding blocks of complete items as they fill; after_batch(batches done) runs after each
    batch's blocks are consumed. Timing accumulates in the collector's statistics."""
    stats = collector.stats
    t0 = time.perf_counter() - stats.seconds
    heads: dict = {}  # the task's shared prefix, run once for all its batches
    batches = enumerate(global_batches(encoded, start=start), start=start)
    pipeline = encoded.config.pipeline
    work = lambda item: attribute_batch(lm, item[1], needs, attribution, heads, pipeline.suffix_multiple,  # noqa: E731
                                        pipeline.cache_multiple)
    for (index, batch), rows in in_order(work, batches, in_flight(lm)):  # on CPU two batches at once
        collect(collector, batch, rows)
        yield from collector.blocks(lm)
        stats.seconds = time.perf_counter() - t0
        if progress is not None:
            progress(int(np.sum(batch["valid"])))
        if after_batch is not None:
            after_batch(index + 1)
    collector.check_done()
    yield from collector.blocks(lm, force=True)
    stats.seconds = time.perf_counter() - t0


def identify(
    lm,
    encoded,
    methods: Sequence[Method],
    attribution: AttributionConfig = AttributionConfig(),
    block_items: int = 16,
    progress: Optional[Callable[[int], None]] = None,
    stats: Optional[IdentifyStats] = None,
    checkpoint: Optional[Checkpointing] = None,
) -> dict[str, NeuronSet]:
    """Run every method over one pass of the task; returns {method name: NeuronSet}, in the order
    the methods were listed.

    Streamed methods fold every block, then fit (when they optimise on the prompts) and finalize;
    derived methods (the random control) are then built from the streamed methods' sets.

    checkpoint: save the run's state (every streamed method's state, the rows waiting for their
    item, the statistics, the number of batches done) with Orbax every `checkpoint.every` batches;
    a call with a directory that holds a checkpoint of the same run continues from the newest one
    and ends with the same sets as an uninterrupted call.
    """
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"identify.methods: a method is listed twice in {names}")
    _check_task(encoded, block_items)
    streamed = [m for m in methods if not m.derived]
    if not streamed:
        raise ConfigError(f"identify.methods: {names} are all derived from other methods' sets; list a method that "
                         "identifies neurons (e.g. neuronllm) with them")  # fmt: skip
    stats = stats if stats is not None else IdentifyStats()
    c = lm.config
    attribution.schedule(c.num_layers)  # a layer_steps layer the model does not have fails here, not mid-run
    grid = (c.num_layers, c.intermediate_size)
    states = {m.name: m.init(*grid) for m in streamed}
    stats.devices = lm.mesh.size if lm.mesh is not None else 1
    stats.processes = jax.process_count()
    states, done = _stream(lm, encoded, streamed, states, attribution, block_items, progress, stats, checkpoint)
    if stats.items == 0:
        raise ConfigError(f"task {encoded.config.name!r}: no items to identify on (the identify split is empty)")
    for m in streamed:  # methods that optimise on the prompts do it now (after the last checkpoint)
        states[m.name] = m.fit(lm, encoded, states[m.name])
    if stats.nonfinite_inputs:
        log.warning("identify %s: %d attribution / activation values were NaN or inf; each method's sidecar "
                    "counts the scores that came out non-finite (meta['nonfinite_scores'])",
                    encoded.config.name, stats.nonfinite_inputs)  # fmt: skip
    meta = run_meta(lm, encoded, attribution, stats)
    results = {m.name: _neuron_set(m, m.finalize(jax.tree.map(to_host, states[m.name])), meta) for m in streamed}
    for m in methods:
        if m.derived:
            m = m.derive({n: results[n] for n in names if n in results})
            results[m.name] = _neuron_set(m, m.finalize(m.init(*grid)), meta)
    return {n: results[n] for n in names}


def _stream(lm, encoded, methods, states, attribution, block_items, progress, stats, checkpoint):
    """Every batch through the attribution engine and every complete item's block through the
    methods, checkpointing as configured; returns (states, batches done before this call)."""
    needs = _needs(methods)
    grid = (lm.config.num_layers, lm.config.intermediate_size)
    collector = ItemCollector(needs, encoded.config.aqua.num_proxies, block_items, grid, stats)
    saver, done = None, 0
    if checkpoint is not None:
        saver = RunState(checkpoint, run_key(lm, encoded, methods, attribution, block_items))
        restored = saver.restore(states)
        if restored is not None:
            states, done, saved_stats, waiting = restored
            for f in dataclasses.fields(IdentifyStats):
                if f.name not in ("devices", "processes"):
                    setattr(stats, f.name, saved_stats.get(f.name, getattr(stats, f.name)))
            collector.from_arrays(waiting)
            if jax.process_index() == 0:
                print(f"identify: resuming from {checkpoint.directory} at batch {done} "
                      f"({stats.proxies} prompts, {stats.items} items done)", file=sys.stderr)  # fmt: skip
            if progress is not None:
                progress(stats.proxies)

    def checkpoint_after(batches: int) -> None:
        if batches % checkpoint.every == 0:
            saver.save(batches, states, stats, collector)

    for block in _blocks(lm, encoded, needs, attribution, collector, progress, done,
                         checkpoint_after if saver is not None else None):  # fmt: skip
        for m in methods:
            states[m.name] = m.update(states[m.name], block)
    return states, done


def _neuron_set(method: Method, finalized, meta: dict) -> NeuronSet:
    scores, good, bad = finalized
    return NeuronSet(np.asarray(scores, np.float32), np.asarray(good), np.asarray(bad),
                     dict(meta, method=method_record(method), nonfinite_scores=nonfinite_scores(method.name, scores)))  # fmt: skip


def run_meta(lm, encoded, attribution: AttributionConfig, stats: IdentifyStats) -> dict:
    """The sidecar fields shared by every method of one run."""
    return {
        "model": model_fingerprint(lm),
        "dtype": lm.dtype.name,
        "task": {
            "name": encoded.config.name,
            "config": dataclasses.asdict(encoded.config),
            "split": encoded.split.to_dict(),
            "part": encoded.part,
            # what reading and encoding the task left out or could not separate (also logged)
            "skipped_rows": getattr(encoded.task, "skipped", 0),
            "header_rows": getattr(encoded.task, "header_rows", 0),
            "first_token_ties": encoded.first_token_ties,
        },
        "attribution": dataclasses.asdict(attribution),
        "stats": dataclasses.asdict(stats) | {"prompts_per_second": stats.prompts_per_second,
                                               "prompts_per_second_per_device": stats.prompts_per_second_per_device},
    }
