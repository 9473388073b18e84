"""Interventions joining the one-token rows at the first layer they edit: the same option scores
as a full forward of the whole prompt under each intervention, and the plan's groups by hand."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from neuronjax.evaluation import score_interventions
from neuronjax.evaluation.joined import entry_layers, join_plan
from neuronjax.intervention import Intervention
from neuronjax.lm import LanguageModel, forward
from neuronjax.models.config import ModelConfig
from neuronjax.models.decoder import Decoder
from neuronjax.tasks.scoring import candidate_log_probs
from tests.methods import planted

LAYERS = 6


def _model(moe: bool) -> LanguageModel:
    cfg = ModelConfig(model_type="llama", vocab_size=planted.VOCAB, hidden_size=32, intermediate_size=48,
                      num_layers=LAYERS, num_heads=4, num_kv_heads=2, head_dim=8, tie_embeddings=False,
                      **(dict(num_experts=4, experts_per_token=2) if moe else {}))  # fmt: skip
    graphdef, state = nnx.split(Decoder(cfg, rngs=nnx.Rngs(3)))
    return LanguageModel(graphdef, state, cfg, None, None, jnp.float32, "tiny")


def _on_layers(layers, rng, kind="scale") -> Intervention:
    """Random neurons of the given layers suppressed (kind "scale"), doubled ("double") or
    shifted ("shift"); every other layer untouched."""
    scale = np.ones((LAYERS, 48), np.float32)
    shift = np.zeros((LAYERS, 48), np.float32)
    for layer in layers:
        pick = rng.choice(48, 12, replace=False)
        if kind == "shift":
            shift[layer, pick] = 1.5
        else:
            scale[layer, pick] = 0.0 if kind == "scale" else 2.0
    return Intervention(jnp.asarray(scale), jnp.asarray(shift), "last")


def _ivs(rng):
    c = (LAYERS, 48)
    return [
        _on_layers([3, 5], rng), Intervention.identity(*c), _on_layers([0], rng, "double"), _on_layers([5], rng, "shift"),
        _on_layers([1, 2], rng), _on_layers([3], rng, "double"), _on_layers([0, 4], rng, "shift"), _on_layers([5], rng),
    ]  # fmt: skip


def test_entry_layers_and_groups_by_hand():
    rng = np.random.default_rng(0)
    stacked = Intervention(jnp.stack([iv.scale for iv in _ivs(rng)]), jnp.stack([iv.shift for iv in _ivs(rng)]))
    entry = entry_layers(stacked)
    np.testing.assert_array_equal(entry, [3, LAYERS, 0, 5, 1, 3, 0, 5])
    plan = join_plan(stacked, groups=8)  # as many groups as entry layers: every row joins at its own
    assert plan.bounds == ((0, 1), (1, 3), (3, 5), (5, 6)) and plan.counts == (2, 1, 2, 3)
    # rows x layers from their entry: 2 x 6 (layer 0) + 1 x 5 (layer 1) + 2 x 3 (layer 3) + 3 x 1 (layer 5, the
    # identity counted there)
    assert plan.passes == 2 * 6 + 1 * 5 + 2 * 3 + 3 * 1
    np.testing.assert_array_equal(entry[plan.order].clip(max=LAYERS - 1), [0, 0, 1, 3, 3, 5, 5, 5])
    one = join_plan(stacked, groups=1)
    assert one.bounds == ((0, LAYERS),) and one.counts == (8,) and one.passes == 8 * LAYERS
    two = join_plan(stacked, groups=2)  # the best single cut, by trying every one
    clipped = entry.clip(max=LAYERS - 1)
    best = min(int((clipped < c).sum()) * LAYERS + int((clipped >= c).sum()) * (LAYERS - c) for c in range(1, LAYERS))
    (lo0, cut), (cut2, hi) = two.bounds
    assert (lo0, cut2, hi) == (0, cut, LAYERS) and two.passes == best == 33
    assert two.counts == (int((clipped < cut).sum()), int((clipped >= cut).sum()))


@pytest.mark.parametrize("moe", [False, True], ids=["llama", "moe"])
def test_joined_scores_equal_a_full_forward_per_intervention(moe):
    lm = _model(moe)
    rng = np.random.default_rng(1)
    enc = planted.task(num_items=5, batch_size=4)
    ivs = _ivs(rng)
    got = score_interventions(lm, enc, ivs, joined=True)
    per_call = score_interventions(lm, enc, ivs, joined=False)
    row = 0
    for batch in enc.batches(process_index=0, process_count=1):
        valid = batch["valid"]
        n = int(valid.sum())
        ids, mask = jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"])
        for v, iv in enumerate(ivs):
            logits = forward(lm.state, ids, mask, iv, graphdef=lm.graphdef).logits
            want = np.asarray(candidate_log_probs(logits[:, -1], jnp.asarray(batch["option_tokens"])))[valid]
            np.testing.assert_allclose(got.scores[v, row : row + n], want, atol=2e-6, rtol=0)  # measured: 4.8e-7
        row += n
    np.testing.assert_allclose(got.scores, per_call.scores, atol=2e-6, rtol=0)  # measured: 4.8e-7
    # the edits matter, those of the late layers too: otherwise the comparison shows nothing
    for v in (0, 3, 5, 7):
        assert np.abs(got.scores[v] - got.scores[1]).max() > 1e-4, v  # 50x the tolerance above; measured 5.3e-4 at the least
