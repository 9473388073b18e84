"""Greedy generation with the key/value cache equals transformers' own greedy generation, with and
without a neuron intervention. On the PyTorch side the intervention is a forward pre-hook on the
down projection that scales one neuron at the last position of every call: with transformers'
cache, that is the prompt's last token and then each new token, the positions a last-position
intervention edits."""

import numpy as np
import pytest

import neuronjax
from neuronjax import Intervention
from neuronjax.generate import greedy_tokens
from tests import tiny_models

pytestmark = pytest.mark.torch

LAYER, NEURONS, SCALE, NEW = 1, list(range(0, 48, 3)), -3.0, 12


def _torch_greedy(model, ids, mask, factor=None):
    import torch

    handle = None
    if factor is not None:
        def hook(module, args):
            x = args[0].clone()
            x[:, -1, NEURONS] *= factor
            return (x,)

        handle = model.model.layers[LAYER].mlp.down_proj.register_forward_pre_hook(hook)
    model.generation_config.eos_token_id = None
    try:
        with torch.no_grad():
            out = model.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                                 max_new_tokens=NEW, do_sample=False, pad_token_id=0)  # fmt: skip
    finally:
        if handle is not None:
            handle.remove()
    return out[:, ids.shape[1]:].numpy()


@pytest.mark.parametrize("name", ["llama3_rope", "mistral", "gemma3", "qwen2"])
def test_greedy_tokens_match_transformers(tmp_path, name):
    """mistral and gemma3 have a sliding window of 4 keys, shorter than prompt + new tokens."""
    ref = tiny_models.save(name, tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    ids, mask, _ = tiny_models.batch()
    c = lm.config
    got = np.asarray(greedy_tokens(lm.state, lm.place(ids.astype(np.int32)), lm.place(mask.astype(np.int32)), None,
                                   graphdef=lm.graphdef, max_new=NEW))  # fmt: skip
    np.testing.assert_array_equal(got, _torch_greedy(ref, ids, mask))
    iv = Intervention.on_neurons(c.num_layers, c.intermediate_size, [(LAYER, i) for i in NEURONS], scale=SCALE)
    edited = np.asarray(greedy_tokens(lm.state, lm.place(ids.astype(np.int32)), lm.place(mask.astype(np.int32)), iv,
                                      graphdef=lm.graphdef, max_new=NEW))  # fmt: skip
    want = _torch_greedy(ref, ids, mask, factor=SCALE)
    np.testing.assert_array_equal(edited, want)
    assert (edited != got).any(), "the intervention must change the continuation for the test to mean anything"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen_llama")
    tiny_models.save("llama3_rope", d)
    return neuronjax.load_model(str(d))


def _first_tokens(lm, ids, mask, seeds, temperature, top_p):
    import jax

    from neuronjax.generate import sample_tokens

    ids, mask = lm.place(ids[:1].astype(np.int32)), lm.place(mask[:1].astype(np.int32))
    return np.array([int(sample_tokens(lm.state, ids, mask, None, jax.random.key(s), graphdef=lm.graphdef, max_new=1,
                                       temperature=temperature, top_p=top_p)[0, 0]) for s in seeds])  # fmt: skip


def test_sampling_draws_from_the_tempered_softmax(tiny_lm):
    """The first sampled token over 3000 seeds against softmax(logits / T) of a plain forward: every
    token's frequency within 4 standard errors of its probability."""
    ids, mask, _ = tiny_models.batch()
    t = 2.0
    logits = np.asarray(tiny_lm.logits(ids[:1], mask[:1]))[0, -1].astype(np.float64)
    p = np.exp((logits - logits.max()) / t)
    p /= p.sum()
    n = 3000
    counts = np.bincount(_first_tokens(tiny_lm, ids, mask, range(n), t, 1.0), minlength=p.size)
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 4 * se + 1e-12), np.max(np.abs(counts / n - p) / (se + 1e-12))
    assert (counts > 0).sum() > 10  # a spread-out distribution, not one token


def test_nucleus_keeps_the_smallest_set_reaching_top_p(tiny_lm):
    ids, mask, _ = tiny_models.batch()
    t, top_p = 2.0, 0.5
    logits = np.asarray(tiny_lm.logits(ids[:1], mask[:1]))[0, -1].astype(np.float64) / t
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = np.argsort(-p)
    kept = order[: int(np.searchsorted(np.cumsum(p[order]), top_p) + 1)]  # the smallest prefix reaching top_p
    n = 2000
    drawn = _first_tokens(tiny_lm, ids, mask, range(n), t, top_p)
    assert set(drawn) <= set(kept.tolist()) and len(set(drawn)) > 1
    q = p[kept] / p[kept].sum()  # renormalised on the nucleus
    freq = np.array([(drawn == k).mean() for k in kept])
    assert np.all(np.abs(freq - q) <= 4 * np.sqrt(q * (1 - q) / n) + 1e-12)


def test_seeds_repeat_and_temperature_zero_is_greedy(tiny_lm):
    import jax

    from neuronjax.generate import greedy_tokens, sample_tokens

    ids, mask, _ = tiny_models.batch()
    ids, mask = tiny_lm.place(ids.astype(np.int32)), tiny_lm.place(mask.astype(np.int32))

    def run(seed, temperature, top_p=1.0):
        return np.asarray(sample_tokens(tiny_lm.state, ids, mask, None, jax.random.key(seed), graphdef=tiny_lm.graphdef,
                                        max_new=NEW, temperature=temperature, top_p=top_p))  # fmt: skip

    greedy = np.asarray(greedy_tokens(tiny_lm.state, ids, mask, None, graphdef=tiny_lm.graphdef, max_new=NEW))
    np.testing.assert_array_equal(run(0, 1.5), run(0, 1.5))
    assert (run(0, 1.5) != run(1, 1.5)).any()
    np.testing.assert_array_equal(run(3, 0.0), greedy)
    np.testing.assert_array_equal(run(3, 1.5, top_p=1e-6), greedy)  # the nucleus is the top token alone
