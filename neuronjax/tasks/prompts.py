"""Proxy prompts: rule block, one-shot demonstration, question, lettered options, answer cue.

Plain prompt, layout "question_first" (answer_format="letter"; with "option_text" the rule asks
for the option's text and the demonstration is answered with its text; layout "options_first"
puts the option lines before the question line). A task with k options has the letters A.. up to
the k-th, and the default rule says how many (the four-option rule below):

    The following are multiple-choice questions. Answer with the letter (A, B, C or D) ...

    Question: <demonstration question>
    A. ...          (the demonstration's own options, in its own order)
    D. ...
    Answer: B

    Question: <proxy question>
    A. ...
    D. ...
    Answer:

With `chat_template` the rule is the system message, the demonstration a user/assistant turn,
and the proxy question a user turn, closed by the tokenizer's generation prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal, Optional, Sequence

from neuronjax.errors import ConfigError
from neuronjax.tasks.aqua import Proxy
from neuronjax.tasks.schema import LETTERS, Item

AnswerFormat = Literal["letter", "option_text"]
OptionScore = Literal["first_token", "whole", "whole_mean"]

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def default_rule(answer_format: str, num_options: int = 4) -> str:
    """The rule block of an answer format for items with `num_options` options (the `RULES`
    text for four)."""
    letters = list(LETTERS[:num_options])
    listed = ", ".join(letters[:-1]) + " and " + letters[-1]
    count = NUMBER_WORDS.get(num_options, str(num_options))
    if answer_format == "letter":
        return (f"The following are multiple-choice questions. Each has {count} options, {listed}, and "
                "exactly one is correct. Answer with the letter of the correct option only.")  # fmt: skip
    return (f"The following are multiple-choice questions. Each has {count} options and exactly one is "
            "correct. Answer with the text of the correct option only.")  # fmt: skip


RULES = {answer_format: default_rule(answer_format) for answer_format in ("letter", "option_text")}


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """How a proxy is written and how its answer is read."""

    answer_format: AnswerFormat = "option_text"  # answer = the option letter, or the option's text
    # option_text only: log-prob of the option's first token, of its whole text (sum), or the
    # whole-text mean per token.
    option_score: OptionScore = "first_token"
    rule: Optional[str] = None  # role/rule block; None: the default rule of the answer format
    question_label: str = "Question:"  # written before each question
    # question_first: question, then the lettered options (the usual MMLU order);
    # options_first: the lettered options, then the question (small models copy the option
    # nearest the cue far less often this way; see docs/tasks.md for the measurement)
    layout: Literal["question_first", "options_first"] = "question_first"
    cue: str = "Answer:"  # answer cue ending the prompt
    chat_template: bool = False  # wrap the turns in the tokenizer's chat template
    # one demonstration for the whole task (a shared prompt prefix), or one drawn per item from
    # the demonstration split
    demo_policy: Literal["fixed", "per_item"] = "fixed"
    demo_seed: int = 0  # per_item only: which demonstration each item gets

    def __post_init__(self):
        if self.answer_format not in RULES:
            raise ConfigError(f"prompt.answer_format: expected 'letter' or 'option_text', got {self.answer_format!r}")
        if self.option_score not in ("first_token", "whole", "whole_mean"):
            raise ConfigError(
                f"prompt.option_score: expected first_token, whole or whole_mean, got {self.option_score!r}"
            )
        if self.layout not in ("question_first", "options_first"):
            raise ConfigError(f"prompt.layout: expected 'question_first' or 'options_first', got {self.layout!r}")
        if self.demo_policy not in ("fixed", "per_item"):
            raise ConfigError(f"prompt.demo_policy: expected 'fixed' or 'per_item', got {self.demo_policy!r}")


def question_block(
    question: str, options: Sequence[str], label: str = "Question:", layout: str = "question_first"
) -> str:
    """The question line and the k lettered option lines, in the order `layout` says."""
    question_line = f"{label} {question}"
    option_lines = [f"{letter}. {text}" for letter, text in zip(LETTERS, options)]
    if layout == "options_first":
        return "\n".join(option_lines + [question_line])
    return "\n".join([question_line] + option_lines)


def answer_text(options: Sequence[str], answer: int, answer_format: AnswerFormat) -> str:
    """What a correct reply says: the gold letter, or the gold option's text."""
    return LETTERS[answer] if answer_format == "letter" else options[answer]


def choose_demo(item_id: str, demos: Sequence[Item], config: PromptConfig) -> Item:
    """The demonstration for one item: from the demonstration split and never the item itself."""
    candidates = [d for d in demos if d.id != item_id]
    if not candidates:
        raise ConfigError(f"item {item_id!r}: the demonstration split holds no other item")
    if config.demo_policy == "fixed":
        return candidates[0]
    digest = hashlib.sha256(f"demo\x00{config.demo_seed}\x00{item_id}".encode()).digest()
    return candidates[int.from_bytes(digest[:8], "little") % len(candidates)]


def build_prompt(proxy: Proxy, demo: Item, config: PromptConfig, tokenizer: Any = None) -> str:
    """The full prompt text of one proxy, ending at the answer cue (or the chat generation prompt)."""
    if demo.id == proxy.item_id:
        raise ConfigError(f"item {proxy.item_id!r}: an item cannot be its own demonstration")
    rule = config.rule if config.rule is not None else default_rule(config.answer_format, len(proxy.options))
    demo_question = question_block(demo.question, demo.options, config.question_label, config.layout)
    demo_answer = answer_text(demo.options, demo.answer, config.answer_format)
    question = question_block(proxy.question, proxy.options, config.question_label, config.layout)
    if not config.chat_template:
        return f"{rule}\n\n{demo_question}\n{config.cue} {demo_answer}\n\n{question}\n{config.cue}"
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", None)
        raise ConfigError(f"prompt.chat_template is set but the tokenizer {name!r} has no chat template")
    messages = [
        {"role": "system", "content": rule},
        {"role": "user", "content": f"{demo_question}\n{config.cue}"},
        {"role": "assistant", "content": demo_answer},
        {"role": "user", "content": f"{question}\n{config.cue}"},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def answer_separator(prompt: str) -> str:
    """Text between the prompt and a written answer: a space after the cue, none after a newline."""
    return "" if not prompt or prompt[-1].isspace() else " "
