"""Tasks with 2 to 10 options: reading (one count per task), AQUA's distinct gold letters for
every k, prompts and letters up to the k-th, option tokens [k, ...], batches and metrics."""

import csv
import itertools
import json
import re

import numpy as np
import pytest

from neuronjax.tasks.aqua import AquaConfig, make_all_proxies, make_proxies, proxy_orders
from neuronjax.tasks.encoding import encode_proxies
from neuronjax.tasks.metrics import letter_histogram, permutation_consistent_accuracy, target_f
from neuronjax.tasks.pipeline import PipelineConfig, iterate_batches
from neuronjax.tasks.prompts import PromptConfig, build_prompt
from neuronjax.tasks.readers import load_task_file
from neuronjax.tasks.schema import FieldMap, Item, TaskDataError
from tests.tasks.helpers import CharTokenizer

WORDS = ("apple", "berry", "cherry", "date", "elder", "fig", "grape", "hazel", "iris", "jade")


def k_items(k, n=4, prefix="q"):
    """n items with k options starting with distinct letters; gold letters cycle over the k."""
    return [Item(id=f"{prefix}{j}", question=f"question {j}?", options=tuple(f"{w}{j}" for w in WORDS[:k]),
                 answer=j % k) for j in range(n)]  # fmt: skip


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# -- reading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 6, 10])
def test_a_k_option_file_reads_with_letters_up_to_the_kth(tmp_path, k):
    last = "ABCDEFGHIJ"[k - 1]
    rows = [{"question": "Q1?", "options": list(WORDS[:k]), "answer": last},
            {"question": "Q2?", "options": list(WORDS[:k]), "answer": k - 1},
            {"question": "Q3?", "options": list(WORDS[:k]), "answer": "a"}]  # fmt: skip
    task = load_task_file(write_jsonl(tmp_path / "t.jsonl", rows))
    assert task.num_options == k and [i.answer for i in task.items] == [k - 1, k - 1, 0]
    assert task.items[0].options == WORDS[:k] and task.items[0].gold_text == WORDS[k - 1]


def test_k_option_fields_of_a_csv(tmp_path):
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "o1", "o2", "o3", "o4", "o5", "o6", "answer"])
        w.writerow(["Q?", *WORDS[:6], "F"])
    task = load_task_file(str(path), fields=FieldMap(options=("o1", "o2", "o3", "o4", "o5", "o6")))
    assert task.items[0].options == WORDS[:6] and task.items[0].answer == 5


def test_a_row_with_another_count_is_named(tmp_path):
    rows = [{"question": "Q1?", "options": list(WORDS[:6]), "answer": "F"},
            {"question": "Q2?", "options": list(WORDS[:4]), "answer": "A"},
            {"question": "Q3?", "options": list(WORDS[:6]), "answer": "G"},
            {"question": "Q4?", "options": list(WORDS[:6]), "answer": 6}]  # fmt: skip
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(TaskDataError) as err:
        load_task_file(path)
    assert [str(p) for p in err.value.problems] == [
        f"{path}:line 2: field 'options': expected exactly 6 options, got 4",
        f"{path}:line 3: field 'answer': expected a letter A-F or an index 0-5, got 'G'",
        f"{path}:line 4: field 'answer': expected a letter A-F or an index 0-5, got 6",
    ]
    task = load_task_file(path, on_error="skip")
    assert len(task) == 1 and task.skipped == 3 and task.num_options == 6


def test_one_option_or_eleven_are_rows_outside_the_range(tmp_path):
    rows = [{"question": "Q?", "options": list(WORDS[:1]), "answer": 0},
            {"question": "Q?", "options": list(WORDS) + ["kiwi"], "answer": 0}]  # fmt: skip
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(TaskDataError) as err:
        load_task_file(path)
    assert [str(p) for p in err.value.problems] == [
        f"{path}:line 1: field 'options': expected 2 to 10 options, got 1",
        f"{path}:line 2: field 'options': expected 2 to 10 options, got 11",
    ]


# -- AQUA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(2, 11))
@pytest.mark.parametrize("kind", ["cyclic", "random"])
def test_aqua_puts_the_gold_on_distinct_letters_for_every_k(k, kind):
    for n in sorted({1, 2, k // 2 or 1, k}):
        config = AquaConfig(num_proxies=n, kind=kind, seed=1)
        for item in k_items(k, n=k):
            proxies = make_proxies(item, config)
            assert len(proxies) == n
            assert len({p.answer for p in proxies}) == n  # distinct gold letters
            for p in proxies:
                assert sorted(p.order) == list(range(k))  # a permutation of the k options
                assert p.options[p.answer] == item.gold_text
                assert sorted(p.options) == sorted(item.options)
    if kind == "cyclic":  # gold letter of proxy s is answer + s (mod k), by hand
        item = k_items(k, n=k)[k - 1]
        assert [p.answer for p in make_proxies(item, AquaConfig(num_proxies=k))] == [(k - 1 + s) % k for s in range(k)]


@pytest.mark.parametrize("k", [2, 6])
def test_more_proxies_than_options_is_an_error(k):
    with pytest.raises(ValueError, match=re.escape(f"aqua.num_proxies: expected 1..{k} (one distinct gold letter per "
                                                   f"proxy), got {k + 1} (task 't' has {k} options)")):  # fmt: skip
        make_all_proxies(k_items(k), AquaConfig(num_proxies=k + 1), task="t")
    with pytest.raises(ValueError, match=rf"aqua.num_proxies: expected 1..{k}"):
        proxy_orders(0, "x", AquaConfig(num_proxies=k + 1), k)


# -- prompts, tokens, batches ----------------------------------------------------------------------


def test_two_option_prompt():
    item, demo = k_items(2, n=2)
    proxy = make_proxies(item, AquaConfig(num_proxies=2))[1]
    text = build_prompt(proxy, demo, PromptConfig(answer_format="letter"))
    assert text.startswith("The following are multiple-choice questions. Each has two options, A and B, and exactly "
                           "one is correct. Answer with the letter of the correct option only.\n\n")  # fmt: skip
    assert text.endswith("Question: question 0?\nA. berry0\nB. apple0\nAnswer:")
    assert "\nC." not in text


@pytest.mark.parametrize("k", [2, 6])
def test_option_tokens_and_batches_have_k_options(k):
    items, demos = k_items(k, n=3), k_items(k, n=2, prefix="d")
    proxies = make_all_proxies(items, AquaConfig(num_proxies=2))
    letter = encode_proxies(items, proxies, demos, CharTokenizer(), PromptConfig(answer_format="letter"))
    for r in letter:  # the character tokenizer spells letter X with token ord(X)
        np.testing.assert_array_equal(r.option_tokens[:, 0], [ord(c) for c in "ABCDEFGHIJ"[:k]])
    text = encode_proxies(items, proxies, demos, CharTokenizer(), PromptConfig(option_score="whole"))
    for r, p in zip(text, proxies):
        assert r.option_tokens.shape == (k, 1) and r.continuation.shape[0] == k
        # " apple0" minus the shared " " moved into the prompt: the option's first character
        assert r.option_tokens[:, 0].tolist() == [ord(o[0]) for o in p.options] and r.gold == p.answer
    batch = next(iterate_batches(text, 0, PipelineConfig(batch_size=4), 0, 1))
    assert batch["option_tokens"].shape[:2] == (4, k) and batch["continuation"].shape[:2] == (4, k)


def test_metrics_of_k_options_by_hand():
    scores = np.array([[1.0, 3.0], [2.0, 0.0], [0.0, 1.0], [5.0, 5.0]], np.float32)
    gold = np.array([1, 1, 1, 0])
    f = np.asarray(target_f(scores, gold))
    np.testing.assert_allclose(f[:2], [3 - np.log(np.e + np.e**3), -np.log(np.e**2 + 1)], rtol=1e-6)
    np.testing.assert_allclose(f[3], np.log(0.5), rtol=1e-6)  # chance of two options: 1 / k
    hist = np.asarray(letter_histogram(scores))
    assert hist.tolist() == [2, 2]  # argmax: B, A, B, A (the tie goes to the earlier letter)
    six = np.random.default_rng(0).normal(size=(50, 6))
    assert np.asarray(letter_histogram(six)).tolist() == np.bincount(six.argmax(1), minlength=6).tolist()
    # items 0 (proxies 0, 1) and 1 (proxies 2, 3) with golds B, A, B, A: item 0 right under both
    # proxies, item 1 wrong under its second (a tie is wrong), so 1 of 2 items is consistent
    two_golds = np.array([1, 0, 1, 0])
    assert float(permutation_consistent_accuracy(scores, two_golds, np.array([0, 0, 1, 1]), 2)) == pytest.approx(0.5)


def test_every_permutation_of_two_options_is_reached():
    item = k_items(2, n=1)[0]
    orders = {tuple(p.order) for p in make_proxies(item, AquaConfig(num_proxies=2))}
    assert orders == set(itertools.permutations(range(2)))
