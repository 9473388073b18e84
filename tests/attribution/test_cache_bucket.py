"""Prompt caches left-padded to a bucket of slots (`cached.padded`): the steps that read them give
the full-prompt rerun's numbers, and compile once for every prompt width within one bucket."""

import dataclasses

import numpy as np
import pytest

import neuronjax
from neuronjax import cached
from neuronjax.attribution import PromptBatch, attribute, engine
from neuronjax.attribution.naive import naive_attribute
from neuronjax.evaluation import joined
from neuronjax.evaluation import scoring as ev_scoring
from neuronjax.intervention import Intervention
from tests import tiny_models

pytestmark = pytest.mark.torch  # the tiny checkpoints are written by transformers


def _batch(vocab: int, suffixes, seed: int = 0) -> PromptBatch:
    """A 21-token prefix common to the rows (16 shared after rounding), then each row's suffix."""
    ids, mask = tiny_models.prefixed_batch(vocab, 21, suffixes, seed=seed)
    rng = np.random.default_rng(seed)
    opts = rng.integers(0, vocab, (len(suffixes), 4, 2)).astype(np.int32)
    opts[0, 1, 1] = -1
    return PromptBatch(ids, mask, opts, (np.arange(len(suffixes)) % 4).astype(np.int32))


@pytest.fixture(scope="module", params=["llama3_rope", "gemma3"])
def lm(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    tiny_models.save(request.param, d)
    return neuronjax.load_model(str(d))


def test_cache_slots_and_padding():
    assert [cached.cache_slots(n, 64) for n in (1, 63, 64, 65, 200)] == [64, 64, 64, 128, 256]
    assert cached.cache_slots(47, None) is None
    with pytest.raises(ValueError, match="cache multiple 0"):
        cached.cache_slots(5, 0)
    cache = cached.KVCache(np.ones((2, 3, 5, 1, 4), np.float32), np.ones((2, 3, 5, 1, 4), np.float32),
                           np.ones((3, 5), bool))  # fmt: skip
    out = cached.padded(cache, 8)
    assert out.keys.shape == (2, 3, 8, 1, 4) and not np.asarray(out.mask[:, :3]).any() and np.asarray(out.mask[:, 3:]).all()
    assert float(np.abs(np.asarray(out.keys[:, :, :3])).max()) == 0.0
    with pytest.raises(ValueError, match="5 slots cannot be padded to 4"):
        cached.padded(cache, 4)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_padded_caches_give_the_full_prompt_attribution(lm, share_prefix):
    """IG and the activations with every cache padded (to 64 slots: 2 to 4 times the prompt's)
    against the naive full-prompt rerun, within test_engine's tolerances; against the unpadded
    replay within float32 rounding. gemma3 has sliding-window layers (window 4, shorter than the
    prompts): the padding sits before the oldest slot and leaves every distance as it was."""
    batch = _batch(lm.config.vocab_size, (6, 1, 11))
    got = attribute(lm, batch, "ig", 3, groups=2, share_prefix=share_prefix, cache_bucket=64)
    plain = attribute(lm, batch, "ig", 3, groups=2, share_prefix=share_prefix, cache_bucket=None)
    slow = naive_attribute(lm, batch, "ig", 3)
    scale = float(np.abs(np.asarray(slow.scores)).max())
    assert scale > 1e-2
    np.testing.assert_allclose(np.asarray(got.scores), np.asarray(slow.scores), atol=1e-5 * scale, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got.f), np.asarray(slow.f), atol=1e-5)
    np.testing.assert_allclose(np.asarray(got.option_scores), np.asarray(slow.option_scores), atol=1e-4)
    # measured against the unpadded replay on llama3_rope, gemma3, gpt2 and mistral, two seeds,
    # shared and not: scores and activations at most 1.3e-6 of their largest value, F and option
    # scores at most 2.4e-6 apart (the unpadded replay is itself up to 2.9e-6 from the naive rerun)
    assert _rel(got.scores, plain.scores) < 3e-6
    assert _rel(got.activations, plain.activations) < 3e-6
    np.testing.assert_allclose(np.asarray(got.f), np.asarray(plain.f), rtol=0, atol=5e-6)
    np.testing.assert_allclose(np.asarray(got.option_scores), np.asarray(plain.option_scores), rtol=0, atol=5e-6)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_one_replay_program_for_the_widths_of_a_bucket(lm):
    """Two batches whose prompts differ in width: shared (llama3_rope), suffixes of 16 and 48
    columns after a 16-token prefix (caches of 31 and 63 slots); unshared (gemma3's sliding
    window refuses the split), whole prompts of 48 and 64 columns (caches of 47 and 63). With the
    caches padded to 64 slots, the second batch compiles no new replay program; unpadded, it
    compiles one of its own (so the count below can tell)."""
    vocab = lm.config.vocab_size
    a, b = _batch(vocab, (6, 1, 11)), _batch(vocab, (30, 3, 9), seed=1)
    compiled = engine.attribute_compiled

    def new_programs(batch, bucket) -> int:
        before = compiled._cache_size()
        attribute(lm, batch, "ig", 2, groups=1, cache_bucket=bucket)
        return compiled._cache_size() - before

    new_programs(a, 64)
    assert new_programs(b, 64) == 0
    new_programs(a, None)
    assert new_programs(b, None) == 1


def _task_of_two_widths(vocab: int):
    """The planted task behind a 40-token prefix (32 shared), half of its prompts 20 tokens of
    their own longer before their last token: batches of several suffix widths (up to 48, a cache
    of 79 slots), its caches padded to multiples of 128."""
    from tests.attribution.test_shared_prefix import _prefixed_task

    enc = _prefixed_task("first_token", vocab)
    rng = np.random.default_rng(3)
    half = len(enc.records) // 2
    records = []
    for k, r in enumerate(enc.records):
        if k >= half:
            extra = rng.integers(30, min(vocab, 64), 20).astype(np.int32)
            r = dataclasses.replace(r, prompt_ids=np.concatenate([r.prompt_ids[:-1], extra, r.prompt_ids[-1:]]))
        records.append(r)
    pipeline = dataclasses.replace(enc.config.pipeline, cache_multiple=128)
    return dataclasses.replace(enc, records=tuple(records), config=dataclasses.replace(enc.config, pipeline=pipeline))


def test_evaluation_compiles_one_scoring_program_per_bucket(lm, monkeypatch):
    """`score_interventions` on batches of two suffix widths calls its joined scoring step with
    one cache width (128 slots) and one input width (the prompts' last column), and gives the
    scores of unpadded caches (which have two widths: the step would compile twice)."""
    import jax.numpy as jnp

    enc = _task_of_two_widths(lm.config.vocab_size)
    batches = list(enc.batches())
    window = cached.smallest_window(lm.config)  # gemma3's refuses the split: whole prompts
    splits = [(b, cached.split_prefix(b["input_ids"], b["attention_mask"], window=window)) for b in batches]
    lengths = {b["input_ids"].shape[1] - 1 if s is None else s.length + s.input_ids.shape[1] - 1
               for b, s in splits}  # the unpadded caches' slots  # fmt: skip
    assert len(lengths) >= 2 and max(lengths) <= 128
    c = lm.config
    rng = np.random.default_rng(0)
    ivs = [Intervention.identity(c.num_layers, c.intermediate_size)]
    for _ in range(3):
        scale = np.ones((c.num_layers, c.intermediate_size), np.float32)
        scale[rng.integers(0, c.num_layers), rng.integers(0, c.intermediate_size, 5)] = 0.0
        ivs.append(dataclasses.replace(ivs[0], scale=jnp.asarray(scale)))
    seen, real = [], joined.score_joined

    def spy(state, cache, ids, *a, **k):
        seen.append((cache.length, ids.shape[1]))
        return real(state, cache, ids, *a, **k)

    monkeypatch.setattr(ev_scoring, "score_joined", spy)
    got = ev_scoring.score_interventions(lm, enc, ivs, joined=True)
    assert len(seen) == len(batches) and set(seen) == {(128, 1)}
    seen.clear()
    plain_enc = dataclasses.replace(enc, config=dataclasses.replace(
        enc.config, pipeline=dataclasses.replace(enc.config.pipeline, cache_multiple=1)))  # fmt: skip
    plain = ev_scoring.score_interventions(lm, plain_enc, ivs, joined=True)
    assert {s for s, _ in seen} == lengths  # unpadded: a program per cache width
    assert np.abs(got.scores[1:] - got.scores[0]).max() > 1e-3  # the edits matter
    np.testing.assert_allclose(got.scores, plain.scores, rtol=2e-6, atol=2e-6)
