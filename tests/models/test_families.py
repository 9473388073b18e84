"""Every family and variant equals the transformers PyTorch model (float32, 1e-4) on a
left-padded batch of two prompts of different lengths, loaded through our torch-free loader."""

import numpy as np
import pytest

import neuronjax
from tests import tiny_models

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module", params=sorted(tiny_models.VARIANTS))
def pair(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    ref = tiny_models.save(request.param, d)
    return request.param, ref, neuronjax.load_model(str(d))


def test_logits_match_transformers(pair):
    name, ref, lm = pair
    ids, mask, pos = tiny_models.batch()
    want = tiny_models.torch_logits(ref, ids, mask, pos)
    got = np.asarray(lm.logits(ids, mask))
    real = mask.astype(bool)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=0, err_msg=name)


def test_padding_does_not_change_logits(pair):
    """The short prompt alone (no padding) gives the same logits as inside the padded batch."""
    name, _, lm = pair
    ids, mask, _ = tiny_models.batch()
    n = mask[1].sum()
    alone = np.asarray(lm.logits(ids[1:, -n:], mask[1:, -n:]))
    padded = np.asarray(lm.logits(ids, mask))[1:, -n:]
    np.testing.assert_allclose(alone, padded, atol=1e-5, rtol=1e-5, err_msg=name)


def test_config_mirrors_checkpoint(pair):
    name, ref, lm = pair
    c = lm.config
    assert c.num_layers == 3 and c.vocab_size == 96
    assert c.tie_embeddings == bool(ref.config.tie_word_embeddings)
    assert lm.report.unexpected == []


def test_bfloat16_runs_close_to_float32(pair):
    name, _, lm32 = pair
    lm16 = neuronjax.load_model(lm32.source, dtype="bfloat16")
    assert {x.dtype.name for x in __import__("jax").tree.leaves(lm16.state)} == {"bfloat16"}
    ids, mask, _ = tiny_models.batch()
    a, b = np.asarray(lm32.logits(ids, mask)), np.asarray(lm16.logits(ids, mask))
    assert b.dtype == np.float32 and np.isfinite(b).all()
    real = mask.astype(bool)
    assert np.abs(a[real] - b[real]).max() < 0.1 * np.abs(a[real]).max() + 0.05


def test_longrope_chooses_its_factors_per_prompt(tmp_path):
    """Phi-3 longrope with original_max_position_embeddings = 8: the 11-token prompt takes the long
    factors, the 6-token one the short ones. Inside one padded batch each row equals transformers
    run on that row alone (transformers itself would pick one set for the whole batch)."""
    kwargs = dict(tiny_models.VARIANTS["phi3_longrope"][2], original_max_position_embeddings=8)
    ref = tiny_models.save(("Phi3Config", "Phi3ForCausalLM", kwargs), tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    ids, mask, pos = tiny_models.batch()
    got = np.asarray(lm.logits(ids, mask))
    for row in range(2):
        n = int(mask[row].sum())
        alone = (ids[row : row + 1, -n:], mask[row : row + 1, -n:], pos[row : row + 1, -n:])
        want = tiny_models.torch_logits(ref, *alone)
        np.testing.assert_allclose(got[row : row + 1, -n:], want, atol=1e-4, rtol=0, err_msg=f"row {row}")
    # and the choice matters: the short prompt read with the long factors differs
    whole = tiny_models.torch_logits(ref, ids, mask, pos)  # transformers: long factors for both rows
    assert np.abs(whole[1, -6:] - got[1, -6:]).max() > 1e-3
