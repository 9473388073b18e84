"""Baselines on hand-computed cases and against plain-numpy loop references."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from neuronjax.methods.base import ItemBlock, run_method
from neuronjax.masks import random_like
from neuronjax.methods.baselines import LAPE, QRNCA, KnowledgeNeurons, MeanActivation
from neuronjax.methods.control import Random


def _block(x=None, correct=None, valid=None, field="attr_prob"):
    """ItemBlock from x [item, proxy, layers, mlp] put in `field` (both per-neuron fields when
    field is None), correct [item, proxy] (all True by default), valid [item] (all True)."""
    x = np.asarray(x, np.float32)
    n, p = x.shape[:2]
    correct = np.ones((n, p), bool) if correct is None else np.asarray(correct, bool)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    arrays = {f: jnp.asarray(x) for f in (("attr_prob", "activations") if field is None else (field,))}
    return ItemBlock(valid=jnp.asarray(valid), correct=jnp.asarray(correct), **arrays)


def _run(method, x, correct=None, field="attr_prob"):
    x = np.asarray(x, np.float32)
    return run_method(method, [_block(x, correct, field=field)], x.shape[2], x.shape[3])


def _padded_blocks(x, correct, splits, size, rng):
    """The items of x cut at `splits`, each piece padded to `size` items with garbage rows (valid
    False) that would change any state that looked at them."""
    blocks = []
    for lo, hi in zip([0, *splits], [*splits, len(x)]):
        pad = size - (hi - lo)
        garbage = rng.normal(size=(pad,) + x.shape[1:]).astype(np.float32) * 100
        garbage[:, :, 0, 0] = 1e6
        bits = rng.random((pad,) + correct.shape[1:]) < 0.5
        blocks.append(_block(np.concatenate([x[lo:hi], garbage]), np.concatenate([correct[lo:hi], bits]),
                             valid=np.arange(size) < hi - lo, field=None))  # fmt: skip
    return blocks


def _methods():
    return [MeanActivation(k=3), KnowledgeNeurons(k=3), QRNCA(k=3, common_fraction=1.0), LAPE(k=3, min_probability=0.0),
            Random(k=3, seed=1, good_per_layer=(1, 2), bad_per_layer=(2, 0))]  # fmt: skip


@pytest.mark.parametrize("method", _methods(), ids=lambda m: m.name)
def test_streaming_with_padding_equals_one_block(method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3, 2, 5)).astype(np.float32)
    correct = rng.random((5, 3)) < 0.5
    one = run_method(method, [_block(x, correct, field=None)], 2, 5)
    streamed = run_method(method, _padded_blocks(x, correct, [2], 4, rng), 2, 5)
    np.testing.assert_allclose(streamed.scores, one.scores, rtol=1e-6, atol=1e-6)
    assert (streamed.good == one.good).all() and (streamed.bad == one.bad).all()
    # invalid rows alone change nothing either: one block, all items, plus garbage padding
    padded = run_method(method, _padded_blocks(x, correct, [], 8, rng), 2, 5)
    np.testing.assert_allclose(padded.scores, one.scores, rtol=1e-6, atol=1e-6)
    if method.name != "random":  # the control ignores the data by design
        assert np.abs(one.scores).sum() > 0 and one.good.any()


def test_streaming_check_is_sensitive_to_padding():
    """The garbage rows of `_padded_blocks` do move a state when marked valid."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 2, 5)).astype(np.float32)
    blocks = _padded_blocks(x, np.ones((2, 3), bool), [], 3, rng)
    as_valid = [ItemBlock(valid=jnp.ones(3, bool), correct=b.correct, attr_prob=b.attr_prob, activations=b.activations)
                for b in blocks]  # fmt: skip
    m = MeanActivation(k=3)
    assert not np.allclose(run_method(m, blocks, 2, 5).scores, run_method(m, as_valid, 2, 5).scores)


# ---- mean activation --------------------------------------------------------------------


def test_mean_activation_hand_case():
    h = np.zeros((2, 2, 1, 4), np.float32)
    h[0, :, 0] = [[1.0, -2.0, 0.0, 4.0], [3.0, -2.0, 0.0, -4.0]]
    h[1, :, 0] = [[2.0, 0.0, 0.5, 0.0], [2.0, -4.0, -0.1, 0.0]]
    res = _run(MeanActivation(k=2), h, field="activations")
    np.testing.assert_allclose(res.scores[0], [2.0, -2.0, 0.1, 0.0], rtol=1e-6)
    assert res.good[0].tolist() == [True, False, True, False]
    assert res.bad[0].tolist() == [False, True, False, False]  # only one negative
    assert res.meta["method"] == {"name": "mean_activation", "k": 2}


def test_mean_activation_matches_numpy():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(3, 3, 2, 5)).astype(np.float32)
    res = _run(MeanActivation(k=4), h, field="activations")
    ref = h.reshape(-1, 2, 5).mean(axis=0)
    np.testing.assert_allclose(res.scores, ref, rtol=1e-5, atol=1e-6)
    order = np.argsort(-ref.reshape(-1), kind="stable")[:4]
    assert set(np.flatnonzero(res.good)) == {i for i in order if ref.reshape(-1)[i] > 0}


# ---- knowledge neurons ------------------------------------------------------------------


def _kn_reference(attr, threshold, min_fraction):
    """Dai et al. by the letter: loop over prompts, then rank by (fraction, summed attribution)."""
    prompts = attr.reshape(-1, attr.shape[2] * attr.shape[3])
    count = np.zeros(prompts.shape[1])
    total = np.zeros(prompts.shape[1])
    for a in prompts:
        top = a.max()
        if top <= 0:
            continue
        for w, v in enumerate(a):
            if v >= threshold * top:
                count[w] += 1
                total[w] += v
    kept = (count > 0) & (count / len(prompts) >= min_fraction)
    return count, total, kept


def test_kn_hand_case():
    attr = np.zeros((1, 3, 1, 5), np.float32)
    attr[0, 0, 0] = [1.0, 0.3, 0.1, -2.0, 0.5]  # max 1.0 -> threshold 0.2: neurons 0, 1, 4
    attr[0, 1, 0] = [0.2, 4.0, 1.0, 0.0, 0.5]  # max 4.0 -> threshold 0.8: neurons 1, 2
    attr[0, 2, 0] = [-1.0, -1.0, -1.0, -1.0, -1.0]  # no positive attribution: selects nothing
    res = _run(KnowledgeNeurons(k=3), attr)
    # counts [1, 2, 1, 0, 1], summed attribution [1.0, 4.3, 1.0, 0, 0.5] over 3 prompts
    expected = (np.array([1, 2, 1, 0, 1]) + 0.5 * np.array([1.0, 4.3, 1.0, 0.0, 0.5]) / 4.3) / 3
    np.testing.assert_allclose(res.scores[0], expected, rtol=1e-6)
    # ranking: neuron 1 (2 prompts), then 0 and 2 (1 prompt, sum 1.0: tie -> lower index), then 4
    assert res.good[0].tolist() == [True, True, True, False, False]
    assert _run(KnowledgeNeurons(k=2), attr).good[0].tolist() == [True, True, False, False, False]
    assert not res.bad.any()  # negative attributions never make a bad set
    only_shared = _run(KnowledgeNeurons(k=3, min_fraction=0.5), attr)
    np.testing.assert_allclose(only_shared.scores[0], [0, expected[1], 0, 0, 0], rtol=1e-6)
    # threshold 1: each prompt selects its maximum only (neuron 0, then neuron 1)
    np.testing.assert_allclose(_run(KnowledgeNeurons(k=3, threshold=1.0), attr).scores[0],
                               [(1 + 0.5 * 1 / 4) / 3, (1 + 0.5) / 3, 0, 0, 0], rtol=1e-6)  # fmt: skip


def test_kn_threshold_is_relative_to_the_max_over_all_layers():
    attr = np.zeros((1, 1, 2, 2), np.float32)
    attr[0, 0] = [[1.0, 0.5], [10.0, 0.0]]  # layer 0's max is 1, but the prompt's is 10
    res = _run(KnowledgeNeurons(k=2, threshold=0.2), attr)
    assert res.good.tolist() == [[False, False], [True, False]]


def test_kn_matches_loop_reference_and_bad_is_empty():
    rng = np.random.default_rng(2)
    attr = rng.normal(size=(3, 3, 2, 5)).astype(np.float32)
    for threshold, min_fraction in [(0.2, 0.0), (0.5, 0.2), (0.1, 0.5)]:
        res = _run(KnowledgeNeurons(k=4, threshold=threshold, min_fraction=min_fraction), attr)
        count, total, kept = _kn_reference(attr, threshold, min_fraction)
        flat = res.scores.reshape(-1)
        assert ((flat > 0) == kept).all()
        np.testing.assert_allclose(np.floor(flat * 9 + 1e-4)[kept], count[kept])  # integer part = count
        ranked = sorted(np.flatnonzero(kept), key=lambda w: (-count[w], -total[w], w))[:4]
        assert set(np.flatnonzero(res.good)) == set(ranked)
        assert not res.bad.any()


# ---- QRNCA ------------------------------------------------------------------------------


def _qrnca_attr():
    a = np.zeros((3, 2, 1, 4), np.float32)
    a[0, 0, 0], a[0, 1, 0] = [1.0, 0.5, 0.0, 0.2], [2.0, 0.0, 1.0, 0.0]  # C_0 = {0, 1, 2}
    a[1, 0, 0], a[1, 1, 0] = [0.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 1.0]  # C_1 = {1, 3}
    a[2, 0, 0], a[2, 1, 0] = [0.0, 0.0, 0.0, 3.0], [-1.0, -1.0, -1.0, -1.0]  # C_2 = {3}
    return a


def test_qrnca_hand_case_icf_ordering():
    a = _qrnca_attr()
    # s_0 = [1, .25, .25, .1], s_1 = [0, 1, 0, .25], s_2 = [0, 0, 0, .5]; n = [1, 2, 1, 2], N = 3
    icf1, icf2 = 1 + math.log(3 / 2), 1 + math.log(3 / 3)
    expected = [1.0 * icf1 / 3, 1.25 * icf2 / 3, 0.25 * icf1 / 3, 0.75 * icf2 / 3]
    res = _run(QRNCA(k=2, common_fraction=1.0), a)
    np.testing.assert_allclose(res.scores[0], expected, rtol=1e-6)
    # neuron 1 has the larger summed s (1.25 > 1.0) but sits in two clusters: icf ranks 0 first
    assert res.scores[0, 0] > res.scores[0, 1]
    assert res.good[0].tolist() == [True, True, False, False]
    assert not res.bad.any()


def test_qrnca_common_neuron_removal():
    a = _qrnca_attr()
    res = _run(QRNCA(k=4), a)  # common_fraction 0.5: n/N = 2/3 > 0.5 removes neurons 1 and 3
    icf1 = 1 + math.log(3 / 2)
    np.testing.assert_allclose(res.scores[0], [icf1 / 3, 0, 0.25 * icf1 / 3, 0], rtol=1e-6)
    assert res.good[0].tolist() == [True, False, True, False]
    # exactly at the fraction is kept: 2/3 is not more than 2/3
    kept = _run(QRNCA(k=4, common_fraction=2 / 3), a)
    assert (kept.scores[0] > 0).all()


def test_qrnca_prompt_fraction_and_threshold():
    a = _qrnca_attr()
    # every proxy must pass: C_0 = {0}, C_1 = {1}, C_2 = {} -> n = [1, 1, 0, 0]
    res = _run(QRNCA(k=4, prompt_fraction=1.0, common_fraction=1.0), a)
    icf1 = 1 + math.log(3 / 2)
    np.testing.assert_allclose(res.scores[0], [icf1 / 3, icf1 / 3, 0, 0], rtol=1e-6)
    # threshold 0.6: item 0 keeps {0}, item 1 keeps {1}, item 2 keeps {3}
    res = _run(QRNCA(k=4, threshold=0.6, common_fraction=1.0), a)
    np.testing.assert_allclose(res.scores[0], [icf1 / 3, icf1 / 3, 0, 0.5 * icf1 / 3], rtol=1e-6)


def _qrnca_reference(attr, threshold, prompt_fraction, common_fraction):
    n_items, n_proxies = attr.shape[:2]
    flat = attr.reshape(n_items, n_proxies, -1).astype(np.float64)
    n = np.zeros(flat.shape[2])
    total = np.zeros(flat.shape[2])
    for item in flat:
        norm = np.zeros_like(item)
        for p, a in enumerate(item):
            if a.max() > 0:
                norm[p] = np.maximum(a, 0) / a.max()
        passes = (norm >= threshold).sum(axis=0)
        cluster = (passes >= max(1, math.ceil(prompt_fraction * n_proxies))) & (passes > 0)
        n += cluster
        total += np.where(cluster, norm.mean(axis=0), 0)
    icf = 1 + np.log(n_items / (1 + n))
    score = np.where((n > 0) & (n <= common_fraction * n_items), total * icf / n_items, 0)
    return score.reshape(attr.shape[2:])


def test_qrnca_matches_loop_reference():
    rng = np.random.default_rng(3)
    attr = rng.normal(size=(6, 3, 2, 5)).astype(np.float32)
    cases = [(0.3, 0.5, 0.5), (0.3, 0.5, 0.3), (0.4, 0.0, 0.5), (0.1, 1.0, 1.0)]
    for threshold, prompt_fraction, common_fraction in cases:
        res = _run(QRNCA(k=4, threshold=threshold, prompt_fraction=prompt_fraction, common_fraction=common_fraction),
                   attr)  # fmt: skip
        ref = _qrnca_reference(attr, threshold, prompt_fraction, common_fraction)
        np.testing.assert_allclose(res.scores, ref, rtol=1e-5, atol=1e-7)
        assert (ref > 0).any()


# ---- LAPE -------------------------------------------------------------------------------


def _lape_case():
    # correct [[T, F], [T, F]]: right prompts = proxy 0 of both items, wrong = proxy 1
    h = np.zeros((2, 2, 1, 5), np.float32)
    #                  n0    n1    n2    n3    n4
    h[0, 0, 0] = [1.0, -1.0, 1.0, 1.0, 1.0]  # right
    h[1, 0, 0] = [2.0, -1.0, 3.0, -1.0, -1.0]  # right
    h[0, 1, 0] = [-1.0, 1.0, 1.0, -1.0, 1.0]  # wrong
    h[1, 1, 0] = [0.0, 2.0, -1.0, -1.0, -2.0]  # wrong (0 is not active)
    return h, np.array([[True, False], [True, False]])


def test_lape_hand_case_sign_and_entropy():
    h, correct = _lape_case()
    res = _run(LAPE(k=2), h, correct, field="activations")
    # p_right = [1, 0, 1, .5, .5], p_wrong = [0, 1, .5, 0, .5]
    q = np.array([2 / 3, 1 / 3])
    spec2 = 1 + (q * np.log(q)).sum() / math.log(2)
    np.testing.assert_allclose(res.scores[0], [1.0, -1.0, spec2, 1.0, 0.0], rtol=1e-6, atol=1e-7)
    assert res.good[0].tolist() == [True, False, False, True, False]  # tie at 1.0 -> lower index first
    assert res.bad[0].tolist() == [False, True, False, False, False]
    # swapping the groups flips every sign
    swapped = _run(LAPE(k=2), h, ~correct, field="activations")
    np.testing.assert_allclose(swapped.scores, -res.scores, atol=1e-7)


def test_lape_min_probability_and_empty_group():
    h, correct = _lape_case()
    strict = _run(LAPE(k=2, min_probability=0.6), h, correct, field="activations")
    # neuron 3 (max p = .5) is dropped, neuron 2 (max p = 1) stays
    assert strict.scores[0, 3] == 0 and strict.scores[0, 2] > 0 and strict.scores[0, 0] == 1.0
    everyone_right = _run(LAPE(k=2), h, np.ones((2, 2), bool), field="activations")
    assert not everyone_right.scores.any() and not everyone_right.good.any() and not everyone_right.bad.any()


def test_lape_matches_numpy():
    rng = np.random.default_rng(4)
    h = rng.normal(size=(4, 3, 2, 5)).astype(np.float32)
    correct = rng.random((4, 3)) < 0.5
    res = _run(LAPE(k=3, min_probability=0.3), h, correct, field="activations")
    active = h.reshape(12, 10) > 0
    right = correct.reshape(12)
    ref = np.zeros(10)
    for w in range(10):
        pr, pw = active[right, w].mean(), active[~right, w].mean()
        if max(pr, pw) < 0.3 or pr + pw == 0:
            continue
        ent = -sum(q * math.log(q) for q in (pr / (pr + pw), pw / (pr + pw)) if q > 0)
        ref[w] = (1 - ent / math.log(2)) * np.sign(pr - pw)
    np.testing.assert_allclose(res.scores.reshape(-1), ref, rtol=1e-5, atol=1e-7)
    assert (ref > 0).any() and (ref < 0).any()


# ---- random -----------------------------------------------------------------------------


def _reference_masks():
    good = np.zeros((3, 20), bool)
    bad = np.zeros((3, 20), bool)
    good[0, :4] = True
    good[2, 5:6] = True
    bad[1, :7] = True
    bad[2, 10:12] = True
    return good, bad


def test_random_matches_reference_counts_and_is_disjoint():
    ref_good, ref_bad = _reference_masks()
    method = Random.like(ref_good, ref_bad, seed=5)
    assert method.good_per_layer == (4, 0, 1) and method.bad_per_layer == (0, 7, 2) and method.k == 9
    block = _block(np.ones((1, 1, 3, 20)), field="activations")
    res = run_method(method, [block], 3, 20)
    assert res.good.sum(axis=1).tolist() == [4, 0, 1] and res.bad.sum(axis=1).tolist() == [0, 7, 2]
    assert not (res.good & res.bad).any()
    np.testing.assert_array_equal(res.scores, res.good.astype(np.float32) - res.bad.astype(np.float32))
    g, b = random_like(ref_good, ref_bad, seed=5)
    assert (g == res.good).all() and (b == res.bad).all()


def test_random_seeds():
    ref_good, ref_bad = _reference_masks()
    a = random_like(ref_good, ref_bad, seed=0)
    b = random_like(ref_good, ref_bad, seed=0)
    c = random_like(ref_good, ref_bad, seed=1)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert (a[0] != c[0]).any() or (a[1] != c[1]).any()


def test_random_is_uniform_within_a_layer():
    good = np.zeros((1, 10), bool)
    good[0, :3] = True
    bad = np.zeros((1, 10), bool)
    bad[0, 3:5] = True
    hits_good = sum(random_like(good, bad, seed=s)[0][0].astype(int) for s in range(400))
    hits_bad = sum(random_like(good, bad, seed=s)[1][0].astype(int) for s in range(400))
    # each neuron is good with probability 3/10 (120 of 400, sd ~9) and bad with 2/10 (80, sd ~8)
    assert np.abs(hits_good - 120).max() < 40 and np.abs(hits_bad - 80).max() < 40


@pytest.mark.parametrize("method, match", [
    (Random(k=1), r"random\.good_per_layer = \(\): expected 2 counts.*Random\.like"),
    (Random(k=1, good_per_layer=(1,), bad_per_layer=(0, 0)), r"random\.good_per_layer = \(1,\): expected 2"),
    (Random(k=1, good_per_layer=(1, 1), bad_per_layer=(0,)), r"random\.bad_per_layer = \(0,\): expected 2"),
    (Random(k=1, good_per_layer=(6, 0), bad_per_layer=(0, 0)), r"random\.good_per_layer\[0\] = 6: expected .* 0\.\.5"),
    (Random(k=1, good_per_layer=(0, -1), bad_per_layer=(0, 0)), r"random\.good_per_layer\[1\] = -1"),
    (Random(k=1, good_per_layer=(3, 0), bad_per_layer=(3, 0)), r"random\.good_per_layer\[0\] \+ bad_per_layer\[0\]"),
    (Random(k=1, seed=-1, good_per_layer=(1, 1), bad_per_layer=(0, 0)), r"random\.seed = -1"),
    (Random(k=0, good_per_layer=(1, 1), bad_per_layer=(0, 0)), r"random\.k = 0"),
    (MeanActivation(k=11), r"mean_activation\.k = 11: expected an integer in 1\.\.10"),
    (KnowledgeNeurons(k=0), r"kn_ig\.k = 0"),
    (KnowledgeNeurons(threshold=0.0, k=1), r"kn_ig\.threshold = 0\.0: expected a number in \(0, 1\]"),
    (KnowledgeNeurons(threshold=1.5, k=1), r"kn_ig\.threshold = 1\.5"),
    (KnowledgeNeurons(min_fraction=-0.1, k=1), r"kn_ig\.min_fraction = -0\.1: expected a number in \[0, 1\]"),
    (QRNCA(threshold=float("nan"), k=1), r"qrnca\.threshold = nan"),
    (QRNCA(prompt_fraction=1.1, k=1), r"qrnca\.prompt_fraction = 1\.1"),
    (QRNCA(common_fraction=-1, k=1), r"qrnca\.common_fraction = -1"),
    (LAPE(min_probability=2.0, k=1), r"lape\.min_probability = 2\.0"),
    (LAPE(k=True), r"lape\.k = True"),
])  # fmt: skip
def test_bad_hyperparameters_name_the_field(method, match):
    with pytest.raises(ValueError, match=match):
        method.init(2, 5)


def test_random_like_rejects_bad_references():
    with pytest.raises(ValueError, match="must both be"):
        Random.like(np.zeros((2, 5), bool), np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="must be bool"):
        Random.like(np.zeros((2, 5)), np.zeros((2, 5)))


def test_missing_or_misshaped_block_array_is_named():
    block = _block(np.ones((1, 2, 2, 5)), field="activations")
    with pytest.raises(ValueError, match="kn_ig needs block.attr_prob"):
        run_method(KnowledgeNeurons(k=1), [block], 2, 5)
    with pytest.raises(ValueError, match=r"lape: block.activations has shape \(1, 2, 2, 5\); expected .*3, 5"):
        run_method(LAPE(k=1), [block], 3, 5)
