"""Reports of evaluated runs (`neuronjax report RUN_DIR...`): markdown tables (report.md) and an
HTML page with pictures (<run>/report/), read from a run's typed results
(`neuronjax.evaluation.results`) and saved neuron sets.

    formatting  how an interval and its verdict against zero are written (shared with the sweep)
    document    a table (header, rows, alignment), heading or paragraph as data -> markdown / HTML
    runs        reading a run directory: evaluation.json, cross.json, cards.json, neurons/<method>/
    headline    the finding a run's report opens with (the main method against its random control)
    tables      the report's tables built from typed results
    sections    one run's report as parts in reading order; the markdown report
    pictures    what each picture shows (its numbers, caption, or why it was skipped)
    plots       drawing the pictures with matplotlib (Agg, imported when a picture is drawn)
    html        the HTML page
"""

from neuronjax.report.document import Heading, Paragraph, Table, to_html, to_markdown
from neuronjax.report.formatting import format_interval, verdict
from neuronjax.report.headline import Headline, headline
from neuronjax.report.html import HtmlReport, default_pictures_dir, write_html_report
from neuronjax.report.pictures import Picture, run_pictures
from neuronjax.report.runs import load_cards, load_cross, load_evaluation, load_run_sets, run_methods
from neuronjax.report.sections import markdown_report, run_blocks, run_parts, run_section
from neuronjax.report.tables import (
    SUMMARY_MODES,
    compare_table,
    cross_matrix,
    cross_table,
    curve_table,
    rows_table,
    summary_table,
)

__all__ = [
    "SUMMARY_MODES", "Heading", "Headline", "HtmlReport", "Paragraph", "Picture", "Table", "compare_table",
    "cross_matrix", "cross_table", "curve_table", "default_pictures_dir", "format_interval", "headline", "load_cards",
    "load_cross", "load_evaluation", "load_run_sets", "markdown_report", "rows_table", "run_blocks", "run_methods",
    "run_parts", "run_pictures", "run_section", "summary_table", "to_html", "to_markdown", "verdict",
    "write_html_report",
]  # fmt: skip
