"""Records in, tables as data, files out: the budgeted parameter-efficiency report.

Torch-free, Optuna-free and rich-free (the commands render tables for the terminal). matplotlib is
imported lazily (Agg canvas, headless).

Typical use (what ``discover``/``transfer``/``study`` call at the end of a run)::

    from prunesearch.report import write_report
    paths = write_report(records, run_dir / "report", rethink=rethink_records, rule_profile=profile)
"""

from __future__ import annotations

from .render import TextTable, all_tables
from .sources import (
    load_records_jsonl,
    load_rethink_jsonl,
    rule_profile_from_dict,
    rule_profile_from_rule,
    write_records_jsonl,
)
from .stats import PairedTest, normalized_auc, pareto_front, sign_test, wilcoxon_signed_rank
from .tables import (
    BudgetGroup,
    Cell,
    ParetoPoint,
    Pooled,
    Report,
    RethinkArm,
    RethinkRow,
    Score,
    build_report,
    flat_table,
    report_to_dict,
)
from .writers import FORMATS, parse_formats, report_html, report_markdown, save_report, write_report

__all__ = [
    "FORMATS", "BudgetGroup", "Cell", "Pooled", "PairedTest", "ParetoPoint", "Report", "RethinkArm", "RethinkRow",
    "Score", "TextTable", "all_tables", "build_report", "flat_table", "load_records_jsonl", "load_rethink_jsonl",
    "normalized_auc", "pareto_front", "parse_formats", "report_html", "report_markdown",
    "report_to_dict", "rule_profile_from_dict", "rule_profile_from_rule", "save_report", "sign_test", "write_records_jsonl", "wilcoxon_signed_rank",
    "write_report",
]
