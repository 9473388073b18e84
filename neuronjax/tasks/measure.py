"""Measure a model on the built-in tasks: accuracy, permutation-consistent accuracy and the letter
histogram on each task's held-out split, in both answer formats. Prints a Markdown table.

    python -m neuronjax.tasks.measure                      # embedded SmolLM2, the README table
    python -m neuronjax.tasks.measure --tasks world_facts --formats option_text --max-items 50
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import time
from typing import Optional, Sequence

import numpy as np

from neuronjax.tasks.build import EncodedTask, encode_task
from neuronjax.tasks.config import TaskConfig, load_task_config
from neuronjax.tasks.metrics import accuracy, letter_histogram, permutation_consistent_accuracy, target_f
from neuronjax.tasks.scoring import make_cached_scorer, make_scorer

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tasks")
DEFAULT_TASKS = (
    "world_facts", "word_relations", "arithmetic", "emotion",
    "mmlu_geography", "mmlu_miscellaneous", "mmlu_stem",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Held-out results of one task in one answer format."""

    task: str
    answer_format: str
    option_score: str
    items: int
    proxies: int
    accuracy: float  # share of proxies answered correctly
    consistent: float  # share of items with every proxy correct
    mean_f: float  # mean target F over proxies (log-prob of gold among the k options)
    histogram: tuple[float, ...]  # share of proxies answered A, B, C, D (k letters)
    first_token_ties: int  # proxies whose options share a first token
    seconds: float


def collect_scores(encoded: EncodedTask, scorer) -> dict[str, np.ndarray]:
    """Scores [proxy, option] and per-proxy gold / item / valid over all of this process's batches."""
    parts: dict[str, list] = {"scores": [], "gold": [], "item_index": [], "valid": []}
    for batch in encoded.batches():
        parts["scores"].append(np.asarray(scorer(batch)))
        for key in ("gold", "item_index", "valid"):
            parts[key].append(batch[key])
    return {k: np.concatenate(v) for k, v in parts.items()}


def measure(encoded: EncodedTask, logits_fn, last_logits_fn=None, cached=None) -> Measurement:
    """Score every held-out proxy of `encoded` and summarise. Optional faster paths:
    `last_logits_fn` returns only the last position's logits (letter and first_token scoring);
    `cached` = (prefill_fn, extend_fn) scores whole option texts over the prompt's key/value
    cache (see `scoring.make_cached_scorer`)."""
    prompt = encoded.config.prompt
    mode = prompt.option_score if prompt.answer_format == "option_text" else "first_token"
    if mode == "first_token":
        scorer = make_scorer(last_logits_fn or logits_fn, mode, encoded.pad_id)
    elif cached is not None:
        scorer = make_cached_scorer(*cached, mean=mode == "whole_mean", pad_id=encoded.pad_id)
    else:
        scorer = make_scorer(logits_fn, mode, encoded.pad_id)
    start = time.perf_counter()
    out = collect_scores(encoded, scorer)
    seconds = time.perf_counter() - start
    scores, gold, valid = out["scores"], out["gold"], out["valid"]
    hist = np.asarray(letter_histogram(scores, valid), np.float64)
    f = np.asarray(target_f(scores, gold))[valid]
    return Measurement(
        task=encoded.config.name,
        answer_format=prompt.answer_format,
        option_score=mode if prompt.answer_format == "option_text" else "letter",
        items=len(encoded.items),
        proxies=int(valid.sum()),
        accuracy=float(accuracy(scores, gold, valid)),
        consistent=float(permutation_consistent_accuracy(scores, gold, out["item_index"], len(encoded.items), valid)),
        mean_f=float(f.mean()),
        histogram=tuple(hist / max(hist.sum(), 1)),
        first_token_ties=encoded.first_token_ties,
        seconds=seconds,
    )


def table_header() -> str:
    return (
        "| task | format | items | proxies | accuracy | perm.-consistent | mean F | A / B / C / D chosen | ties | s |\n"
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"
    )


def table_row(m: Measurement) -> str:
    fmt = m.answer_format if m.answer_format == "letter" else f"option_text ({m.option_score})"
    hist = " / ".join(f"{h:.2f}" for h in m.histogram)
    ties = str(m.first_token_ties) if m.option_score == "first_token" else "-"
    return (
        f"| {m.task} | {fmt} | {m.items} | {m.proxies} | {m.accuracy:.3f} | {m.consistent:.3f} | "
        f"{m.mean_f:.2f} | {hist} | {ties} | {m.seconds:.0f} |"
    )


def task_config(name: str, config_dir: str = CONFIG_DIR) -> TaskConfig:
    """A task config by name from configs/tasks/<name>.yaml, or a plain built-in."""
    path = os.path.join(config_dir, f"{name}.yaml")
    if os.path.exists(path):
        return load_task_config(path)
    return TaskConfig(name=name, source=f"builtin:{name}")


def available_tasks(config_dir: str = CONFIG_DIR) -> list[str]:
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(config_dir, "*.yaml")))


def with_format(
    config: TaskConfig, answer_format: str, option_score: Optional[str], batch_size: int, layout: Optional[str] = None
) -> TaskConfig:
    prompt = dataclasses.replace(config.prompt, answer_format=answer_format)
    if option_score is not None:
        prompt = dataclasses.replace(prompt, option_score=option_score)
    if layout is not None:
        prompt = dataclasses.replace(prompt, layout=layout)
    pipeline = dataclasses.replace(config.pipeline, batch_size=batch_size)
    return dataclasses.replace(config, prompt=prompt, pipeline=pipeline)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint directory or .gguf (default: the embedded SmolLM2)")
    parser.add_argument(
        "--tasks", nargs="+", default=list(DEFAULT_TASKS), help=f"task names (configs/tasks: {available_tasks()})"
    )
    parser.add_argument("--formats", nargs="+", default=["letter", "option_text"], choices=["letter", "option_text"])
    parser.add_argument(
        "--option-score",
        default=None,
        choices=["first_token", "whole", "whole_mean"],
        help="override the configs' option_text score",
    )
    parser.add_argument(
        "--layout",
        default=None,
        choices=["question_first", "options_first"],
        help="override the configs' prompt layout",
    )
    parser.add_argument("--max-items", type=int, default=100, help="held-out items per task (cap)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)

    import neuronjax

    lm = neuronjax.load_model(args.model, dtype=args.dtype)
    print(f"model: {lm}")
    last_logits = lambda ids, mask: lm.forward(ids, mask, logits_at="last").logits  # noqa: E731

    def prefill(ids, mask):
        out = lm.forward(ids, mask, logits_at="last", return_cache=True)
        return out.logits, out.cache

    def extend(cache, ids, mask):
        return lm.forward(ids, mask, cache=cache).logits

    print(table_header(), flush=True)
    total = time.perf_counter()
    for name in args.tasks:
        for answer_format in args.formats:
            config = with_format(task_config(name), answer_format, args.option_score, args.batch_size, args.layout)
            encoded = encode_task(config, lm.tokenizer, "evaluate", args.max_items)
            print(table_row(measure(encoded, lm.logits, last_logits, (prefill, extend))), flush=True)
    print(f"\n{time.perf_counter() - total:.0f} s; held-out split, up to {args.max_items} items per task, "
          f"{config.aqua.num_proxies} {config.aqua.kind} proxies per item")  # fmt: skip


if __name__ == "__main__":
    main()
