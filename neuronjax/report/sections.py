"""One run's report as document blocks, in reading order: a heading, the finding (see
`neuronjax.report.headline`), then parts (results, accuracy against K, where the neurons are,
neuron cards, cross-task changes) and the settings last. report.md renders the blocks; the HTML
page renders the same parts with each part's pictures (`RunParts.parts[i].pictures`)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from neuronjax.cards import NeuronCards, shorten
from neuronjax.evaluation.results import Evaluation
from neuronjax.report.document import Block, Card, CardGrid, Heading, Paragraph, to_markdown
from neuronjax.report.headline import headline
from neuronjax.report.runs import identify_stats, load_cards, load_cross, load_evaluation, run_name
from neuronjax.report.tables import conditions, cross_task, head_to_head, k_curve

CARD_TOKENS = 5  # tokens shown per card on the page (cards.json keeps more)
ACTIVE = "most active on"  # the card field of its top prompt (markdown; the page lists every prompt)


@dataclasses.dataclass(frozen=True)
class Part:
    """A titled part of a run's section: its blocks and the names of the pictures it shows."""

    key: str  # "results", "k", "where", "cards", "cross", "settings" (the HTML anchor's suffix)
    title: str
    blocks: tuple[Block, ...] = ()
    pictures: tuple[str, ...] = ()  # picture names without the run's prefix (see pictures.run_pictures)


@dataclasses.dataclass(frozen=True)
class RunParts:
    heading: Heading
    lead: Optional[Paragraph]  # the finding (None when no set was evaluated)
    parts: tuple[Part, ...]

    def blocks(self, level: int = 3) -> list[Block]:
        """Every block in reading order, each part under a heading of `level`."""
        out: list[Block] = [self.heading] + ([self.lead] if self.lead else [])
        for p in self.parts:
            if p.blocks:
                out += [Heading(p.title, level), *p.blocks]
        return out


def run_parts(run_dir: str, evaluation: Optional[Evaluation] = None) -> RunParts:
    """One run's report (read from run_dir; its evaluation too unless given)."""
    ev = evaluation or load_evaluation(run_dir)
    found = headline(ev)
    results: list[Block] = [conditions(ev)]
    paired = head_to_head(ev)
    if paired:
        results += [Paragraph("Head to head: accuracy of one method's sets minus another's, paired over items [95% CI]:"),
                    paired]  # fmt: skip
    curve = k_curve(ev)
    parts = [
        Part("results", "Results", tuple(results), ("interventions", "letters")),
        Part("k", "Accuracy against K", (curve,) if curve else (), ("k_curve",)),
        Part("where", "Where the neurons are", (), ("layer_counts", "overlap_methods")),
        Part("cards", "Neuron cards", tuple(card_blocks(load_cards(run_dir), run_dir))),
    ]
    stable = stability_blocks(run_dir)
    if stable:
        parts.append(Part("stability", "Stability", tuple(stable), ("stability",)))
    cross = load_cross(run_dir)
    if cross is not None:
        parts.append(Part("cross", "Other tasks", (
            Paragraph("Cross-task: accuracy change against no intervention [95% CI]:"), cross_task(cross, ev.task))))
    parts.append(Part("settings", "Settings", (Paragraph(settings_text(run_dir, ev)),)))
    return RunParts(Heading(f"{run_name(ev, run_dir)}: task {ev.task}"),
                    Paragraph(found.text(), lead=True) if found else None, tuple(parts))  # fmt: skip


def stability_blocks(run_dir: str) -> list[Block]:
    """The run's stability table (`neuronjax stability`, stability.json), or nothing without one."""
    from neuronjax.stability import load_stability, stability_table

    result = load_stability(run_dir)
    if result is None:
        return []
    return [Paragraph(f"Would the same neurons come back from other identification items? {result.summary()}. "
                      "Per method and side, the Jaccard index |A∩B| / |A∪B| of the K sets of every pair of "
                      "replicates (mean, 95% percentile interval over resampled pairs, range), against its exact "
                      "expectation for random sets with the same per-layer counts; max pair p: the largest exact "
                      "P(a random pair shares at least as many neurons) over the pairs."),
            stability_table(result)]  # fmt: skip


def settings_text(run_dir: str, ev: Evaluation) -> str:
    model, stats = ev.model, identify_stats(ev)
    return (
        f"Model {model.get('model_id', '?')} ({model.get('layers', '?')} layers x {model.get('mlp', '?')} neurons). "
        f"Identified on {stats.get('items', '?')} items ({stats.get('proxies', '?')} proxies, "
        f"{stats.get('prompts_per_second', 0):.2f} prompts/s); evaluated on {ev.items} held-out items "
        f"({ev.proxies} proxies) in {ev.seconds} s. Intervals: 95% bootstrap over items "
        f"({ev.bootstrap} resamples); random controls: same per-layer counts, seeds {list(ev.random_seeds)} pooled; "
        f"interventions at {'all positions' if ev.all_positions else 'the last prompt position'}."
    )


def card_blocks(cards: Optional[NeuronCards], run_dir: str) -> list[Block]:
    """The neuron cards of a run: what they are, then the good and the bad neurons' cards."""
    if cards is None:
        return [Paragraph(f"No neuron cards: {run_dir}/cards.json is missing (evaluated before neuron cards "
                          f"existed, or with evaluate.cards=0); `neuronjax evaluate {run_dir}` writes it.")]  # fmt: skip
    good, bad = cards.side("good"), cards.side("bad")
    out: list[Block] = [Paragraph(
        f"What {cards.method}'s strongest {len(good)} good and {len(bad)} bad neurons (by score) do. Promotes / "
        "suppresses: the output tokens whose logits one unit of the neuron's activation raises / lowers most "
        "along the direct path (its down-projection row through the final norm's scale and the output head; "
        "later layers ignored: the logit-lens reading of FFN value vectors). Most active on: the held-out items "
        f"where its activation at the last prompt position (no intervention, {cards.proxies} proxies of task "
        f"{cards.task}) is largest in magnitude. `neuronjax inspect {run_dir} --neuron L:I` prints the card of "
        "any neuron.")]  # fmt: skip
    for side, chosen in (("good", good), ("bad", bad)):
        if chosen:
            out += [Paragraph(f"{side.capitalize()} neurons:"),
                    CardGrid(tuple(_card(c) for c in chosen), f"{side} neuron (layer:index)", (ACTIVE,))]  # fmt: skip
        else:
            out.append(Paragraph(f"{cards.method} has no {side} neurons."))
    return out


def _card(c) -> Card:
    def tokens(ts):
        return ", ".join(repr(t.text) for t in ts[:CARD_TOKENS])

    top = c.prompts[0] if c.prompts else None
    fields = (("score", f"{c.score:+.4g}"), ("promotes", tokens(c.promoted)), ("suppresses", tokens(c.suppressed)),
              (ACTIVE, f"{shorten(top.question, 70)} ({top.activation:+.2f})" if top else "-"))  # fmt: skip
    lines = tuple(f"{p.activation:+.3f}  {shorten(p.question, 110)} ({p.item_id}, proxy {p.proxy})" for p in c.prompts)
    return Card(f"{c.name} (#{c.rank})", fields, lines, c.side)


def run_blocks(run_dir: str, evaluation: Optional[Evaluation] = None) -> list[Block]:
    """One run's section of the markdown report."""
    return run_parts(run_dir, evaluation).blocks()


def run_section(run_dir: str) -> str:
    """One run's section of the markdown report."""
    return to_markdown(run_blocks(run_dir)) + "\n"


def markdown_report(run_dirs: Sequence[str]) -> str:
    return "\n".join(run_section(d) for d in run_dirs)
