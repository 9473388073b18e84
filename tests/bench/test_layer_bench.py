"""`neuronjax bench layer`: each part's matrix-product count by hand, and the parts timed end to end
on a tiny Llama."""

import types

import numpy as np
import pytest

from neuronjax.attribution.flops import layer_macs
from neuronjax.bench.layer import PARTS, main, measure, part_gflop, part_macs


def tiny_config(gated=True):
    return types.SimpleNamespace(hidden_size=32, num_heads=4, num_kv_heads=2, head_dim=8, intermediate_size=48,
                                 gated_mlp=gated)  # fmt: skip


def test_part_macs_by_hand():
    cfg = tiny_config()
    m = part_macs(cfg, rows=10, keys=7)
    # q and output 32 x (4 x 8) each, k and v 32 x (2 x 8) each: 1024 + 512 + 512 + 1024 per row
    assert m["projections"] == 10 * 3072
    # scores and weighted values: 4 heads x 8 dims x 7 keys, twice
    assert m["core"] == 10 * 2 * 4 * 8 * 7
    # gate, up and down: 3 x 32 x 48
    assert m["ffn"] == 10 * 4608 and m["product"] == 10 * 32 * 48
    assert m["projections"] + m["core"] + m["ffn"] == layer_macs(cfg, 10, 7)
    plain = tiny_config(gated=False)
    assert part_macs(plain, 10, 7)["ffn"] == 10 * 2 * 32 * 48
    assert part_macs(plain, 10, 7)["ffn"] + part_macs(plain, 10, 7)["projections"] + part_macs(plain, 10, 7)[
        "core"
    ] == layer_macs(plain, 10, 7)
    g = part_gflop(cfg, 10, 7)
    assert set(g) == set(PARTS)
    assert g["layer"] == g["all layers"] == pytest.approx(2 * layer_macs(cfg, 10, 7) / 1e9)
    assert g["attention"] == pytest.approx(g["attention core"] + 2 * m["projections"] / 1e9)


@pytest.mark.torch  # the tiny checkpoint is written by transformers
def test_every_part_is_timed_with_its_count(tmp_path):
    import neuronjax
    from neuronjax.attribution import PromptBatch
    from tests import tiny_models

    tiny_models.save("llama3_rope", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    ids, mask = tiny_models.prefixed_batch(lm.config.vocab_size, 6, [3, 5])
    rng = np.random.default_rng(0)
    batch = PromptBatch(ids, mask, rng.integers(0, lm.config.vocab_size, (2, 4, 1)).astype(np.int32),
                        np.array([0, 1], np.int32))  # fmt: skip
    r = measure(lm, batch, variants=5, layer=1, rounds=2)
    assert r["rows"] == 10 and r["prompts"] == 2 and r["layers"] == lm.config.num_layers
    # the cached positions (all but the last; columns of padding only may be cut) and the row's own
    assert int(mask.sum(axis=1).max()) <= r["keys"] <= ids.shape[1]
    names = [(p["part"], p["pass"]) for p in r["parts"]]
    assert names[0] == ("product", "fwd")
    assert sorted(names[1:]) == sorted((part, pas) for part in PARTS[1:] for pas in ("fwd", "fwd+bwd"))
    gflop = part_gflop(lm.config, 10, r["keys"])
    for p in r["parts"]:
        assert p["gflop"] == pytest.approx(gflop[p["part"]] * (2 if p["pass"] == "fwd+bwd" else 1))
        assert p["ms"] > 0 and len(p["ms_rounds"]) == 2
        assert p["gflop_per_s"] == pytest.approx(p["gflop"] / (p["ms"] / 1e3))
    assert r["parts"][0]["of_product_rate"] == 1.0


def test_bad_arguments_are_named():
    with pytest.raises(SystemExit):
        main(["--rounds", "0"])
    with pytest.raises(SystemExit):
        main(["--variants", "-1"])
