import jax
import numpy as np
import pytest

from neuronjax.tasks.scoring import (
    candidate_log_probs,
    continuation_log_probs,
    make_cached_scorer,
    make_scorer,
    option_scores,
)
from tests.tasks.helpers import fake_cached_fns, fake_logits_fn
from tests.tiny_models import left_pad

V = 258


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def reference_logits(table, tokens):
    """Logits of the fake model for an unpadded token list: running mean of table rows."""
    rows = table[np.asarray(tokens)]
    return np.cumsum(rows, axis=0) / np.arange(1, len(tokens) + 1)[:, None]


PROMPTS = [[5, 9, 11, 40], [7, 3], [100, 101, 102, 103, 104, 105]]


def test_candidate_log_probs_is_logsumexp_over_spellings():
    logits_fn, table = fake_logits_fn(V)
    ids, mask = left_pad(PROMPTS)
    tokens = np.array([[[65, 200], [66, -1], [67, 10], [68, -1]]] * 3, np.int32)
    scores = np.asarray(
        option_scores(
            logits_fn,
            {
                "input_ids": ids,
                "attention_mask": mask,
                "option_tokens": tokens,
                "continuation": np.zeros((3, 4, 0), np.int32),
            },
        )
    )
    for b, prompt in enumerate(PROMPTS):
        lp = np_log_softmax(reference_logits(table, prompt)[-1])
        expected = [np.logaddexp(lp[65], lp[200]), lp[66], np.logaddexp(lp[67], lp[10]), lp[68]]
        np.testing.assert_allclose(scores[b], expected, rtol=1e-5, atol=1e-5)


def test_letter_score_differs_from_logit_logsumexp_by_a_row_constant():
    logits = np.random.default_rng(0).normal(size=(2, V)).astype(np.float32)
    tokens = np.array([[[1, 2], [3, -1], [4, 5], [6, -1]]] * 2, np.int32)
    scores = np.asarray(candidate_log_probs(logits, tokens))
    raw = np.stack(
        [
            np.logaddexp(logits[:, 1], logits[:, 2]),
            logits[:, 3],
            np.logaddexp(logits[:, 4], logits[:, 5]),
            logits[:, 6],
        ],
        axis=1,
    )
    diff = scores - raw
    np.testing.assert_allclose(diff, diff[:, :1].repeat(4, 1), atol=1e-4)


@pytest.mark.parametrize("mean", [False, True])
def test_whole_text_matches_a_token_by_token_reference(mean):
    logits_fn, table = fake_logits_fn(V, seed=1)
    ids, mask = left_pad(PROMPTS)
    conts = [[[70], [71, 72], [73, 74, 75], [76]]] * 3
    cont = np.full((3, 4, 3), -1, np.int32)
    for b in range(3):
        for k in range(4):
            cont[b, k, : len(conts[b][k])] = conts[b][k]
    scores = np.asarray(continuation_log_probs(logits_fn, ids, mask, cont, pad_id=0, mean=mean))
    for b, prompt in enumerate(PROMPTS):
        for k, text in enumerate(conts[b]):
            full = prompt + text
            lp = np_log_softmax(reference_logits(table, full))
            total = sum(lp[len(prompt) - 1 + j, t] for j, t in enumerate(text))
            expected = total / len(text) if mean else total
            np.testing.assert_allclose(scores[b, k], expected, rtol=1e-5, atol=1e-4)


def test_make_scorer_equals_option_scores():
    logits_fn, _ = fake_logits_fn(V, seed=2)
    jitted = jax.jit(logits_fn)
    ids, mask = left_pad(PROMPTS)
    cont = np.array([[[1, 2], [3, -1], [4, -1], [5, 6]]] * 3, np.int32)
    batch = {"input_ids": ids, "attention_mask": mask, "option_tokens": cont[:, :, :1].copy(), "continuation": cont}
    for mode in ("first_token", "whole", "whole_mean"):
        np.testing.assert_allclose(
            np.asarray(make_scorer(jitted, mode)(batch)),
            np.asarray(option_scores(logits_fn, batch, mode)),
            rtol=1e-5,
            atol=1e-5,
        )


def test_scoring_errors():
    logits_fn, _ = fake_logits_fn(V)
    ids, mask = left_pad(PROMPTS)
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "option_tokens": np.zeros((3, 4, 1), np.int32),
        "continuation": np.zeros((3, 4, 0), np.int32),
    }
    with pytest.raises(ValueError, match="continuation is empty"):
        option_scores(logits_fn, batch, "whole")
    with pytest.raises(ValueError, match="option_score"):
        make_scorer(logits_fn, "max")


@pytest.mark.parametrize("mean", [False, True])
def test_cached_whole_text_equals_the_full_pass(mean):
    logits_fn, table = fake_logits_fn(V, seed=3)
    ids, mask = left_pad(PROMPTS)
    cont = np.array([[[1, 2, 3], [4, -1, -1], [5, 6, -1], [7, -1, -1]]] * 3, np.int32)
    batch = {"input_ids": ids, "attention_mask": mask, "option_tokens": cont[:, :, :1].copy(), "continuation": cont}
    cached = make_cached_scorer(*fake_cached_fns(table), mean=mean)(batch)
    full = continuation_log_probs(logits_fn, ids, mask, cont, pad_id=0, mean=mean)
    np.testing.assert_allclose(np.asarray(cached), np.asarray(full), rtol=1e-5, atol=1e-5)


@pytest.mark.real_model
def test_smollm2_cached_whole_text_equals_the_full_pass():
    import neuronjax

    lm = neuronjax.load_model(None, dtype="float32")
    ids, mask = lm.encode(["Question: What is the capital of France?\nAnswer:", "Hi there. 2 + 2 ="])
    texts = [[" Paris", " Rome is", " Oslo", " the city of Bern"], [" 4", " four", " 5 or 6", " 22"]]
    rows = [[lm.tokenizer.encode(t, add_special_tokens=False) for t in row] for row in texts]
    cont = np.full((2, 4, max(len(t) for row in rows for t in row)), -1, np.int32)
    for b, row in enumerate(rows):
        for k, t in enumerate(row):
            cont[b, k, : len(t)] = t

    def prefill(i, m):
        out = lm.forward(i, m, logits_at="last", return_cache=True)
        return out.logits, out.cache

    cached = make_cached_scorer(prefill, lambda c, i, m: lm.forward(i, m, cache=c).logits, pad_id=lm.pad_id)
    batch = {"input_ids": ids, "attention_mask": mask, "continuation": cont}
    full = continuation_log_probs(lm.logits, ids, mask, cont, pad_id=lm.pad_id)
    np.testing.assert_allclose(np.asarray(cached(batch)), np.asarray(full), atol=2e-3)
