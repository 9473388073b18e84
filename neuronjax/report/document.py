"""A report as data: headings, paragraphs, tables and cards, each rendered to markdown and to
HTML from the same value (the report.md of a run and its index.html page never parse one another).

A `Table` is a header, rows of cell strings and an alignment per column; a cell holding a
verdict ("lower" / "higher", see `neuronjax.report.formatting.verdict`) is shaded in HTML. A
`CardGrid` is a row of small boxes on the page (one per neuron) and a table in markdown.
"""

from __future__ import annotations

import dataclasses
from html import escape
from typing import Sequence, Union

LEFT, RIGHT = "left", "right"
SHADED = ("lower", "higher")  # verdict cells, shaded red / green on the HTML page


@dataclasses.dataclass(frozen=True)
class Table:
    """A table: `header` [columns], `rows` [rows][columns] of cell text, `align` [columns]."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...] = ()
    align: tuple[str, ...] = ()  # LEFT or RIGHT per column; missing columns are LEFT

    def __post_init__(self):
        object.__setattr__(self, "header", tuple(self.header))
        object.__setattr__(self, "rows", tuple(tuple(str(c) for c in r) for r in self.rows))
        align = tuple(self.align) + (LEFT,) * (len(self.header) - len(self.align))
        if len(align) != len(self.header) or any(a not in (LEFT, RIGHT) for a in align):
            raise ValueError(f"align {self.align!r}: expected {LEFT!r} or {RIGHT!r} for each of {len(self.header)} columns")
        for r in self.rows:
            if len(r) != len(self.header):
                raise ValueError(f"row {r!r} has {len(r)} cells; the header has {len(self.header)}")
        object.__setattr__(self, "align", align)

    def markdown(self) -> str:
        """A pipe table; right-aligned columns get `---:`."""
        lines = [_pipe(self.header), "|" + "".join("---:|" if a == RIGHT else "---|" for a in self.align)]
        return "\n".join(lines + [_pipe(r) for r in self.rows])

    def html(self) -> str:
        """A <table>, one row per line; right-aligned cells have class "r", verdict cells their verdict."""
        cls = [' class="r"' if a == RIGHT else "" for a in self.align]
        lines = ["<tr>" + "".join(f"<th{c}>{escape(h)}</th>" for h, c in zip(self.header, cls)) + "</tr>"]
        for r in self.rows:
            tds = [f'<td class="{v}">' if v in SHADED else f"<td{c}>" for v, c in zip(r, cls)]
            lines.append("<tr>" + "".join(f"{td}{escape(v)}</td>" for td, v in zip(tds, r)) + "</tr>")
        return "<table>\n" + "\n".join(lines) + "\n</table>"


def _pipe(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


@dataclasses.dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str = ""  # the HTML id (what a table of contents links to)

    def markdown(self) -> str:
        return "#" * self.level + " " + self.text

    def html(self) -> str:
        ident = f' id="{escape(self.anchor)}"' if self.anchor else ""
        return f"<h{self.level}{ident}>{escape(self.text)}</h{self.level}>"


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str
    lead: bool = False  # the finding a report opens with: bold in markdown, large on the page

    def markdown(self) -> str:
        return f"**{self.text}**" if self.lead else self.text

    def html(self) -> str:
        return f'<p class="lead">{escape(self.text)}</p>' if self.lead else f"<p>{escape(self.text)}</p>"


@dataclasses.dataclass(frozen=True)
class Contents:
    """Links to the headings of a page: (anchor, text) pairs; a plain list in markdown."""

    entries: tuple[tuple[str, str], ...]

    def markdown(self) -> str:
        return "Contents: " + " · ".join(text for _, text in self.entries)

    def html(self) -> str:
        links = " · ".join(f'<a href="#{escape(a)}">{escape(t)}</a>' for a, t in self.entries)
        return f'<nav class="contents">Contents: {links}</nav>'


@dataclasses.dataclass(frozen=True)
class Card:
    """A small box: a title, labelled fields, and a list of lines under them."""

    title: str
    fields: tuple[tuple[str, str], ...]  # (label, text)
    lines: tuple[str, ...] = ()  # e.g. the prompts a neuron fires on (HTML only)
    tone: str = ""  # "good" / "bad": the color of the box's edge on the page


@dataclasses.dataclass(frozen=True)
class CardGrid:
    """Cards side by side on the HTML page; in markdown one table row per card (title, then the
    fields of the first card's labels)."""

    cards: tuple[Card, ...]
    title_header: str = ""
    markdown_only: tuple[str, ...] = ()  # labels of fields the page leaves out (its lines say more)

    def markdown(self) -> str:
        labels = [label for label, _ in self.cards[0].fields] if self.cards else []
        rows = [(c.title, *(dict(c.fields).get(label, "") for label in labels)) for c in self.cards]
        return Table((self.title_header, *labels), [tuple(cell.replace("|", "\\|") for cell in r) for r in rows]).markdown()

    def html(self) -> str:
        boxes = []
        for c in self.cards:
            fields = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in c.fields if k not in self.markdown_only)
            lines = "".join(f"<li>{escape(x)}</li>" for x in c.lines)
            boxes.append(f'<div class="card {escape(c.tone)}"><h4>{escape(c.title)}</h4><dl>{fields}</dl>'
                         + (f"<ol>{lines}</ol>" if lines else "") + "</div>")  # fmt: skip
        return '<div class="cards">\n' + "\n".join(boxes) + "\n</div>"


Block = Union[Heading, Paragraph, Table, Contents, CardGrid]


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks separated by blank lines (no trailing newline)."""
    return "\n\n".join(b.markdown() for b in blocks)


def to_html(blocks: Sequence[Block]) -> str:
    return "\n".join(b.html() for b in blocks)
