"""Shared prefixes: the token prefix common to every prompt of a batch runs once, and attribution,
held-out scoring and the learned method's caches give what the unshared path gives; the split's
properties; and the fallback for sliding-window attention."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import neuronjax
from neuronjax import cached
from neuronjax.attribution import PromptBatch, attribute
from neuronjax.evaluation import score_interventions
from neuronjax.intervention import Intervention
from neuronjax.methods import learned
from neuronjax.models.config import ModelConfig
from tests import tiny_models
from tests.methods import planted

# Measured on a 2-core CPU (float32, highest matmul precision), over two seeds of these batches on
# both tiny models: the largest difference relative to the largest |value| was 1.4e-6 for IG
# scores (2.0e-6 with 4 layer groups), 4.6e-7 for F and option scores, 5.8e-7 for activations,
# 9.5e-7 for evaluation scores and 7.4e-7 for the learned method's F (rounding: the prefix's keys
# come from a one-row pass). The tolerances leave two to four times that.
REL_IG = 5e-6
REL = 2e-6


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ----------------------------------------------------------------------------- the split


@pytest.mark.parametrize("prefix,suffixes,bucket", [(20, (5, 1, 9, 3), 16), (37, (2, 30), 8), (16, (1, 1), 16)])
def test_split_properties(prefix, suffixes, bucket):
    ids, mask = tiny_models.prefixed_batch(50, prefix, suffixes, pad=7)
    split = cached.split_prefix(ids, mask, bucket=bucket, seq_bucket=32)
    assert split is not None
    p = split.length
    assert p == prefix // bucket * bucket  # the common prefix rounded down
    assert split.input_ids.shape[1] % 32 == 0 and split.attention_mask.shape == split.input_ids.shape
    for r in range(len(suffixes)):
        real = ids[r][mask[r] == 1]
        np.testing.assert_array_equal(split.shared[0], real[:p])  # a prefix of every row
        keep = split.attention_mask[r] == 1
        assert keep[-1] and keep.sum() >= 1  # the last token stays in the suffix
        assert (np.diff(split.attention_mask[r]) >= 0).all()  # left-padded
        np.testing.assert_array_equal(np.concatenate([split.shared[0], split.input_ids[r][keep]]), real)
    assert (split.input_ids[split.attention_mask == 0] == 7).all()  # the batch's padding id


def test_split_falls_back_without_a_long_enough_common_prefix():
    ids, mask = tiny_models.prefixed_batch(50, 20, (5, 9))
    ids[1, mask[1].argmax()] += 1  # the rows differ at their first token
    assert cached.common_prefix_length(ids, mask) == 0
    assert cached.split_prefix(ids, mask) is None
    short, short_mask = tiny_models.prefixed_batch(50, 15, (5, 9))  # 15 common tokens: 0 after rounding down to 16
    assert cached.common_prefix_length(short, short_mask) == 15
    assert cached.split_prefix(short, short_mask) is None
    assert cached.split_prefix(short, short_mask, bucket=5).length == 15


def test_identical_rows_keep_their_last_token():
    ids, mask = tiny_models.prefixed_batch(50, 33, (0,))
    ids, mask = np.repeat(ids, 3, axis=0), np.repeat(mask, 3, axis=0)
    assert cached.common_prefix_length(ids, mask) == 32  # every row's length - 1
    split = cached.split_prefix(ids, mask)
    assert split.length == 32 and (split.attention_mask.sum(axis=1) == 1).all()


def test_sliding_window_falls_back():
    # P = 16, suffixes of up to 13 tokens: S = 32 at seq_bucket 32
    ids, mask = tiny_models.prefixed_batch(50, 20, (5, 9))
    assert cached.split_prefix(ids, mask, seq_bucket=32, window=48) is not None
    assert cached.split_prefix(ids, mask, seq_bucket=32, window=47) is None
    assert cached.split_prefix(ids, mask, seq_bucket=32, window=60, extra_slots=13) is None  # option texts run after it
    assert cached.split_prefix(ids, mask, window=32) is not None  # S = 16 at the default seq_bucket, 16
    assert cached.split_prefix(ids, mask, window=31) is None
    cfg = ModelConfig(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=8)  # fmt: skip
    assert cached.smallest_window(cfg) is None
    gemma_like = dataclasses.replace(cfg, sliding_window=4, layer_kinds=("sliding", "full"))
    assert cached.smallest_window(gemma_like) == 4


# ----------------------------------------------------------------------------- attribution


@pytest.fixture(scope="module", params=["llama3_rope", "gpt2"])
def lm(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    tiny_models.save(request.param, d)
    return neuronjax.load_model(str(d))


def _batch(vocab, rows=3, seed=0):
    ids, mask = tiny_models.prefixed_batch(vocab, 21, (6, 1, 11)[:rows], seed=seed)
    rng = np.random.default_rng(seed)
    opts = rng.integers(0, vocab, (rows, 4, 2)).astype(np.int32)
    opts[0, 1, 1] = -1
    return PromptBatch(ids, mask, opts, (np.arange(rows) % 4).astype(np.int32))


@pytest.mark.torch
def test_attribution_equals_the_unshared_path(lm):
    batch = _batch(lm.config.vocab_size)
    assert cached.split_prefix(batch.input_ids, batch.attention_mask).length == 16
    # chunk 2 of 3 rows: the last chunk is padded, every chunk reads the one shared prefix
    _assert_same_attribution(attribute(lm, batch, "ig", 4, chunk=2, groups=1),
                             attribute(lm, batch, "ig", 4, chunk=2, groups=1, share_prefix=False))  # fmt: skip


def _assert_same_attribution(shared, plain):
    """A shared-prefix attribution against the unshared one, within the measured rounding."""
    assert np.abs(np.asarray(plain.scores)).max() > 1e-2
    assert _rel(shared.scores, plain.scores) < REL_IG
    assert _rel(shared.f, plain.f) < REL
    assert _rel(shared.option_scores, plain.option_scores) < REL
    assert _rel(shared.activations, plain.activations) < REL


@pytest.mark.torch
def test_attribution_keeps_a_tasks_prefix_across_calls(lm, monkeypatch):
    """attribute(..., heads=) runs a prefix it has already seen not again (identification keeps
    one memo per task): two batches with the same prefix and other suffixes run it once, and
    both equal the unshared path."""
    vocab = lm.config.vocab_size
    first = _batch(vocab)
    ids, mask = tiny_models.prefixed_batch(vocab, 21, (9, 4, 2), seed=0)  # the same 21-token prefix, other rows
    second = dataclasses.replace(first, input_ids=ids, attention_mask=mask)
    splits = [cached.split_prefix(b.input_ids, b.attention_mask) for b in (first, second)]
    np.testing.assert_array_equal(splits[0].shared, splits[1].shared)
    assert splits[0].input_ids.shape != splits[1].input_ids.shape or (splits[0].input_ids != splits[1].input_ids).any()
    runs = []
    real = cached.compute_prefix_head
    monkeypatch.setattr(cached, "compute_prefix_head", lambda *a, **k: runs.append(1) or real(*a, **k))
    heads: dict = {}
    for batch in (first, second):
        _assert_same_attribution(attribute(lm, batch, "ig", 4, chunk=2, groups=1, heads=heads),
                                 attribute(lm, batch, "ig", 4, chunk=2, groups=1, share_prefix=False))  # fmt: skip
    assert len(runs) == 1 and len(heads) == 1


@pytest.mark.torch
def test_sliding_window_model_is_not_split(tmp_path):
    """Mistral (window 4): sharing would stretch slot distances across the padding gap and
    change what a query sees, so the split is refused (`attribute`, `score_interventions` and
    the learned method pass the model's window)."""
    tiny_models.save("mistral", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    batch = _batch(lm.config.vocab_size, rows=2)
    split = cached.split_prefix(batch.input_ids, batch.attention_mask)
    assert split is not None
    assert cached.split_prefix(batch.input_ids, batch.attention_mask, window=cached.smallest_window(lm.config)) is None
    iv = Intervention.identity(lm.config.num_layers, lm.config.intermediate_size)
    opts = jnp.asarray(batch.option_ids)
    forced = cached.compute_shared_prefix_cache(lm.state, split.shared, split.input_ids, split.attention_mask,
                                                graphdef=lm.graphdef)  # fmt: skip
    plain = cached.compute_prefix_cache(lm.state, batch.input_ids, batch.attention_mask, graphdef=lm.graphdef)
    wrong = cached.last_token_scores(lm.state, lm.graphdef, batch.input_ids, forced, iv, opts, None, "first_token", 0)
    right = cached.last_token_scores(lm.state, lm.graphdef, batch.input_ids, plain, iv, opts, None, "first_token", 0)
    assert _rel(wrong, right) > 1e-3  # the reason for the fallback


@pytest.mark.torch
@pytest.mark.multidevice
def test_shared_prefix_on_a_mesh_equals_one_device(tmp_path):
    """The one-row prefix pass is replicated over the data axis, its cache broadcast to the rows."""
    from neuronjax import sharding as sh

    tiny_models.save("llama3_rope", tmp_path)
    one = neuronjax.load_model(str(tmp_path))
    many = neuronjax.load_model(str(tmp_path), mesh=sh.make_mesh({"data": 2, "tensor": 4}))
    batch = _batch(one.config.vocab_size, rows=2)
    a = attribute(one, batch, "activation", share_prefix=False)
    b = attribute(many, batch, "activation")
    assert len(b.scores.sharding.device_set) == 8
    assert _rel(b.activations, a.activations) < REL
    assert _rel(b.option_scores, a.option_scores) < REL


# ----------------------------------------------------------------------------- evaluation, learned


def _prefixed_task(kind: str, vocab: int):
    """The planted task with a 40-token prefix before every prompt (P = 32); "whole": option texts
    of 1 to 3 tokens scored after the prompt."""
    enc = planted.task(num_items=4, batch_size=4)
    head = np.random.default_rng(1).integers(30, 64, 40).astype(np.int32)
    rng = np.random.default_rng(2)
    records = []
    for r in enc.records:
        r = dataclasses.replace(r, prompt_ids=np.concatenate([head, r.prompt_ids]))
        if kind == "whole":
            cont = np.full((4, 3), -1, np.int32)
            for o in range(4):
                n = int(rng.integers(1, 4))
                cont[o, 0] = r.option_tokens[o, 0]
                cont[o, 1:n] = rng.integers(30, min(vocab, 64), n - 1)
            r = dataclasses.replace(r, continuation=cont)
        records.append(r)
    config = enc.config
    if kind == "whole":
        config = dataclasses.replace(config, prompt=dataclasses.replace(config.prompt, option_score="whole"))
    return dataclasses.replace(enc, records=tuple(records), config=config)


def _interventions(cfg, seed=0):
    rng = np.random.default_rng(seed)
    shape = (cfg.num_layers, cfg.intermediate_size)
    out = [Intervention.identity(*shape)]
    for policy in ("last", "last", "all"):
        scale = np.where(rng.random(shape) < 0.2, rng.choice([0.0, 2.0], shape), 1.0).astype(np.float32)
        shift = np.where(rng.random(shape) < 0.05, 0.7, 0.0).astype(np.float32)
        out.append(Intervention(jnp.asarray(scale), jnp.asarray(shift), policy))
    return out


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["first_token", "whole"])
def test_evaluation_scores_equal_the_unshared_path(lm, kind):
    enc = _prefixed_task(kind, lm.config.vocab_size)
    batch = next(enc.batches(process_index=0, process_count=1))
    assert cached.split_prefix(batch["input_ids"], batch["attention_mask"]).length == 32
    ivs = _interventions(lm.config)
    shared = score_interventions(lm, enc, ivs)
    plain = score_interventions(lm, enc, ivs, share_prefix=False)
    assert np.abs(shared.scores[1] - shared.scores[0]).max() > 1e-2  # the edits matter
    assert _rel(shared.scores, plain.scores) < REL


@pytest.mark.torch
def test_a_tasks_prefix_runs_once_for_all_its_batches(lm, monkeypatch):
    """score_interventions keeps the task's prefix cache across batches (`batch_prefix_cache`'s
    heads): one prefix pass for every batch, and each batch's cache equal to the one built with
    its prefix run inside the batch's own call."""
    enc = _prefixed_task("first_token", lm.config.vocab_size)
    batches = list(enc.batches(process_index=0, process_count=1))
    assert len(batches) > 1
    runs = []
    real = cached.compute_prefix_head
    monkeypatch.setattr(cached, "compute_prefix_head", lambda *a, **k: runs.append(1) or real(*a, **k))
    heads: dict = {}
    for b in batches:
        ids, mask = lm.place(b["input_ids"]), lm.place(b["attention_mask"])
        memo = cached.batch_prefix_cache(lm, b, ids, mask, heads=heads)
        alone = cached.batch_prefix_cache(lm, b, ids, mask)
        # measured: identical on both tiny models (the same operations, compiled in two programs)
        for got, want in ((memo.keys, alone.keys), (memo.values, alone.values), (memo.mask, alone.mask)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert len(runs) == 1 and len(heads) == 1
    score_interventions(lm, enc, _interventions(lm.config)[:2])
    assert len(runs) == 2  # one more for the whole task


@pytest.mark.torch
def test_learned_caches_equal_the_unshared_path(lm):
    enc = _prefixed_task("first_token", lm.config.vocab_size)
    shared, plain = learned.prompt_states(lm, enc), learned.prompt_states(lm, enc, share_prefix=False)
    assert shared.caches[0].length != plain.caches[0].length  # the shared layout
    assert len({c.length for c in shared.caches}) == 1  # one shape for every batch
    rng = np.random.default_rng(0)
    shape = (3, lm.config.num_layers, lm.config.intermediate_size)
    scales = jnp.asarray(np.where(rng.random(shape) < 0.3, 0.0, 1.0).astype(np.float32))
    for i in range(len(shared)):
        ids, cache, options, gold, _ = shared.batch(i)
        got = learned.batch_f(lm.state, lm.graphdef, ids, cache, options, gold, scales)
        ids, cache, options, gold, _ = plain.batch(i)
        want = learned.batch_f(lm.state, lm.graphdef, ids, cache, options, gold, scales)
        assert _rel(got, want) < REL


# ----------------------------------------------------------------------------- the config switches


@pytest.mark.torch
def test_config_switches_reach_attribution_and_scoring(lm, monkeypatch):
    """identify.attribution.share_prefix and evaluate.share_prefix decide whether a batch is cut."""
    from neuronjax.attribution import engine
    from neuronjax.config import AttributionConfig, EvaluateConfig
    from neuronjax.evaluation import conditions
    from neuronjax.identify.driver import attribute_batch

    cuts = []
    real = engine.split_prefix
    monkeypatch.setattr(engine, "split_prefix", lambda *a, **k: cuts.append(1) or real(*a, **k))
    pb = _batch(lm.config.vocab_size)
    batch = {"input_ids": pb.input_ids, "attention_mask": pb.attention_mask, "option_tokens": pb.option_ids,
             "gold": pb.gold}  # fmt: skip
    rows = {}
    for share in (True, False):
        cuts.clear()
        rows[share] = attribute_batch(lm, batch, {"attr"}, AttributionConfig(steps=2, groups=1, share_prefix=share))
        assert bool(cuts) == share
    assert _rel(rows[True]["attr"], rows[False]["attr"]) < REL_IG

    seen = []

    def spy(*args, share_prefix=True, **kwargs):
        seen.append(share_prefix)
        raise StopIteration  # the switch is what is checked here, not the scores

    monkeypatch.setattr(conditions, "score_interventions", spy)
    enc = _prefixed_task("first_token", lm.config.vocab_size)
    for share in (True, False):
        with pytest.raises(StopIteration):
            conditions.measure_sets(lm, enc, {}, EvaluateConfig(share_prefix=share))
    assert seen == [True, False]
