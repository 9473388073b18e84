"""The cached-prompt replay equals the naive full-prompt rerun for every method and both targets,
and IG behaves as integrated gradients must (completeness)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neuronjax
from neuronjax import Intervention
from neuronjax.attribution import PromptBatch, alphas, attribute
from neuronjax.attribution import last_token as lt
from neuronjax.attribution.naive import naive_attribute
from tests import tiny_models

pytestmark = pytest.mark.torch  # the tiny checkpoints are written by transformers


def _batch(lm, seed=0):
    ids, mask, _ = tiny_models.batch(vocab=lm.config.vocab_size, seed=seed)
    rng = np.random.default_rng(seed)
    opts = rng.integers(0, lm.config.vocab_size, (2, 4, 2)).astype(np.int32)
    opts[0, 1, 1] = -1  # options may have fewer candidate tokens than others
    return PromptBatch(ids.astype(np.int32), mask.astype(np.int32), opts, np.array([1, 3], np.int32))


ARCHITECTURES = ["llama3_rope", "gemma2", "gemma3", "gpt2", "qwen2", "gpt_neox", "olmo2", "phi3", "mixtral"]
# The replays' group arithmetic and the grouped / joined programs are one code for every
# architecture; what an architecture changes is the one-token step against its cache. So every
# architecture runs both replays for both targets, and these three (a plain decoder, sandwich norms
# with soft-capping, routed experts) also run the other group shapes: one group, as many groups
# as steps, and grad x act under the probability target.
BROAD = ["llama3_rope", "gemma2", "mixtral"]


def _load(arch, tmp_path_factory):
    d = tmp_path_factory.mktemp(arch)
    tiny_models.save(arch, d)
    yield neuronjax.load_model(str(d))
    # one architecture's programs at a time: this module compiles hundreds (9 architectures, both
    # replays, both targets, the naive reference). Holding all of them, the full suite crashed
    # inside XLA's CPU compiler at the same test in two runs (an abort, then a segmentation
    # fault, compiling the naive reference's gradient); dropped per architecture, it passes. The
    # cause inside XLA is not established.
    jax.clear_caches()


@pytest.fixture(scope="module", params=ARCHITECTURES)
def lm(request, tmp_path_factory):
    yield from _load(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=BROAD)
def broad_lm(request, tmp_path_factory):
    yield from _load(request.param, tmp_path_factory)


class _Runs:
    """`attribute` and the naive full-prompt rerun on `_batch(lm)`, each computed once per set of
    arguments: the replays compared with one reference (grouped, joined) share it, and the
    probability-target replay compares its option scores with the log-prob replay's."""

    def __init__(self, lm):
        self.lm, self.done = lm, {}

    def _once(self, key, compute):
        if key not in self.done:
            self.done[key] = compute()
        return self.done[key]

    def naive(self, method, steps, target="ce"):
        return self._once(("naive", method, steps, target),
                          lambda: naive_attribute(self.lm, _batch(self.lm), method, steps, target=target))  # fmt: skip

    def replay(self, method, steps, groups, replay, target="ce"):
        return self._once(("replay", method, steps, groups, replay, target),
                          lambda: attribute(self.lm, _batch(self.lm), method, steps, groups=groups, target=target,
                                            replay=replay))  # fmt: skip


@pytest.fixture(scope="module")
def runs(lm):
    return _Runs(lm)


@pytest.fixture(scope="module")
def broad_runs(broad_lm):
    return _Runs(broad_lm)


def _replay_equals_naive(runs, method, steps, groups, replay):
    fast, slow = runs.replay(method, steps, groups, replay), runs.naive(method, steps)
    scale = np.abs(np.asarray(slow.scores)).max()
    assert scale > 1e-2
    np.testing.assert_allclose(np.asarray(fast.scores), np.asarray(slow.scores), atol=1e-5 * scale, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(fast.f), np.asarray(slow.f), atol=1e-5)
    np.testing.assert_allclose(np.asarray(fast.option_scores), np.asarray(slow.option_scores), atol=1e-4)


def _prob_replay_equals_naive(runs, method, steps, groups, replay):
    fast, slow = runs.replay(method, steps, groups, replay, target="prob"), runs.naive(method, steps, target="prob")
    scale = np.abs(np.asarray(slow.scores)).max()
    assert scale > 1e-4
    np.testing.assert_allclose(np.asarray(fast.scores), np.asarray(slow.scores), atol=1e-5 * scale, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(fast.f), np.asarray(slow.f), atol=1e-5)
    np.testing.assert_allclose(np.asarray(fast.option_scores), np.asarray(slow.option_scores), atol=1e-4)
    ce = runs.replay(method, steps, groups, replay)  # same option scores, different target
    np.testing.assert_allclose(np.asarray(fast.option_scores), np.asarray(ce.option_scores), atol=1e-6)
    assert not np.allclose(np.asarray(fast.scores), np.asarray(ce.scores))


@pytest.mark.parametrize("method,steps,groups,replay", [
    ("ig", 3, 2, "grouped"), ("ig", 3, 2, "joined"), ("grad_x_act", 1, 4, "auto"), ("activation", 1, 4, "auto"),
])  # fmt: skip
def test_replay_equals_full_prompt_rerun(runs, method, steps, groups, replay):
    _replay_equals_naive(runs, method, steps, groups, replay)


@pytest.mark.parametrize("method,steps,groups,replay", [("ig", 4, 1, "grouped"), ("ig", 3, 3, "joined")])
def test_replay_of_other_group_shapes_equals_full_prompt_rerun(broad_runs, method, steps, groups, replay):
    _replay_equals_naive(broad_runs, method, steps, groups, replay)


@pytest.mark.parametrize("replay", ["grouped", "joined"])
def test_variants_in_two_halves_equal_the_full_prompt_rerun(broad_runs, replay):
    """Every pass over the layers with its variants in two halves (halves_from=1: from one row on),
    against the naive rerun (the tolerance of the one-chain replay) and against the one-chain
    replay itself, which the tiny batch gets by default (far below the CPU's 1,024 rows)."""
    lm = broad_runs.lm
    halves = attribute(lm, _batch(lm), "ig", 3, groups=2, replay=replay, halves_from=1)
    slow, one = broad_runs.naive("ig", 3), broad_runs.replay("ig", 3, 2, replay)
    scale = np.abs(np.asarray(slow.scores)).max()
    assert scale > 1e-2
    np.testing.assert_allclose(np.asarray(halves.scores), np.asarray(slow.scores), atol=1e-5 * scale, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(halves.f), np.asarray(slow.f), atol=1e-5)
    np.testing.assert_allclose(np.asarray(halves.scores), np.asarray(one.scores), atol=1e-6 * scale, rtol=1e-6)


def test_halves_are_two_chains_of_the_compiled_program(tmp_path):
    """halves_from splits a pass over the layers only from that many rows (variants x prompts) on,
    and a split pass runs two chains through each layer: more matrix products in the program."""
    from neuronjax.attribution import engine

    tiny_models.save("llama3_rope", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    batch = jax.tree.map(jnp.asarray, _batch(lm))
    rows = 2 * 3 * lm.config.num_layers  # 2 prompts, 3 nodes on every layer: the joined pass's most rows

    def products(halves_from):
        lowered = engine.attribute_compiled.lower(lm.state, batch, graphdef=lm.graphdef, method="ig", steps=3,
                                                  groups=2, replay="joined", halves_from=halves_from)  # fmt: skip
        return lowered.as_text().count("dot_general")

    one = products(0)
    assert products(rows + 1) == one  # fewer rows than the threshold: one chain
    assert products(1) > one and products(rows) > one


def test_halves_for_reads_the_backend():
    assert lt.halves_for(None, "cpu") == lt.HALVES_FROM["cpu"] == 1024
    assert lt.halves_for(None, "tpu") == lt.halves_for(None, "gpu") == 0  # accelerators keep one chain
    assert lt.halves_for(0, "cpu") == 0 and lt.halves_for(512, "tpu") == 512
    with pytest.raises(ValueError, match="halves_from = -1: expected >= 0 rows"):
        lt.halves_for(-1)


def test_f_is_the_gold_log_softmax_of_the_option_logits(lm):
    batch = _batch(lm)
    res = attribute(lm, batch, "activation")
    logits = np.asarray(lm.logits(batch.input_ids, batch.attention_mask))[:, -1].astype(np.float64)
    for i in range(2):
        scores = []
        for o in range(4):
            ids = [t for t in batch.option_ids[i, o] if t >= 0]
            scores.append(np.log(np.exp(logits[i, ids]).sum()))
        scores = np.array(scores)
        want = scores[batch.gold[i]] - np.log(np.exp(scores).sum())
        assert abs(float(res.f[i]) - want) < 1e-4


def test_completeness(lm):
    """Sum over a layer's neurons of IG -> F(unchanged) - F(layer zeroed at the last position)."""
    if lm.config.sandwich_norm:
        pytest.skip(
            "Gemma 2/3 normalise the FFN output (post-feedforward RMSNorm), so F is flat in the "
            "layer-wide scale alpha until alpha ~ sqrt(eps): the path integral jumps at 0 and "
            "completeness cannot hold for layer-wide scaling"
        )
    batch = _batch(lm, seed=1)
    c = lm.config
    # A mixture of experts routes each later layer by a top-k choice on the residual stream, a step
    # function of alpha: F jumps where a later router switches experts, so completeness holds only
    # for the last layer (its own router reads the layer input, which alpha does not change).
    layers = [c.num_layers - 1] if c.num_experts else range(c.num_layers)
    res = attribute(lm, batch, "ig", 64)
    sums = np.asarray(res.scores).sum(axis=-1)  # [batch, layers]
    coarse = np.asarray(attribute(lm, batch, "ig", 4).scores).sum(axis=-1)
    for layer in layers:
        iv = Intervention.on_neurons(
            c.num_layers, c.intermediate_size, [(layer, i) for i in range(c.intermediate_size)], 0.0
        )
        zeroed = []
        for i in range(2):
            logits = np.asarray(lm.logits(batch.input_ids[i : i + 1], batch.attention_mask[i : i + 1], iv))[0, -1]
            s = np.array(
                [np.log(np.exp(logits[[t for t in batch.option_ids[i, o] if t >= 0]]).sum()) for o in range(4)]
            )
            zeroed.append(s[batch.gold[i]] - np.log(np.exp(s).sum()))
        delta = np.asarray(res.f) - np.array(zeroed)
        err_fine = np.abs(sums[:, layer] - delta)
        err_coarse = np.abs(coarse[:, layer] - delta)
        assert (err_fine <= 0.05 * np.abs(delta) + 2e-3).all(), (layer, sums[:, layer], delta)
        assert (err_fine <= err_coarse + 1e-5).all()  # more steps, closer


def _gold_probability(logits, option_ids, gold):
    """P(gold option) over the whole vocabulary from one row of last-position logits [vocab]."""
    logits = np.asarray(logits, np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return p[[t for t in option_ids[gold] if t >= 0]].sum()


@pytest.mark.parametrize("method,steps,groups,replay", [("ig", 3, 2, "grouped"), ("ig", 3, 2, "joined")])
def test_prob_replay_equals_full_prompt_rerun(runs, method, steps, groups, replay):
    _prob_replay_equals_naive(runs, method, steps, groups, replay)


def test_prob_replay_of_grad_x_act_equals_full_prompt_rerun(broad_runs):
    _prob_replay_equals_naive(broad_runs, "grad_x_act", 1, 4, "auto")


def test_prob_f_is_the_gold_probability_over_the_vocabulary(lm):
    batch = _batch(lm)
    res = attribute(lm, batch, "activation", target="prob")
    logits = np.asarray(lm.logits(batch.input_ids, batch.attention_mask))[:, -1]
    for i in range(2):
        want = _gold_probability(logits[i], batch.option_ids[i], batch.gold[i])
        assert abs(float(res.f[i]) - want) < 1e-6 + 1e-5 * want
    assert (np.asarray(res.f) > 0).all() and (np.asarray(res.f) < 1).all()


def test_prob_completeness(tmp_path):
    """Sum over a layer's neurons of IG of P -> P(unchanged) - P(layer zeroed at the last position)."""
    tiny_models.save("llama3_rope", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    batch = _batch(lm, seed=1)
    c = lm.config
    res = attribute(lm, batch, "ig", 128, target="prob")  # P is steeper in alpha than log P: more steps
    sums = np.asarray(res.scores).sum(axis=-1)  # [batch, layers]
    coarse = np.asarray(attribute(lm, batch, "ig", 4, target="prob").scores).sum(axis=-1)
    for layer in range(c.num_layers):
        iv = Intervention.on_neurons(
            c.num_layers, c.intermediate_size, [(layer, i) for i in range(c.intermediate_size)], 0.0
        )
        zeroed = []
        for i in range(2):
            logits = np.asarray(lm.logits(batch.input_ids[i : i + 1], batch.attention_mask[i : i + 1], iv))[0, -1]
            zeroed.append(_gold_probability(logits, batch.option_ids[i], batch.gold[i]))
        delta = np.asarray(res.f) - np.array(zeroed)
        assert np.abs(delta).max() > 1e-4  # zeroing a layer moves P, so the check has teeth
        err_fine = np.abs(sums[:, layer] - delta)
        err_coarse = np.abs(coarse[:, layer] - delta)
        assert (err_fine <= 0.05 * np.abs(delta) + 1e-6).all(), (layer, sums[:, layer], delta)
        assert (err_fine <= err_coarse + 1e-7).all()  # more steps, closer


def test_gold_probability_in_slices_equals_one_pass(tmp_path):
    """Variants sliced to bound the [variant, batch, vocab] logits: same P, same gradient."""
    tiny_models.save("gemma2", tmp_path)  # final-logit soft-capping
    lm = neuronjax.load_model(str(tmp_path))
    model, batch = lm.module, _batch(lm)
    b, vocab = 2, model.cfg.vocab_size
    x = jax.random.normal(jax.random.key(0), (5, b, model.cfg.hidden_size))
    opts, gold = jnp.asarray(batch.option_ids), jnp.asarray(batch.gold)

    def p(x, budget):
        return lt.gold_probability(model, x, opts, gold, budget=budget)

    whole, sliced = p(x, 1 << 26), p(x, 2 * b * vocab)  # 2 variants a slice: 2 + 2 + 1
    np.testing.assert_allclose(np.asarray(sliced), np.asarray(whole), rtol=1e-6)
    g_whole = jax.grad(lambda x: p(x, 1 << 26).sum())(x)
    g_sliced = jax.grad(lambda x: p(x, 2 * b * vocab).sum())(x)
    np.testing.assert_allclose(np.asarray(g_sliced), np.asarray(g_whole), rtol=1e-5, atol=1e-7)
    logits = model.soft_cap(jnp.einsum("nbe,ev->nbv", model.final_norm(x), model.head_weights))
    want = [[_gold_probability(logits[v, i], batch.option_ids[i], batch.gold[i]) for i in range(b)] for v in range(5)]
    np.testing.assert_allclose(np.asarray(whole), np.array(want), rtol=1e-5)


def test_alphas():
    np.testing.assert_allclose(alphas(4), [0.25, 0.5, 0.75, 1.0])


def test_chunks_and_buckets_do_not_change_results(lm):
    batch = _batch(lm)
    whole = attribute(lm, batch, "grad_x_act")
    split = attribute(lm, batch, "grad_x_act", chunk=1, seq_bucket=7)
    np.testing.assert_allclose(np.asarray(whole.scores), np.asarray(split.scores), atol=1e-5)


def test_bad_batches_are_rejected(lm):
    batch = _batch(lm)
    right_padded = PromptBatch(
        batch.input_ids[:, ::-1].copy(), batch.attention_mask[:, ::-1].copy(), batch.option_ids, batch.gold
    )
    with pytest.raises(ValueError, match="not left-padded"):
        attribute(lm, right_padded)
    no_candidate = batch.option_ids.copy()
    no_candidate[1, 2] = -1
    with pytest.raises(ValueError, match=r"\(row, option\) \[1, 2\] has no candidate"):
        attribute(lm, PromptBatch(batch.input_ids, batch.attention_mask, no_candidate, batch.gold))
    with pytest.raises(ValueError, match="gold must be"):
        attribute(lm, PromptBatch(batch.input_ids, batch.attention_mask, batch.option_ids, np.array([0, 4], np.int32)))
    with pytest.raises(ValueError, match="method 'shap' unknown"):
        attribute(lm, batch, "shap")
    with pytest.raises(ValueError, match="target 'logit' unknown"):
        attribute(lm, batch, target="logit")
    with pytest.raises(ValueError, match="replay 'fused' unknown"):
        attribute(lm, batch, "ig", 2, replay="fused")
    with pytest.raises(ValueError, match="groups = 0: expected >= 1"):
        attribute(lm, batch, "ig", 2, groups=0)


def test_auto_replay_joins_on_cpu_only():
    """The "auto" replay joins the groups on the CPU backend and on no other; None groups follow
    the replay."""
    from neuronjax.attribution.engine import resolve_groups, resolve_replay

    assert resolve_replay("auto", "cpu") == "joined"
    assert resolve_replay("auto", "tpu") == resolve_replay("auto", "gpu") == resolve_replay("auto", "cuda") == "grouped"
    assert resolve_replay("grouped", "cpu") == "grouped" and resolve_replay("joined", "tpu") == "joined"
    assert resolve_replay("auto") == "joined"  # these tests run on the CPU
    with jax.default_device(jax.devices("cpu")[0]):
        assert resolve_replay("auto") == "joined"
    assert (resolve_groups(None, "joined"), resolve_groups(None, "grouped"), resolve_groups(3, "joined")) == (8, 4, 3)
    from neuronjax.attribution import engine

    with pytest.raises(ValueError, match="'auto' is resolved by `attribute`"):  # the compiled step takes no "auto"
        engine._ig(None, None, None, None, None, (1,), 1, "ce", "gauss_legendre", "auto")


@pytest.mark.multidevice
def test_sharded_attribution_equals_single_device(tmp_path):
    from neuronjax import sharding as sh

    tiny_models.save("llama3_rope", tmp_path)
    one = neuronjax.load_model(str(tmp_path))
    many = neuronjax.load_model(str(tmp_path), mesh=sh.make_mesh({"data": 2, "tensor": 4}))
    batch = _batch(one)
    a = attribute(one, batch, "ig", 3, groups=2)
    b = attribute(many, batch, "ig", 3, groups=2)
    assert len(b.scores.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(b.scores), np.asarray(a.scores), atol=1e-5)
    np.testing.assert_allclose(np.asarray(b.f), np.asarray(a.f), atol=1e-5)
