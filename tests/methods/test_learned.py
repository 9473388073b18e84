"""The learned method: planted neurons recovered, exact and deterministic binarisation, the gate
objective against an independent full forward and a finite difference, run-config plumbing,
save / load."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neuronjax import sharding as sh
from neuronjax.config import IdentifySection, load_run_config
from neuronjax.identify import AttributionConfig, identify, item_blocks
from neuronjax.intervention import Intervention
from neuronjax.io.neurons import load_neurons, save_neurons
from neuronjax.methods import Learned, NeuronLLM, make_methods
from neuronjax.methods import learned as lr
from neuronjax.tasks.metrics import target_f
from neuronjax.tasks.scoring import candidate_log_probs
from tests import ROOT
from tests.methods import planted

ATTRIBUTION = AttributionConfig("ig", steps=4)
METHOD = Learned(k=2, z=4, candidates=0, steps=60, learning_rate=0.2)


@pytest.fixture(scope="module")
def lm():
    return planted.model()


@pytest.fixture(scope="module")
def streamed(lm):
    """The learned method's state after the stream (ACE statistics only)."""
    task = planted.task()
    state = METHOD.init(planted.LAYERS, planted.MLP)
    for block in item_blocks(lm, task, {"attr"}, ATTRIBUTION, block_items=5):
        state = METHOD.update(state, block)
    return task, state


@pytest.fixture(scope="module")
def fitted(lm, streamed):
    task, state = streamed
    return METHOD.fit(lm, task, state, verbose=False)


def test_recovers_the_planted_sets(fitted):
    _, good, bad = METHOD.finalize(fitted)
    np.testing.assert_array_equal(good, planted.mask(planted.GOOD))
    np.testing.assert_array_equal(bad, planted.mask(planted.BAD))
    assert not (bad & planted.mask(planted.FILL)).any()


def test_identify_runs_the_fit_and_keeps_neuronllm_unchanged(lm):
    out = identify(lm, planted.task(), [NeuronLLM(k=2, z=4), METHOD], ATTRIBUTION, block_items=5)
    np.testing.assert_array_equal(out["learned"].good, planted.mask(planted.GOOD))
    np.testing.assert_array_equal(out["learned"].bad, planted.mask(planted.BAD))
    np.testing.assert_array_equal(out["neuronllm"].good, planted.mask(planted.GOOD))
    assert out["learned"].meta["method"] == {"name": "learned", **dataclasses.asdict(METHOD)}


def test_binarisation_is_exact_disjoint_and_deterministic(lm, streamed, fitted):
    task, state = streamed
    again = METHOD.fit(lm, task, state, verbose=False)
    np.testing.assert_array_equal(np.asarray(again.good), np.asarray(fitted.good))
    np.testing.assert_array_equal(np.asarray(again.bad), np.asarray(fitted.bad))
    for k in (1, 2, 5, 20):
        good, bad = lr.binarise(np.asarray(fitted.good), np.asarray(fitted.bad), k)
        assert good.sum() == k and bad.sum() == k and not (good & bad).any()


def test_binarisation_rule_on_a_hand_case():
    inf = np.inf
    good = np.array([[5.0, 4.0, 3.0, 3.0, -inf, 0.0]])
    bad = np.array([[6.0, 1.0, 2.0, 2.0, 9.0, -inf]])
    g, b = lr.binarise(good, bad, 2)
    # neuron 0 is in both top-2 lists and its bad pre-activation is larger: it stays bad, good
    # takes 1 and then its tie 2 (lower index) over 3
    assert np.flatnonzero(g[0]).tolist() == [1, 2]
    assert np.flatnonzero(b[0]).tolist() == [0, 4]
    g, b = lr.binarise(good, good, 2)  # equal on both sides: ties stay good, bad takes the next ones
    assert np.flatnonzero(g[0]).tolist() == [0, 1] and np.flatnonzero(b[0]).tolist() == [2, 3]
    with pytest.raises(ValueError, match="candidate"):
        lr.binarise(good, np.where(np.isfinite(good), bad, -inf), 3)  # five candidates for 2 x 3


def test_budget_gates_sum_to_k_with_the_implicit_gradient():
    theta = jnp.asarray(np.random.default_rng(0).normal(size=12).astype(np.float32) * 2)
    gates = jax.jit(lr.budget_gates, static_argnums=1)
    assert abs(float(gates(theta, 3.0).sum()) - 3.0) < 1e-4
    np.testing.assert_allclose(gates(theta - 10, 3.0), jax.nn.sigmoid(theta - 10))  # budget not binding
    w = jnp.arange(12, dtype=jnp.float32)
    value = jax.jit(lambda t: jnp.sum(w * lr.budget_gates(t, 3.0)))
    grad = jax.jit(jax.grad(value))(theta)
    eps = 1e-2
    for i in (0, 5, 11):
        e = jnp.zeros(12).at[i].set(eps)
        fd = (value(theta + e) - value(theta - e)) / (2 * eps)
        # measured: |grad - fd| <= 1.6e-4 (relative <= 5e-4, the O(eps^2) error of the central difference)
        np.testing.assert_allclose(float(grad[i]), float(fd), rtol=5e-4, atol=1e-5)


def test_closed_gates_equal_the_hard_intervention_on_the_full_prompt(lm):
    """Gates at 1 on a set = suppressing that set, scored by an independent full forward of the
    whole prompt (no cache)."""
    task = planted.task()
    data = lr.prompt_states(lm, task)
    neurons = [(1, 5), (1, 30), (0, 3), (0, 40)]
    candidates = jnp.asarray([layer * planted.MLP + i for layer, i in neurons], jnp.int32)
    scales = lr.gate_scales(jnp.ones((1, len(neurons))), candidates, planted.LAYERS, planted.MLP)
    mean_f = jax.jit(lr.mean_f, static_argnums=1)
    cached = mean_f(lm.state, lm.graphdef, lr._stack([data.batch(i) for i in range(len(data))]), scales)
    iv = Intervention.on_neurons(planted.LAYERS, planted.MLP, neurons, scale=0.0)
    f = []
    for batch in task.batches():
        logits = lm.forward(batch["input_ids"], batch["attention_mask"], iv, logits_at="last").logits[:, -1]
        rows = target_f(candidate_log_probs(logits, jnp.asarray(batch["option_tokens"])), jnp.asarray(batch["gold"]))
        f.append(np.asarray(rows)[batch["valid"]])
    np.testing.assert_allclose(float(cached[0]), float(np.concatenate(f).mean()), rtol=1e-5, atol=1e-5)


def test_objective_gradient_matches_a_finite_difference(lm):
    task = planted.task(num_items=4)
    data = lr.prompt_states(lm, task)
    batches = lr._stack([data.batch(i) for i in range(len(data))])
    candidates = jnp.asarray([planted.MLP + i for i in (5, 7, 9, 17, 30, 2)], jnp.int32)
    rng = np.random.default_rng(1)
    params = {side: jnp.asarray(rng.normal(size=6).astype(np.float32)) for side in ("good", "bad")}

    @jax.jit
    def loss(p):
        return lr.gate_objective(lm.state, lm.graphdef, batches, p, candidates, 2.0, 0.01, planted.LAYERS, planted.MLP)[0]

    grad = jax.jit(jax.grad(loss))(params)
    eps = 1e-2
    for side in ("good", "bad"):
        for i in (0, 1, 3):
            up = dict(params, **{side: params[side].at[i].add(eps)})
            down = dict(params, **{side: params[side].at[i].add(-eps)})
            fd = (float(loss(up)) - float(loss(down))) / (2 * eps)
            # measured: |grad - fd| <= 3.1e-6 with gradients of 1e-3 to 4e-2 (float32 round-off of
            # the difference); the allowance, 1e-5, is 1% of the smallest gradient (1.1e-3)
            np.testing.assert_allclose(float(grad[side][i]), fd, rtol=0, atol=1e-5)


@pytest.mark.multidevice
def test_fit_on_a_data_mesh_equals_one_device(lm, streamed, fitted):
    task, state = streamed
    many = lm.on_mesh(sh.make_mesh({"data": 4}, jax.devices()[:4]))
    other = METHOD.fit(many, task, state, verbose=False)
    np.testing.assert_array_equal(METHOD.finalize(other)[1], METHOD.finalize(fitted)[1])
    np.testing.assert_array_equal(METHOD.finalize(other)[2], METHOD.finalize(fitted)[2])


def test_from_a_run_config_with_checked_parameters(tmp_path):
    path = tmp_path / "run.yaml"
    task = os.path.join(ROOT, "configs/tasks/world_facts.yaml")
    path.write_text(
        f"name: t\ntask: {task}\nidentify:\n  methods: [neuronllm, learned, random]\n  k: 7\n  z: 40\n"
        "  params:\n    learned: {steps: 12, candidates: 300, l1: 0.5}\n"
    )
    cfg = load_run_config(str(path))
    methods = make_methods(cfg.identify)
    learned = methods[1]
    assert isinstance(learned, Learned)
    assert (learned.k, learned.z, learned.steps, learned.candidates, learned.l1) == (7, 40, 12, 300, 0.5)
    with pytest.raises(ValueError, match="params.learned.stepz: unknown key; did you mean 'steps'"):
        make_methods(IdentifySection(methods=("learned",), params={"learned": {"stepz": 3}}))
    with pytest.raises(ValueError, match="params.learned.steps"):
        make_methods(IdentifySection(methods=("learned",), params={"learned": {"steps": "many"}}))
    with pytest.raises(ValueError, match="learned.candidates"):
        Learned(k=40, z=4, candidates=80).init(2, 48)
    shipped = make_methods(load_run_config(os.path.join(ROOT, "configs/runs/learned.yaml")).identify)
    assert [m.name for m in shipped] == ["neuronllm", "learned", "random"] and shipped[1].k == 100


def test_finalize_before_fit_is_an_error():
    with pytest.raises(ValueError, match="never fitted"):
        METHOD.finalize(METHOD.init(planted.LAYERS, planted.MLP))


def test_save_and_load_round_trip(lm, fitted, tmp_path):
    scores, good, bad = METHOD.finalize(fitted)
    from neuronjax.io.neurons import NeuronSet
    from neuronjax.methods import method_record

    ns = NeuronSet(scores, good, bad, {"method": method_record(METHOD)})
    save_neurons(str(tmp_path / "learned"), ns)
    back = load_neurons(str(tmp_path / "learned"))
    np.testing.assert_array_equal(back.scores, scores)
    np.testing.assert_array_equal(back.good, good)
    np.testing.assert_array_equal(back.bad, bad)
    assert back.meta["method"]["name"] == "learned" and back.meta["method"]["steps"] == METHOD.steps
