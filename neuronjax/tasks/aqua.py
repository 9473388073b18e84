"""AQUA: augmented proxy questions (NeuronLLM, arXiv 2601.04548, Sec. "AQUA").

Each item becomes `num_proxies` proxy questions with the same question and the same option set in
a different order, chosen so that the gold option sits on a different letter in every proxy. A
neuron that helps only because it prefers a letter then scores for some proxies and against
others, and its contribution cancels in the example score. An item with k options has k letters,
so it has at most k proxies (num_proxies <= k).

    cyclic (default): proxy p shifts the options by p places, option j -> letter (j + p) mod k,
                      so the gold letter walks answer, answer+1, ... (mod k).
    random:           seeded per item: distinct gold letters drawn at random, distractors shuffled
                      into the remaining letters.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Literal, Sequence

import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.tasks.schema import NUM_OPTIONS, Item


@dataclasses.dataclass(frozen=True)
class AquaConfig:
    """How each item turns into proxy questions."""

    num_proxies: int = 3  # proxies per item, 1..k for k options (each puts the gold answer on its own letter)
    kind: Literal["cyclic", "random"] = "cyclic"  # cyclic shifts, or seeded random permutations
    seed: int = 0  # used by kind="random" only


@dataclasses.dataclass(frozen=True)
class Proxy:
    """One permuted version of an item."""

    item_id: str
    proxy_index: int  # 0..num_proxies-1 within its item
    question: str
    options: tuple[str, ...]  # options[j] == item.options[order[j]]
    answer: int  # letter index of the gold option in this proxy
    order: tuple[int, ...]  # the permutation applied to the item's options


def _item_rng(seed: int, item_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"aqua\x00{seed}\x00{item_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def check_num_proxies(config: AquaConfig, num_options: int = NUM_OPTIONS, task: str = "") -> None:
    """num_proxies must be 1..k: each proxy puts the gold answer on a letter of its own."""
    if not 1 <= config.num_proxies <= num_options:
        of = f" (task {task!r} has {num_options} options)" if task else ""
        raise ConfigError(
            f"aqua.num_proxies: expected 1..{num_options} (one distinct gold letter per proxy), "
            f"got {config.num_proxies}{of}"
        )


def proxy_orders(
    answer: int, item_id: str, config: AquaConfig, num_options: int = NUM_OPTIONS
) -> list[tuple[int, ...]]:
    """Permutations `order` (letter j shows option order[j]) of k = num_options options whose
    gold letters are all distinct."""
    check_num_proxies(config, num_options)
    k = num_options
    if config.kind == "cyclic":
        # Letter j shows option (j - shift) mod k, so option `answer` lands on answer + shift.
        return [tuple((j - shift) % k for j in range(k)) for shift in range(config.num_proxies)]
    if config.kind == "random":
        rng = _item_rng(config.seed, item_id)
        gold_letters = rng.permutation(k)[: config.num_proxies]
        distractors = [o for o in range(k) if o != answer]
        orders = []
        for letter in gold_letters:
            rest = list(rng.permutation(distractors))
            order = [rest.pop() if j != letter else answer for j in range(k)]
            orders.append(tuple(int(o) for o in order))
        return orders
    raise ConfigError(f"aqua.kind: expected 'cyclic' or 'random', got {config.kind!r}")


def make_proxies(item: Item, config: AquaConfig = AquaConfig()) -> list[Proxy]:
    """The proxy questions of one item, in proxy-index order."""
    proxies = []
    for k, order in enumerate(proxy_orders(item.answer, item.id, config, len(item.options))):
        proxies.append(
            Proxy(
                item_id=item.id,
                proxy_index=k,
                question=item.question,
                options=tuple(item.options[o] for o in order),
                answer=order.index(item.answer),
                order=order,
            )
        )
    return proxies


def make_all_proxies(items: Sequence[Item], config: AquaConfig = AquaConfig(), task: str = "") -> list[Proxy]:
    """Proxies of every item, item-major: item 0's proxies, then item 1's, ... (`task` names the
    task in the error of a num_proxies its items' option count cannot give)."""
    for count in sorted({len(item.options) for item in items}):
        check_num_proxies(config, count, task)
    return [p for item in items for p in make_proxies(item, config)]
