import numpy as np

from neuronjax.tasks.metrics import accuracy, letter_histogram, permutation_consistent_accuracy, proxy_correct, target_f

SCORES = np.array(
    [
        [2.0, 0.0, 0.0, 0.0],  # item 0 proxy 0, gold A: right
        [0.0, 3.0, 1.0, 0.0],  # item 0 proxy 1, gold B: right
        [1.0, 1.0, 0.0, 0.0],  # item 1 proxy 0, gold A: tie with B -> wrong
        [0.0, 0.0, 0.0, 5.0],  # item 1 proxy 1, gold C: wrong (D)
        [0.0, 0.0, 4.0, 0.0],  # item 2 proxy 0, gold C: right
        [9.0, 9.0, 9.0, 9.0],  # filler row (valid False)
    ],
    np.float32,
)
GOLD = np.array([0, 1, 0, 2, 2, 0])
ITEM = np.array([0, 0, 1, 1, 2, 0])
VALID = np.array([True, True, True, True, True, False])


def test_target_f_by_hand():
    f = np.asarray(target_f(SCORES, GOLD))
    # row 0: 2 - log(e^2 + 3)
    np.testing.assert_allclose(f[0], 2.0 - np.log(np.exp(2.0) + 3.0), rtol=1e-6)
    # row 3: 0 - log(3 + e^5)
    np.testing.assert_allclose(f[3], -np.log(3.0 + np.exp(5.0)), rtol=1e-6)
    np.testing.assert_allclose(f[5], np.log(0.25), rtol=1e-6)


def test_target_f_ignores_a_shared_shift():
    np.testing.assert_allclose(target_f(SCORES + 7.5, GOLD), target_f(SCORES, GOLD), rtol=1e-5)


def test_proxy_correct_and_accuracy():
    assert np.asarray(proxy_correct(SCORES, GOLD)).tolist() == [True, True, False, False, True, False]
    np.testing.assert_allclose(accuracy(SCORES, GOLD, VALID), 3 / 5)
    np.testing.assert_allclose(accuracy(SCORES, GOLD), 3 / 6)


def test_permutation_consistent_accuracy():
    # item 0: both right; item 1: both wrong; item 2: its one proxy right -> 2 of 3 items
    np.testing.assert_allclose(permutation_consistent_accuracy(SCORES, GOLD, ITEM, 4, VALID), 2 / 3)
    # item 3 has no proxy and is not counted; without the valid mask the filler (wrong) spoils item 0
    np.testing.assert_allclose(permutation_consistent_accuracy(SCORES, GOLD, ITEM, 4), 1 / 3)


def test_letter_histogram():
    # argmax: A, B, A (tie -> first), D, C; the filler row is left out
    assert np.asarray(letter_histogram(SCORES, VALID)).tolist() == [2, 1, 1, 1]
