"""The evaluation benchmark's PyTorch peer (`neuronjax.bench.evaluation.peer_scores`: the whole
prompt rerun per intervention, a forward pre-hook editing every down projection's input at the
last position) against `score_interventions` (ours: the prompt's cache, the last token per
intervention), on a tiny Llama with the planted task's prompts (left-padded batches of 4).

Measured agreement: within 3.8e-6 (option scores are log-probabilities; the largest |score| is
8.6). Asserted: 1e-4."""

import jax.numpy as jnp
import numpy as np
import pytest

import neuronjax
from neuronjax.distributed import global_batches
from neuronjax.evaluation import score_interventions
from neuronjax.intervention import Intervention
from tests import tiny_models
from tests.methods import planted

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
evaluation = pytest.importorskip("neuronjax.bench.evaluation")


def test_peer_equals_score_interventions(tmp_path):
    model = tiny_models.save("llama3_rope", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    c = lm.config
    enc = planted.task(num_items=4, batch_size=4)  # token ids below 64, within the tiny vocabulary of 96
    scales, shifts = evaluation.random_interventions(c.num_layers, c.intermediate_size, 4, 20, seed=3)
    shifts[3, 1, :5] = 0.7  # a shift too
    ivs = [Intervention(jnp.asarray(a), jnp.asarray(b), "last") for a, b in zip(scales, shifts)]
    ours = score_interventions(lm, enc, ivs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = []
        for b in global_batches(enc):
            keep = np.asarray(b["valid"], bool)
            got.append(evaluation.peer_scores(model, b["input_ids"][keep], b["attention_mask"][keep],
                                              b["option_tokens"][keep], scales, shifts))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    got = np.concatenate(got, axis=1)
    assert got.shape == ours.scores.shape == (4, 12, 4)
    np.testing.assert_allclose(got, ours.scores, atol=1e-4)
    # The edits matter: otherwise the comparison above shows nothing.
    assert np.abs(got[1:] - got[:1]).max(axis=(1, 2)).min() > 1e-2


def test_random_interventions():
    scale, shift = evaluation.random_interventions(3, 10, 4, 5, seed=0)
    assert scale.shape == shift.shape == (4, 3, 10) and not shift.any()
    assert (scale[0] == 1).all()
    assert ((scale[1] == 0).sum(), (scale[2] == 2).sum(), (scale[3] == 0).sum()) == (5, 5, 5)
    assert set(np.unique(scale[1:])) <= {0.0, 1.0, 2.0}
