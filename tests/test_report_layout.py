"""The report leads with the finding: the headline sentence and picture built from a typed
evaluation (checked against hand-written numbers), the page's reading order (finding, contents,
parts, settings last), the neuron cards section, accuracy-against-K rows in numeric K order, the
random control marked as such, and an overlap of disjoint sets said in words."""

import json
import os
import re

import numpy as np

from neuronjax.evaluation.results import ConditionResult, Evaluation, Interval, Metrics
from neuronjax.report import headline, markdown_report, write_html_report
from neuronjax.report.tables import k_curve
from tests.test_report_pictures import A_BAD, A_GOOD, R_BAD, R_GOOD, _make_run


def _row(method, mode, acc, vs_random=None, control=False, k=100, good=100, bad=100, vs_none=0.0):
    iv = Interval(acc, acc - 0.05, acc + 0.05)
    diff = Interval(vs_none, vs_none - 0.01, vs_none + 0.01)
    return ConditionResult(method, mode, k, control, good, bad, Metrics(iv, iv), Metrics(diff, diff),
                           None if vs_random is None else Metrics(vs_random, vs_random), ())  # fmt: skip


def _evaluation(rows, curve=()) -> Evaluation:
    return Evaluation("world_facts", 98, 294, False, (0, 1, 2), 1000, tuple(rows), tuple(curve),
                      model={"layers": 30, "mlp": 1536})  # fmt: skip


BASE = _row("none", "none", 0.687, k=0, good=0, bad=0)


def test_headline_leads_with_the_largest_one_set_lift_against_random():
    ev = _evaluation([
        BASE,
        _row("neuronllm", "suppress_good", 0.463, Interval(-0.224, -0.291, -0.162)),
        _row("neuronllm", "suppress_good", 0.687, control=True, vs_none=0.0),
        _row("neuronllm", "suppress_bad", 0.932, Interval(0.249, 0.179, 0.320)),
        _row("neuronllm", "suppress_bad", 0.683, control=True, vs_none=-0.004),
        _row("neuronllm", "enhancer", 0.976, Interval(0.286, 0.212, 0.363)),  # larger, but edits both sets
        _row("neuronllm", "enhancer", 0.690, control=True, vs_none=0.003),
        _row("random", "suppress_bad", 0.680, Interval(-0.002, -0.016, 0.012)),
    ])  # fmt: skip
    found = headline(ev)
    assert found.lead.mode == "suppress_bad" and found.counter.mode == "suppress_good"
    assert found.text() == (
        "Silencing neuronllm's 100 bad neurons (0.2% of the model's 46,080 neurons) lifts held-out accuracy from "
        "0.687 to 0.932 (+0.249 against random sets of the same per-layer counts [95% CI +0.179, +0.320]). "
        "Silencing its 100 good neurons lowers it to 0.463 (-0.224 [-0.291, -0.162]). "
        "Random sets of the same per-layer counts, under the same modes, move it by at most 0.004."
    )


def test_headline_without_a_significant_effect_says_so():
    ev = _evaluation([BASE, _row("kn_ig", "suppress_good", 0.70, Interval(0.013, -0.01, 0.036)),
                      _row("kn_ig", "suppress_bad", 0.687, Interval(0.0, 0.0, 0.0), bad=0)])  # fmt: skip
    found = headline(ev)
    assert found.lead is None and found.counter is None
    assert found.sentences()[0] == ("No intervention on kn_ig's sets moves held-out accuracy (0.687) beyond random "
                                    "sets of the same per-layer counts; the largest difference, suppress_good, is "
                                    "+0.013 [-0.010, +0.036].")  # fmt: skip
    assert headline(_evaluation([BASE])) is None


def test_k_rows_in_evaluation_order_and_numeric_k():
    curve = []
    for method in ("neuronllm", "lape"):
        for k in (300, 10, 100, 30):
            curve += [_row(method, "suppress_good", 0.5, Interval(0.1, 0.05, 0.15), k=k),
                      _row(method, "suppress_good", 0.6, control=True, k=k)]  # fmt: skip
    rows = [BASE, _row("neuronllm", "suppress_good", 0.4), _row("lape", "suppress_good", 0.6)]
    table = k_curve(_evaluation(rows, curve))
    assert [(r[0], r[2]) for r in table.rows] == [("neuronllm", "10"), ("neuronllm", "30"), ("neuronllm", "100"),
                                                  ("neuronllm", "300"), ("lape", "10"), ("lape", "30"),
                                                  ("lape", "100"), ("lape", "300")]  # fmt: skip


def _cards_json(run: str) -> dict:
    def card(layer, index, side, rank, score):
        return {"layer": layer, "index": index, "side": side, "rank": rank, "score": score,
                "promoted": [{"token": 5, "text": " Paris", "logit": 1.5}, {"token": 6, "text": "a|b", "logit": 1.0}],
                "suppressed": [{"token": 9, "text": " Rome", "logit": -2.0}],
                "prompts": [{"item": 3, "item_id": "wf:0003", "proxy": 2, "activation": -0.75,
                             "question": "What is the capital of France?"}],
                "mean_activation": 0.1}  # fmt: skip

    data = {"method": "neuronllm", "task": "world_facts", "proxies": 30,
            "cards": [card(0, 0, "good", 1, 0.5), card(1, 2, "good", 2, 0.25), card(1, 5, "bad", 1, -0.4)]}  # fmt: skip
    with open(os.path.join(run, "cards.json"), "w") as f:
        json.dump(data, f)
    return data


def test_the_page_reads_finding_first_settings_last(tmp_path):
    run = _make_run(tmp_path, "facts", "world_facts", {"neuronllm": (A_GOOD, A_BAD), "random": (R_GOOD, R_BAD)})
    _cards_json(run)
    result = write_html_report([run], str(tmp_path / "page"))
    with open(result.index) as f:
        page = f.read()
    # finding (sentence, then its picture), contents, the parts, the settings last
    order = ['<p class="lead">Silencing neuronllm', 'src="headline.png"', '<nav class="contents">',
             '<h3 id="results">Results</h3>', "<th>accuracy [95% CI]</th>", 'src="interventions.png"',
             '<h3 id="k">', 'src="k_curve.png"', '<h3 id="where">', 'src="layer_counts.png"',
             '<h3 id="cards">Neuron cards</h3>', '<div class="card good">', '<h3 id="settings">', "toy-model"]  # fmt: skip
    at = [page.index(x) for x in order]
    assert at == sorted(at), [x for x, i in zip(order, at) if i != sorted(at)[at.index(i)]]
    assert re.findall(r'src="([^"]+)"', page)[0] == "headline.png"
    for anchor in ("results", "k", "where", "cards", "settings"):
        assert f'href="#{anchor}"' in page and f'id="{anchor}"' in page
    assert page.count('<div class="card good">') == 2 and page.count('<div class="card bad">') == 1
    assert "&#x27; Paris&#x27;" in page and "What is the capital of France? (wf:0003, proxy 2)" in page
    # the headline picture holds the evaluation's numbers of the main method
    pic = next(p for p in result.pictures if p.name == "headline")
    with open(os.path.join(run, "evaluation.json")) as f:
        ev = json.load(f)
    rows = [r for r in ev["rows"] if r["method"] == "neuronllm"]
    assert pic.data["modes"] == [r["mode"] for r in rows if not r["control"]]
    for i, mode in enumerate(pic.data["modes"]):
        for control, key in ((False, "accuracy"), (True, "control")):
            r = next(r for r in rows if r["mode"] == mode and r["control"] == control)
            assert pic.data[key][i].tolist() == [r["accuracy"][k] for k in ("value", "low", "high")]
    # the random control's layer counts are marked as the control; disjoint sets said in words
    layers = next(p for p in result.pictures if p.name == "layer_counts")
    assert "random (grey) is the random control" in layers.caption
    overlap = next(p for p in result.pictures if p.name == "overlap_methods")
    assert overlap.caption.startswith("The sets of every method of run facts. No two of these sets share a neuron.")


def test_markdown_cards_section(tmp_path):
    run = _make_run(tmp_path, "facts", "world_facts", {"neuronllm": (A_GOOD, A_BAD)})
    text = markdown_report([run])
    assert "No neuron cards: " in text and "cards.json is missing" in text
    _cards_json(run)
    text = markdown_report([run])
    lines = text.splitlines()
    assert lines[0] == "## facts: task world_facts" and lines[2].startswith("**") and lines[2].endswith("**")
    head = lines.index("| good neuron (layer:index) | score | promotes | suppresses | most active on |")
    assert lines[head + 2] == ("| 0:0 (#1) | +0.5 | ' Paris', 'a\\|b' | ' Rome' | What is the capital of France? "
                               "(-0.75) |")  # fmt: skip
    assert "| 1:5 (#1) | -0.4 |" in text
    assert text.index("### Neuron cards") < text.index("### Settings") and text.rstrip().endswith(
        "last prompt position."
    )


def test_overlap_of_sets_that_share_neurons_names_the_most(tmp_path):
    shared = A_GOOD.copy()
    other = np.zeros_like(A_BAD)
    other[2, 0] = True
    run = _make_run(
        tmp_path, "facts", "world_facts", {"neuronllm": (A_GOOD, A_BAD), "mean_activation": (shared, other)}
    )
    result = write_html_report([run], str(tmp_path / "page"))
    overlap = next(p for p in result.pictures if p.name == "overlap_methods")
    assert "The most any two share is 4 neurons." in overlap.caption
