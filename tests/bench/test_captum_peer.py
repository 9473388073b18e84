"""The Captum peer of the benchmark (`torch_ig.attribute_captum`: LayerIntegratedGradients per
layer over the down projection's input at the last position, right Riemann; LayerGradientXActivation
for grad x act) against the research-code peer (`torch_ig.attribute`), on a tiny Llama and a tiny
GPT-2 with a left-padded batch.

Measured agreement: IG within 5.5e-7 of the largest |score|, grad x act, F and option scores
identical. Asserted:
1e-5 of the largest |score| elementwise (plus 1e-4 relative), F within 1e-5."""

import numpy as np
import pytest

from tests import tiny_models

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_thread")]

torch = pytest.importorskip("torch")
pytest.importorskip("captum", reason="captum is an optional peer of the benchmark (pip install captum; in [test])")
torch_ig = pytest.importorskip("neuronjax.bench.torch_ig")


@pytest.mark.parametrize("name", ["llama3_rope", "gpt2"])
@pytest.mark.parametrize("method,steps,batch_size", [("ig", 6, 4), ("ig", 3, None), ("grad_x_act", 1, None)])
def test_equals_the_research_code_peer(name, method, steps, batch_size):
    """internal_batch_size 4 splits the 6 steps of a layer over two forwards; None runs them at once."""
    model = tiny_models.build(name)
    ids, mask, _ = tiny_models.batch(vocab=model.config.vocab_size, seed=2)
    opts = np.random.default_rng(2).integers(0, model.config.vocab_size, (2, 4, 2))
    opts[1, 0, 1] = -1
    gold = np.array([1, 2])
    want = torch_ig.attribute(model, ids, mask, opts, gold, method, steps)
    got = torch_ig.attribute_captum(model, ids, mask, opts, gold, method, steps, batch_size)
    scale = np.abs(want["scores"]).max()
    assert scale > 1e-2
    np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-5 * scale, rtol=1e-4)
    np.testing.assert_allclose(got["f"], want["f"], atol=1e-5)
    np.testing.assert_allclose(got["option_scores"], want["option_scores"], atol=1e-5)


def test_one_layer():
    """layers=[l] gives layer l's row of the full result (the benchmark tunes on one layer)."""
    model = tiny_models.build("llama3_rope")
    ids, mask, _ = tiny_models.batch(vocab=96, seed=2)
    opts, gold = np.random.default_rng(2).integers(0, 96, (2, 4, 2)), np.array([1, 2])
    full = torch_ig.attribute_captum(model, ids, mask, opts, gold, "ig", 4)
    one = torch_ig.attribute_captum(model, ids, mask, opts, gold, "ig", 4, 2, layers=[1])
    np.testing.assert_allclose(one["scores"][:, 0], full["scores"][:, 1], atol=1e-6 * np.abs(full["scores"]).max())
