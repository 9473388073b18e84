"""word_relations: opposites and category membership of common English words (about 300 items).

    "What is the opposite of "hot"?"   gold: cold, distractors: words of other pairs
    "Which of these is a fruit?"       gold: a fruit, distractors: members of other categories

Every word appears in one pair only and no two pairs are near-synonyms, so a distractor is never a
second correct answer. An item's entity is the word asked about, or the category.
"""

from __future__ import annotations

from neuronjax.tasks.builtin.common import assemble, pick_distractors, rng_for
from neuronjax.tasks.schema import Item

# fmt: off
OPPOSITES = (
    ("hot", "cold"), ("big", "small"), ("tall", "short"), ("fast", "slow"), ("happy", "sad"),
    ("light", "dark"), ("open", "closed"), ("full", "empty"), ("early", "late"), ("young", "old"),
    ("rich", "poor"), ("strong", "weak"), ("hard", "soft"), ("wet", "dry"), ("loud", "quiet"),
    ("thick", "thin"), ("clean", "dirty"), ("high", "low"), ("inside", "outside"),
    ("left", "right"), ("push", "pull"), ("buy", "sell"), ("win", "lose"), ("first", "last"),
    ("day", "night"), ("north", "south"), ("east", "west"), ("true", "false"), ("begin", "end"),
    ("above", "below"), ("before", "after"), ("friend", "enemy"), ("love", "hate"),
    ("give", "take"), ("arrive", "leave"), ("answer", "question"), ("remember", "forget"),
    ("laugh", "cry"), ("sweet", "sour"), ("deep", "shallow"), ("wide", "narrow"),
    ("cheap", "expensive"), ("safe", "dangerous"), ("polite", "rude"), ("brave", "cowardly"),
    ("sharp", "blunt"), ("tight", "loose"), ("awake", "asleep"), ("alive", "dead"),
    ("healthy", "sick"), ("always", "never"), ("everything", "nothing"), ("accept", "refuse"),
    ("increase", "decrease"), ("entrance", "exit"), ("import", "export"),
    ("maximum", "minimum"), ("visible", "invisible"), ("possible", "impossible"),
    ("legal", "illegal"), ("summer", "winter"), ("sunrise", "sunset"), ("king", "queen"),
    ("brother", "sister"), ("husband", "wife"), ("boy", "girl"), ("uncle", "aunt"),
    ("public", "private"), ("positive", "negative"), ("guilty", "innocent"),
    ("generous", "selfish"), ("wise", "foolish"), ("float", "sink"), ("freeze", "melt"),
    ("attack", "defend"), ("borrow", "lend"), ("teacher", "student"), ("parent", "child"),
)

CATEGORIES = {
    "fruit": (
        "apple", "banana", "cherry", "grape", "lemon", "mango",
        "melon", "pineapple", "pear", "strawberry", "kiwi", "apricot",
    ),
    "fish": (
        "shark", "salmon", "tuna", "eel", "goldfish", "trout",
        "cod", "carp", "herring", "sardine", "mackerel", "pike",
    ),
    "colour": (
        "red", "blue", "green", "yellow", "purple", "black",
        "white", "pink", "brown", "grey", "violet", "turquoise",
    ),
    "vehicle": (
        "car", "bus", "train", "bicycle", "truck", "motorcycle",
        "tractor", "van", "airplane", "helicopter", "scooter", "taxi",
    ),
    "musical instrument": (
        "piano", "guitar", "violin", "drum", "flute", "trumpet",
        "cello", "harp", "saxophone", "clarinet", "banjo", "tuba",
    ),
    "piece of furniture": (
        "chair", "table", "sofa", "bed", "desk", "wardrobe",
        "shelf", "stool", "bench", "cupboard", "dresser", "armchair",
    ),
    "part of the body": (
        "hand", "knee", "elbow", "nose", "shoulder", "ankle",
        "finger", "ear", "chin", "thumb", "wrist", "neck",
    ),
    "kind of weather": (
        "rain", "snow", "fog", "hail", "thunder", "drizzle",
        "sleet", "wind", "sunshine", "mist", "blizzard", "storm",
    ),
    "tool": (
        "hammer", "saw", "screwdriver", "wrench", "drill", "pliers",
        "chisel", "shovel", "axe", "ladder", "rake", "spanner",
    ),
    "vegetable": (
        "carrot", "potato", "onion", "cabbage", "lettuce", "broccoli",
        "spinach", "pea", "cucumber", "garlic", "celery", "radish",
    ),
    "bird": (
        "eagle", "sparrow", "owl", "parrot", "pigeon", "penguin",
        "robin", "crow", "swan", "duck", "falcon", "hawk",
    ),
    "sport": (
        "football", "tennis", "golf", "basketball", "cricket", "hockey",
        "rugby", "baseball", "swimming", "boxing", "volleyball", "skiing",
    ),
}
# fmt: on


def _article(category: str) -> str:
    return "an" if category[0] in "aeiou" else "a"


def generate(seed: int = 0) -> list[Item]:
    rng = rng_for("word_relations", seed)
    words = [w for pair in OPPOSITES for w in pair]
    questions = []
    for first, second in OPPOSITES:
        for word, gold in ((first, second), (second, first)):
            distractors = pick_distractors(gold, words, rng, exclude=(word,))
            questions.append((f'What is the opposite of "{word}"?', gold, distractors, "opposite", word))
    for category, members in CATEGORIES.items():
        others = [w for c, ms in CATEGORIES.items() if c != category for w in ms]
        for gold in members:
            distractors = pick_distractors(gold, others, rng)
            question = f"Which of these is {_article(category)} {category}?"
            questions.append((question, gold, distractors, "category", category))
    return assemble("word_relations", questions, seed)
