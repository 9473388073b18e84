"""Identification: a task's proxy prompts -> attributions -> complete items -> every method.

The task's batches (left-padded, length-bucketed, see `neuronjax.tasks.pipeline`) go through the
attribution engine once per target a method needs ("attr": the contrastive F, "attr_prob": the
gold answer's probability). The proxies of one item can arrive in different batches, so rows are
held on the host until their item is complete (only the items still incomplete are held: with
the default batching, the proxies of an item are adjacent and at most a batch's worth waits).
Complete items leave in fixed-size `ItemBlock`s (the last one padded with valid=False rows, so
the methods' compiled updates see one shape), placed on the mesh with the item axis on the data
axis, and every method folds each block into its O(neurons) state.

    results = identify(lm, encoded_task, [NeuronLLM(k=100), KnowledgeNeurons(k=100)])
    results["neuronllm"].good    # bool [layers, mlp]
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import threading
import time
from typing import Callable, Iterator, Literal, Optional, Sequence

import jax
import numpy as np

from neuronjax.attribution.engine import PromptBatch, attribute
from neuronjax.config import AttributionConfig
from neuronjax.distributed import global_batches, to_host
from neuronjax.errors import SaveError
from neuronjax.io.neurons import NeuronSet, model_fingerprint
from neuronjax.methods.base import NEEDS, ItemBlock, Method, method_record, nonfinite_scores
from neuronjax.tasks.metrics import proxy_correct

log = logging.getLogger("neuronjax.identify")


@dataclasses.dataclass
class IdentifyStats:
    """What an identification run saw (written into every result's sidecar)."""

    items: int = 0
    proxies: int = 0
    batches: int = 0
    filler_rows: int = 0  # rows that only padded a batch (not attributed twice, dropped)
    proxies_correct: int = 0  # proxies the unedited model answers right
    seconds: float = 0.0
    nonfinite_inputs: int = 0  # NaN / inf attribution or activation values of real rows (reported, see identify)
    devices: int = 1  # devices of the mesh (all processes)
    processes: int = 1

    @property
    def prompts_per_second(self) -> float:
        return self.proxies / self.seconds if self.seconds else 0.0

    @property
    def prompts_per_second_per_device(self) -> float:
        return self.prompts_per_second / max(self.devices, 1)


def _needs(methods: Sequence[Method]) -> set[str]:
    needs = set()
    for m in methods:
        unknown = set(m.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"method {m.name!r} needs {sorted(unknown)}; known: {NEEDS}")
        needs |= set(m.needs)
    return needs


def _check_task(encoded, block_items: int) -> None:
    if encoded.config.prompt.answer_format == "option_text" and encoded.config.prompt.option_score != "first_token":
        raise ValueError(
            f"task {encoded.config.name!r}: prompt.option_score = {encoded.config.prompt.option_score!r}; "
            "attribution reads the answer from one next token, so identification needs "
            "answer_format letter or option_score first_token"
        )
    if block_items < 1:
        raise ValueError(f"identify.block_items = {block_items}: expected >= 1")


class ItemCollector:
    """Host-side buffer: attributed rows in, blocks of complete items out.

    Rows wait until their item has every proxy; complete items leave in arrival order, in blocks
    of `block_items`. The buffer (incomplete items and complete ones not yet in a block) is part
    of a resumable run's checkpoint (`to_arrays` / `from_arrays`).
    """

    def __init__(self, keys: Sequence[str], num_proxies: int, block_items: int, grid: tuple[int, int], stats: IdentifyStats):
        self.keys, self.num_proxies, self.block_items, self.grid = sorted(keys), num_proxies, block_items, grid
        self.stats = stats
        self.pending: dict[int, dict[int, dict[str, np.ndarray]]] = {}
        self.complete: list[tuple[int, dict[int, dict[str, np.ndarray]]]] = []

    def add(self, item: int, proxy: int, row: dict[str, np.ndarray]) -> None:
        slot = self.pending.setdefault(item, {})
        if proxy in slot:
            raise RuntimeError(f"proxy {proxy} of item {item} arrived twice (pipeline plan is broken)")
        slot[proxy] = row
        self.stats.proxies += 1
        self.stats.proxies_correct += int(row["correct"])
        if len(slot) == self.num_proxies:
            self.complete.append((item, self.pending.pop(item)))
            self.stats.items += 1

    def blocks(self, lm, force: bool = False) -> Iterator[ItemBlock]:
        while len(self.complete) >= self.block_items or (force and self.complete):
            take, self.complete = self.complete[: self.block_items], self.complete[self.block_items :]
            yield _block([rows for _, rows in take], self.keys, self.num_proxies, self.block_items, self.grid, lm)

    def check_done(self) -> None:
        if self.pending:
            raise RuntimeError(
                f"{len(self.pending)} items ended with fewer than {self.num_proxies} proxies "
                f"(e.g. item {next(iter(self.pending))}); the task's batches did not hold every proxy"
            )

    # -- checkpointing: every waiting row as flat arrays ------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        rows = [(k, item, proxy, r) for k, (item, slot) in enumerate(self.complete) for proxy, r in slot.items()]
        rows += [(-1, item, proxy, r) for item, slot in self.pending.items() for proxy, r in slot.items()]
        out = {
            "order": np.asarray([r[0] for r in rows], np.int32).reshape(-1),
            "item": np.asarray([r[1] for r in rows], np.int32).reshape(-1),
            "proxy": np.asarray([r[2] for r in rows], np.int32).reshape(-1),
            "correct": np.asarray([bool(r[3]["correct"]) for r in rows], bool).reshape(-1),
        }
        for key in self.keys:
            out[key] = np.stack([r[3][key] for r in rows]) if rows else np.zeros((0,) + self.grid, np.float32)
        return out

    def from_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.pending, complete = {}, {}
        for i in range(len(arrays["item"])):
            row = {k: np.asarray(arrays[k][i]) for k in self.keys} | {"correct": np.bool_(arrays["correct"][i])}
            item, proxy, order = int(arrays["item"][i]), int(arrays["proxy"][i]), int(arrays["order"][i])
            if order >= 0:
                complete.setdefault(order, (item, {}))[1][proxy] = row
            else:
                self.pending.setdefault(item, {})[proxy] = row
        self.complete = [complete[k] for k in sorted(complete)]


def _attribute_batch(lm, batch, needs: set[str], attribution: AttributionConfig) -> dict[str, np.ndarray]:
    """Per-row arrays of one global batch: the attributions in `needs`, activations, correctness."""
    pb = PromptBatch(batch["input_ids"], batch["attention_mask"], batch["option_tokens"], batch["gold"])
    rows: dict[str, np.ndarray] = {}
    for key, target in (("attr", "ce"), ("attr_prob", "prob")):
        if key in needs:
            out = attribute(lm, pb, attribution.method, attribution.steps, groups=attribution.groups, target=target)
            rows[key] = to_host(out.scores)
    if not needs & {"attr", "attr_prob"}:  # activations (and correctness) only: one plain pass
        out = attribute(lm, pb, "activation")
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
    start = time.perf_counter()
    for batch in global_batches(encoded):
        _collect(collector, batch, _attribute_batch(lm, batch, needs, attribution))
        stats.seconds = time.perf_counter() - start
        if progress is not None:
            progress(int(np.sum(batch["valid"])))
        yield from collector.blocks(lm)
    collector.check_done()
    yield from collector.blocks(lm, force=True)
    stats.seconds = time.perf_counter() - start


def _collect(collector: ItemCollector, batch, rows: dict[str, np.ndarray]) -> None:
    valid = np.asarray(batch["valid"], bool)
    collector.stats.batches += 1
    collector.stats.filler_rows += int((~valid).sum())
    for key in collector.keys:
        collector.stats.nonfinite_inputs += int((~np.isfinite(rows[key][valid])).sum())
    for r in np.flatnonzero(valid):
        collector.add(int(batch["item_index"][r]), int(batch["proxy_index"][r]), {k: v[r] for k, v in rows.items()})


def _block(items, keys, num_proxies, block_items, grid, lm) -> ItemBlock:
    n = len(items)
    valid = np.zeros(block_items, bool)
    valid[:n] = True
    correct = np.zeros((block_items, num_proxies), bool)
    arrays = {k: np.zeros((block_items, num_proxies) + grid, np.float32) for k in keys}
    for i, item in enumerate(items):
        for p in range(num_proxies):
            correct[i, p] = item[p]["correct"]
            for k in keys:
                arrays[k][i, p] = item[p][k]
    place = lm.place
    return ItemBlock(valid=place(valid), correct=place(correct), **{k: place(v) for k, v in arrays.items()})


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where and how often a resumable identification saves its state."""

    directory: str
    every: int = 20  # global batches between checkpoints
    keep: int = 2  # newest checkpoints kept


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
    """Run every method over one pass of the task; returns {method name: NeuronSet}.

    A `Random` method without per-layer counts is drawn like the first other method's sets
    (its `like` reference), after that method is done.

    checkpoint: save the run's state (every method's state, the rows waiting for their item,
    the statistics, the number of batches done) with Orbax every `checkpoint.every` batches; a
    call with a directory that holds a checkpoint of the same run continues from the newest one
    and ends with the same sets as an uninterrupted call.
    """
    from neuronjax.methods.baselines import Random

    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"identify.methods: a method is listed twice in {names}")
    _check_task(encoded, block_items)
    data_methods = [m for m in methods if not isinstance(m, Random)]
    stats = stats if stats is not None else IdentifyStats()
    c = lm.config
    grid = (c.num_layers, c.intermediate_size)
    states = {m.name: m.init(*grid) for m in data_methods}
    if not data_methods and any(not (m.good_per_layer or m.bad_per_layer) for m in methods):
        raise ValueError("identify.methods: 'random' needs another method to copy its per-layer counts from")
    needs = _needs(data_methods)
    stats.devices = lm.mesh.size if lm.mesh is not None else 1
    stats.processes = jax.process_count()
    collector = ItemCollector(needs, encoded.config.aqua.num_proxies, block_items, grid, stats)
    saver = None
    done = 0
    if checkpoint is not None:
        saver = RunState(checkpoint, _run_key(lm, encoded, data_methods, attribution, block_items))
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
    start = time.perf_counter() - stats.seconds
    for index, batch in enumerate(global_batches(encoded, start=done), start=done):
        _collect(collector, batch, _attribute_batch(lm, batch, needs, attribution))
        for block in collector.blocks(lm):
            for m in data_methods:
                states[m.name] = m.update(states[m.name], block)
        stats.seconds = time.perf_counter() - start
        if progress is not None:
            progress(int(np.sum(batch["valid"])))
        if saver is not None and (index + 1) % checkpoint.every == 0:
            saver.save(index + 1, states, stats, collector)
    collector.check_done()
    for block in collector.blocks(lm, force=True):
        for m in data_methods:
            states[m.name] = m.update(states[m.name], block)
    stats.seconds = time.perf_counter() - start
    if stats.items == 0:
        raise ValueError(f"task {encoded.config.name!r}: no items to identify on (the identify split is empty)")
    for m in data_methods:  # second phase of methods that optimise on the prompts (after the last checkpoint)
        if hasattr(m, "fit"):
            states[m.name] = m.fit(lm, encoded, states[m.name])
    if stats.nonfinite_inputs:
        log.warning("identify %s: %d attribution / activation values were NaN or inf; each method's sidecar "
                    "counts the scores that came out non-finite (meta['nonfinite_scores'])",
                    encoded.config.name, stats.nonfinite_inputs)  # fmt: skip
    meta = run_meta(lm, encoded, attribution, stats)
    results: dict[str, NeuronSet] = {}
    for m in data_methods:
        scores, good, bad = m.finalize(jax.tree.map(to_host, states[m.name]))
        results[m.name] = NeuronSet(np.asarray(scores, np.float32), np.asarray(good), np.asarray(bad),
                                    dict(meta, method=method_record(m), nonfinite_scores=nonfinite_scores(m.name, scores)))  # fmt: skip
    for m in methods:
        if isinstance(m, Random):
            if not m.good_per_layer and not m.bad_per_layer:
                ref_name = names[0] if names[0] != m.name else next(n for n in names if n != m.name)
                ref = results[ref_name]
                m = Random.like(ref.good, ref.bad, seed=m.seed, k=m.k)
            scores, good, bad = m.finalize(m.init(*grid))
            results[m.name] = NeuronSet(np.asarray(scores, np.float32), np.asarray(good), np.asarray(bad),
                                        dict(meta, method=method_record(m), nonfinite_scores=nonfinite_scores(m.name, scores)))  # fmt: skip
    return {n: results[n] for n in names}  # in the order the methods were listed


def _run_key(lm, encoded, methods: Sequence[Method], attribution: AttributionConfig, block_items: int) -> dict:
    """What must match for a checkpoint to be continued: same model, data, batching and methods."""
    return {
        "model": model_fingerprint(lm),
        "task": dataclasses.asdict(encoded.config),
        "split": encoded.split.to_dict(),
        "part": encoded.part,
        "proxies": len(encoded.records),
        "global_batch_rows": encoded.config.pipeline.batch_size * jax.process_count(),
        "methods": [method_record(m) for m in methods],
        "attribution": dataclasses.asdict(attribution),
        "block_items": block_items,
    }


class RunState:
    """An identification's resumable state in an Orbax CheckpointManager directory.

    One checkpoint = the methods' states and the waiting rows (arrays) + the step, statistics
    and run key (JSON). Orbax writes each checkpoint to a temporary folder and renames it when
    complete, so a process killed while saving leaves the previous checkpoint as the newest.
    """

    def __init__(self, config: Checkpointing, key: dict):
        import orbax.checkpoint as ocp

        if config.every < 1:
            raise ValueError(f"identify.checkpoint_every = {config.every}: expected >= 1")
        self.config, self.key = config, _plain(key)
        self.manager = ocp.CheckpointManager(
            os.path.abspath(config.directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=config.keep, create=True, enable_async_checkpointing=False),
        )

    def save(self, step: int, states: dict, stats: IdentifyStats, collector: ItemCollector) -> None:
        import orbax.checkpoint as ocp

        waiting = collector.to_arrays()
        arrays = {"methods": {n: _leaves(s) for n, s in states.items()}}
        if len(waiting["item"]):
            arrays["waiting"] = waiting
        meta = {"step": step, "stats": dataclasses.asdict(stats), "key": self.key, "waiting_rows": len(waiting["item"])}
        threads = set(threading.enumerate())
        try:
            self.manager.save(step, args=ocp.args.Composite(arrays=ocp.args.PyTreeSave(arrays), meta=ocp.args.JsonSave(meta)))
            self.manager.wait_until_finished()
        except (OSError, ValueError, RuntimeError) as err:  # a full disk: OSError, or the array store's error
            # When one part of the checkpoint fails, Orbax's writes of the other part go on in
            # background threads; wait for them, so that a retry does not race them.
            _join_new_threads(threads, timeout=30.0)
            kept = self.manager.latest_step()  # Orbax renames a checkpoint into place only once complete
            raise SaveError(
                f"{self.config.directory}: saving the resumable state at batch {step} failed: "
                f"{type(err).__name__}: {err}. The newest complete checkpoint is "
                + (f"batch {kept}; a restart continues from it" if kept is not None else "none; a restart begins again"),
                getattr(err, "errno", None),
            ) from err

    def restore(self, states: dict):
        """(states, step, stats dict, waiting arrays) of the newest checkpoint, or None."""
        import orbax.checkpoint as ocp

        step = self.manager.latest_step()
        if step is None:
            return None
        where = os.path.join(self.config.directory, str(step))
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if meta["key"] != self.key:
            diff = sorted(k for k in set(meta["key"]) | set(self.key) if meta["key"].get(k) != self.key.get(k))
            raise ValueError(
                f"{where}: this checkpoint belongs to another identification (different {', '.join(diff)}); "
                "delete the folder (or run with --force) to start again"
            )
        arrays = self.manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.PyTreeRestore()))["arrays"]
        restored = {}
        for name, state in states.items():
            leaves, treedef = jax.tree.flatten(state)
            saved = arrays["methods"][name]
            restored[name] = jax.tree.unflatten(treedef, [np.asarray(saved[str(i)]) for i in range(len(leaves))])
        waiting = {k: np.asarray(v) for k, v in arrays.get("waiting", {}).items()}
        if meta["waiting_rows"] == 0:
            waiting = {"order": [], "item": [], "proxy": [], "correct": []}
        return restored, int(meta["step"]), meta["stats"], waiting

    def clear(self) -> None:
        self.manager.close()
        shutil.rmtree(self.config.directory, ignore_errors=True)


def _join_new_threads(before: set, timeout: float) -> None:
    """Join the non-daemon threads started since `before` (at most `timeout` seconds in all)."""
    deadline = time.monotonic() + timeout
    for thread in set(threading.enumerate()) - before:
        if not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))


def _leaves(state) -> dict[str, np.ndarray]:
    return {str(i): to_host(x) for i, x in enumerate(jax.tree.leaves(state))}


def _plain(x):
    """JSON round-trip form (tuples -> lists), so a saved key compares equal to a fresh one."""
    import json

    return json.loads(json.dumps(x, default=str))


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
