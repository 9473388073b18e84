"""NaN and inf in attributions, activations and scores: counted and reported (a warning naming the
method, `meta["nonfinite_scores"]` and `meta["stats"]["nonfinite_inputs"]` in every sidecar),
never carried into a good or bad mask."""

import logging

import numpy as np
import pytest

import neuronjax.identify.driver as identify_module
from neuronjax.identify import AttributionConfig, identify
from neuronjax.io.neurons import load_neurons, save_neurons
from neuronjax.methods import MeanActivation, NeuronLLM, Random, top_k_masks
from neuronjax.methods.base import ItemBlock, run_method
from tests.methods import planted


def _block(field: str, values: np.ndarray) -> ItemBlock:
    items, proxies = values.shape[:2]
    return ItemBlock(valid=np.ones(items, bool), correct=np.ones((items, proxies), bool), **{field: values})


def test_top_k_masks_never_select_a_nonfinite_score():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 30)).astype(np.float32)
    planted_bad = {(0, 1): np.nan, (1, 2): np.inf, (2, 3): -np.inf, (3, 4): np.nan}
    for (layer, i), v in planted_bad.items():
        scores[layer, i] = v
    good, bad = top_k_masks(scores, k=scores.size)  # every finite positive and negative is taken
    finite = np.isfinite(scores)
    assert not (good | bad)[~finite].any()
    np.testing.assert_array_equal(good, finite & (np.nan_to_num(scores) > 0))
    np.testing.assert_array_equal(bad, finite & (np.nan_to_num(scores) < 0))


def test_nan_activation_is_counted_and_left_out(caplog):
    h = np.random.default_rng(1).normal(size=(3, 2, 2, 5)).astype(np.float32)
    h[1, 0, 0, 2] = np.nan  # one prompt's activation of neuron (0, 2)
    h[:, :, 1, 4] = 50.0  # the largest mean...
    h[2, 1, 1, 4] = np.inf  # ... made infinite by one prompt
    with caplog.at_level(logging.WARNING, logger="neuronjax.methods"):
        result = run_method(MeanActivation(k=3), [_block("activations", h)], 2, 5)
    assert np.isnan(result.scores[0, 2]) and np.isposinf(result.scores[1, 4])
    assert not result.good[0, 2] and not result.bad[0, 2] and not result.good[1, 4]
    finite = np.isfinite(result.scores)
    assert result.good.sum() == min(3, (result.scores[finite] > 0).sum())  # filled from the finite scores
    assert result.bad.sum() == min(3, (result.scores[finite] < 0).sum())
    assert result.meta["nonfinite_scores"] == 2
    assert caplog.messages == [
        "method 'mean_activation': 2 of 10 neuron scores are NaN or inf; those neurons are left out of the good and "
        "bad sets"
    ]


def test_ace_with_a_nan_or_inf_attribution():
    """A NaN or infinite example score never takes one of an item's z slots in G_j or B_j: the
    scores equal a direct loop over the items in which non-finite example scores are not eligible,
    so every score is finite and the z slots go to finite neurons."""
    attr = np.random.default_rng(2).normal(size=(4, 3, 2, 6)).astype(np.float32)
    attr[:, :, 0, 1] = np.nan
    attr[0, 0, 1, 3] = np.inf
    attr[2, 1, 0, 4] = -np.inf
    result = run_method(NeuronLLM(k=3, z=3), [_block("attr", attr)], 2, 6)
    es = attr.sum(axis=1).reshape(4, -1)
    in_g, in_b = np.zeros_like(es, bool), np.zeros_like(es, bool)
    for j in range(4):
        ok = [i for i in range(12) if np.isfinite(es[j, i])]
        in_g[j, [i for i in sorted(ok, key=lambda i: (-es[j, i], i))[:3] if es[j, i] > 0]] = True
        in_b[j, [i for i in sorted(ok, key=lambda i: (es[j, i], i))[:3] if es[j, i] < 0]] = True
    want = np.where(in_g | in_b, es, 0).sum(0) / 4
    want[in_g.any(0) & in_b.any(0)] = 0
    np.testing.assert_allclose(result.scores.reshape(-1), want, atol=1e-6)
    assert result.scores[0, 1] == 0.0 and np.isfinite(result.scores).all()
    assert (in_g.sum(1) == 3).all() and (in_b.sum(1) == 3).all()  # every slot went to a finite neuron
    assert result.meta["nonfinite_scores"] == 0


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """Identification on the planted model with one planted good neuron's attribution made NaN
    and one neuron's activation made NaN in every prompt."""
    original = identify_module.attribute_batch

    def attribute_batch(lm, batch, needs, attribution, *rest):
        rows = original(lm, batch, needs, attribution, *rest)
        if "attr" in rows:
            rows["attr"] = rows["attr"].copy()
            rows["attr"][:, 1, 5] = np.nan  # planted GOOD neuron (1, 5)
        if "activations" in rows:
            rows["activations"] = rows["activations"].copy()
            rows["activations"][:, 0, 7] = np.nan
        return rows

    mp = pytest.MonkeyPatch()
    mp.setattr(identify_module, "attribute_batch", attribute_batch)
    lm, task = planted.model(), planted.task(num_items=6, batch_size=6)
    methods = [NeuronLLM(k=2, z=4), MeanActivation(k=3), Random(k=2)]
    handler = _Collect()
    logging.getLogger("neuronjax").addHandler(handler)
    try:
        sets = identify(lm, task, methods, AttributionConfig("grad_x_act"), block_items=4)
    finally:
        logging.getLogger("neuronjax").removeHandler(handler)
        mp.undo()
    out = tmp_path_factory.mktemp("saved")
    for name, ns in sets.items():
        save_neurons(str(out / name), ns)
    return sets, handler.messages, out


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_identify_counts_nonfinite_inputs(poisoned):
    sets, messages, _ = poisoned
    prompts = 6 * 3
    assert sets["neuronllm"].meta["stats"]["nonfinite_inputs"] == 2 * prompts  # one attribution + one activation
    assert (f"identify planted: {2 * prompts} attribution / activation values were NaN or inf; each method's sidecar "
            "counts the scores that came out non-finite (meta['nonfinite_scores'])") in messages  # fmt: skip


def test_identify_masks_leave_the_nonfinite_neurons_out(poisoned):
    sets, messages, _ = poisoned
    ace, mean = sets["neuronllm"], sets["mean_activation"]
    assert not ace.good[1, 5] and ace.good[1, 17]  # the other planted good neuron is still found
    assert ace.scores[1, 5] == 0.0 and ace.meta["nonfinite_scores"] == 0
    assert np.isnan(mean.scores[0, 7]) and not (mean.good | mean.bad)[0, 7]
    assert mean.meta["nonfinite_scores"] == 1 and sets["random"].meta["nonfinite_scores"] == 0
    assert ("method 'mean_activation': 1 of 96 neuron scores are NaN or inf; those neurons are left out of the good "
            "and bad sets") in messages  # fmt: skip


def test_counts_survive_saving(poisoned):
    _, _, out = poisoned
    back = load_neurons(str(out / "mean_activation"))
    assert back.meta["nonfinite_scores"] == 1 and back.meta["stats"]["nonfinite_inputs"] == 36
    assert np.isnan(back.scores[0, 7]) and [0, 7] not in back.meta["good_neurons"] + back.meta["bad_neurons"]
