"""Answer-disjoint splits: no held-out gold answer (nor, with answer_and_subject, entity) on the
identification/demonstration side, whole groups per side, deterministic, caps, and the errors of a
task whose answers cannot be kept apart."""

import re

import pytest

from neuronjax.tasks.builtin import load_builtin
from neuronjax.tasks.config import load_task_config
from neuronjax.tasks.schema import Item, Task
from neuronjax.tasks.splits import SplitConfig, make_split


def norm(text):
    return text.strip().casefold()


def sides(task, split, with_entity=False):
    """The normalised keys (gold texts, and entities) of the held-out side and of the other side."""
    by_id = task.by_id()

    def keys(ids):
        out = set()
        for i in ids:
            out.add(norm(by_id[i].gold_text))
            if with_entity and by_id[i].entity:
                out.add(norm(by_id[i].entity))
        return out

    return keys(split.evaluate), keys(split.identify + split.demo)


@pytest.mark.parametrize("name", ["world_facts", "word_relations", "arithmetic", "comparisons"])
def test_no_held_out_gold_answer_on_the_other_side(name):
    task = load_builtin(name)
    config = SplitConfig(seed=0, num_demo=4, eval_fraction=0.3, disjoint="answer")
    split = make_split(task, config)
    held, other = sides(task, split)
    assert held and other and not held & other
    parts = [split.identify, split.demo, split.evaluate]
    assert sum(map(len, parts)) == len(task) and len(set().union(*parts)) == len(task) and len(split.demo) == 4
    # one group per distinct normalised gold text, counted on each side
    assert split.groups == (len(held), len(other))
    target = round((len(task) - 4) * 0.3)
    assert len(split.evaluate) <= target
    # the held-out side is filled greedily: no group left on the other side would still fit
    by_id = task.by_id()
    other_sizes = {}
    for i in split.identify + split.demo:
        key = norm(by_id[i].gold_text)
        other_sizes[key] = other_sizes.get(key, 0) + 1
    assert min(other_sizes.values()) > target - len(split.evaluate)


@pytest.mark.parametrize("name", ["world_facts", "word_relations"])
def test_answer_and_subject_keeps_entities_apart_too(name):
    task = load_builtin(name)
    split = make_split(task, SplitConfig(disjoint="answer_and_subject"))
    held, other = sides(task, split, with_entity=True)
    assert held and other and not held & other
    # e.g. France's capital, country and continent questions land together
    by_q = {item.question: item.id for item in task.items}
    if name == "world_facts":
        france = {by_q["What is the capital of France?"], by_q["On which continent is France?"]}
        assert france <= set(split.evaluate) or not france & set(split.evaluate)
    # an answer-only split of word_relations puts "hot" and "cold" apart in some seeds; this never does
    if name == "word_relations":
        pair = {by_q['What is the opposite of "hot"?'], by_q['What is the opposite of "cold"?']}
        assert pair <= set(split.evaluate) or not pair & set(split.evaluate)


def _task(golds, entities=None):
    """One item per gold text (options: the gold and three fillers)."""
    items = [Item(id=f"i{k}", question=f"q{k}?", options=(g, "w", "x", "y"), answer=0,
                  entity=None if entities is None else entities[k]) for k, g in enumerate(golds)]  # fmt: skip
    return Task(name="t", items=tuple(items), source="mem")


def test_a_hand_computed_split():
    """Six items answer "x" in different spellings (one group: stripped, case-folded), four have
    answers of their own. Nine non-demo items x 0.5 = 4.5, rounded to 4: the group of six never
    fits, the four singletons always do, whatever the seed."""
    task = _task(["X", " x", "x ", "x", "X ", "x", "a", "b", "c", "d"])
    for seed in range(5):
        split = make_split(task, SplitConfig(seed=seed, num_demo=1, eval_fraction=0.5, disjoint="answer"))
        assert sorted(split.evaluate) == ["i6", "i7", "i8", "i9"]
        assert sorted(split.identify + split.demo) == [f"i{k}" for k in range(6)]
        assert (len(split.demo), len(split.identify), split.groups) == (1, 5, (4, 1))
        record = split.to_dict()
        assert record["disjoint"] == "answer" and record["groups"] == {"evaluate": 4, "identify_and_demo": 1}


def test_entities_join_groups_through_each_other():
    """i0 and i1 share the entity e1, which is i2's gold answer: under answer_and_subject they are
    one group; the five other items are one group each."""
    task = _task(["a", "b", "e1", "d", "e", "f", "g", "h"], ["e1", "e1", None, None, None, None, None, None])
    split = make_split(task, SplitConfig(num_demo=1, eval_fraction=0.5, disjoint="answer_and_subject"))
    group = {"i0", "i1", "i2"}
    assert group <= set(split.evaluate) or not group & set(split.evaluate)
    assert sum(split.groups) == 6
    assert sum(make_split(task, SplitConfig(num_demo=1, eval_fraction=0.5, disjoint="answer")).groups) == 8


def test_deterministic_and_independent_of_file_order():
    task = load_builtin("world_facts")
    config = SplitConfig(seed=3, disjoint="answer")
    a = make_split(task, config)
    reversed_task = Task(task.name, tuple(reversed(task.items)), task.source)
    assert make_split(task, config) == a == make_split(reversed_task, config)
    assert make_split(task, SplitConfig(seed=4, disjoint="answer")).fingerprint() != a.fingerprint()


def test_caps_apply_after_the_sides_are_chosen():
    task = load_builtin("comparisons")
    split = make_split(task, SplitConfig(disjoint="answer", max_eval=10, max_identify=20))
    assert (len(split.evaluate), len(split.identify), len(split.demo)) == (10, 20, 4)
    held, other = sides(task, split)
    assert not held & other


def test_no_disjoint_split_is_the_split_of_before():
    task = load_builtin("world_facts")
    split = make_split(task, SplitConfig())
    assert split.disjoint == "none" and split.groups is None and "disjoint" not in split.to_dict()


def test_one_answer_for_every_item_is_an_error_naming_the_field():
    task = _task(["same"] * 12)
    message = ("split.disjoint: answer: task 't' (mem): its 12 items share gold answers in 1 group(s), the largest "
               "12 items ('same'), and none fits the held-out share of 2 items")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        make_split(task, SplitConfig(num_demo=4, eval_fraction=0.3, disjoint="answer"))


def test_too_few_items_left_for_identification_is_an_error():
    # four answers of their own: round(2 x 0.75) = 2 held out, 2 left for num_demo 2 + identification
    task = _task(["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=re.escape("split.disjoint: answer: task 't' (mem): 2 items left for "
                                                   "demonstration and identification after holding out 2; need "
                                                   "at least num_demo + 1 = 3")):  # fmt: skip
        make_split(task, SplitConfig(num_demo=2, eval_fraction=0.75, disjoint="answer"))


def test_answer_and_subject_needs_entities():
    with pytest.raises(ValueError, match=r"split.disjoint: answer_and_subject: task 'arithmetic' .*no item records "
                                         r"a subject entity .*expected disjoint: answer"):  # fmt: skip
        make_split(load_builtin("arithmetic"), SplitConfig(disjoint="answer_and_subject"))


def test_an_unknown_mode_names_the_file_and_field(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nsource: builtin:world_facts\nsplit: {disjoint: answers}\n")
    with pytest.raises(ValueError, match=r"split.disjoint"):
        load_task_config(str(path))
    config = load_task_config(str(path), {"split.disjoint": "answer"})
    assert config.split.disjoint == "answer"
