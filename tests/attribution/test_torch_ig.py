"""The PyTorch IG peer of the benchmark against references that share none of its code: a plain
transformers forward with the MLP's own input and output captured, an edit of the MLP output,
completeness of integrated gradients, and central finite differences in float64."""

import types

import numpy as np
import pytest

from tests import tiny_models

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
torch_ig = pytest.importorskip("neuronjax.bench.torch_ig")

FAMILIES = ["llama3_rope", "gpt2"]


def _mlps(model):
    if hasattr(model, "transformer"):
        return [block.mlp for block in model.transformer.h]
    return [layer.mlp for layer in model.model.layers]


def _neurons(mlp, x):
    """h from the MLP input x, written out from the architecture."""
    if hasattr(mlp, "c_fc"):
        return mlp.act(mlp.c_fc(x))
    return mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)


def _down(mlp):
    """(W [mlp, embed], b [embed] or None) with MLP output = h @ W + b."""
    if hasattr(mlp, "c_proj"):
        return mlp.c_proj.weight, mlp.c_proj.bias
    return mlp.down_proj.weight.T, mlp.down_proj.bias


def _prompts(vocab, seed=0):
    ids, mask, _ = tiny_models.batch(vocab=vocab, seed=seed)
    rng = np.random.default_rng(seed)
    opts = rng.integers(0, vocab, (2, 4, 2))
    opts[1, 2, 1] = -1  # an option with a single candidate token
    return ids, mask, opts, np.array([2, 0])


def _ref_f(model, ids, opts, gold, mlp_edit=None, capture=None):
    """F of one unpadded prompt ids [seq] from a plain forward (float64 arithmetic on the logits).

    mlp_edit(layer, out) may change an MLP's output [1, seq, embed] in place of the last position;
    capture: a dict filled with each layer's MLP input and output (output keeps its gradient)."""
    handles = []
    for layer, mlp in enumerate(_mlps(model)):

        def hook(module, args, out, layer=layer):
            if capture is not None:
                if out.requires_grad:
                    out.retain_grad()
                capture[layer] = (args[0], out)
            if mlp_edit is not None:
                out = out.clone()
                mlp_edit(layer, out)
            return out

        handles.append(mlp.register_forward_hook(hook))
    try:
        logits = model(input_ids=torch.as_tensor(ids)[None]).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()
    scores = torch.stack([torch.logsumexp(logits[[t for t in row if t >= 0]], 0) for row in opts])
    return scores[gold] - torch.logsumexp(scores, 0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: a second thread only adds synchronisation (10x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    return tiny_models.build(request.param)


def test_grad_x_act_equals_autograd_on_a_plain_forward(model):
    """h * dF/dh, with dF/dh = dF/d(MLP output) @ W_down^T from an unhooked forward of the
    unpadded prompt: also checks that left padding is handled (row 1 is padded)."""
    ids, mask, opts, gold = _prompts(model.config.vocab_size)
    peer = torch_ig.attribute(model, ids, mask, opts, gold, "grad_x_act")
    for b in range(2):
        cap = {}
        f = _ref_f(model, ids[b][mask[b] == 1], opts[b], gold[b], capture=cap)
        f.backward()
        want = []
        for layer, mlp in enumerate(_mlps(model)):
            x, out = cap[layer]
            w, _ = _down(mlp)
            want.append((_neurons(mlp, x[0, -1]) * (out.grad[0, -1] @ w.T)).detach().numpy())
        want = np.stack(want)
        assert np.abs(want).max() > 1e-2
        np.testing.assert_allclose(peer["scores"][b], want, atol=1e-5 * np.abs(want).max(), rtol=1e-4)
        assert abs(peer["f"][b] - float(f.detach())) < 1e-5
        model.zero_grad(set_to_none=True)


def test_completeness(model):
    """sum_i IG_l,i -> F(h) - F(h_l = 0 at the last position) as m grows (Sundararajan et al.
    2017, Prop. 1); the zeroed F comes from setting the MLP output to its bias. The tiny random
    models bend sharply near alpha = 0 (F moves by ~0.2 over the first tenth of the path in
    layer 0), so the right Riemann sum needs m in the hundreds to close the gap."""
    ids, mask, opts, gold = _prompts(model.config.vocab_size)
    coarse = torch_ig.attribute(model, ids, mask, opts, gold, "ig", 8)
    fine = torch_ig.attribute(model, ids, mask, opts, gold, "ig", 512)
    for b in range(2):
        prompt = ids[b][mask[b] == 1]
        with torch.no_grad():
            f = float(_ref_f(model, prompt, opts[b], gold[b]))
            for layer, mlp in enumerate(_mlps(model)):
                _, bias = _down(mlp)

                def zero(at, out, layer=layer, bias=bias):
                    if at == layer:
                        out[:, -1] = 0.0 if bias is None else bias

                delta = f - float(_ref_f(model, prompt, opts[b], gold[b], mlp_edit=zero))
                err_fine = abs(fine["scores"][b, layer].sum() - delta)
                err_coarse = abs(coarse["scores"][b, layer].sum() - delta)
                assert abs(delta) > 1e-3
                assert err_fine < 0.01 * abs(delta) + 3e-3, (layer, delta, err_fine)
                assert err_fine <= err_coarse + 1e-5


def _float64(model):
    """The model in float64 throughout. transformers' RMSNorm and eager attention softmax compute
    in float32 whatever the input dtype, which leaves ~1e-7 noise in F: use sdpa attention and
    the same RMSNorm formula in float64."""
    model = model.double()
    model.set_attn_implementation("sdpa")

    def rms_norm(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = types.MethodType(rms_norm, module)
    return model


@pytest.mark.parametrize("name", FAMILIES)
def test_ig_terms_equal_finite_differences(name):
    """IG with m = 2 for a few neurons, against central differences of F in float64:
    IG_i = h_i * (dF/dh_i at h/2 + dF/dh_i at h) / 2, where dF/dh_i is taken by adding eps to
    neuron i after scaling the whole vector (through the MLP output: + eps * W_down[i])."""
    model = _float64(tiny_models.build(name))
    ids, mask, opts, gold = _prompts(model.config.vocab_size)
    prompt = ids[0][mask[0] == 1]
    scores, _, _ = torch_ig.attribute_prompt(model, prompt, np.ones_like(prompt), opts[0], int(gold[0]), "ig", 2)
    eps = 1e-5
    checked = 0
    for layer, mlp in enumerate(_mlps(model)):
        w, bias = _down(mlp)
        cap = {}
        with torch.no_grad():
            _ref_f(model, prompt, opts[0], gold[0], capture=cap)
        h = _neurons(mlp, cap[layer][0][0, -1]).detach()
        for i in np.argsort(-np.abs(scores[layer]))[:2]:
            grads = []
            for alpha in (0.5, 1.0):
                fs = []
                for sign in (1, -1):

                    def edit(at, out, layer=layer, alpha=alpha, shift=sign * eps * w[i], bias=bias):
                        if at == layer:
                            b0 = 0.0 if bias is None else bias
                            out[:, -1] = alpha * (out[:, -1] - b0) + b0 + shift

                    with torch.no_grad():
                        fs.append(float(_ref_f(model, prompt, opts[0], gold[0], mlp_edit=edit)))
                grads.append((fs[0] - fs[1]) / (2 * eps))
            want = float(h[i]) * np.mean(grads)
            assert abs(want) > 1e-4
            assert abs(scores[layer, i] - want) < 1e-8 * max(1.0, abs(want)), (layer, i, scores[layer, i], want)
            checked += 1
    assert checked == 2 * len(_mlps(model))
