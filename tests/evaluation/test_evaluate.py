"""Held-out scoring under interventions against a plain full-prompt forward, and the metrics
against hand computations."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neuronjax.evaluation import EvaluateConfig, accuracy_stats, difference_stats, evaluate_sets, per_item, score_interventions
from neuronjax.intervention import Intervention
from neuronjax.io.neurons import NeuronSet
from neuronjax.lm import forward
from neuronjax.tasks.scoring import candidate_log_probs
from tests.methods import planted


@pytest.fixture(scope="module")
def lm():
    return planted.model()


def _interventions(lm, rng):
    c = lm.config
    shape = (c.num_layers, c.intermediate_size)
    out = [Intervention.identity(*shape)]
    for all_positions in (False, True, False):
        scale = np.where(rng.random(shape) < 0.2, rng.choice([0.0, 2.0], shape), 1.0).astype(np.float32)
        shift = np.where(rng.random(shape) < 0.05, 0.7, 0.0).astype(np.float32)
        out.append(Intervention(jnp.asarray(scale), jnp.asarray(shift), "all" if all_positions else "last"))
    return out


def _reference(lm, batch, iv, kind):
    """The whole prompt run at once under the intervention (its policy picks the positions), then,
    for whole-text scores, each option's text run unedited after the prompt's cache and scored by
    its summed log-probabilities (no prefix cache, no one-token step, no vmap over interventions)."""
    ids, mask = jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"])
    if kind == "first_token":
        logits = forward(lm.state, ids, mask, iv, graphdef=lm.graphdef).logits
        return np.asarray(candidate_log_probs(logits[:, -1], jnp.asarray(batch["option_tokens"])))
    cont = np.asarray(batch["continuation"])
    out = forward(lm.state, ids, mask, iv, graphdef=lm.graphdef, return_cache=True)
    log_probs = np.asarray(jax.nn.log_softmax(out.logits[:, -1], axis=-1))
    scores = np.zeros(cont.shape[:2], np.float32)
    for o in range(cont.shape[1]):
        present = cont[:, o] >= 0
        text = jnp.asarray(np.where(present, cont[:, o], 0))
        more = forward(lm.state, text, jnp.asarray(present.astype(np.int32)), None, out.cache, graphdef=lm.graphdef).logits
        lp = np.concatenate([log_probs[:, None], np.asarray(jax.nn.log_softmax(more, axis=-1))[:, :-1]], axis=1)
        token_lp = np.take_along_axis(lp, np.asarray(text)[..., None], axis=-1)[..., 0]
        scores[:, o] = np.where(present, token_lp, 0.0).sum(axis=1)
        if kind == "whole_mean":
            scores[:, o] /= np.maximum(present.sum(axis=1), 1)
    return scores


def _with_continuations(enc, rng):
    records = []
    for r in enc.records:
        cont = np.full((4, 3), -1, np.int32)
        for o in range(4):
            n = int(rng.integers(1, 4))
            cont[o, 0] = r.option_tokens[o, 0]
            cont[o, 1:n] = rng.integers(30, planted.VOCAB, n - 1)
        records.append(dataclasses.replace(r, continuation=cont))
    prompt = dataclasses.replace(enc.config.prompt, option_score="whole")
    return dataclasses.replace(enc, records=tuple(records), config=dataclasses.replace(enc.config, prompt=prompt))


@pytest.mark.parametrize("kind", ["first_token", "whole"])
def test_scores_equal_a_full_rerun_per_intervention(lm, kind):
    rng = np.random.default_rng(0)
    enc = planted.task(num_items=5, batch_size=4)
    if kind == "whole":
        enc = _with_continuations(enc, rng)
    ivs = _interventions(lm, rng)
    got = score_interventions(lm, enc, ivs)
    assert got.scores.shape == (len(ivs), 15, 4)
    row = 0
    for batch in enc.batches(process_index=0, process_count=1):
        valid = batch["valid"]
        n = int(valid.sum())
        for v, iv in enumerate(ivs):
            want = _reference(lm, batch, iv, kind)[valid]
            np.testing.assert_allclose(got.scores[v, row : row + n], want, atol=2e-4, rtol=1e-4)
        row += n
    # The edits matter: otherwise the comparison above shows nothing.
    assert np.abs(got.scores[1] - got.scores[0]).max() > 1e-2
    assert np.abs(got.scores[2] - got.scores[1]).max() > 1e-3


def test_interventions_spread_evenly_over_the_fewest_calls(lm):
    from neuronjax.evaluation.scoring import _groups

    c = lm.config
    identity = Intervention.identity(c.num_layers, c.intermediate_size)
    shape = (c.num_layers, c.intermediate_size)
    ivs = [Intervention(jnp.full(shape, 1.0 + k, jnp.float32), jnp.zeros(shape, jnp.float32), "all" if k % 5 == 4 else "last")
           for k in range(137)]  # fmt: skip
    calls = _groups(ivs, 32, identity)
    last = [idx for policy, idx, _ in calls if policy == "last"]
    every = [idx for policy, idx, _ in calls if policy == "all"]
    # 110 last-position interventions: 4 calls of 28 (2 padding slots, where 32-wide calls need 18)
    assert [len(i) for i in last] == [28, 28, 28, 26]
    assert [len(i) for i in every] == [27]  # 27 all-position ones: one call, no padding
    assert sorted(np.concatenate(last + every).tolist()) == list(range(137))
    for policy, idx, stacked in calls:
        assert stacked.scale.shape[0] == (28 if policy == "last" else 27)
        assert stacked.positions == policy
        np.testing.assert_array_equal(np.asarray(stacked.scale[: len(idx), 0, 0]), 1.0 + idx)
        np.testing.assert_array_equal(np.asarray(stacked.scale[len(idx) :]), 1.0)  # identities pad the last call


def test_calls_of_several_interventions_score_like_one_at_a_time(lm, monkeypatch):
    from neuronjax.evaluation import scoring

    rng = np.random.default_rng(1)
    enc = planted.task(num_items=3, batch_size=4)
    ivs = _interventions(lm, rng) + _interventions(lm, rng)[1:]  # 7: 5 last-position, 2 all-position
    monkeypatch.setattr(scoring, "most_per_call", lambda: 3)  # last: 2 calls of 3 (one padding slot); all: one of 2
    got = score_interventions(lm, enc, ivs)
    for v, iv in enumerate(ivs):
        alone = score_interventions(lm, enc, [iv])
        # measured: identical with unpadded prompt caches; with the caches padded to 64 slots (the
        # default `pipeline.cache_multiple`) at most 3.8e-6 apart, 1.4e-7 of the largest score (the
        # attention over the padded cache sums in another order for another number of rows)
        scale = float(np.abs(alone.scores).max())
        assert float(np.abs(got.scores[v] - alone.scores[0]).max()) <= 5e-7 * scale
    assert np.abs(got.scores[1] - got.scores[0]).max() > 1e-2


def test_calls_hold_more_interventions_on_cpu_only():
    from neuronjax.evaluation import scoring

    assert scoring.most_per_call("cpu") > scoring.GROUP
    assert scoring.most_per_call("tpu") == scoring.most_per_call("gpu") == scoring.most_per_call("cuda") == scoring.GROUP
    assert scoring.most_per_call() == scoring.most_per_call("cpu")  # these tests run on the CPU


def test_captured_activations_equal_a_full_unedited_forward(lm):
    """score_interventions(capture=...) reads the neurons' activations from its prompt caches; the
    reference runs every whole prompt with the activations captured at the last position. Only
    all-position interventions are scored, so the cache is built for the capture alone. (The
    planted prompts share no prefix; tests/test_cards.py checks the shared-prefix path against
    the PyTorch model.) Measured: 9.5e-6 at most, on activations up to 32."""
    rng = np.random.default_rng(2)
    enc = planted.task(num_items=4, batch_size=4)
    neurons = [(0, 1), (1, 7), (lm.config.num_layers - 1, 3), (0, 1)]
    ivs = [iv for iv in _interventions(lm, rng) if iv.positions == "all"]
    got = score_interventions(lm, enc, ivs, capture=neurons)
    assert got.activations.shape == (got.gold.shape[0], len(neurons))
    row = 0
    for batch in enc.batches(process_index=0, process_count=1):
        valid = batch["valid"]
        n = int(valid.sum())
        out = forward(lm.state, jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"]), None,
                      graphdef=lm.graphdef, capture=True, logits_at="last")  # fmt: skip
        want = np.asarray(out.activations)[valid][:, [layer for layer, _ in neurons], [i for _, i in neurons]]
        np.testing.assert_allclose(got.activations[row : row + n], want, rtol=2e-6, atol=2e-5)
        row += n
    assert np.abs(got.activations).max() > 0.1  # neurons that fire: the comparison shows something
    assert score_interventions(lm, enc, ivs).activations is None


def test_accuracy_and_consistency_by_hand():
    # 3 items; proxies per item 2, 2, 1. Item 0: both right; item 1: one right; item 2: wrong.
    correct = np.array([True, True, True, False, False])
    items = np.array([0, 0, 1, 1, 2])
    right, total = per_item(correct, items, 3)
    np.testing.assert_array_equal(right, [2, 1, 0])
    np.testing.assert_array_equal(total, [2, 2, 1])
    resamples = np.array([[0, 1, 2], [0, 0, 0], [2, 2, 1]])
    s = accuracy_stats(right, total, resamples)
    assert s["accuracy"].value == pytest.approx(3 / 5)
    assert s["consistent"].value == pytest.approx(1 / 3)
    # resample accuracies: 3/5, 6/6, 1/4 -> percentiles of those
    assert s["accuracy"].low == pytest.approx(np.percentile([0.6, 1.0, 0.25], 2.5))
    assert s["accuracy"].high == pytest.approx(np.percentile([0.6, 1.0, 0.25], 97.5))
    d = difference_stats(right, right, total, resamples)
    assert d["accuracy"].value == 0 and d["accuracy"].low == 0 and d["accuracy"].high == 0
    # Pooled seeds: item 1 right under one seed of two -> half an item consistent.
    two = np.stack([right, np.array([2, 2, 0])])
    pooled = accuracy_stats(two, total, resamples[:1])
    assert pooled["accuracy"].value == pytest.approx(7 / 10)
    assert pooled["consistent"].value == pytest.approx((1 + 0.5 + 0) / 3)


def test_evaluate_sets_rows_controls_and_curve(lm):
    enc = planted.task(num_items=8, batch_size=4)
    good, bad = planted.mask(planted.GOOD), planted.mask(planted.BAD)
    scores = good.astype(np.float32) * 2 - bad.astype(np.float32) + 0.01 * np.arange(96).reshape(2, 48) / 96
    ns = NeuronSet(scores, good, bad, {"method": {"name": "neuronllm", "k": 2}})
    cfg = EvaluateConfig(random_seeds=2, bootstrap=200, k_values=(1, 2))
    ev = evaluate_sets(lm, enc, {"neuronllm": ns}, cfg).to_json()
    rows = {(r["method"], r["mode"], r["control"]): r for r in ev["rows"]}
    none = rows[("none", "none", False)]["accuracy"]["value"]
    sup_good = rows[("neuronllm", "suppress_good", False)]
    sup_bad = rows[("neuronllm", "suppress_bad", False)]
    # Removing the planted helpers hurts, removing the planted distractor-pushers helps.
    assert sup_good["accuracy"]["value"] < none
    assert sup_bad["accuracy"]["value"] >= none
    assert sup_good["vs_random"]["accuracy"]["value"] < 0
    assert (sup_good["good"], sup_good["bad"]) == (2, 2)
    ctrl = rows[("neuronllm", "suppress_good", True)]
    assert ctrl["accuracy"]["low"] <= ctrl["accuracy"]["value"] <= ctrl["accuracy"]["high"]
    ks = sorted({r["k"] for r in ev["curve"]})
    assert ks == [1, 2] and len(ev["curve"]) == 2 * 2 * 2
    assert ev["items"] == 8 and ev["proxies"] == 24


def test_compare_pairs_two_methods_over_the_same_items(lm):
    """evaluate.compare: a minus b per mode, point = the rows' accuracy difference, interval from the
    same resamples (so a set compared with a copy of itself differs by exactly 0)."""
    enc = planted.task(num_items=8, batch_size=4)
    good, bad = planted.mask(planted.GOOD), planted.mask(planted.BAD)
    planted_set = NeuronSet(good.astype(np.float32) - bad, good, bad, {"method": {"name": "neuronllm", "k": 2}})
    other_good = np.zeros_like(good)
    other_good[0, :2] = True  # two neurons of the first layer that do nothing planted
    weak = NeuronSet(other_good.astype(np.float32), other_good, np.zeros_like(bad), {"method": {"name": "kn_ig", "k": 2}})
    twin = NeuronSet(planted_set.scores, good, bad, {"method": {"name": "neuronllm", "k": 2}})
    cfg = EvaluateConfig(modes=("suppress_good", "suppress_bad"), random_seeds=1, bootstrap=200,
                         compare=(("planted", "weak"), ("planted", "twin")))  # fmt: skip
    evaluation = evaluate_sets(lm, enc, {"planted": planted_set, "weak": weak, "twin": twin}, cfg)
    ev = evaluation.to_json()
    acc = {(r["method"], r["mode"]): r["accuracy"]["value"] for r in ev["rows"] if not r["control"]}
    pairs = {(p["a"], p["b"], p["mode"]): p for p in ev["compare"]}
    assert len(pairs) == 4
    for mode in ("suppress_good", "suppress_bad"):
        d = pairs[("planted", "weak", mode)]["difference"]["accuracy"]
        assert d["value"] == pytest.approx(acc[("planted", mode)] - acc[("weak", mode)])
        assert d["low"] <= d["value"] <= d["high"]
        same = pairs[("planted", "twin", mode)]["difference"]["accuracy"]
        # identical sets: every resampled difference is 0, so p = 2 min(1, 1) capped at 1
        assert same == {"value": 0.0, "low": 0.0, "high": 0.0, "p": 1.0, "p_adjusted": 1.0, "corrected": "n.s."}
    assert pairs[("planted", "weak", "suppress_good")]["difference"]["accuracy"]["value"] < 0
    from neuronjax.report import compare_table

    table = compare_table(evaluation).splitlines()
    assert len(table) == 2 + 4 and table[2].startswith("| planted - weak | suppress_good | 2 / 2 | ")
    assert table[4].startswith("| planted - twin | suppress_good | 2 / 2 | +0.000 [+0.000, +0.000] |")


@pytest.mark.parametrize(
    "compare,message",
    [((("a",),), r"compare\[0\] = \['a'\]: expected two different"), ((("a", "a"),), "two different")],
)
def test_compare_config_errors(compare, message):
    with pytest.raises(ValueError, match=message):
        EvaluateConfig(compare=compare)


def test_compare_names_an_unknown_method(lm):
    ns = NeuronSet(np.zeros((2, 48), np.float32), np.zeros((2, 48), bool), np.zeros((2, 48), bool), {})
    with pytest.raises(ValueError, match=r"evaluate.compare\[0\]: \['learned'\] not among the evaluated sets"):
        evaluate_sets(lm, planted.task(num_items=4), {"neuronllm": ns}, EvaluateConfig(compare=(("learned", "neuronllm"),)))
