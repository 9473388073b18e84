"""The analytic FLOP count of an attribution call (`attribution_flops`, which the benchmark's
fraction of the matmul limit divides by) against an independent count: every matrix product in
the traced program, read off its jaxpr (shapes of each `dot_general`, times the trip count of
each `scan` around it)."""

import functools

import jax
import numpy as np
import pytest

import neuronjax
from neuronjax.attribution import PromptBatch, engine
from neuronjax.attribution.flops import attribution_flops
from neuronjax.cached import split_prefix
from tests import tiny_models

# Measured on the tiny llama below (32 wide, 3 layers, 40 positions): the analytic count is 0.02%
# (activations) to 0.66% (IG, shared prefix) below the products of the program. What it leaves
# out: the output head's candidate columns, the sum of each variant's gradient into its layer by
# the quadrature weights, and the backward products of the edited token's attention to its own
# key and value. On SmolLM2 (576 wide, 1536 neurons, 30 layers, about 100 keys) those come to
# about 0.05% of an IG call.
REL = 8e-3


def _jaxprs(p):
    vs = p if isinstance(p, (tuple, list)) else [p]
    for v in vs:
        if isinstance(v, jax.extend.core.ClosedJaxpr):
            yield v.jaxpr
        elif isinstance(v, jax.extend.core.Jaxpr):
            yield v


def program_flops(jaxpr) -> int:
    """2 x the multiply-accumulates of every dot_general of a jaxpr, sub-jaxprs included; a scan's
    body counts once per iteration."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(np.prod([lhs[i] for i in contract]))
            continue
        assert eqn.primitive.name != "while", "a loop of unknown length: count it by hand"
        inner = [program_flops(j) for p in eqn.params.values() for j in _jaxprs(p)]
        if eqn.primitive.name == "cond":  # one branch runs: count the costliest
            total += max(inner, default=0)
        else:
            total += sum(inner) * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
    return total


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    d = tmp_path_factory.mktemp("llama3_rope")
    tiny_models.save("llama3_rope", d)
    return neuronjax.load_model(str(d))


def _batch(rows: int, seq: int, prefix: int = 0, seed: int = 0) -> PromptBatch:
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 96, (rows, seq)).astype(np.int32)
    ids[:, :prefix] = ids[0, :prefix]
    ids[:, prefix] = 3 + np.arange(rows)  # the rows part right after the common prefix
    opts = rng.integers(0, 96, (rows, 4, 2)).astype(np.int32)
    return PromptBatch(ids, np.ones((rows, seq), np.int32), opts, (np.arange(rows) % 4).astype(np.int32))


@pytest.mark.parametrize("method,steps,groups,replay", [
    ("ig", (4, 4, 4), 1, "grouped"), ("ig", (8, 2, 2), 2, "grouped"), ("ig", (1, 3, 5), 3, "grouped"),
    ("ig", (8, 2, 2), 2, "joined"), ("ig", (1, 3, 5), 3, "joined"), ("grad_x_act", (), 1, "grouped"),
    ("activation", (), 1, "grouped"),
])  # fmt: skip
@pytest.mark.parametrize("shared", [False, True])
def test_flops_equal_the_programs_products(lm, method, steps, groups, replay, shared):
    """Joined or grouped, the replay runs the same products (group g's rows over its layers to
    the last), so one count serves both."""
    rows = 4
    batch = _batch(rows, 40, prefix=24 if shared else 0)
    prefix = None
    if shared:
        split = split_prefix(batch.input_ids, batch.attention_mask, seq_bucket=8, window=None)
        assert split is not None
        batch = PromptBatch(split.input_ids, split.attention_mask, batch.option_ids, batch.gold)
        prefix = split.shared
    f = functools.partial(engine._attribute, graphdef=lm.graphdef, method=method, steps=steps, groups=groups,
                          rule="gauss_legendre", replay=replay)  # fmt: skip
    counted = program_flops(jax.make_jaxpr(f)(lm.state, batch, prefix).jaxpr)
    shared_len = 0 if prefix is None else int(np.shape(prefix)[1])
    width = int(np.shape(batch.input_ids)[1])
    analytic = attribution_flops(lm.config, rows, width, method, list(steps) or 1, groups, shared=shared_len)["total"]
    assert analytic <= counted
    assert (counted - analytic) / counted < REL, (counted, analytic)


def test_the_shared_term_is_the_prefix_programs_products(lm):
    """The "shared" term is what the common prefix costs alone (`cached.prefix_head`, which `attribute`
    runs once per call of its, whatever the chunks); the benchmark counts it once."""
    from flax import nnx

    from neuronjax.cached import prefix_head

    batch = _batch(4, 40, prefix=24)
    split = split_prefix(batch.input_ids, batch.attention_mask, seq_bucket=8, window=None)
    assert split is not None
    f = lambda state, ids: prefix_head(nnx.merge(lm.graphdef, state), ids)  # noqa: E731
    counted = program_flops(jax.make_jaxpr(f)(lm.state, split.shared).jaxpr)
    width = int(np.shape(split.input_ids)[1])
    analytic = attribution_flops(lm.config, 4, width, "ig", 2, 1, shared=split.length)
    assert analytic["shared"] == counted  # nothing left out here: the prefix's own products, all of them
    assert analytic["total"] == sum(v for k, v in analytic.items() if k != "total")
    assert attribution_flops(lm.config, 4, width, "ig", 2, 1)["shared"] == 0


@pytest.mark.parametrize("steps", [(4, 4, 4), (8, 2, 2), (1, 3, 5)])
def test_the_own_entry_is_every_variant_from_its_own_layer(lm, steps):
    """entry="own" (the PyTorch port's): a variant of layer j costs j's down projection and one
    one-token pass of each layer above, forward and backward, whatever the groups; summed here
    variant by variant. With every layer its own group, our entry is the same thing."""
    from neuronjax.attribution.flops import layer_macs

    cfg, rows, width = lm.config, 4, 40
    one = layer_macs(cfg, 1, width)
    down = cfg.intermediate_size * cfg.hidden_size
    n = cfg.num_layers
    want = 0
    for j, m in enumerate(steps):
        for _ in range(m):
            want += 2 * rows * (down + sum(one for _ in range(j + 1, n)))
    want *= 2  # FLOPs
    for groups in (1, 2, n):
        got = attribution_flops(cfg, rows, width, "ig", list(steps), groups, entry="own")
        assert got["variants"] == want
    assert attribution_flops(cfg, rows, width, "ig", list(steps), n)["variants"] == want
    assert attribution_flops(cfg, rows, width, "ig", list(steps), 1)["variants"] > want
    with pytest.raises(ValueError, match="entry 'first'"):
        attribution_flops(cfg, rows, width, "ig", list(steps), 1, entry="first")
