"""`neuronjax report` pictures and HTML page, on synthetic run directories: saved neuron sets with
known masks and a hand-made evaluation.json in the format neuronjax.evaluation writes."""

import json
import os
import re

import numpy as np
import pytest

from neuronjax.report import plots
from neuronjax.cli import main
from neuronjax.io.neurons import NeuronSet, save_neurons

LAYERS, MLP = 3, 8
MODES = ("suppress_good", "suppress_bad", "enhancer", "degrader")
PNG = b"\x89PNG\r\n\x1a\n"


def _mask(cells) -> np.ndarray:
    m = np.zeros((LAYERS, MLP), bool)
    for layer, neuron in cells:
        m[layer, neuron] = True
    return m


def _iv(value: float, spread: float = 0.05) -> dict:
    return {"value": value, "low": value - spread, "high": value + spread}


def _row(method, mode, k, control, good, bad, acc, base=0.6, letters=(0.25, 0.25, 0.25, 0.25)):
    row = {"method": method, "mode": mode, "k": k, "control": control, "good": good, "bad": bad,
           "accuracy": _iv(acc), "consistent": _iv(acc - 0.1),
           "vs_none": {"accuracy": _iv(acc - base, 0.02), "consistent": _iv(acc - base, 0.02)},
           "letters": list(letters)}  # fmt: skip
    if not control and method != "none":
        row["vs_random"] = {"accuracy": _iv(acc - 0.6, 0.03), "consistent": _iv(acc - 0.6, 0.03)}
    return row


def _evaluation(name: str, task: str, sets: dict, with_curve: bool = True) -> dict:
    rows = [_row("none", "none", 0, False, 0, 0, 0.6, letters=(0.4, 0.2, 0.2, 0.2))]
    curve = []
    for i, (m, ns) in enumerate(sets.items()):
        g, b = int(ns.good.sum()), int(ns.bad.sum())
        for j, mode in enumerate(MODES):
            acc = round(0.3 + 0.05 * i + 0.1 * j, 3)
            rows.append(_row(m, mode, 4, False, g, b, acc, letters=(0.1 * j, 0.5, 0.3, 0.2 - 0.1 * j + 0.1)))
            rows.append(_row(m, mode, 4, True, g, b, 0.6))
        if with_curve and m != "random":
            for k in (1, 2):
                for mode in ("suppress_good", "suppress_bad"):
                    curve.append(_row(m, mode, k, False, k, k, 0.5 + 0.01 * k))
                    curve.append(_row(m, mode, k, True, k, k, 0.6))
    return {
        "task": task, "items": 10, "proxies": 30, "all_positions": False, "random_seeds": [0, 1],
        "bootstrap": 50, "rows": rows, "curve": curve, "seconds": 1.0, "run": name,
        "model": {"model_id": "toy-model", "model_type": "llama", "layers": LAYERS, "mlp": MLP},
        "identify": {m: {"items": 12, "proxies": 36, "prompts_per_second": 3.0} for m in sets},
        "methods": {m: {"name": m, "k": 4, "z": 6} for m in sets},
    }  # fmt: skip


def _make_run(root, name: str, task: str, masks: dict, evaluated: bool = True, with_curve: bool = True) -> str:
    run = os.path.join(str(root), name)
    sets = {}
    for method, (good, bad) in masks.items():
        ns = NeuronSet(np.random.default_rng(0).normal(size=(LAYERS, MLP)).astype(np.float32), good, bad,
                       {"task": {"name": task}, "method": {"name": method, "k": 4}})  # fmt: skip
        save_neurons(os.path.join(run, "neurons", method), ns)
        sets[method] = ns
    if evaluated:
        with open(os.path.join(run, "evaluation.json"), "w") as f:
            json.dump(_evaluation(name, task, sets, with_curve), f)
    return run


# Three tasks' sets: good / bad masks for neuronllm and random.
A_GOOD = _mask([(0, 0), (0, 1), (1, 2), (2, 3)])
A_BAD = _mask([(0, 5), (1, 5), (1, 6), (2, 7)])
B_GOOD = _mask([(0, 0), (0, 1), (2, 4), (2, 5)])  # shares 2 with A
B_BAD = _mask([(0, 5), (1, 6), (2, 7), (2, 6)])  # shares 3 with A
C_GOOD = _mask([(1, 0), (1, 1), (1, 2)])  # shares 1 with A, 0 with B
C_BAD = _mask([(2, 0)])  # shares none
R_GOOD = _mask([(2, 0), (2, 1), (1, 7), (0, 7)])
R_BAD = _mask([(1, 0), (1, 1), (0, 2), (0, 3)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = _make_run(root, "facts", "world_facts", {"neuronllm": (A_GOOD, A_BAD), "random": (R_GOOD, R_BAD)})
    b = _make_run(root, "words", "word_relations", {"neuronllm": (B_GOOD, B_BAD)}, evaluated=False)
    c = _make_run(root, "sums", "arithmetic", {"neuronllm": (C_GOOD, C_BAD)}, evaluated=False)
    flat = _make_run(root, "flat", "world_facts", {"neuronllm": (A_GOOD, A_BAD)}, with_curve=False)
    return {"a": a, "b": b, "c": c, "flat": flat}


EXPECTED = ("headline", "layer_counts", "k_curve", "interventions", "letters", "overlap_methods", "overlap_runs")


def test_report_writes_every_picture_and_the_page(runs, tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["report", runs["a"], "--compare", runs["b"], runs["c"], "--html-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| neuronllm | suppress_good | 4 |" in printed  # the markdown is still printed
    last = printed.strip().splitlines()[-1]
    assert last.startswith(f"report: {len(EXPECTED)} picture(s) and index.html written to") and str(out) in last
    page = (out / "index.html").read_text()
    for name in EXPECTED:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG, name
        assert f'src="{name}.png"' in page
        assert png.stat().st_size < 200_000
    assert set(re.findall(r'src="([^"]+)"', page)) == {f"{n}.png" for n in EXPECTED}
    # the tables as HTML tables, with the numbers of evaluation.json
    with open(os.path.join(runs["a"], "evaluation.json")) as f:
        ev = json.load(f)
    row = next(r for r in ev["rows"] if r["method"] == "neuronllm" and r["mode"] == "degrader" and not r["control"])
    a = row["accuracy"]
    assert f"<td>{a['value']:.3f} [{a['low']:.3f}, {a['high']:.3f}]</td>" in page
    assert "<th>accuracy [95% CI]</th>" in page and '<td class="lower">' in page
    assert "toy-model" in page and "world_facts" in page and "z=6" in page  # settings
    assert page.count("<figcaption>") == len(EXPECTED)
    assert "The neuronllm sets compared" in page and "<td>arithmetic</td><td>sums</td>" in page


def test_default_directory_and_no_html(runs, capsys):
    assert main(["report", runs["flat"], "--no-html"]) == 0
    assert not os.path.exists(os.path.join(runs["flat"], "report"))
    assert "written to" not in capsys.readouterr().out
    assert main(["report", runs["flat"]]) == 0
    assert os.path.exists(os.path.join(runs["flat"], "report", "index.html"))
    assert os.path.join(runs["flat"], "report") in capsys.readouterr().out


def test_layer_counts_plotted_equal_the_mask_sums(runs, tmp_path, monkeypatch):
    from neuronjax.report import write_html_report

    seen = {}
    real = plots.layer_counts

    def spy(path, good, bad, title=""):
        seen["good"], seen["bad"] = good, bad
        return real(path, good, bad, title)

    monkeypatch.setattr(plots, "layer_counts", spy)
    write_html_report([runs["a"]], str(tmp_path))
    assert list(seen["good"]) == ["neuronllm", "random"]
    for method, good, bad in (("neuronllm", A_GOOD, A_BAD), ("random", R_GOOD, R_BAD)):
        assert seen["good"][method].tolist() == [int(good[layer].sum()) for layer in range(LAYERS)]
        assert seen["bad"][method].tolist() == [int(bad[layer].sum()) for layer in range(LAYERS)]
    assert seen["good"]["neuronllm"].tolist() == [2, 1, 1] and seen["bad"]["neuronllm"].tolist() == [1, 2, 1]


def test_missing_curve_is_skipped_and_explained(runs, tmp_path, capsys):
    out = tmp_path / "flat"
    assert main(["report", runs["flat"], "--html-dir", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "4 picture(s)" in last and "skipped: k_curve (" in last
    assert not (out / "k_curve.png").exists()
    page = (out / "index.html").read_text()
    assert "Accuracy against K</b>: not drawn" in page and "evaluate.k_values was empty" in page
    for name in ("headline", "layer_counts", "interventions", "letters"):
        assert (out / f"{name}.png").exists() and f'src="{name}.png"' in page
    # a single method: nothing to overlap, said so
    assert not (out / "overlap_methods.png").exists() and "fewer than two neuron sets" in page


def test_overlap_across_runs_equals_a_hand_count(runs, tmp_path, monkeypatch):
    from neuronjax.report import write_html_report

    seen = {}
    real = plots.overlap_heatmap

    def spy(path, labels, good, bad, title=""):
        seen[os.path.basename(path)] = (labels, good, bad)
        return real(path, labels, good, bad, title)

    monkeypatch.setattr(plots, "overlap_heatmap", spy)
    result = write_html_report([runs["a"]], str(tmp_path), compare=[runs["b"], runs["c"]])
    labels, good, bad = seen["overlap_runs.png"]
    assert labels == ["world_facts", "word_relations", "arithmetic"]
    for got, want in zip(good + bad, [A_GOOD, B_GOOD, C_GOOD, A_BAD, B_BAD, C_BAD]):
        assert (np.asarray(got) == want).all()
    pic = next(p for p in result.pictures if p.name == "overlap_runs")
    # by hand: |A|=4, |B|=4, |C|=3 good; A∩B = {(0,0),(0,1)}, A∩C = {(1,2)}, B∩C = {}
    assert pic.data["good_intersection"].tolist() == [[4, 2, 1], [2, 4, 0], [1, 0, 3]]
    np.testing.assert_allclose(pic.data["good_jaccard"], [[1, 2 / 6, 1 / 6], [2 / 6, 1, 0], [1 / 6, 0, 1]])
    # bad: |A|=4, |B|=4, |C|=1; A∩B = {(0,5),(1,6),(2,7)}
    assert pic.data["bad_intersection"].tolist() == [[4, 3, 0], [3, 4, 0], [0, 0, 1]]
    np.testing.assert_allclose(pic.data["bad_jaccard"], [[1, 3 / 5, 0], [3 / 5, 1, 0], [0, 0, 1]])
    # within the run: neuronllm against random
    methods = next(p for p in result.pictures if p.name == "overlap_methods")
    assert methods.data["labels"] == ["neuronllm", "random"]
    assert methods.data["good_intersection"].tolist() == [[4, 0], [0, 4]]


def test_several_runs_get_prefixed_pictures_and_a_summary(runs, tmp_path):
    from neuronjax.report import write_html_report

    result = write_html_report([runs["a"], runs["flat"]], str(tmp_path))
    names = {p.file for p in result.pictures if p.file}
    assert {"facts_layer_counts.png", "flat_layer_counts.png", "facts_k_curve.png", "overlap_runs.png"} <= names
    with open(result.index) as f:
        page = f.read()
    assert "Across runs" in page and "<th>task</th>" in page
    # two runs of one task: the labels name the runs too
    runs_pic = next(p for p in result.pictures if p.name == "overlap_runs")
    assert runs_pic.data["labels"] == ["world_facts (facts)", "world_facts (flat)"]


def test_a_compared_run_without_neurons_is_an_error(runs, tmp_path, capsys):
    assert main(["report", runs["a"], "--compare", str(tmp_path / "nothing"), "--html-dir", str(tmp_path)]) == 2
    assert "no saved neuron sets" in capsys.readouterr().err
