"""`prunesearch report RUN_DIR | --storage URL --study NAME`: the budgeted parameter-efficiency report.

A run dir holds ``run.json`` ({"storage": url, "study": name}, optionally "seeds": planned seeds per
cell) written by the study layer, or ``records.jsonl`` (one TrialRecord per line) as a plain-file
source; optionally ``rethink.jsonl`` (RethinkRecords) and ``rule.yaml`` (a design rule with a
keep-ratio profile). When both sources exist, ``run.json`` (the live storage) wins; the snapshot
``records.jsonl`` is used, with a warning, only when the storage cannot be read.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PrunesearchError, StorageError
from ..records import RethinkRecord, TrialRecord
from ..urls import mask_url, scrub
from ._common import console, err_console, print_json

NAME = "report"
HELP = "tables, curves and tests of a study: which generator wins at each parameter budget"
DESCRIPTION = (
    "Build the budgeted parameter-efficiency report of a run dir or an Optuna study: per budget x "
    "generator accuracy (mean ± std over seeds), params, MACs, FLOPs (= 2 x MACs), the gap to uniform "
    "with exact paired sign and Wilcoxon tests on matched seeds, the accuracy-vs-params curve, the "
    "architecture figure, a score per generator, the Pareto front and rethink tables."
)

RUN_JSON, RECORDS_JSONL, RETHINK_JSONL, RULE_YAML = "run.json", "records.jsonl", "rethink.jsonl", "rule.yaml"


@dataclass
class RunSources:
    """What a report is built from, and where it came from (for messages)."""

    records: list[TrialRecord]
    rethink: list[RethinkRecord] = field(default_factory=list)
    rule_profile: dict[str, list[tuple[float, float]]] | None = None
    planned_seeds: int | None = None
    source: str = ""
    study: str | None = None
    warnings: list[str] = field(default_factory=list)


def load_from_storage(storage: str, study: str) -> list[TrialRecord]:
    """Records of an Optuna study through the study layer (imported lazily: it needs optuna)."""
    try:
        from ..study import load_records
    except ImportError as err:
        raise StorageError(
            f"cannot read study '{study}' at {mask_url(storage)}: the study layer is not available ({err}); "
            f"install prunesearch with optuna, or export the trials to {RECORDS_JSONL}"
        ) from None
    try:
        return list(load_records(storage, study))
    except PrunesearchError:
        raise
    except Exception as err:  # storage drivers raise their own types; keep the message, mask the URL
        msg = scrub(" ".join(str(err).split()), storage)
        raise StorageError(
            f"cannot read study '{study}' at {mask_url(storage)}: {type(err).__name__}: {msg}; "
            "check the storage URL and the study name"
        ) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {' '.join(str(err).split())}; fix or remove the file") from None


def _planned(value: Any) -> int | None:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def load_run_dir(run_dir: str | Path) -> RunSources:
    """Everything a report needs from a run dir (see the module docstring for the layout)."""
    from ..report import load_records_jsonl, load_rethink_jsonl, rule_profile_from_dict

    d = Path(run_dir)
    if not d.exists():
        raise ConfigError(f"run dir {d} does not exist; pass the directory a study, discover or rethink run wrote")
    if not d.is_dir():
        raise ConfigError(f"run dir {d} is not a directory; pass the directory that holds {RUN_JSON} or {RECORDS_JSONL}")
    src = RunSources(records=[])
    run_json, records_jsonl = d / RUN_JSON, d / RECORDS_JSONL
    if run_json.is_file():
        meta = _read_json(run_json)
        if not isinstance(meta, dict) or not isinstance(meta.get("storage"), str) or not isinstance(meta.get("study"), str):
            raise ConfigError(f'{run_json} must be a JSON object with "storage" and "study" strings; '
                              "rewrite it or pass --storage URL --study NAME")
        src.study, src.planned_seeds = meta["study"], _planned(meta.get("seeds"))
        try:
            src.records = load_from_storage(meta["storage"], meta["study"])
            src.source = f"study '{meta['study']}' at {mask_url(meta['storage'])}"
        except StorageError as err:
            # The live storage is the truth, but a snapshot beats no report (e.g. a relative journal
            # path read from another directory, or a database that is down): say so loudly.
            if not records_jsonl.is_file():
                raise
            src.records = load_records_jsonl(records_jsonl)
            src.source = str(records_jsonl)
            src.warnings.append(f"{err}; reporting the snapshot {records_jsonl} instead, which may be older")
    elif records_jsonl.is_file():
        src.records = load_records_jsonl(records_jsonl)
        src.source = str(records_jsonl)
    if (d / RETHINK_JSONL).is_file():
        src.rethink = load_rethink_jsonl(d / RETHINK_JSONL)
        src.source = ", ".join(filter(None, [src.source, str(d / RETHINK_JSONL)]))
    if not src.source:
        raise ConfigError(f"run dir {d} has no {RUN_JSON}, {RECORDS_JSONL} or {RETHINK_JSONL}; run "
                          "'prunesearch study' (or discover/rethink) into it first, or pass --storage URL --study NAME")
    if (d / RULE_YAML).is_file():
        from ..fileio import read_document

        rule = read_document(d / RULE_YAML, "rule")
        src.rule_profile = rule_profile_from_dict(rule)
        if src.rule_profile is None:
            src.warnings.append(f"{d / RULE_YAML} has no keep-ratio profile the report understands; "
                                "the architecture figure shows the widths only")
    return src


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help=f"a run dir with {RUN_JSON} or {RECORDS_JSONL}")
    p.add_argument("--storage", help="Optuna storage URL (instead of RUN_DIR), e.g. journal file or postgresql://")
    p.add_argument("--study", help="study name in --storage")
    p.add_argument("--out", help="output directory (default RUN_DIR/report, or ./report-STUDY)")
    p.add_argument("--format", default="md,csv,png,html", help="comma-separated: md,csv,png,html (default all)")
    p.add_argument("--budget", type=float, help="budget of the architecture figure (default: the smallest)")
    p.add_argument("--title", help="report title")
    p.add_argument("--json", action="store_true", help="print the tables and written paths as one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..report import build_report, parse_formats, report_to_dict, save_report
    from ._render import report_renderables

    formats = parse_formats(args.format)  # fail on a typo before reading any storage
    if args.run_dir and (args.storage or args.study):
        raise ConfigError("give either RUN_DIR or --storage URL --study NAME, not both")
    if args.run_dir:
        src = load_run_dir(args.run_dir)
        out = Path(args.out) if args.out else Path(args.run_dir) / "report"
    elif args.storage and args.study:
        src = RunSources(records=load_from_storage(args.storage, args.study),
                         source=f"study '{args.study}' at {mask_url(args.storage)}", study=args.study)
        # the study name comes from the storage, not from this user: never let it pick a path
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", args.study).strip("._") or "study"
        out = Path(args.out) if args.out else Path(f"report-{safe}")
    else:
        raise ConfigError("nothing to report: give RUN_DIR, or --storage URL together with --study NAME")
    if not src.records and not src.rethink:
        raise ConfigError(f"no trial records in {src.source}; wait for the study to record trials or check the study name")
    title = args.title or f"prunesearch report: {src.study or Path(args.run_dir or '.').resolve().name}"
    report = build_report(src.records, rethink=src.rethink, rule_profile=src.rule_profile, title=title,
                          planned_seeds=src.planned_seeds)
    written = save_report(report, out, formats, arch_budget=args.budget)
    if args.json:
        print_json({"source": src.source, "out_dir": str(out), "written": {k: str(v) for k, v in written.items()},
                    "warnings": src.warnings, "report": report_to_dict(report)})
        return 0
    for w in src.warnings:
        err_console().print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    con = console()
    con.print(f"source: {src.source}", highlight=False, soft_wrap=True)
    for r in report_renderables(report):
        con.print(r)
    con.print(f"wrote {len(written)} files to {out}:", highlight=False)
    for key, path in written.items():
        con.print(f"  {path}", highlight=False, soft_wrap=True)
    return 0
