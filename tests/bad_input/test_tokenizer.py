"""What a tokenizer cannot express: options that tokenize identically (first-token ties, or the
same tokens throughout) are reported with a count and an example, and recorded in the sidecar;
a tokenizer without single-token option letters is an error naming the tokenizer and the letter."""

import logging
import re

import pytest

from neuronjax.identify import AttributionConfig, identify
from neuronjax.methods import MeanActivation
from neuronjax.tasks.build import encode_task
from neuronjax.tasks.config import task_config_from_dict
from neuronjax.tasks.encoding import TokenizerError
from tests.bad_input.helpers import good_rows, row, tiny_lm, write_jsonl
from tests.tasks.helpers import CharTokenizer, NoLetterTokenizer


def _config(tmp_path, rows, **prompt):
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    return task_config_from_dict({"name": "t", "source": path, "split": {"num_demo": 1, "eval_fraction": 0.2},
                                  "prompt": prompt, "pipeline": {"batch_size": 4}})  # fmt: skip


def _digit_rows(n: int = 6):
    """Items whose options '1k' and '2k' start with the same character token as '1' / '2' do."""
    return [row(id=f"tie{k}", question=f"{k} + 9?", options=[f"1{k}", f"1{k + 1}", "4", "5"], answer="A") for k in range(n)]


def test_first_token_ties_are_counted_and_logged(tmp_path, caplog):
    config = _config(tmp_path, _digit_rows(), answer_format="option_text", option_score="first_token")
    with caplog.at_level(logging.WARNING, logger="neuronjax.tasks"):
        encoded = encode_task(config, CharTokenizer(), "identify")
    n = len(encoded.records)
    assert encoded.first_token_ties == n == 3 * len(encoded.items)  # every proxy of every item
    first = encoded.items[encoded.records[0].item_index]
    message = (f"task 't' (identify): {n} of {n} proxies have two options that start with the same token, which "
               f"option_score first_token cannot tell apart (e.g. item {first.id!r}, options {list(first.options)}); "
               "consider option_score: whole or answer_format: letter")  # fmt: skip
    assert message in caplog.messages


def test_options_with_the_same_tokens_under_whole_scoring(tmp_path, caplog):
    """Texts that differ only in characters the tokenizer drops encode to the same tokens: no
    option score can tell them apart."""
    rows = [row(id=f"s{k}", question=f"Q{k}?", options=["Paris", "Paris\u2603", "Oslo", "Bern"]) for k in range(6)]
    config = _config(tmp_path, rows, answer_format="option_text", option_score="whole")
    with caplog.at_level(logging.WARNING, logger="neuronjax.tasks"):
        encoded = encode_task(config, CharTokenizer(), "identify")
    n = len(encoded.records)
    assert re.search(rf"task 't' \(identify\): {n} of {n} proxies have two options that encode to the same tokens, "
                     r"which option_score whole cannot tell apart \(e.g. item 's\d'", "\n".join(caplog.messages))  # fmt: skip


def test_no_report_when_options_are_distinct(tmp_path, caplog):
    config = _config(tmp_path, good_rows(6), answer_format="option_text", option_score="first_token")
    with caplog.at_level(logging.WARNING, logger="neuronjax.tasks"):
        assert encode_task(config, CharTokenizer(), "identify").first_token_ties == 0
    assert not caplog.messages


def test_tokenizer_without_single_token_letters(tmp_path):
    config = _config(tmp_path, good_rows(6), answer_format="letter")
    message = ("tokenizer 'no-letter-tokenizer': no single token spells the option letter 'A' (tried 'A', ' A', "
               "'ĠA', '▁A'); the letter answer format needs one, use answer_format: option_text")  # fmt: skip
    with pytest.raises(TokenizerError, match=re.escape(message)):
        encode_task(config, NoLetterTokenizer(), "identify")


def test_ties_and_skipped_rows_are_recorded_in_the_sidecar(tmp_path, caplog):
    rows = _digit_rows() + [row(id="bad", answer="Z")]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    config = task_config_from_dict({"name": "t", "source": path, "on_error": "skip", "prompt": {"rule": "Answer."},
                                    "split": {"num_demo": 1, "eval_fraction": 0.2}, "pipeline": {"batch_size": 8}})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        encoded = encode_task(config, CharTokenizer(), "identify")
        sets = identify(tiny_lm(vocab=258), encoded, [MeanActivation(k=2)], AttributionConfig("grad_x_act"), block_items=4)
    task = sets["mean_activation"].meta["task"]
    assert (task["skipped_rows"], task["header_rows"], task["first_token_ties"]) == (1, 0, len(encoded.records))
    assert any("1 bad row(s) skipped" in m for m in caplog.messages)
    assert any("proxies have two options that start with the same token" in m for m in caplog.messages)
