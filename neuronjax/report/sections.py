"""The markdown report of evaluated runs (report.md, `neuronjax report RUN_DIR...`): per run, a
heading, the settings in one paragraph, and its tables (conditions, head-to-head pairs, accuracy
against K, cross-task changes), as document blocks that the HTML page renders too."""

from __future__ import annotations

from typing import Optional, Sequence

from neuronjax.evaluation.results import Evaluation
from neuronjax.report.document import Block, Heading, Paragraph, to_markdown
from neuronjax.report.runs import identify_stats, load_cross, load_evaluation, run_name
from neuronjax.report.tables import conditions, cross_task, head_to_head, k_curve


def run_blocks(run_dir: str, evaluation: Optional[Evaluation] = None) -> list[Block]:
    """One run's section: heading, settings paragraph and tables (read from run_dir unless given)."""
    ev = evaluation or load_evaluation(run_dir)
    model, stats = ev.model, identify_stats(ev)
    blocks: list[Block] = [
        Heading(f"{run_name(ev, run_dir)}: task {ev.task}"),
        Paragraph(
            f"Model {model.get('model_id', '?')} ({model.get('layers', '?')} layers x {model.get('mlp', '?')} neurons). "
            f"Identified on {stats.get('items', '?')} items ({stats.get('proxies', '?')} proxies, "
            f"{stats.get('prompts_per_second', 0):.2f} prompts/s); evaluated on {ev.items} held-out items "
            f"({ev.proxies} proxies) in {ev.seconds} s. Intervals: 95% bootstrap over items "
            f"({ev.bootstrap} resamples); random controls: same per-layer counts, seeds {list(ev.random_seeds)} pooled; "
            f"interventions at {'all positions' if ev.all_positions else 'the last prompt position'}."
        ),
        conditions(ev),
    ]
    paired = head_to_head(ev)
    if paired:
        blocks += [Paragraph("Head to head: accuracy of one method's sets minus another's, paired over items [95% CI]:"),
                   paired]  # fmt: skip
    curve = k_curve(ev)
    if curve:
        blocks += [Paragraph("Accuracy against K:"), curve]
    cross = load_cross(run_dir)
    if cross is not None:
        blocks += [Paragraph("Cross-task: accuracy change against no intervention [95% CI]:"), cross_task(cross, ev.task)]
    return blocks


def run_section(run_dir: str) -> str:
    """One run's section of the markdown report."""
    return to_markdown(run_blocks(run_dir)) + "\n"


def markdown_report(run_dirs: Sequence[str]) -> str:
    return "\n".join(run_section(d) for d in run_dirs)
