import numpy as np
import pytest

from neuronjax.tasks.build import encode_task
from neuronjax.tasks.config import task_config_from_dict
from neuronjax.tasks.measure import measure, table_header, table_row
from tests.tasks.helpers import CharTokenizer


def oracle_logits_fn(encoded):
    """Logits that put +5 on the gold option's first token of each prompt (looked up by the
    prompt's tokens), so a correct pipeline must report accuracy 1 and a flat-ish histogram."""
    gold_token = {tuple(r.prompt_ids.tolist()): int(r.option_tokens[r.gold, 0]) for r in encoded.records}

    def logits_fn(input_ids, attention_mask):
        ids, mask = np.asarray(input_ids), np.asarray(attention_mask)
        out = np.zeros((ids.shape[0], ids.shape[1], 258), np.float32)
        for b in range(ids.shape[0]):
            out[b, -1, gold_token[tuple(ids[b][mask[b] == 1].tolist())]] = 5.0
        return out

    return logits_fn


@pytest.mark.parametrize("answer_format", ["letter", "option_text"])
def test_measure_with_an_oracle(answer_format):
    config = task_config_from_dict(
        {
            "name": "arith",
            "source": "builtin:arithmetic",
            "prompt": {"answer_format": answer_format},
            "pipeline": {"batch_size": 7},
        }
    )
    encoded = encode_task(config, CharTokenizer(), "evaluate", max_items=20)
    m = measure(encoded, oracle_logits_fn(encoded))
    assert (m.items, m.proxies) == (20, 60)
    assert m.accuracy == 1.0 and m.consistent == 1.0
    # the histogram is that of the gold letters: cyclic proxies of balanced items
    gold = np.bincount([r.gold for r in encoded.records], minlength=4) / 60
    np.testing.assert_allclose(m.histogram, gold)
    row = table_row(m)
    assert row.startswith(f"| arith | {answer_format}") and "| 20 | 60 | 1.000 | 1.000 |" in row
    assert table_header().splitlines()[0].count("|") == row.count("|")


@pytest.mark.real_model
@pytest.mark.slow
def test_smollm2_option_text_beats_chance_on_world_facts():
    import neuronjax
    from neuronjax.tasks.measure import task_config

    lm = neuronjax.load_model(None, dtype="float32")
    encoded = encode_task(task_config("world_facts"), lm.tokenizer, "evaluate", max_items=24)
    last = lambda ids, mask: lm.forward(ids, mask, logits_at="last").logits  # noqa: E731
    m = measure(encoded, lm.logits, last)
    assert m.accuracy > 0.45  # chance is 0.25
