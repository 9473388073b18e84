"""The PyTorch port of our algorithm (`neuronjax.bench.torch_cached`: prompt cache, one-token
replay of the batched (layer, alpha) variants, one backward per layer group) against the
research-code peer (`torch_ig`: a hook, the full prompt per (layer, alpha)) and against ours (JAX),
on tiny Llama-type models with a left-padded batch (prompts of 11 and 6 tokens).

Measured agreement (float32): within 2.4e-6 of the largest |score| against the research-code peer
and within 1.8e-6 against ours under every rule, F and option scores within 6e-6; with the rows'
common prefix run once (three rows, 16 shared tokens), within 1.0e-6 of the whole prompts and
1.1e-5 of the research-code peer, which is as far as the whole prompts are from it on that batch
(IG, m = 4; grad x act 5.2e-7 and 3.6e-6). Asserted: 2e-5 of the largest |score| elementwise (plus 1e-4 relative), F and
option scores within 5e-5."""

import numpy as np
import pytest

import neuronjax
from neuronjax.attribution import PromptBatch, attribute
from tests import tiny_models

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_thread")]

torch = pytest.importorskip("torch")
torch_ig = pytest.importorskip("neuronjax.bench.torch_ig")
torch_cached = pytest.importorskip("neuronjax.bench.torch_cached")


def _prompts(vocab: int):
    ids, mask, _ = tiny_models.batch(vocab=vocab, seed=1)
    opts = np.random.default_rng(1).integers(0, vocab, (2, 4, 2)).astype(np.int32)
    opts[0, 3, 1] = -1  # an option with a single candidate token
    return ids, mask, opts, np.array([3, 1], np.int32)


def _assert_same(got: dict, want: dict):
    scale = np.abs(want["scores"]).max()
    assert scale > 1e-2
    np.testing.assert_allclose(got["scores"], want["scores"], atol=2e-5 * scale, rtol=1e-4)
    np.testing.assert_allclose(got["f"], want["f"], atol=5e-5)
    np.testing.assert_allclose(got["option_scores"], want["option_scores"], atol=5e-5)


@pytest.mark.parametrize("name", ["llama3_rope", "llama_tied_bias", "qwen2"])
@pytest.mark.parametrize("method,steps", [("ig", 6), ("grad_x_act", 1)])
def test_equals_the_research_code_peer(name, method, steps):
    model = tiny_models.build(name)
    ids, mask, opts, gold = _prompts(model.config.vocab_size)
    want = torch_ig.attribute(model, ids, mask, opts, gold, method, steps)
    _assert_same(torch_cached.attribute(model, ids, mask, opts, gold, method, steps, groups=2), want)
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again


@pytest.mark.parametrize("rule,steps,groups", [("right_riemann", 6, 1), ("gauss_legendre", 5, 3), ("trapezoid", 4, 2)])
def test_equals_ours_under_each_rule(tmp_path, rule, steps, groups):
    """The same nodes and weights on both sides; the layer groups change nothing but memory."""
    model = tiny_models.save("llama3_rope", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    ids, mask, opts, gold = _prompts(lm.config.vocab_size)
    ours = attribute(lm, PromptBatch(ids.astype(np.int32), mask.astype(np.int32), opts, gold), "ig", steps, rule=rule)
    got = torch_cached.attribute(model, ids, mask, opts, gold, "ig", steps, rule, groups)
    want = {k: np.asarray(getattr(ours, k)) for k in ("scores", "f", "option_scores")}
    _assert_same(got, want)


def _prefixed(vocab: int):
    """Three left-padded rows that share their first 20 tokens (the shared prefix: 16 of them)."""
    ids, mask = tiny_models.prefixed_batch(vocab, 20, (5, 9, 2), seed=2)
    opts = np.random.default_rng(2).integers(0, vocab, (3, 4, 2)).astype(np.int32)
    return ids, mask, opts, np.array([0, 2, 3], np.int32)


@pytest.mark.parametrize("method,steps", [("ig", 4), ("grad_x_act", 1)])
def test_shared_prefix_equals_the_whole_prompt(method, steps):
    """The rows' common prefix run once and its cache repeated per row: the same scores as every
    row's whole prompt, and as the research-code peer."""
    from neuronjax.cached import split_prefix

    model = tiny_models.build("llama3_rope")
    ids, mask, opts, gold = _prefixed(model.config.vocab_size)
    assert split_prefix(ids, mask, seq_bucket=1).length == 16
    shared = torch_cached.attribute(model, ids, mask, opts, gold, method, steps, groups=2)
    whole = torch_cached.attribute(model, ids, mask, opts, gold, method, steps, groups=2, share_prefix=False)
    _assert_same(shared, whole)
    _assert_same(shared, torch_ig.attribute(model, ids, mask, opts, gold, method, steps))


def test_refuses_other_architectures():
    model = tiny_models.build("gpt2")
    ids, mask, opts, gold = _prompts(96)
    with pytest.raises(ValueError, match="model_type 'gpt2' not supported"):
        torch_cached.attribute(model, ids, mask, opts, gold, "grad_x_act")


def _product_flops(call) -> tuple[int, set]:
    """2 x the multiply-accumulates of every matrix product aten runs during call() (forward and
    backward), and the names of the other ops seen, read at torch's dispatch level."""
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    total, others = [0], set()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            op = func._overloadpacket
            if op in (aten.mm, aten.addmm, aten.bmm, aten.baddbmm):
                a, b = args[-2], args[-1]
                total[0] += 2 * a.numel() * b.shape[-1]
            else:
                others.add(op.__name__)
            return func(*args, **(kwargs or {}))

    with Count():
        call()
    return total[0], others


@pytest.mark.parametrize("steps,groups", [(4, 1), (3, 2), (2, 3)])
def test_the_ports_variant_products_are_the_own_entry_count(steps, groups):
    """`attribution_flops(..., entry="own")`, which the benchmark sets beside ours to say how much
    more work our replay does, against the port's own products: every matrix product aten runs
    for its IG variants, forward and backward (the prompt and the base pass run before). The
    analytic count leaves out the output head's candidate columns, the quadrature weights' sum
    and the backward of each row's attention to its own key and value: 2.13% below the
    counted products on this tiny model (3 layers, 32 wide, 11 keys) for every m and groups tried,
    a fixed amount per variant row (on SmolLM2 the same parts of our replay are about 0.05% of an
    IG call, tests/attribution/test_flops.py)."""
    from neuronjax.attribution.flops import attribution_flops
    from neuronjax.loader.hf import config_from_hf

    model = tiny_models.build("llama3_rope")
    ids, mask, opts, gold = _prompts(model.config.vocab_size)
    t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.long)  # noqa: E731
    layers = torch_cached._layers(model, ids.shape[1])
    for p in model.parameters():
        p.requires_grad_(False)  # as the port's `attribute` runs it: no weight gradients
    prompt = torch_cached.prefix(model, t(ids), t(mask), share=False)
    with torch.no_grad():
        _, _, mids, hs, _ = torch_cached.base_pass(model, layers, prompt, t(opts), t(gold))

    def variants():
        with torch.enable_grad():
            torch_cached.integrated_gradients(model, layers, prompt, mids, hs, t(opts), t(gold), steps,
                                              "right_riemann", groups)  # fmt: skip

    counted, others = _product_flops(variants)
    # no op with products inside that the count above would miss (a fused attention, a matrix-vector)
    hidden = {o for o in others if any(w in o for w in ("dot", "mv", "conv", "attention", "matmul", "linear"))}
    assert not hidden, hidden
    cfg = config_from_hf(model.config.to_dict(), "the tiny llama")
    analytic = attribution_flops(cfg, ids.shape[0], ids.shape[1], "ig", steps, groups, entry="own")["variants"]
    assert analytic <= counted
    assert (counted - analytic) / counted < 2.5e-2, (counted, analytic)
