"""Report -> rich renderables for the terminal (the command layer is the only one that knows rich)."""

from __future__ import annotations

import re
from typing import Any

from ..report.render import TextTable, all_tables, general_notes, summary_line
from ..report.tables import Report

_NUMERIC = re.compile(r"^[-+—\d.]")


def table_rich(t: TextTable) -> Any:
    """One text table as a rich renderable: the table, then its notes as dim lines."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=t.title, title_justify="left", title_style="bold")
    for i, h in enumerate(t.headers):
        # Numbers right-aligned so digits line up; names and reasons left-aligned.
        numeric = i > 0 and all(_NUMERIC.match(row[i]) for row in t.rows if i < len(row))
        table.add_column(h, justify="right" if numeric else "left", overflow="fold")
    for row in t.rows:
        table.add_row(*row)
    # Notes outside the table: as a caption rich would wrap them to the table's width.
    return Group(table, *(Text(n, style="dim") for n in t.notes), Text(""))


def report_renderables(report: Report) -> list[Any]:
    """Everything the terminal shows for a report, in order: title, summary, conventions, tables."""
    from rich.text import Text

    head = [Text(report.title, style="bold"), Text(summary_line(report))]
    head += [Text(n, style="dim") for n in general_notes(report)] + [Text("")]
    return head + [table_rich(t) for t in all_tables(report)]
