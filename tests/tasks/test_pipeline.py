import numpy as np
import pytest

from neuronjax.tasks.encoding import ProxyRecord
from neuronjax.tasks.pipeline import PipelineConfig, bucket_key, iterate_batches, plan_batches

PAD = 999


def records(n=23, seed=0, cont=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        length = int(rng.integers(3, 70))
        out.append(
            ProxyRecord(
                item_index=k // 3,
                proxy_index=k % 3,
                gold=k % 4,
                prompt_ids=np.arange(1, length + 1, dtype=np.int32) + 100 * k,
                option_tokens=np.full((4, 1 + k % 2), k, np.int32),
                continuation=np.full((4, cont), 7, np.int32),
                first_token_tie=False,
            )
        )
    return out


def run(recs, config, process_index=0, process_count=1):
    return list(iterate_batches(recs, PAD, config, process_index, process_count))


def test_left_padding_and_mask():
    recs = records()
    (batch, *_) = run(recs, PipelineConfig(batch_size=4, bucket_multiple=16))
    for row in range(4):
        if not batch["valid"][row]:
            continue
        # the row's record is found by its first real token
        mask = batch["attention_mask"][row]
        ids = batch["input_ids"][row]
        real = ids[mask == 1]
        record = next(r for r in recs if r.prompt_ids[0] == real[0])
        np.testing.assert_array_equal(real, record.prompt_ids)
        n = len(record.prompt_ids)
        assert mask[-n:].all() and not mask[:-n].any()  # LEFT padding
        assert (ids[: len(ids) - n] == PAD).all()
        assert batch["gold"][row] == record.gold and batch["item_index"][row] == record.item_index


def test_shapes_are_bucketed():
    for batch in run(records(40), PipelineConfig(batch_size=5, bucket_multiple=16)):
        seq = batch["input_ids"].shape[1]
        assert seq % 16 == 0
        lengths = batch["attention_mask"][batch["valid"]].sum(axis=1)
        assert (lengths > seq - 16).all()  # all real rows belong to this bucket
        assert batch["input_ids"].shape == (5, seq) and batch["option_tokens"].shape == (5, 4, 2)
        assert batch["input_ids"].dtype == np.int32 and batch["valid"].dtype == bool


@pytest.mark.parametrize("shuffle", [False, True])
def test_identical_batches_twice(shuffle):
    config = PipelineConfig(batch_size=4, bucket_multiple=16, shuffle=shuffle, seed=11)
    first, second = run(records(), config), run(records(), config)
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_seed_changes_the_shuffled_order():
    def order(seed):
        return [
            tuple(b["input_ids"][:, -1])
            for b in run(records(60), PipelineConfig(batch_size=4, shuffle=True, seed=seed))
        ]

    assert order(1) != order(2)


def test_two_processes_cover_every_proxy_exactly_once_in_lockstep():
    recs = records(37)
    config = PipelineConfig(batch_size=3, bucket_multiple=16, shuffle=True, seed=5)
    per_process = [run(recs, config, p, 2) for p in (0, 1)]
    assert len(per_process[0]) == len(per_process[1])
    seen = []
    for b0, b1 in zip(*per_process):
        assert b0["input_ids"].shape == b1["input_ids"].shape  # same step, same shape
        for b in (b0, b1):
            for row in np.flatnonzero(b["valid"]):
                seen.append((int(b["item_index"][row]), int(b["proxy_index"][row])))
    assert sorted(seen) == sorted((r.item_index, r.proxy_index) for r in recs)


def test_plan_fills_with_minus_one():
    plan = plan_batches(records(5), PipelineConfig(batch_size=2, bucket_multiple=1000), process_count=2)
    assert len(plan) == 2 and plan[1].tolist()[1:] == [-1, -1, -1]


def test_continuation_padding():
    recs = records(6, cont=3)
    (batch, *_) = run(recs, PipelineConfig(batch_size=6, bucket_multiple=1000))
    assert bucket_key(recs[0], 1000) == (1000, 8)
    assert batch["continuation"].shape == (6, 4, 8)
    assert (batch["continuation"][:, :, :3] == 7).all() and (batch["continuation"][:, :, 3:] == -1).all()


def test_grain_worker_process():
    config = PipelineConfig(batch_size=4, bucket_multiple=16, worker_count=1)
    with_worker = run(records(), config)
    in_process = run(records(), PipelineConfig(batch_size=4, bucket_multiple=16))
    assert len(with_worker) == len(in_process)
    for a, b in zip(with_worker, in_process):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])


def test_bad_process_index():
    with pytest.raises(ValueError, match="process_index 2 outside 0..1"):
        run(records(), PipelineConfig(), 2, 2)


@pytest.mark.parametrize("field", ["bucket_multiple", "suffix_multiple"])
def test_padding_multiples_below_one_name_the_field(field):
    from neuronjax.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"pipeline\.{field} = 0: expected an int >= 1"):
        plan_batches(records(5), PipelineConfig(batch_size=2, **{field: 0}))
