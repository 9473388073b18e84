"""A saved run back in a notebook (`neuronjax.load_run`) on a run made here with a tiny model: the
DataFrames hold what evaluation.json and the saved sets hold, the per-proxy predictions reproduce
every accuracy, and the model's generate / decode agree with a step-by-step greedy reference."""

import json

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

import neuronjax  # noqa: E402
from neuronjax.cli import main  # noqa: E402
from neuronjax.io.neurons import NeuronSet  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.real_model]



@pytest.fixture(scope="module")
def run_dir(tiny_dir, tmp_path_factory):
    from tests.tiny_models import world_facts_run_config

    out = tmp_path_factory.mktemp("runs")
    path = world_facts_run_config(
        out, tiny_dir,
        identify={"methods": ["neuronllm", "random"], "k": 5, "z": 10, "attribution": {"method": "ig", "steps": 2, "groups": 1}},
        evaluate={"modes": ["suppress_good", "degrader"], "random_seeds": 2, "bootstrap": 40, "k_values": [3]},
        task_overrides={"split.max_identify": 4, "split.max_eval": 4},
    )  # fmt: skip
    assert main(["run", path, "--quiet", "--force"]) == 0
    return out / "tiny"


@pytest.fixture(scope="module")
def run(run_dir):
    return neuronjax.load_run(str(run_dir))


def test_config_and_sets(run, run_dir):
    from safetensors.numpy import load_file

    assert run.config.name == "tiny" and run.config.identify.k == 5 and list(run.sets) == ["neuronllm", "random"]
    for name, ns in run.sets.items():
        saved = load_file(str(run_dir / "neurons" / name / "neurons.safetensors"))
        np.testing.assert_array_equal(ns.good, saved["good"])
        np.testing.assert_array_equal(ns.bad, saved["bad"])
        np.testing.assert_array_equal(ns.scores, saved["scores"])
    assert "evaluated" in repr(run) and "'tiny'" in repr(run)


def test_evaluation_frame_equals_evaluation_json(run, run_dir):
    saved = json.loads((run_dir / "evaluation.json").read_text())
    frame = run.evaluation
    rows = saved["rows"] + [c for c in saved["curve"] if not any(
        (c["method"], c["mode"], c["k"], c["control"]) == (r["method"], r["mode"], r["k"], r["control"])
        for r in saved["rows"])]  # fmt: skip
    assert len(frame) == len(rows) and len(saved["curve"]) > 0
    for (_, got), want in zip(frame.iterrows(), rows):
        assert (got["method"], got["mode"], got["k"], bool(got["control"])) == (
            want["method"], want["mode"], want["k"], want["control"])  # fmt: skip
        assert (got["good"], got["bad"]) == (want["good"], want["bad"])
        for metric in ("accuracy", "consistent"):
            for suffix, key in (("", "value"), ("_low", "low"), ("_high", "high")):
                assert got[metric + suffix] == want[metric][key]
                assert got["vs_none_" + metric + suffix] == want["vs_none"][metric][key]
                if "vs_random" in want:
                    assert got["vs_random_" + metric + suffix] == want["vs_random"][metric][key]
                else:
                    assert np.isnan(got["vs_random_" + metric + suffix])


def test_predictions_reproduce_every_accuracy(run, run_dir):
    """Accuracy recomputed from the saved option scores (gold strictly above every other option,
    the paper's criterion), pooled over the seeds of a control; consistent accuracy from the items
    whose every proxy is right, averaged over seeds."""
    saved = json.loads((run_dir / "evaluation.json").read_text())
    p = run.predictions
    scores = p[[c for c in p.columns if c.startswith("score_")]].to_numpy()
    assert scores.shape[1] == 4 and len(p) > 0
    gold = p["gold"].to_numpy()
    gold_score = scores[np.arange(len(p)), gold]
    others = np.where(np.arange(4)[None] == gold[:, None], -np.inf, scores)
    right = gold_score > others.max(axis=1)
    np.testing.assert_array_equal(right, p["correct"].to_numpy(bool))
    np.testing.assert_array_equal(p["chosen"].to_numpy(), scores.argmax(axis=1))
    p = p.assign(right=right)
    held_out_proxies = saved["proxies"]
    for r in saved["rows"] + saved["curve"]:
        rows = p[(p["method"] == r["method"]) & (p["mode"] == r["mode"]) & (p["k"] == r["k"])
                 & (p["control"].astype(bool) == r["control"])]  # fmt: skip
        seeds = sorted(rows["seed"].unique())
        assert seeds == (saved["random_seeds"] if r["control"] else [-1])
        assert len(rows) == held_out_proxies * len(seeds)
        assert rows["right"].mean() == pytest.approx(r["accuracy"]["value"], abs=1e-12)
        every = rows.groupby(["seed", "item"])["right"].all().groupby("seed").mean().mean()
        assert every == pytest.approx(r["consistent"]["value"], abs=1e-12)


def test_predictions_csv_without_pyarrow(run, run_dir, monkeypatch, tmp_path):
    """Where pyarrow is missing the same columns go to predictions.csv and read back equal."""
    import sys

    from neuronjax.run import predictions_path, write_predictions

    columns = {c: run.predictions[c].to_numpy() for c in run.predictions.columns}
    columns = {c: v.astype(object) if v.dtype.kind == "O" else v for c, v in columns.items()}
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
        without.setitem(sys.modules, "pyarrow.parquet", None)
        path = write_predictions(str(tmp_path), columns)
    assert path.endswith("predictions.csv") and predictions_path(str(tmp_path)) == path
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, run.predictions.reset_index(drop=True), check_dtype=False)


def test_intervention_edits_the_set(run):
    ns = run.sets["neuronllm"]
    iv = run.intervention("neuronllm", "degrader")  # good silenced (x0), bad doubled (x2)
    expected = np.where(ns.good, 0.0, np.where(ns.bad, 2.0, 1.0))
    np.testing.assert_array_equal(np.asarray(iv.scale), expected)
    assert not np.asarray(iv.shift).any() and iv.positions == "last"
    with pytest.raises(KeyError, match="'kn_ig': no such set"):
        run.intervention("kn_ig", "degrader")


def test_model_generate_and_decode_against_a_greedy_loop(run):
    lm = run.model()
    assert lm.config.num_layers == run.sets["neuronllm"].good.shape[0]
    text = "The capital of France is"
    ids, _ = lm.encode([text])
    assert lm.decode(ids[0]) == text and lm.decode(ids) == [text]
    iv = run.intervention("neuronllm", "degrader")
    got = lm.generate(text, iv, max_new_tokens=4)
    assert isinstance(got, str) and lm.generate([text], iv, max_new_tokens=4) == [got]
    # Reference: the whole sequence through the model per step, argmax of the last position. The
    # last-position intervention edits each new token's position (the last when it is computed).
    seq = list(lm.tokenizer.encode(text, add_special_tokens=True))
    new = []
    for _ in range(4):
        logits = np.asarray(lm.logits(np.asarray([seq], np.int32), None, iv))[0, -1]
        new.append(int(logits.argmax()))
        seq.append(new[-1])
    eos = lm.config.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
    cut = next((j for j, t in enumerate(new) if t in eos), len(new))
    assert got == lm.decode(new[:cut])


def test_neuron_set_repr_frame_and_treescope():
    good = np.zeros((3, 8), bool)
    bad = np.zeros((3, 8), bool)
    scores = np.zeros((3, 8), np.float32)
    for layer, index, s in ((0, 1, 0.5), (2, 7, 0.9), (2, 3, 0.7)):
        good[layer, index], scores[layer, index] = True, s
    bad[1, 4], scores[1, 4] = True, -0.3
    ns = NeuronSet(scores, good, bad, {"method": {"name": "neuronllm", "k": 3}})
    assert repr(ns) == "NeuronSet(neuronllm, K=3, 3 layers x 8 neurons; good 3 (L0:1 L2:2); bad 1 (L1:1))"
    frame = ns.to_dataframe()
    assert frame[["layer", "index", "side"]].values.tolist() == [[2, 7, "good"], [2, 3, "good"], [0, 1, "good"],
                                                                   [1, 4, "bad"]]  # fmt: skip
    np.testing.assert_allclose(frame["score"], [0.9, 0.7, 0.5, -0.3], rtol=1e-6)
    treescope = pytest.importorskip("treescope")
    text = treescope.render_to_text(ns)
    assert text.startswith("NeuronSet(") and "method='neuronllm'" in text and "k=3" in text
