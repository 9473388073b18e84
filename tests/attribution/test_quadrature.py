"""IG quadrature rules: exact on the polynomials they should be exact on and on no higher degree
(the error there is the textbook one), the cached replay equals the naive full-prompt rerun under
every rule, and completeness improves from right Riemann to Gauss-Legendre at equal cost."""

import math

import numpy as np
import pytest

import neuronjax
from neuronjax import Intervention
from neuronjax.attribution import PromptBatch, attribute
from neuronjax.attribution.naive import naive_attribute
from neuronjax.attribution.quadrature import RULES, nodes
from tests import tiny_models


def _integrate(rule, m, degree):
    alpha, weight = nodes(rule, m)
    return float(np.sum(weight * alpha**degree))


# rule -> (node counts, the highest degree integrated exactly for m nodes)
EXACT = {"right_riemann": ((1, 3, 8), lambda m: 0), "trapezoid": ((2, 3, 8), lambda m: 1),
         "gauss_legendre": ((1, 2, 3, 4, 6), lambda m: 2 * m - 1)}  # fmt: skip


@pytest.mark.parametrize("rule", RULES)
def test_exact_up_to_the_rules_degree(rule):
    counts, top = EXACT[rule]
    for m in counts:
        alpha, weight = nodes(rule, m)
        assert alpha.shape == weight.shape == (m,)
        assert ((alpha >= 0) & (alpha <= 1)).all() and (weight > 0).all()
        assert abs(weight.sum() - 1) < 1e-14
        for d in range(top(m) + 1):
            assert abs(_integrate(rule, m, d) - 1 / (d + 1)) < 1e-14, (m, d)


def test_not_exact_one_degree_higher():
    """The error of the first inexact degree, against its closed form (integral minus rule)."""
    for m in (1, 3, 8):  # right Riemann on x: sum_k (k/m)/m = (m + 1) / (2m), over by 1/(2m)
        assert _integrate("right_riemann", m, 1) - 1 / 2 == pytest.approx(1 / (2 * m), rel=1e-12)
    for m in (2, 3, 8):  # trapezoid on x^2 with h = 1/(m-1): over by h^2 (f'(1) - f'(0)) / 12 = h^2 / 6
        assert _integrate("trapezoid", m, 2) - 1 / 3 == pytest.approx(1 / (6 * (m - 1) ** 2), rel=1e-12)
    for n in (1, 2, 3, 4, 6):  # Gauss-Legendre on x^(2n) over [0, 1]: under by (n!)^4 / ((2n + 1) ((2n)!)^2)
        want = math.factorial(n) ** 4 / ((2 * n + 1) * math.factorial(2 * n) ** 2)
        assert 1 / (2 * n + 1) - _integrate("gauss_legendre", n, 2 * n) == pytest.approx(want, rel=1e-9)
        assert want > 1e-9  # far above float64 rounding: the degree really is inexact


def test_hand_computed_nodes():
    a, w = nodes("gauss_legendre", 2)
    np.testing.assert_allclose(a, [0.5 - 0.5 / math.sqrt(3), 0.5 + 0.5 / math.sqrt(3)], rtol=1e-15)
    np.testing.assert_allclose(w, [0.5, 0.5], rtol=1e-15)
    a, w = nodes("trapezoid", 3)
    np.testing.assert_allclose(a, [0, 0.5, 1]), np.testing.assert_allclose(w, [0.25, 0.5, 0.25])
    a, w = nodes("right_riemann", 4)
    np.testing.assert_allclose(a, [0.25, 0.5, 0.75, 1]), np.testing.assert_allclose(w, [0.25] * 4)


def test_bad_rules_are_rejected():
    with pytest.raises(ValueError, match="rule 'simpson' unknown"):
        nodes("simpson", 4)
    with pytest.raises(ValueError, match="trapezoid needs m >= 2"):
        nodes("trapezoid", 1)


def _batch(lm, seed=0):
    ids, mask, _ = tiny_models.batch(vocab=lm.config.vocab_size, seed=seed)
    rng = np.random.default_rng(seed)
    opts = rng.integers(0, lm.config.vocab_size, (2, 4, 2)).astype(np.int32)
    opts[0, 1, 1] = -1
    return PromptBatch(ids.astype(np.int32), mask.astype(np.int32), opts, np.array([1, 3], np.int32))


@pytest.fixture(scope="module", params=["llama3_rope", "gemma2"])
def lm(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    tiny_models.save(request.param, d)
    return neuronjax.load_model(str(d))


@pytest.mark.torch  # the tiny checkpoints are written by transformers
@pytest.mark.parametrize("rule,steps,groups", [("right_riemann", 3, 2), ("trapezoid", 3, 1), ("gauss_legendre", 3, 2)])
def test_replay_equals_full_prompt_rerun_under_every_rule(lm, rule, steps, groups):
    """Same nodes, same weights: the cached replay against the naive rerun (float64 sum), within
    the tolerance of the replay-vs-naive tests of test_engine.py (measured: 4e-7 to 1.0e-6 of the
    largest score). Gemma 2 normalises the FFN output, so the trapezoid's node at alpha = 0 has a
    huge gradient: its largest score is 887 (2.2 under Gauss-Legendre); the agreement still holds."""
    batch = _batch(lm)
    fast = attribute(lm, batch, "ig", steps, groups=groups, rule=rule)
    slow = naive_attribute(lm, batch, "ig", steps, rule=rule)
    scale = np.abs(np.asarray(slow.scores)).max()
    assert scale > 1e-2
    np.testing.assert_allclose(np.asarray(fast.scores), np.asarray(slow.scores), atol=1e-5 * scale, rtol=1e-5)
    other_rule = "gauss_legendre" if rule != "gauss_legendre" else "trapezoid"
    other = attribute(lm, batch, "ig", steps, groups=groups, rule=other_rule)
    assert np.abs(np.asarray(other.scores) - np.asarray(slow.scores)).max() > 1e-2 * scale  # the rule matters


def _zeroed_f(lm, batch, layer):
    """F with every neuron of `layer` zeroed at the last position, from the full logits."""
    c = lm.config
    iv = Intervention.on_neurons(c.num_layers, c.intermediate_size, [(layer, i) for i in range(c.intermediate_size)])
    out = []
    for i in range(2):
        logits = np.asarray(lm.logits(batch.input_ids[i : i + 1], batch.attention_mask[i : i + 1], iv))[0, -1]
        logits = logits.astype(np.float64)
        s = np.array([np.log(np.exp(logits[[t for t in batch.option_ids[i, o] if t >= 0]]).sum()) for o in range(4)])
        out.append(s[batch.gold[i]] - np.log(np.exp(s).sum()))
    return np.array(out)


@pytest.mark.torch
def test_completeness_improves_from_right_riemann_to_gauss_legendre(tmp_path):
    """Sum of a layer's IG against F(unchanged) - F(layer zeroed), at m = 4 nodes under each rule
    (Llama: no norm after the FFN, so F is smooth in alpha down to 0)."""
    tiny_models.save("llama3_rope", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    batch = _batch(lm, seed=1)
    sums = {r: np.asarray(attribute(lm, batch, "ig", 4, rule=r).scores, np.float64).sum(-1) for r in RULES}
    f = np.asarray(attribute(lm, batch, "activation").f, np.float64)
    delta = np.stack([f - _zeroed_f(lm, batch, layer) for layer in range(lm.config.num_layers)], axis=1)
    err = {r: np.abs(sums[r] - delta) for r in RULES}  # [batch, layers]
    assert np.abs(delta).min() > 1e-2  # zeroing any layer moves F: the check has teeth
    # measured errors (batch x layers): right Riemann 0.018 .. 1.06, trapezoid 0.0017 .. 0.79,
    # Gauss-Legendre 4e-7 .. 0.34; in total 1.81, 0.94 and 0.44
    assert (err["trapezoid"] < err["right_riemann"]).all() and (err["gauss_legendre"] < err["right_riemann"]).all()
    assert err["gauss_legendre"].sum() < 0.3 * err["right_riemann"].sum()
    assert err["gauss_legendre"].sum() < 0.55 * err["trapezoid"].sum()


def test_run_config_names_the_rules():
    import os

    from neuronjax.config import load_run_config

    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "default.yaml")
    assert load_run_config(path, {"identify.attribution.rule": "trapezoid"}).identify.attribution.rule == "trapezoid"
    with pytest.raises(ValueError, match="identify.attribution.rule.*gauss_legendre"):
        load_run_config(path, {"identify.attribution.rule": "gauss"})
    with pytest.raises(ValueError, match="trapezoid rule needs >= 2 nodes"):
        load_run_config(path, {"identify.attribution.rule": "trapezoid", "identify.attribution.steps": 1})


def test_layer_schedule():
    from neuronjax.attribution.quadrature import check_schedule, layer_schedule

    assert layer_schedule(4, 2) == (2, 2, 2, 2)
    assert layer_schedule(4, 2, {0: 8, "-1": 3}) == (8, 2, 2, 3)  # config files give string keys
    assert layer_schedule(3, [1, 2, 3], {"1": 5}) == (1, 5, 3)
    with pytest.raises(ValueError, match="layer 4 is out of range for a 4-layer model"):
        layer_schedule(4, 2, {4: 8})
    with pytest.raises(ValueError, match="key 'first' is not a layer index"):
        layer_schedule(4, 2, {"first": 8})
    with pytest.raises(ValueError, match="3 per-layer node counts given for a 4-layer model"):
        layer_schedule(4, [1, 2, 3])
    with pytest.raises(ValueError, match="trapezoid needs m >= 2 nodes per layer; layer 2 has 1"):
        check_schedule("trapezoid", (2, 2, 1))


def _work(schedule, groups, rerun_first=False):
    """Layer passes of the replay's rows: each group's rows run every layer after its first, and
    the rows of the first layer its down projection (a quarter of a pass); or, rerun_first, every
    row runs every layer from its group's first."""
    n = len(schedule)
    if rerun_first:
        return sum(sum(schedule[lo:hi]) * (n - lo) for lo, hi in groups)
    return sum(sum(schedule[lo:hi]) * (n - lo - 1) + 0.25 * schedule[lo] for lo, hi in groups)


def test_schedule_groups_are_the_cheapest_partition():
    """Against every partition into at most g contiguous groups (brute force over the cut points)."""
    import itertools

    from neuronjax.attribution.quadrature import schedule_groups

    rng = np.random.default_rng(0)
    for n, g in [(1, 3), (5, 1), (6, 2), (7, 3), (9, 4)]:
        for schedule in [(4,) * n, tuple(rng.integers(1, 40, n))]:
            for rerun in (False, True):
                got = schedule_groups(schedule, g, rerun_first=rerun)
                assert got[0][0] == 0 and got[-1][1] == n and len(got) <= g
                assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(got, got[1:]))
                best = min(
                    _work(schedule, list(zip((0,) + cuts, cuts + (n,))), rerun)
                    for k in range(min(g, n)) for cuts in itertools.combinations(range(1, n), k)
                )  # fmt: skip
                assert _work(schedule, got, rerun) == best
    # equal counts: groups of equal size (30 layers in 4: 7 or 8 each)
    assert sorted(hi - lo for lo, hi in schedule_groups((16,) * 30, 4)) == [7, 7, 8, 8]


@pytest.mark.torch
def test_replay_equals_full_prompt_rerun_with_a_layer_schedule(lm):
    """Per-layer node counts: each layer's IG is its own rule with its own m, replay against the
    naive rerun (same tolerance as above); a schedule's layer equals a uniform run at its m."""
    batch = _batch(lm)
    layer_steps = {0: 5, -1: 1}
    fast = attribute(lm, batch, "ig", 2, groups=2, layer_steps=layer_steps)
    slow = naive_attribute(lm, batch, "ig", 2, layer_steps=layer_steps)
    scale = np.abs(np.asarray(slow.scores)).max()
    assert scale > 1e-2
    np.testing.assert_allclose(np.asarray(fast.scores), np.asarray(slow.scores), atol=1e-5 * scale, rtol=1e-5)
    uniform = {m: np.asarray(attribute(lm, batch, "ig", m, groups=2).scores) for m in (1, 2, 5)}
    fast = np.asarray(fast.scores)
    np.testing.assert_allclose(fast[:, 0], uniform[5][:, 0], atol=1e-5 * scale, rtol=1e-5)
    np.testing.assert_allclose(fast[:, 1:-1], uniform[2][:, 1:-1], atol=1e-5 * scale, rtol=1e-5)
    np.testing.assert_allclose(fast[:, -1], uniform[1][:, -1], atol=1e-5 * scale, rtol=1e-5)
    assert np.abs(uniform[5][:, 0] - uniform[2][:, 0]).max() > 1e-3 * scale  # m matters on layer 0


def test_run_config_layer_steps():
    import os

    from neuronjax.config import load_run_config

    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "default.yaml")
    a = load_run_config(path, {"identify.attribution.layer_steps": {"0": 32, "-1": 8}}).identify.attribution
    assert a.schedule(5) == (32, a.steps, a.steps, a.steps, 8)
    with pytest.raises(ValueError, match="attribution.layer_steps: key 'x' is not a layer index"):
        load_run_config(path, {"identify.attribution.layer_steps": {"x": 3}})
    with pytest.raises(ValueError, match="attribution.layer_steps.0 = 0: expected >= 1"):
        load_run_config(path, {"identify.attribution.layer_steps": {"0": 0}})
    with pytest.raises(ValueError, match="attribution.layer_steps: layer 30 is out of range for a 30-layer model"):
        load_run_config(path, {"identify.attribution.layer_steps": {"30": 3}}).identify.attribution.schedule(30)
