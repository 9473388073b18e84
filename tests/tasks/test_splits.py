import dataclasses

import pytest

from neuronjax.tasks.schema import Task
from neuronjax.tasks.splits import SplitConfig, make_split
from tests.tasks.helpers import make_items


def task_of(n, order=None):
    items = make_items(n)
    if order is not None:
        items = [items[k] for k in order]
    return Task(name="t", items=tuple(items), source="mem")


def test_parts_are_disjoint_and_cover_the_task():
    task = task_of(50)
    split = make_split(task, SplitConfig(seed=3, num_demo=4, eval_fraction=0.3))
    parts = [set(split.identify), set(split.demo), set(split.evaluate)]
    assert sum(len(p) for p in parts) == 50
    assert set.union(*parts) == {i.id for i in task.items}
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    # 46 non-demo items, 30 % held out: round(13.8) = 14
    assert (len(split.demo), len(split.evaluate), len(split.identify)) == (4, 14, 32)


def test_stable_under_a_seed_and_independent_of_file_order():
    a = make_split(task_of(40), SplitConfig(seed=7))
    b = make_split(task_of(40, order=list(reversed(range(40)))), SplitConfig(seed=7))
    assert a == b and a.fingerprint() == b.fingerprint()
    c = make_split(task_of(40), SplitConfig(seed=8))
    assert c.fingerprint() != a.fingerprint()


def test_caps_and_record():
    split = make_split(task_of(40), SplitConfig(max_eval=5, max_identify=6))
    assert len(split.evaluate) == 5 and len(split.identify) == 6
    record = split.to_dict()
    assert record["seed"] == 0 and record["fingerprint"] == split.fingerprint()
    assert record["evaluate"] == list(split.evaluate)


def test_items_of_a_part_follow_the_split_order():
    task = task_of(20)
    split = make_split(task, SplitConfig())
    assert [i.id for i in split.items(task, "demo")] == list(split.demo)
    with pytest.raises(ValueError, match="split part 'train'"):
        split.items(task, "train")


@pytest.mark.parametrize(
    "config, message",
    [
        (SplitConfig(num_demo=0), "num_demo: expected >= 1"),
        (SplitConfig(eval_fraction=1.0), "eval_fraction: expected a value in"),
        (SplitConfig(num_demo=9), "need at least num_demo \\+ 2 = 11"),
    ],
)
def test_bad_split_configs(config, message):
    with pytest.raises(ValueError, match=message):
        make_split(task_of(10), config)


def test_split_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SplitConfig().seed = 1
