"""arithmetic: small-number addition, subtraction and counting (300 items).

    "What is 7 plus 5?"                  120 items, both terms 1..12
    "What is 15 minus 6?"                100 items, 20 or less, positive result
    "Which number comes right after 41?" 80 items, 1..98

Distractors are other small numbers with a first digit different from the answer's and each
other's (see `common`), so digit-by-digit tokenizers still give each option its own first token.
"""

from __future__ import annotations

from neuronjax.tasks.builtin.common import assemble, pick_distractors, rng_for
from neuronjax.tasks.schema import Item


def _numbers_near(value: int) -> list[str]:
    """Plausible wrong answers: values within 10 of the answer, and a few two-digit ones."""
    near = [v for v in range(max(0, value - 10), value + 11) if v != value]
    return [str(v) for v in near + [value + 20, max(0, value - 20), value * 2]]


def generate(seed: int = 0) -> list[Item]:
    rng = rng_for("arithmetic", seed)
    questions = []
    additions = [(a, b) for a in range(1, 13) for b in range(1, 13)]
    for k in sorted(rng.choice(len(additions), 120, replace=False)):
        a, b = additions[int(k)]
        gold = str(a + b)
        questions.append(
            (f"What is {a} plus {b}?", gold, pick_distractors(gold, _numbers_near(a + b), rng), "addition")
        )
    subtractions = [(a, b) for a in range(2, 21) for b in range(1, a)]
    for k in sorted(rng.choice(len(subtractions), 100, replace=False)):
        a, b = subtractions[int(k)]
        gold = str(a - b)
        questions.append(
            (f"What is {a} minus {b}?", gold, pick_distractors(gold, _numbers_near(a - b), rng), "subtraction")
        )
    for n in sorted(rng.choice(range(1, 99), 80, replace=False)):
        gold = str(int(n) + 1)
        question = f"Which number comes right after {int(n)}?"
        questions.append(
            (question, gold, pick_distractors(gold, _numbers_near(int(n) + 1), rng, exclude=(str(int(n)),)), "counting")
        )
    return assemble("arithmetic", questions, seed)
