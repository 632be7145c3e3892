"""The study pipeline: plan -> study (workers) -> records -> report. What ``prunesearch study``
runs; discover, transfer and rethink end with it too."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PrunesearchError
from ..study import Plan, RethinkPlan, StudyResult, run_study
from .events import EventSink, ignore, trial_events


@dataclass
class StudyRun:
    result: StudyResult
    report: dict[str, str] | None  # name -> path of the report files, or {"error": why}


def write_run_report(records: list, out_dir: Path, *, title: str, planned_seeds: int | None = None,
                     rule_profile: Any = None, formats: str = "md,csv,png,html") -> dict[str, str]:
    """The report of a run (every run kind writes it the same way). A report that cannot be drawn
    (e.g. matplotlib missing) does not fail the run: the results are safe in the storage, and
    ``{"error": ...}`` says what to run once it is fixed."""
    from ..report import write_report

    try:
        paths = write_report(records, out_dir, formats=formats, title=title, planned_seeds=planned_seeds,
                             rule_profile=rule_profile)
    except (PrunesearchError, ImportError, OSError) as e:
        return {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}; the results are in the run's storage "
                         f"and records.jsonl: run 'prunesearch report {out_dir.parent}' after fixing it"}
    return {k: str(v) for k, v in (paths or {}).items()}


def run_study_pipeline(
    plan: "Plan | RethinkPlan",
    *,
    storage: str | None = None,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    workers: int = 1,
    data_dir: str | None = None,
    retry_failed: bool = False,
    report: bool = True,
    title: str | None = None,
    rule_profile: Any = None,
    threads: int | None = None,
    on_event: EventSink = ignore,
) -> StudyRun:
    """Resolve the plan's base, run its study to the end, write the report."""
    from ..resolve import plan_base

    result = run_study(plan, plan_base(plan), storage=storage, out=out, device=device, workers=workers,
                       data_dir=data_dir if data_dir is not None else plan.data_dir, retry_failed=retry_failed,
                       on_event=trial_events(on_event), threads=threads)
    paths = None
    if report:
        paths = write_run_report(result.records, result.run_dir / "report",
                                 title=title or f"prunesearch {plan.kind} {result.study}",
                                 planned_seeds=len(plan.seeds), rule_profile=rule_profile)
    return StudyRun(result, paths)
