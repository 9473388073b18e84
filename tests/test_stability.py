"""`neuronjax stability`: the Jaccard index and its exact chance value against enumeration by
hand, the replicates' item blocks, the planted model (NeuronLLM finds the same planted neurons in
every disjoint block: Jaccard 1, far above chance), the JSON round trip, the CLI's errors, and a
run of the CLI on a tiny on-disk model."""

import importlib.util
import itertools
import json
import math
import os
from fractions import Fraction

import numpy as np
import pytest

from neuronjax.cli import main
from neuronjax.errors import ConfigError, InputError
from neuronjax.identify import AttributionConfig
from neuronjax.methods import NeuronLLM, Random
from neuronjax.stability import (
    ACROSS,
    STABILITY,
    WITHIN,
    Stability,
    chance_jaccard,
    chance_p,
    compare,
    hypergeometric,
    identify_replicates,
    intersection_distribution,
    jaccard,
    mean_interval,
    parse_seeds,
    replicate_blocks,
    subset,
)
from tests.methods import planted
from tests.sweep.files import TASKS, base_config

TASK = os.path.join(TASKS, "world_facts.yaml")

# ----------------------------------------------------------------------------- the numbers


def test_jaccard_by_hand():
    a = np.zeros((2, 5), bool)
    b = np.zeros((2, 5), bool)
    a[0, [0, 1, 2]] = True
    a[1, 4] = True
    b[0, [1, 2]] = True
    b[1, [3, 4]] = True
    # A = {0, 1, 2, 9}, B = {1, 2, 8, 9}: shared {1, 2, 9}, union {0, 1, 2, 8, 9}
    assert jaccard(a, b) == pytest.approx(3 / 5)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, ~a) == 0.0
    assert math.isnan(jaccard(np.zeros((2, 5), bool), np.zeros((2, 5), bool)))


def test_hypergeometric_against_counting_subsets():
    n, a, b = 7, 3, 4
    fixed = set(range(a))
    counts = np.zeros(min(a, b) + 1)
    for chosen in itertools.combinations(range(n), b):
        counts[len(fixed & set(chosen))] += 1
    np.testing.assert_allclose(hypergeometric(n, a, b), counts / counts.sum(), rtol=1e-12, atol=1e-15)


def _enumerate_chance(a_counts, b_counts, n, observed_shared=None):
    """E[Jaccard] (and P(shared >= observed)) of a fixed A against every B with the per-layer
    counts b_counts, in exact fractions: each B equally likely."""
    fixed = [set(range(a)) for a in a_counts]
    per_layer = [list(itertools.combinations(range(n), b)) for b in b_counts]
    total, above, count = Fraction(0), 0, 0
    size = sum(a_counts) + sum(b_counts)
    for choice in itertools.product(*per_layer):
        shared = sum(len(f & set(c)) for f, c in zip(fixed, choice))
        total += Fraction(shared, size - shared)
        above += observed_shared is not None and shared >= observed_shared
        count += 1
    return float(total / count), above / count


@pytest.mark.parametrize("a_counts,b_counts", [((2, 1, 0), (1, 2, 2)), ((3, 0), (3, 0)), ((1, 2), (2, 2))])
def test_chance_jaccard_against_enumeration(a_counts, b_counts):
    n = 5
    expected, p = _enumerate_chance(a_counts, b_counts, n, observed_shared=2)
    assert chance_jaccard(a_counts, b_counts, n) == pytest.approx(expected, rel=1e-12)
    assert chance_p(a_counts, b_counts, n, 2) == pytest.approx(p, rel=1e-12)
    assert intersection_distribution(a_counts, b_counts, n).sum() == pytest.approx(1.0)
    assert chance_p(a_counts, b_counts, n, 0) == 1.0
    assert math.isnan(chance_jaccard((0, 0), (0, 0), n))


def test_chance_jaccard_against_simulation_on_a_model_sized_grid():
    """A 30 x 1536 grid with K = 100 spread over the layers: the exact value against 4000 random
    pairs drawn with numpy (a check of the convolution at the sizes of a real run)."""
    rng = np.random.default_rng(0)
    layers, n = 30, 1536
    a_counts = rng.multinomial(100, np.ones(layers) / layers)
    b_counts = rng.multinomial(100, np.ones(layers) / layers)
    sims = []
    for _ in range(4000):
        shared = sum(len(set(rng.choice(n, a, replace=False)) & set(rng.choice(n, b, replace=False)))
                     for a, b in zip(a_counts, b_counts))  # fmt: skip
        sims.append(shared / (200 - shared))
    exact = chance_jaccard(a_counts, b_counts, n)
    assert abs(exact - np.mean(sims)) < 4 * np.std(sims) / np.sqrt(len(sims))


def test_mean_interval():
    iv = mean_interval([0.2, 0.4, math.nan, 0.9], bootstrap=500, seed=0)
    assert iv.value == pytest.approx(0.5)
    assert 0.2 <= iv.low <= iv.value <= iv.high <= 0.9
    same = mean_interval([0.3, 0.3, 0.3], bootstrap=50, seed=1)
    assert (same.value, same.low, same.high) == pytest.approx((0.3, 0.3, 0.3))
    assert math.isnan(mean_interval([math.nan], 10, 0).value)


# ----------------------------------------------------------------------------- the replicates


def test_blocks_are_disjoint_equal_and_in_split_order():
    ids = [f"i{j}" for j in range(11)]
    blocks = replicate_blocks(ids, 3)
    assert [len(b) for b in blocks] == [3, 3, 3]
    assert [x for b in blocks for x in b] == ids[:9]  # consecutive, the last two left out
    assert len(set().union(*map(set, blocks))) == 9
    assert replicate_blocks(ids, 2, per=4) == [tuple(ids[:4]), tuple(ids[4:8])]


@pytest.mark.parametrize(
    "replicates,per,message",
    [
        (1, None, "--replicates = 1: expected an integer >= 2"),
        (6, None, "--replicates 6: the identification items are 5, too few for 6 disjoint replicates of 1 item"),
        (2, 3, "--replicates 2 x --items 3: the identification items are 5, too few for 2 disjoint replicates"),
        (2, 0, "--items = 0: expected an integer >= 1"),
    ],
)
def test_block_errors_name_the_flag(replicates, per, message):
    with pytest.raises(ConfigError, match="task.split.max_identify|expected an integer") as err:
        replicate_blocks([f"i{j}" for j in range(5)], replicates, per)
    assert message in str(err.value)


def test_subset_keeps_only_the_block_items_proxies():
    enc = planted.task(num_items=6)
    part = subset(enc, ("planted-4", "planted-1"))
    assert part.items == ("planted-4", "planted-1") and part.split.identify == ("planted-4", "planted-1")
    assert len(part.records) == 2 * 3
    old = {(r.item_index, r.proxy_index): r for r in enc.records}
    for r in part.records:
        source = old[({0: 4, 1: 1}[r.item_index], r.proxy_index)]
        np.testing.assert_array_equal(r.prompt_ids, source.prompt_ids)
        assert r.gold == source.gold
    with pytest.raises(InputError, match="planted-99"):
        subset(enc, ("planted-99",))


def test_parse_seeds():
    assert parse_seeds("0,1") == (0, 1) and parse_seeds(None) is None
    for bad in ("0,x", "1,1", "-1", ""):
        with pytest.raises(ConfigError, match="--split-seeds"):
            parse_seeds(bad)


# ----------------------------------------------------------------------------- the planted model


@pytest.fixture(scope="module")
def planted_replicates():
    lm = planted.model()
    methods = [NeuronLLM(k=2, z=4), Random(k=2)]
    reps, unused = identify_replicates(lm, planted.task(num_items=13), methods, AttributionConfig("ig", steps=4),
                                       replicates=3, block_items=4)  # fmt: skip
    return reps, unused


def test_planted_neurons_come_back_in_every_block(planted_replicates):
    reps, unused = planted_replicates
    assert unused == 1 and [len(r.items) for r in reps] == [4, 4, 4]
    assert not set(reps[0].items) & set(reps[1].items) and not set(reps[1].items) & set(reps[2].items)
    grid = (planted.LAYERS, planted.MLP)
    for r in reps:
        np.testing.assert_array_equal(r.mask("neuronllm", "good", grid), planted.mask(planted.GOOD))
        np.testing.assert_array_equal(r.mask("neuronllm", "bad", grid), planted.mask(planted.BAD))
    rows = compare(reps, ("neuronllm", "random"), grid, bootstrap=200, seed=0)
    assert {r.scope for r in rows} == {WITHIN}
    # chance by hand: two random pairs among layer 1's 48 neurons share 0, 1 or 2 neurons
    pairs = math.comb(48, 2)
    p1, p2 = 2 * 46 / pairs, 1 / pairs
    chance = p1 * (1 / 3) + p2 * 1.0
    for side in ("good", "bad"):
        row = next(r for r in rows if (r.method, r.side) == ("neuronllm", side))
        assert len(row.pairs) == 3 and all(p.jaccard == 1.0 and p.shared_items == 0 for p in row.pairs)
        assert (row.jaccard.value, row.jaccard.low, row.jaccard.high) == (1.0, 1.0, 1.0)
        assert row.chance == pytest.approx(chance, rel=1e-12)
        assert row.p_max == pytest.approx(p2, rel=1e-9)
    # the random control is drawn anew in every replicate (seed + replicate number)
    random_good = [r.mask("random", "good", grid) for r in reps]
    assert all(m.sum(axis=1).tolist() == [0, 2] for m in random_good)
    assert not (np.array_equal(random_good[0], random_good[1]) and np.array_equal(random_good[1], random_good[2]))
    rnd = next(r for r in rows if (r.method, r.side) == ("random", "good"))
    assert rnd.jaccard.value < 1.0


def test_json_round_trip(planted_replicates, tmp_path):
    reps, _ = planted_replicates
    grid = (planted.LAYERS, planted.MLP)
    rows = compare(reps, ("neuronllm", "random"), grid, bootstrap=50, seed=0)
    result = Stability("r", "planted", {"model_id": "planted"}, grid, ("neuronllm", "random"), 2, {"method": "ig"},
                       (0,), 4, {0: 1}, 50, 0, tuple(reps), rows, 1.5)  # fmt: skip
    path = str(tmp_path / STABILITY)
    result.save(path)
    back = Stability.load(path)
    assert back.to_json() == json.loads(json.dumps(result.to_json()))
    assert back.row("neuronllm", "bad").jaccard.value == 1.0
    table = back.table()
    assert "| neuronllm | good | within seed | 3 | 2 | 1.000 [1.000, 1.000] |" in table


def test_pairs_across_split_seeds_are_reported_apart(planted_replicates):
    reps, _ = planted_replicates
    import dataclasses

    moved = [reps[0], reps[1], dataclasses.replace(reps[2], split_seed=1, items=reps[0].items[:2] + reps[2].items[2:])]
    rows = compare(moved, ("neuronllm",), (planted.LAYERS, planted.MLP), bootstrap=20, seed=0)
    within = next(r for r in rows if r.side == "good" and r.scope == WITHIN)
    across = next(r for r in rows if r.side == "good" and r.scope == ACROSS)
    assert [(p.a, p.b) for p in within.pairs] == [(0, 1)]
    assert [(p.a, p.b, p.shared_items) for p in across.pairs] == [(0, 2, 2), (1, 2, 0)]


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    "args,message",
    [
        (["--replicates", "1"], "--replicates = 1: expected an integer >= 2"),
        (["--replicates", "2", "--split-seeds", "0,0"], "--split-seeds = '0,0'"),
        (["--replicates", "2", "identify.methods=[neuronllm,nosuch]"], "identify.methods"),
        (["--replicates", "2", "--bootstrap", "0"], "--bootstrap = 0: expected an integer >= 1"),
    ],
)
def test_cli_errors(args, message, capsys, tmp_path):
    assert main(["stability", "quickstart", f"output={tmp_path}", *args]) == 2
    err = capsys.readouterr().err
    assert "neuronjax stability: error:" in err and message in err
    assert not os.path.exists(tmp_path / "quickstart" / STABILITY)


@pytest.mark.torch
@pytest.mark.real_model
def test_cli_on_a_tiny_model(tiny_dir, tmp_path, capsys):
    config = base_config(tmp_path, str(tiny_dir))
    common = [f"output={tmp_path}", "identify.methods=[neuronllm,random]", "task.split.max_identify=4", "--quiet"]
    assert main(["stability", config, "--replicates", "5", *common]) == 2
    err = capsys.readouterr().err
    assert "--replicates 5: the identification items of task 'world_facts'" in err
    assert "are 4, too few for 5 disjoint replicates" in err and "task.split.max_identify" in err
    assert main(["stability", config, "--replicates", "2", "--split-seeds", "0,1", *common]) == 0
    out = capsys.readouterr().out
    result = Stability.load(str(tmp_path / "base" / STABILITY))
    assert result.split_seeds == (0, 1) and result.items_per_replicate == 2 and len(result.replicates) == 4
    from neuronjax.tasks.config import load_task_and_split, load_task_config

    for seed in (0, 1):
        a, b = (r for r in result.replicates if r.split_seed == seed)
        assert not set(a.items) & set(b.items)
        # the blocks are the split's identification items, in split order, all of them (4 = 2 x 2)
        task_config = load_task_config(TASK, {"split.max_identify": 4, "split.seed": seed})
        assert a.items + b.items == load_task_and_split(task_config)[1].identify
    assert {(r.method, r.side, r.scope) for r in result.rows} == {
        (m, s, scope) for m in ("neuronllm", "random") for s in ("good", "bad") for scope in (WITHIN, ACROSS)
    }
    assert len(result.row("neuronllm", "good", WITHIN).pairs) == 2  # one per seed
    assert len(result.row("neuronllm", "good", ACROSS).pairs) == 4
    for r in result.replicates:
        assert len(r.sets["neuronllm"]["good"]) <= 5
    assert "| neuronllm | good | within seed | 2 |" in out and "stability.json" in out


def test_report_shows_the_stability_table(planted_replicates, tmp_path):
    from neuronjax.evaluation.results import Interval
    from neuronjax.report import markdown_report
    from neuronjax.report.pictures import stability_picture
    from tests.sweep.files import evaluation_of

    reps, _ = planted_replicates
    grid = (planted.LAYERS, planted.MLP)
    rows = compare(reps, ("neuronllm", "random"), grid, bootstrap=50, seed=0)
    run = tmp_path / "run"
    run.mkdir()
    evaluation_of(Interval(0.5, 0.4, 0.6)).save(str(run / "evaluation.json"))
    assert "Stability" not in markdown_report([str(run)])
    assert stability_picture(str(run), str(tmp_path), "stability", "here") is None
    Stability("run", "planted", {}, grid, ("neuronllm", "random"), 2, {}, (0,), 4, {0: 1}, 50, 0, tuple(reps), rows,
              2.0).save(str(run / STABILITY))  # fmt: skip
    text = markdown_report([str(run)])
    assert "### Stability" in text
    assert "3 replicates x 4 identification items per split seed 0 (identification items left out: 1 (seed 0))" in text
    assert "| neuronllm | bad | within seed | 3 | 2 | 1.000 [1.000, 1.000] |" in text
    if importlib.util.find_spec("matplotlib") is not None:
        pic = stability_picture(str(run), str(tmp_path), "stability", "here")
        assert pic.file and os.path.exists(tmp_path / pic.file)
        np.testing.assert_array_equal(pic.data["observed"][0], [1.0, 1.0, 1.0])
        from neuronjax.report import write_html_report

        page = write_html_report([str(run)], str(tmp_path / "page"))
        assert any(p.name == "stability" and p.file for p in page.pictures)
        html = (tmp_path / "page" / "index.html").read_text()
        assert '<h3 id="stability">Stability</h3>' in html and "stability.png" in html
