"""The report's tables as data: one `Table` value rendered to markdown and to HTML, the interval
and verdict strings, the tables of a typed evaluation, and the errors of a missing run."""

import json
import os

import pytest

from neuronjax.cli import main
from neuronjax.evaluation.results import ConditionResult, Evaluation, Interval, Metrics
from neuronjax.report import (
    Heading,
    Paragraph,
    Table,
    format_interval,
    load_evaluation,
    markdown_report,
    rows_table,
    to_html,
    to_markdown,
    verdict,
)


def test_one_table_rendered_to_markdown_and_html():
    table = Table(("method", "K", "vs random"), [("a<b", "10", "lower"), ("c & d", "300", "n.s.")], ("left", "right"))
    assert table.align == ("left", "right", "left")  # missing columns are left-aligned
    assert table.markdown() == (
        "| method | K | vs random |\n"
        "|---|---:|---|\n"
        "| a<b | 10 | lower |\n"
        "| c & d | 300 | n.s. |"
    )  # fmt: skip
    assert table.html() == (
        "<table>\n"
        '<tr><th>method</th><th class="r">K</th><th>vs random</th></tr>\n'
        '<tr><td>a&lt;b</td><td class="r">10</td><td class="lower">lower</td></tr>\n'
        '<tr><td>c &amp; d</td><td class="r">300</td><td>n.s.</td></tr>\n'
        "</table>"
    )  # fmt: skip


def test_blocks_render_to_a_markdown_document_and_to_html():
    blocks = [Heading("run: task t"), Paragraph("Numbers <here>:"), Table(("x",), [("1",)])]
    assert to_markdown(blocks) == "## run: task t\n\nNumbers <here>:\n\n| x |\n|---|\n| 1 |"
    assert to_html(blocks) == "<h2>run: task t</h2>\n<p>Numbers &lt;here&gt;:</p>\n<table>\n<tr><th>x</th></tr>\n<tr><td>1</td></tr>\n</table>"


@pytest.mark.parametrize("header,rows,align,message", [
    (("a", "b"), [("1",)], (), "has 1 cells; the header has 2"),
    (("a",), [], ("middle",), "expected 'left' or 'right'"),
    (("a",), [], ("left", "right"), "for each of 1 columns"),
])  # fmt: skip
def test_a_malformed_table_is_refused(header, rows, align, message):
    with pytest.raises(ValueError, match=message):
        Table(header, rows, align)


def test_interval_strings():
    iv = Interval(0.6870748299319728, 0.6054421768707483, 0.7619047619047619)
    assert format_interval(iv) == "0.687 [0.605, 0.762]"
    assert format_interval(Interval(0.15, 0.0814, -0.0004), signed=True) == "+0.150 [+0.081, -0.000]"
    assert format_interval(None) == format_interval(None, signed=True) == "-"
    assert verdict(Interval(0.1, 0.01, 0.2)) == "higher"
    assert verdict(Interval(-0.1, -0.2, -0.01)) == "lower"
    assert verdict(Interval(0.1, 0.0, 0.2)) == "n.s."  # touching zero is not excluding it
    assert verdict(None) == "-"


def _iv(v, spread=0.05):
    return Interval(v, v - spread, v + spread)


def _row(method, mode, control, acc, good=2, bad=0, vs_random=None):
    metrics = Metrics(_iv(acc), _iv(acc - 0.1))
    return ConditionResult(method, mode, 0 if method == "none" else 5, control, good, bad, metrics,
                           Metrics(_iv(acc - 0.6), _iv(acc - 0.6)), vs_random, ())  # fmt: skip


def test_conditions_table_of_a_typed_evaluation():
    rows = (
        _row("none", "none", False, 0.6, 0, 0),
        _row("m", "suppress_good", False, 0.3, vs_random=Metrics(Interval(-0.3, -0.4, -0.2), _iv(0.0))),
        _row("m", "suppress_good", True, 0.6),
        _row("m", "suppress_bad", False, 0.6),  # no control, no difference
    )
    ev = Evaluation("t", 10, 30, False, (0,), 100, rows)
    lines = rows_table(ev).splitlines()
    assert lines[0].split(" | ")[3] == "neurons edited"
    assert lines[2] == "| none | - | - | - | 0.600 [0.550, 0.650] | 0.500 [0.450, 0.550] | - | - | - |"
    # the sizes of the sides the mode edits (suppress_good: the 2 good neurons, not "2 / 0")
    assert lines[3] == ("| m | suppress_good | 5 | 2 good | 0.300 [0.250, 0.350] | 0.200 [0.150, 0.250] | "
                        "0.600 [0.550, 0.650] | -0.300 [-0.400, -0.200] | lower |")  # fmt: skip
    # suppress_bad of a set without bad neurons edits nothing
    assert lines[4] == ("| m | suppress_bad | 5 | 0 bad (empty set) | 0.600 [0.550, 0.650] | 0.500 [0.450, 0.550] "
                        "| - | - | - |")  # fmt: skip
    assert len(lines) == 5


def test_a_missing_run_directory_is_named(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere: no such run directory"):
        markdown_report([missing])
    assert main(["report", missing, "--no-html"]) == 2
    err = capsys.readouterr().err
    assert "no such run directory" in err and "not evaluated yet" not in err


def test_a_run_without_evaluation_names_the_file_and_the_command(tmp_path, capsys):
    run = str(tmp_path / "run")
    os.makedirs(run)
    assert main(["report", run, "--no-html"]) == 2
    assert f"{os.path.join(run, 'evaluation.json')}: not evaluated yet; run `neuronjax evaluate {run}`" in capsys.readouterr().err


def test_a_malformed_evaluation_names_the_file(tmp_path):
    with open(tmp_path / "evaluation.json", "w") as f:
        json.dump({"task": "t"}, f)
    with pytest.raises(ValueError, match=r"evaluation.json: not in the format neuronjax writes \(KeyError"):
        load_evaluation(str(tmp_path))
