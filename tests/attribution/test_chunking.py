"""How `attribute` splits a batch into compiled calls when the caller gives no chunk: the replay
rows of a call stay within the backend's `ROW_BUDGET`, and the split changes no score."""

import jax
import numpy as np
import pytest

import neuronjax
from neuronjax import sharding as sh
from neuronjax.attribution import PromptBatch, attribute, engine
from neuronjax.attribution.quadrature import layer_schedule
from neuronjax.errors import InputError
from tests import tiny_models


def test_auto_chunk_keeps_the_rows_within_the_budget(monkeypatch):
    monkeypatch.setitem(engine.ROW_BUDGET, "cpu", 2048)
    # within the budget: the whole batch in one call (16 x 119 = 1,904 rows)
    assert engine.auto_chunk(16, 119, "cpu") == 16
    # 16 x 480 = 7,680 rows: at most 4 prompts (1,920 rows) per call, 4 calls of 4
    assert engine.auto_chunk(16, 480, "cpu") == 4
    # 10 prompts need 3 calls of at most 4; spread evenly, 4 + 4 + 2 pads 2 rows, 4 is the least
    assert engine.auto_chunk(10, 480, "cpu") == 4
    # 9 prompts in 3 calls: 3 each, nothing padded (a cap of 4 alone would pad 3)
    assert engine.auto_chunk(9, 480, "cpu") == 3
    # one prompt's rows over the budget: still one prompt per call
    assert engine.auto_chunk(5, 5000, "cpu") == 1
    # rows split over 8 devices: the budget holds per device, and every call is a multiple of 8
    assert engine.auto_chunk(64, 480, "cpu", shards=8) == 32  # 4 prompts per device, 2 calls
    assert engine.auto_chunk(64, 119, "cpu", shards=8) == 64  # 8 x 119 = 952 rows per device
    assert engine.auto_chunk(40, 480, "cpu", shards=8) == 24  # 2 calls: 20 each, rounded up to 24
    # a backend without a budget runs the whole batch
    assert "tpu" not in engine.ROW_BUDGET
    assert engine.auto_chunk(64, 480, "tpu") == 64


def test_replay_rows_counts_the_largest_pass():
    schedule = (4, 4, 4, 4)
    assert engine.replay_rows(schedule, 2, "joined") == 16  # every variant in the one pass
    # two groups of a flat schedule: layers (0, 2) and (2, 4), cost 8 x 4 + 8 x 2 = 48 against 52
    # for a cut after layer 1 or 3, so each pass carries 8 variants
    assert engine.replay_rows(schedule, 2, "grouped") == 8
    # 32 nodes on layer 0 and 3 elsewhere, one group per layer: the first pass is the largest
    assert engine.replay_rows((32, 3, 3, 3), 4, "grouped") == 32
    assert engine.replay_rows((), 4, "joined") == 1  # grad x act and activations: one row per prompt


@pytest.mark.torch  # the tiny checkpoint is written by transformers
def test_attribute_splits_over_budget_batches_without_changing_scores(monkeypatch, tmp_path):
    tiny_models.save("llama3_rope", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    ids, mask = tiny_models.prefixed_batch(lm.config.vocab_size, 16, [3, 5, 2, 6, 4])
    rng = np.random.default_rng(0)
    opts = rng.integers(0, lm.config.vocab_size, (5, 4, 1)).astype(np.int32)
    batch = PromptBatch(ids, mask, opts, np.array([0, 1, 2, 3, 1], np.int32))
    steps = 3
    variants = sum(layer_schedule(lm.config.num_layers, steps))
    whole = attribute(lm, batch, "ig", steps, rule="gauss_legendre", replay="joined", chunk=5)

    rows = []
    compiled = engine.attribute_compiled

    def counting(state, part, *rest, **kw):
        rows.append(np.shape(part.input_ids)[0])
        return compiled(state, part, *rest, **kw)

    monkeypatch.setattr(engine, "attribute_compiled", counting)
    # room for two prompts' variants per call: 5 prompts go as 3 calls of 2 (the last padded)
    monkeypatch.setitem(engine.ROW_BUDGET, jax.default_backend(), 2 * variants + 1)
    split = attribute(lm, batch, "ig", steps, rule="gauss_legendre", replay="joined")
    assert rows == [2, 2, 2]
    for a, b in ((whole.scores, split.scores), (whole.f, split.f), (whole.option_scores, split.option_scores)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        # measured: 6.0e-7 of the largest score, 2.4e-7 of F, 3.2e-7 of the option scores
        assert np.abs(a - b).max() <= 2e-6 * np.abs(a).max()
    # an explicit chunk is taken as given, whatever the budget
    rows.clear()
    attribute(lm, batch, "ig", steps, rule="gauss_legendre", replay="joined", chunk=5)
    assert rows == [5]
    with pytest.raises(InputError, match="chunk = 0"):
        attribute(lm, batch, "ig", steps, chunk=0)

    # the devices a batch's rows are split over (the rows go on the data and fsdp axes): none
    # without a mesh, the data axis's 2, and data x fsdp = 4
    assert lm.rules.devices("batch", lm.mesh) == 1
    for shape, shards in (({"data": 2, "tensor": 4}, 2), ({"data": 2, "fsdp": 2, "tensor": 2}, 4)):
        on_mesh = neuronjax.load_model(str(tmp_path), mesh=sh.make_mesh(shape))
        assert on_mesh.rules.devices("batch", on_mesh.mesh) == shards
