"""CNI/ACE on hand-computed cases."""

import numpy as np
import pytest

from neuronjax.scoring import ace


def _attr(es_rows):
    """[items, proxies=2, layers=1, mlp] with the given example scores split over two proxies."""
    es = np.asarray(es_rows, np.float32)
    a = np.stack([es * 0.25, es * 0.75], axis=1)
    return a[:, :, None, :]


def test_hand_computed_example_with_ambiguous_neuron():
    # neurons:        0     1     2     3     4
    es = [[3.0, 1.0, -2.0, 0.5, -0.1],   # item 0: G = {0, 1}, B = {2, 4}
          [2.0, -4.0, 0.0, 1.0, -0.2],   # item 1: G = {0, 3}, B = {1, 4}
          [-1.0, 5.0, 0.0, 0.0, 0.0]]    # item 2: G = {1},    B = {0}   (only one of each sign)
    scores = np.asarray(ace.ace_scores(_attr(es), z=2))[0]
    # neuron 0: in G (items 0, 1) and in B (item 2) -> ambiguous -> 0
    # neuron 1: in G (0, 2) and in B (1) -> ambiguous -> 0
    # neuron 2: in B (0) only -> -2 / 3
    # neuron 3: in G (1) only (item 0: 0.5 is third largest positive) -> 1 / 3
    # neuron 4: in B (0, 1) -> (-0.1 - 0.2) / 3
    np.testing.assert_allclose(scores, [0.0, 0.0, -2 / 3, 1 / 3, -0.1], atol=1e-6)
    unmasked = np.asarray(ace.ace_scores(_attr(es), z=2, mask_ambiguous=False))[0]
    np.testing.assert_allclose(unmasked, [(3 + 2 - 1) / 3, (1 - 4 + 5) / 3, -2 / 3, 1 / 3, -0.1], atol=1e-6)


def test_ties_go_to_the_lower_index():
    es = [[1.0, 1.0, 1.0, -1.0, -1.0]]  # z = 2: G = {0, 1}, B = {3, 4}
    scores = np.asarray(ace.ace_scores(_attr(es), z=2))[0]
    np.testing.assert_allclose(scores, [1.0, 1.0, 0.0, -1.0, -1.0])
    good, bad = ace.select(ace.ace_scores(_attr(es), z=2), k=1)
    assert np.asarray(good)[0].tolist() == [True, False, False, False, False]
    assert np.asarray(bad)[0].tolist() == [False, False, False, True, False]


def test_streaming_equals_one_batch_and_ignores_invalid_rows():
    rng = np.random.default_rng(0)
    attr = rng.normal(size=(10, 3, 2, 7)).astype(np.float32)
    whole = ace.ace_scores(attr, z=3)
    state = ace.init_state(2, 7)
    for lo in range(0, 10, 4):
        part = attr[lo : lo + 4]
        pad = np.concatenate([part, np.zeros((4 - len(part),) + part.shape[1:], np.float32)])
        valid = np.arange(4) < len(part)
        state = ace.update(state, pad, 3, valid)
    assert int(state.items) == 10
    np.testing.assert_allclose(np.asarray(ace.finalize(state)), np.asarray(whole), atol=1e-6)


def test_select_respects_sign_and_k():
    scores = np.array([[0.5, -0.2, 0.0], [0.1, -0.9, 0.3]], np.float32)
    good, bad = ace.select(scores, k=4)
    assert np.asarray(good).tolist() == [[True, False, False], [True, False, True]]  # only 3 positive
    assert np.asarray(bad).tolist() == [[False, True, False], [False, True, False]]
    with pytest.raises(ValueError, match="k = 7: expected an integer in 1..6"):
        ace.select(scores, k=7)


def test_naive_reference_on_random_data():
    """Against a direct loop over items written from the definition."""
    rng = np.random.default_rng(1)
    attr = rng.normal(size=(6, 3, 2, 5)).astype(np.float32)
    z = 2
    es = attr.sum(axis=1).reshape(6, -1)
    in_g = np.zeros_like(es, bool)
    in_b = np.zeros_like(es, bool)
    for j in range(6):
        order = sorted(range(10), key=lambda i: (-es[j, i], i))
        in_g[j, [i for i in order[:z] if es[j, i] > 0]] = True
        order = sorted(range(10), key=lambda i: (es[j, i], i))
        in_b[j, [i for i in order[:z] if es[j, i] < 0]] = True
    want = (np.where(in_g | in_b, es, 0).sum(0) / 6)
    want[in_g.any(0) & in_b.any(0)] = 0
    np.testing.assert_allclose(np.asarray(ace.ace_scores(attr, z)).reshape(-1), want, atol=1e-6)


def test_a_nonfinite_example_score_never_takes_a_slot():
    """z = 2 per item: NaN, +inf and -inf rank as 0, so the two largest finite positives and the
    two smallest finite negatives fill G_j and B_j (lax.top_k alone would give NaN and +inf the
    top slots and -inf a bottom slot)."""
    # neurons:        0       1       2    3    4     5        6     7     8
    es = [[np.nan, np.inf, 3.0, 2.0, 1.0, -np.inf, -1.0, -2.0, -3.0],
          [2.0, 1.0, np.nan, -np.inf, np.inf, 0.5, -0.5, 0.0, -1.0]]  # fmt: skip
    # item 0: G = {2, 3}, B = {8, 7}; item 1: G = {0, 1}, B = {8, 6}
    good, bad = ace.item_sets(np.asarray(es, np.float32), z=2)
    members = [(np.flatnonzero(g).tolist(), np.flatnonzero(b).tolist()) for g, b in zip(*map(np.asarray, (good, bad)))]
    assert members == [([2, 3], [7, 8]), ([0, 1], [6, 8])]
    scores = np.asarray(ace.ace_scores(_attr(es), z=2))[0]
    assert np.isfinite(scores).all()
    # by hand over N = 2 items; neuron 8 is in B for both items: (-3 - 1) / 2
    np.testing.assert_allclose(scores, [1.0, 0.5, 1.5, 1.0, 0.0, 0.0, -0.25, -1.0, -2.0], atol=1e-6)
