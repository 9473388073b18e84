"""Attributed rows in, blocks of complete items out.

The proxies of one item can arrive in different batches, so rows are held on the host until
their item is complete (only the items still incomplete are held: with the default batching, the
proxies of an item are adjacent and at most a batch's worth waits). Complete items leave in
fixed-size `ItemBlock`s (the last one padded with valid=False rows, so the methods' compiled
updates see one shape), placed on the mesh with the item axis on the data axis.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from neuronjax.methods.base import ItemBlock


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
            yield make_block([rows for _, rows in take], self.keys, self.num_proxies, self.block_items, self.grid, lm)

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


def collect(collector: ItemCollector, batch, rows: dict[str, np.ndarray]) -> None:
    valid = np.asarray(batch["valid"], bool)
    collector.stats.batches += 1
    collector.stats.filler_rows += int((~valid).sum())
    for key in collector.keys:
        collector.stats.nonfinite_inputs += int((~np.isfinite(rows[key][valid])).sum())
    for r in np.flatnonzero(valid):
        collector.add(int(batch["item_index"][r]), int(batch["proxy_index"][r]), {k: v[r] for k, v in rows.items()})


def make_block(items, keys, num_proxies, block_items, grid, lm) -> ItemBlock:
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


