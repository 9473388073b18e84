"""comparisons: which of two things is larger, earlier, longer, bigger or heavier (300 items, two options).

    "Which number is larger: 37 or 52?"                            120 items, 10..99
    "Which month comes earlier in the year: March or October?"      60 items
    "Which lasts longer: a minute or a week?"                        34 items
    "Which animal is bigger: a mouse or a horse?"                    43 items
    "Which is heavier: a feather or a book?"                         43 items

Every pair is unambiguous: numbers, months and units of time are strictly ordered, and animals and
objects come in size classes of which only classes at least two apart are compared. The two
options always start with different characters (see `common`), and half of the questions ask for
the smaller, earlier or shorter one, so neither the wording nor the option order gives the answer.
The gold answers are many different texts, so the task can be split answer-disjoint.
"""

from __future__ import annotations

import itertools

from neuronjax.tasks.builtin.common import assemble, initial, rng_for
from neuronjax.tasks.schema import Item

NUM_OPTIONS = 2

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip
TIME_UNITS = ("second", "minute", "hour", "day", "week", "month", "year", "decade", "century")

# Size classes, smallest first; only things two or more classes apart are compared.
ANIMALS = (
    ("ant", "bee"),
    ("mouse", "frog", "hamster"),
    ("rabbit", "cat", "hen"),
    ("sheep", "goat", "wolf"),
    ("horse", "cow", "bear", "camel"),
    ("elephant", "whale"),
)
OBJECTS = (
    ("feather", "leaf", "coin"),
    ("pencil", "spoon", "key"),
    ("book", "shoe", "apple"),
    ("chair", "bicycle"),
    ("piano", "fridge", "motorbike"),
    ("car",),
    ("truck", "train"),
)


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" or noun == "hour" else "a ") + noun


def _ordered_pairs(ranked: list[tuple[str, int]], gap: int) -> list[tuple[str, str]]:
    """(lower, higher) pairs at least `gap` ranks apart whose first characters differ."""
    return [(a, b) for (a, ra), (b, rb) in itertools.combinations(ranked, 2)
            if rb - ra >= gap and initial(a) != initial(b)]  # fmt: skip


def _classes(classes) -> list[tuple[str, int]]:
    return [(name, rank) for rank, members in enumerate(classes) for name in members]


def _pick(pairs, count, rng) -> list[tuple[str, str]]:
    return [pairs[int(k)] for k in sorted(rng.choice(len(pairs), count, replace=False))]


def generate(seed: int = 0) -> list[Item]:
    rng = rng_for("comparisons", seed)
    questions = []

    def add(question: str, low: str, high: str, ask_high: bool, kind: str):
        gold, other = (high, low) if ask_high else (low, high)
        questions.append((question, gold, [other], kind))

    numbers = _ordered_pairs([(str(n), n) for n in range(10, 100)], gap=1)
    for k, (low, high) in enumerate(_pick(numbers, 120, rng)):
        first, second = (low, high) if rng.random() < 0.5 else (high, low)
        word = "larger" if k % 2 == 0 else "smaller"
        add(f"Which number is {word}: {first} or {second}?", low, high, word == "larger", "number")
    months = _ordered_pairs([(m, k) for k, m in enumerate(MONTHS)], gap=1)
    for k, (low, high) in enumerate(_pick(months, 60, rng)):
        first, second = (low, high) if rng.random() < 0.5 else (high, low)
        word = "later" if k % 2 == 0 else "earlier"
        add(f"Which month comes {word} in the year: {first} or {second}?", low, high, word == "later", "month")
    units = _ordered_pairs([(u, k) for k, u in enumerate(TIME_UNITS)], gap=1)
    for k, (low, high) in enumerate(_pick(units, len(units), rng)):
        first, second = (low, high) if rng.random() < 0.5 else (high, low)
        word = "longer" if k % 2 == 0 else "shorter"
        add(f"Which lasts {word}: {_a(first)} or {_a(second)}?", low, high, word == "longer", "time")
    for kind, classes, bigger, smaller, what in (("animal", ANIMALS, "bigger", "smaller", "Which animal is"),
                                                 ("object", OBJECTS, "heavier", "lighter", "Which is")):  # fmt: skip
        for k, (low, high) in enumerate(_pick(_ordered_pairs(_classes(classes), gap=2), 43, rng)):
            first, second = (low, high) if rng.random() < 0.5 else (high, low)
            word = bigger if k % 2 == 0 else smaller
            add(f"{what} {word}: {_a(first)} or {_a(second)}?", low, high, word == bigger, kind)
    return assemble("comparisons", questions, seed, num_options=NUM_OPTIONS)
