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
import time
from typing import Callable, Iterator, Literal, Optional, Sequence

import numpy as np

from neuronjax.attribution.engine import PromptBatch, attribute
from neuronjax.io.neurons import NeuronSet, model_fingerprint
from neuronjax.methods.base import NEEDS, ItemBlock, Method, method_record
from neuronjax.tasks.metrics import proxy_correct


@dataclasses.dataclass(frozen=True)
class AttributionConfig:
    """How neurons are attributed (NeuronLLM step 4)."""

    method: Literal["ig", "grad_x_act"] = "ig"  # integrated gradients, or the one-step gradient x activation
    steps: int = 16  # IG steps m (alpha = 1/m .. 1); ignored by grad_x_act
    groups: int = 4  # layer groups of the IG staircase (speed / compile-time trade-off)


@dataclasses.dataclass
class IdentifyStats:
    """What an identification run saw (written into every result's sidecar)."""

    items: int = 0
    proxies: int = 0
    batches: int = 0
    filler_rows: int = 0  # rows that only padded a batch (not attributed twice, dropped)
    proxies_correct: int = 0  # proxies the unedited model answers right
    seconds: float = 0.0

    @property
    def prompts_per_second(self) -> float:
        return self.proxies / self.seconds if self.seconds else 0.0


def _needs(methods: Sequence[Method]) -> set[str]:
    needs = set()
    for m in methods:
        unknown = set(m.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"method {m.name!r} needs {sorted(unknown)}; known: {NEEDS}")
        needs |= set(m.needs)
    return needs


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
    if encoded.config.prompt.answer_format == "option_text" and encoded.config.prompt.option_score != "first_token":
        raise ValueError(
            f"task {encoded.config.name!r}: prompt.option_score = {encoded.config.prompt.option_score!r}; "
            "attribution reads the answer from one next token, so identification needs "
            "answer_format letter or option_score first_token"
        )
    if block_items < 1:
        raise ValueError(f"identify.block_items = {block_items}: expected >= 1")
    stats = stats if stats is not None else IdentifyStats()
    num_proxies = encoded.config.aqua.num_proxies
    c = lm.config
    pending: dict[int, dict[int, dict[str, np.ndarray]]] = {}
    complete: list[dict[int, dict[str, np.ndarray]]] = []
    keys = sorted(needs)
    start = time.perf_counter()

    def flush(force: bool):
        while len(complete) >= block_items or (force and complete):
            take, complete[:] = complete[:block_items], complete[block_items:]
            yield _block(take, keys, num_proxies, block_items, (c.num_layers, c.intermediate_size), lm)

    for batch in encoded.batches(process_index=0, process_count=1):
        valid = np.asarray(batch["valid"], bool)
        stats.batches += 1
        stats.filler_rows += int((~valid).sum())
        pb = PromptBatch(batch["input_ids"], batch["attention_mask"], batch["option_tokens"], batch["gold"])
        rows: dict[str, np.ndarray] = {}
        for key, target in (("attr", "ce"), ("attr_prob", "prob")):
            if key in needs:
                out = attribute(lm, pb, attribution.method, attribution.steps, groups=attribution.groups, target=target)
                rows[key] = np.asarray(out.scores)
        if not needs & {"attr", "attr_prob"}:  # activations (and correctness) only: one plain pass
            out = attribute(lm, pb, "activation")
        option_scores, acts = np.asarray(out.option_scores), out.activations
        if "activations" in needs:
            rows["activations"] = np.asarray(acts)
        correct = np.asarray(proxy_correct(option_scores, np.asarray(batch["gold"])))
        for r in np.flatnonzero(valid):
            item, proxy = int(batch["item_index"][r]), int(batch["proxy_index"][r])
            slot = pending.setdefault(item, {})
            if proxy in slot:
                raise RuntimeError(f"proxy {proxy} of item {item} arrived twice (pipeline plan is broken)")
            slot[proxy] = {k: v[r] for k, v in rows.items()} | {"correct": correct[r]}
            stats.proxies += 1
            stats.proxies_correct += int(correct[r])
            if len(slot) == num_proxies:
                complete.append(pending.pop(item))
                stats.items += 1
        stats.seconds = time.perf_counter() - start
        if progress is not None:
            progress(int(valid.sum()))
        yield from flush(False)
    if pending:
        raise RuntimeError(
            f"{len(pending)} items ended with fewer than {num_proxies} proxies (e.g. item {next(iter(pending))}); "
            "the task's batches did not hold every proxy"
        )
    yield from flush(True)
    stats.seconds = time.perf_counter() - start


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
    place = lm._place
    return ItemBlock(valid=place(valid), correct=place(correct), **{k: place(v) for k, v in arrays.items()})


def identify(
    lm,
    encoded,
    methods: Sequence[Method],
    attribution: AttributionConfig = AttributionConfig(),
    block_items: int = 16,
    progress: Optional[Callable[[int], None]] = None,
    stats: Optional[IdentifyStats] = None,
) -> dict[str, NeuronSet]:
    """Run every method over one pass of the task; returns {method name: NeuronSet}.

    A `Random` method without per-layer counts is drawn like the first other method's sets
    (its `like` reference), after that method is done.
    """
    from neuronjax.methods.baselines import Random

    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"identify.methods: a method is listed twice in {names}")
    data_methods = [m for m in methods if not isinstance(m, Random)]
    stats = stats if stats is not None else IdentifyStats()
    c = lm.config
    states = {m.name: m.init(c.num_layers, c.intermediate_size) for m in data_methods}
    if not data_methods and any(not (m.good_per_layer or m.bad_per_layer) for m in methods):
        raise ValueError("identify.methods: 'random' needs another method to copy its per-layer counts from")
    for block in item_blocks(lm, encoded, _needs(data_methods), attribution, block_items, stats, progress):
        for m in data_methods:
            states[m.name] = m.update(states[m.name], block)
    if stats.items == 0:
        raise ValueError(f"task {encoded.config.name!r}: no items to identify on (the identify split is empty)")
    meta = run_meta(lm, encoded, attribution, stats)
    results: dict[str, NeuronSet] = {}
    for m in data_methods:
        scores, good, bad = m.finalize(states[m.name])
        results[m.name] = NeuronSet(np.asarray(scores, np.float32), np.asarray(good), np.asarray(bad),
                                    dict(meta, method=method_record(m)))  # fmt: skip
    for m in methods:
        if isinstance(m, Random):
            if not m.good_per_layer and not m.bad_per_layer:
                ref_name = names[0] if names[0] != m.name else next(n for n in names if n != m.name)
                ref = results[ref_name]
                m = Random.like(ref.good, ref.bad, seed=m.seed, k=m.k)
            scores, good, bad = m.finalize(m.init(c.num_layers, c.intermediate_size))
            results[m.name] = NeuronSet(np.asarray(scores, np.float32), np.asarray(good), np.asarray(bad),
                                        dict(meta, method=method_record(m)))  # fmt: skip
    return {n: results[n] for n in names}  # in the order the methods were listed


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
        },
        "attribution": dataclasses.asdict(attribution),
        "stats": dataclasses.asdict(stats) | {"prompts_per_second": stats.prompts_per_second},
    }
