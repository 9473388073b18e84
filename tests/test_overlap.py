"""Two batches in flight on a CPU: results in order, at most `depth` calls at once, errors raised
at their item's turn, and identification and evaluation equal to one batch at a time."""

import threading
import time

import numpy as np
import pytest

from neuronjax import overlap
from neuronjax.config import AttributionConfig
from neuronjax.evaluation import score_interventions
from neuronjax.identify.driver import item_blocks
from neuronjax.intervention import Intervention
from tests.methods import planted


def test_in_order_keeps_order_and_runs_at_most_depth_at_once():
    running, most, lock = [0], [0], threading.Lock()

    def work(k):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02 * (3 - k % 3))  # later items often finish first
        with lock:
            running[0] -= 1
        return k * k

    got = list(overlap.in_order(work, range(9), 2))
    assert got == [(k, k * k) for k in range(9)]
    assert most[0] == 2
    running[0] = most[0] = 0
    assert list(overlap.in_order(work, range(4), 1)) == [(k, k * k) for k in range(4)] and most[0] == 1


def test_in_order_raises_at_the_failing_items_turn():
    def work(k):
        if k == 2:
            raise ValueError("item 2")
        return k

    seen = []
    with pytest.raises(ValueError, match="item 2"):
        for item, _ in overlap.in_order(work, range(5), 2):
            seen.append(item)
    assert seen == [0, 1]


def test_in_flight_only_for_one_process_on_one_cpu_device():
    lm = planted.model()
    assert overlap.in_flight(lm, "cpu") == 2
    assert overlap.in_flight(lm, "tpu") == overlap.in_flight(lm, "gpu") == 1

    class OnMesh:
        class mesh:
            size = 2

    assert overlap.in_flight(OnMesh(), "cpu") == 1


def _identify(lm, enc):
    blocks = list(item_blocks(lm, enc, {"attr", "activations"}, AttributionConfig(steps=2), block_items=2))
    return [(np.asarray(b.attr), np.asarray(b.activations)) for b in blocks]


def test_identification_and_evaluation_equal_one_batch_at_a_time(monkeypatch):
    lm = planted.model()
    enc = planted.task(num_items=6, batch_size=4)  # 18 proxies: 5 batches
    c = lm.config
    rng = np.random.default_rng(0)
    ivs = [Intervention.identity(c.num_layers, c.intermediate_size)] + [
        Intervention(np.where(rng.random((c.num_layers, c.intermediate_size)) < 0.2, 0.0, 1.0).astype(np.float32),
                     np.zeros((c.num_layers, c.intermediate_size), np.float32)) for _ in range(3)
    ]  # fmt: skip
    two = _identify(lm, enc), score_interventions(lm, enc, ivs, capture=[(1, 3), (0, 5)])
    monkeypatch.setattr(overlap, "IN_FLIGHT_ON", {})
    one = _identify(lm, enc), score_interventions(lm, enc, ivs, capture=[(1, 3), (0, 5)])
    assert len(two[0]) == len(one[0]) == 3
    for (a2, h2), (a1, h1) in zip(two[0], one[0]):
        np.testing.assert_array_equal(a2, a1)  # measured: identical (the same programs on the same inputs)
        np.testing.assert_array_equal(h2, h1)
    np.testing.assert_array_equal(two[1].scores, one[1].scores)
    np.testing.assert_array_equal(two[1].activations, one[1].activations)
    np.testing.assert_array_equal(two[1].item_index, one[1].item_index)
    assert np.abs(two[1].scores[1] - two[1].scores[0]).max() > 1e-3  # the interventions matter


def test_no_nesting_inside_an_in_flight_batch():
    """Work already running beside another (one of `in_order`'s threads) runs its own parts one
    at a time: identification's batches call `attribute`, whose chunks would otherwise go two at
    a time in each of the two threads."""
    lm = planted.model()
    inside = dict(overlap.in_order(lambda k: overlap.in_flight(lm, "cpu"), range(3), 2))
    assert inside == {0: 1, 1: 1, 2: 1}
    assert overlap.in_flight(lm, "cpu") == 2


def test_attribute_chunks_in_flight_within_the_row_budget(monkeypatch):
    """`attribute`'s calls go two at a time on one CPU device while both calls' replay rows fit the
    backend's row budget together, and give what one call at a time gives."""
    from neuronjax.attribution import PromptBatch, attribute
    from neuronjax.attribution import engine

    lm = planted.model()
    assert engine.chunks_in_flight(lm, 3, 1000, "cpu") == 2
    assert engine.chunks_in_flight(lm, 1, 1000, "cpu") == 1  # one call: nothing beside it
    assert engine.chunks_in_flight(lm, 3, engine.ROW_BUDGET["cpu"] // 2 + 1, "cpu") == 1  # two would pass it
    assert engine.chunks_in_flight(lm, 3, 1000, "gpu") == 1
    rng = np.random.default_rng(0)
    c = lm.config
    n, seq = 6, 12
    ids = rng.integers(3, c.vocab_size, (n, seq)).astype(np.int32)
    batch = PromptBatch(ids, np.ones((n, seq), np.int32), rng.integers(3, c.vocab_size, (n, 4, 1)).astype(np.int32),
                        (np.arange(n) % 4).astype(np.int32))  # fmt: skip
    calls, real = [], engine.attribute_compiled

    def counting(*args, **kwargs):
        calls.append(overlap.threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "attribute_compiled", counting)
    two = attribute(lm, batch, "ig", 2, chunk=2)
    assert len(calls) == 3 and all(name.startswith(overlap.THREAD_PREFIX) for name in calls)
    monkeypatch.setattr(overlap, "IN_FLIGHT_ON", {})
    calls.clear()
    one = attribute(lm, batch, "ig", 2, chunk=2)
    assert len(calls) == 3 and not any(name.startswith(overlap.THREAD_PREFIX) for name in calls)
    for got, want in ((two.scores, one.scores), (two.f, one.f), (two.activations, one.activations)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))  # the same programs on the same inputs
    assert np.abs(np.asarray(one.scores)).max() > 0
