"""How an interval is written in every table of the report and of a sweep: the point value with
its 95% interval to three decimals, and the verdict of a paired difference against zero."""

from __future__ import annotations

from typing import Optional

from neuronjax.evaluation.results import Interval

MISSING = "-"  # the cell of a condition that was not measured


def format_interval(interval: Optional[Interval], signed: bool = False) -> str:
    """"0.687 [0.605, 0.762]"; signed (for differences): "+0.150 [+0.081, +0.220]"; None: "-"."""
    if interval is None:
        return MISSING
    return interval.signed() if signed else str(interval)


def verdict(interval: Optional[Interval]) -> str:
    """How a paired difference (a condition minus its random control, or method a minus b) stands
    against zero: "higher" / "lower" where its 95% interval excludes zero, else "n.s."; None: "-"."""
    if interval is None:
        return MISSING
    return {1: "higher", -1: "lower"}.get(interval.direction, "n.s.")
