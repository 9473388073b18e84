"""A report as data: headings, paragraphs and tables, each rendered to markdown and to HTML from
the same value (the report.md of a run and its index.html page never parse one another).

A `Table` is a header, rows of cell strings and an alignment per column; a cell holding a
verdict ("lower" / "higher", see `neuronjax.report.formatting.verdict`) is shaded in HTML.
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

    def markdown(self) -> str:
        return "#" * self.level + " " + self.text

    def html(self) -> str:
        return f"<h{self.level}>{escape(self.text)}</h{self.level}>"


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str

    def markdown(self) -> str:
        return self.text

    def html(self) -> str:
        return f"<p>{escape(self.text)}</p>"


Block = Union[Heading, Paragraph, Table]


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks separated by blank lines (no trailing newline)."""
    return "\n\n".join(b.markdown() for b in blocks)


def to_html(blocks: Sequence[Block]) -> str:
    return "\n".join(b.html() for b in blocks)
