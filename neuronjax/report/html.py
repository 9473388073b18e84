"""The HTML page of evaluated runs (<run>/report/index.html). Per run: the finding first (one
sentence and one picture), a table of contents, then the parts of `neuronjax.report.sections`
(results, accuracy against K, where the neurons are, neuron cards, ...) each with its pictures,
and the settings last. Across runs: the summary table and the overlap of one method's sets."""

from __future__ import annotations

import dataclasses
import os
from html import escape
from typing import Optional, Sequence

from neuronjax.evaluation.results import Evaluation
from neuronjax.report.document import Contents, Paragraph, to_html
from neuronjax.report.pictures import Picture, overlap_picture, run_pictures
from neuronjax.report.runs import identify_stats, load_evaluation, load_run_sets, run_methods, run_name, set_label
from neuronjax.report.sections import run_parts
from neuronjax.report.tables import identification, summary

PICTURES = "report"  # <run>/report/: index.html and the PNG files
INDEX = "index.html"


@dataclasses.dataclass
class HtmlReport:
    directory: str
    index: str  # path of index.html
    pictures: list[Picture]

    def summary(self) -> str:
        drawn = [p for p in self.pictures if p.file]
        skipped = [p for p in self.pictures if not p.file]
        line = f"report: {len(drawn)} picture(s) and {INDEX} written to {os.path.abspath(self.directory)}"
        if skipped:
            line += "; skipped: " + "; ".join(f"{p.name} ({p.skipped})" for p in skipped)
        return line


def default_pictures_dir(run_dirs: Sequence[str]) -> str:
    """<run>/report for one run; <the runs' common parent>/report for several."""
    if len(run_dirs) == 1:
        return os.path.join(run_dirs[0], PICTURES)
    return os.path.join(os.path.commonpath([os.path.abspath(d) for d in run_dirs]), PICTURES)


def write_html_report(run_dirs: Sequence[str], out_dir: Optional[str] = None, compare: Sequence[str] = (),
                      overlap_method: Optional[str] = None) -> HtmlReport:  # fmt: skip
    """Draw every picture of the evaluated `run_dirs` and write index.html next to them.

    `compare`: further run directories (identification alone is enough) whose sets join the
    across-runs overlap heatmap; that heatmap is drawn when there are two runs or more, with the
    sets of `overlap_method` (default neuronllm, else the first method every run saved)."""
    for d in compare:
        if not run_methods(d):
            raise FileNotFoundError(f"{d}: no saved neuron sets under {os.path.join(d, 'neurons')}; "
                                    "run `neuronjax identify` for it first")  # fmt: skip
    out_dir = out_dir or default_pictures_dir(run_dirs)
    os.makedirs(out_dir, exist_ok=True)
    sections, pictures, toc = [], [], []
    for run_dir, prefix in zip(run_dirs, _prefixes(run_dirs)):
        ev = load_evaluation(run_dir)
        pics = run_pictures(run_dir, out_dir, prefix, ev)
        pictures += pics
        sections.append(_run_html(run_dir, ev, pics, prefix))
        toc.append((prefix + "run", os.path.basename(os.path.normpath(run_dir))))
    everyone = list(run_dirs) + list(compare)
    if len(everyone) > 1:
        method, why = _common_method(everyone, overlap_method)
        body = []
        if len(run_dirs) > 1:
            body.append(to_html([Paragraph("Accuracy [95% CI] of every run:"), summary(run_dirs)]))
        if method is None:
            pic = Picture("overlap_runs", "Overlap of neuron sets across runs", skipped=why)
        else:
            sets = [load_run_sets(d, [method])[method] for d in everyone]
            tasks = [ns.meta.get("task", {}).get("name", "?") for ns in sets]
            labels = tasks if len(set(tasks)) == len(tasks) else [set_label(ns, d) for ns, d in zip(sets, everyone)]
            pic = overlap_picture("overlap_runs", labels, sets, out_dir,
                                  f"Overlap of {method} neuron sets across runs", f"The {method} sets of {len(sets)} runs")  # fmt: skip
            body.append(to_html([Paragraph(f"The {method} sets compared:"), identification(labels, sets, everyone)]))
        pictures.append(pic)
        body.append(_picture_html(pic))
        sections.append('<section>\n<h2 id="across">Across runs</h2>\n' + "\n".join(body) + "\n</section>")
        toc.append(("across", "Across runs"))
    index = os.path.join(out_dir, INDEX)
    names = ", ".join(os.path.basename(os.path.normpath(d)) for d in run_dirs)
    with open(index, "w") as f:
        f.write(_HEAD.format(title=escape(f"neuronjax report: {names}")))
        if len(toc) > 1:
            f.write(Contents(tuple(toc)).html() + "\n")
        f.write("\n".join(sections))
        f.write("\n</body>\n</html>\n")
    return HtmlReport(out_dir, index, pictures)


def _common_method(runs: Sequence[str], wanted: Optional[str]) -> tuple[Optional[str], str]:
    """The method whose sets are overlapped across runs, or None and why there is none."""
    per_run = [run_methods(d) for d in runs]
    common = [m for m in per_run[0] if all(m in p for p in per_run[1:])] if per_run else []
    if wanted:
        if wanted in common:
            return wanted, ""
        return None, f"method {wanted!r} is not saved in every run ({', '.join(f'{d}: {p}' for d, p in zip(runs, per_run))})"
    for m in ["neuronllm"] + common:
        if m in common:
            return m, ""
    return None, "the runs have no method in common"


def _prefixes(run_dirs: Sequence[str]) -> list[str]:
    """File-name prefixes of the runs' pictures: none for one run, the run's name for several."""
    if len(run_dirs) == 1:
        return [""]
    out, seen = [], set()
    for i, d in enumerate(run_dirs):
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in os.path.basename(os.path.normpath(d)))
        out.append(f"{name}_" if name not in seen else f"{name}{i}_")
        seen.add(name)
    return out


_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; }}
td {{ white-space: nowrap; }}
th {{ background: #f2f2f2; }}
td.r, th.r {{ text-align: right; }}
td.lower {{ background: #fde0dd; }} td.higher {{ background: #e0f3db; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 0.9em; color: #444; max-width: 1000px; }}
p.skipped {{ color: #8a4b00; background: #fff4e5; padding: 0.5em; }}
p.lead {{ font-size: 1.25em; line-height: 1.45; max-width: 1000px; margin: 0.6em 0; }}
nav.contents {{ margin: 1em 0; padding: 0.5em 0.8em; background: #f5f7fa; border-radius: 4px; }}
nav.contents a {{ color: #1f5fa8; text-decoration: none; }}
h3 {{ margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }}
div.cards {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 0.8em; margin: 0.8em 0 1.5em; }}
div.card {{ border: 1px solid #ddd; border-left: 5px solid #999; border-radius: 4px; padding: 0.5em 0.7em; font-size: 0.85em; }}
div.card.good {{ border-left-color: #1b9e77; }} div.card.bad {{ border-left-color: #d95f02; }}
div.card h4 {{ margin: 0 0 0.3em; font-family: ui-monospace, monospace; }}
div.card dl {{ display: grid; grid-template-columns: auto 1fr; gap: 0.15em 0.6em; margin: 0; }}
div.card dt {{ color: #666; }} div.card dd {{ margin: 0; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }}
div.card ol {{ margin: 0.4em 0 0; padding-left: 1.4em; color: #333; }}
pre {{ background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }}
</style>
</head>
<body>
<h1>{title}</h1>
"""


def _picture_html(pic: Picture) -> str:
    if not pic.file:
        return f'<p class="skipped"><b>{escape(pic.title)}</b>: not drawn: {escape(pic.skipped)}.</p>'
    return (f'<figure id="{escape(pic.name)}">\n<img src="{escape(pic.file)}" alt="{escape(pic.title)}">\n'
            f"<figcaption><b>{escape(pic.title)}.</b> {escape(pic.caption)}</figcaption>\n</figure>")  # fmt: skip


def _settings_html(run_dir: str, ev: Evaluation) -> str:
    """The run's settings, its methods' hyper-parameters and its config.yaml."""
    model, stats = ev.model, identify_stats(ev)
    items = [
        ("run", run_name(ev, run_dir)),
        ("task", ev.task),
        ("model", f"{model.get('model_id', '?')} ({model.get('model_type', '?')}, {model.get('layers', '?')} layers x "
                  f"{model.get('mlp', '?')} FFN neurons)"),
        ("identification", f"{stats.get('items', '?')} items, {stats.get('proxies', '?')} proxies, "
                           f"{stats.get('prompts_per_second', 0):.2f} prompts/s"),
        ("evaluation", f"{ev.items} held-out items, {ev.proxies} proxies, {ev.seconds} s"),
        ("intervals", f"95% bootstrap over items, {ev.bootstrap} resamples"),
        ("random controls", f"same per-layer counts, seeds {list(ev.random_seeds)} pooled"),
        ("intervention positions", "all positions" if ev.all_positions else "last prompt position"),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in items)
    out = [f"<table>{rows}</table>"]
    if ev.methods:
        lines = ["<tr><th>method</th><th>K</th><th>settings</th></tr>"]
        for name, m in ev.methods.items():
            rest = {k: v for k, v in m.items() if k not in ("name", "k") and not isinstance(v, (list, dict))}
            text = ", ".join(f"{k}={v}" for k, v in rest.items())
            lines.append(f"<tr><td>{escape(name)}</td><td class=\"r\">{escape(str(m.get('k', '-')))}</td>"
                         f"<td>{escape(text)}</td></tr>")  # fmt: skip
        out.append("<table>" + "".join(lines) + "</table>")
    cfg = os.path.join(run_dir, "config.yaml")
    if os.path.exists(cfg):
        with open(cfg) as f:
            out.append(f"<details><summary>config.yaml</summary><pre>{escape(f.read())}</pre></details>")
    return "\n".join(out)


def _run_html(run_dir: str, ev: Evaluation, pics: list[Picture], prefix: str = "") -> str:
    """One run's section: heading, the finding and its picture, contents, the parts with their
    pictures, the settings last."""
    parts = run_parts(run_dir, ev)
    by_name = {p.name[len(prefix):]: p for p in pics}
    out = ["<section>", dataclasses.replace(parts.heading, anchor=prefix + "run").html()]
    if parts.lead is not None:
        out.append(parts.lead.html())
    if "headline" in by_name:
        out.append(_picture_html(by_name["headline"]))
    out.append(Contents(tuple((prefix + p.key, p.title) for p in parts.parts)).html())
    for part in parts.parts:
        out.append(f'<h3 id="{escape(prefix + part.key)}">{escape(part.title)}</h3>')
        if part.key == "settings":
            out.append(_settings_html(run_dir, ev))
            continue
        out.append(to_html(part.blocks))
        out += [_picture_html(by_name[name]) for name in part.pictures if name in by_name]
    out.append("</section>")
    return "\n".join(x for x in out if x)
