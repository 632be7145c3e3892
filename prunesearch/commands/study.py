"""`prunesearch study SPEC.yaml`: run a budgeted comparison (generators x budgets x seeds) as one
Optuna study, trained from scratch; resumable, and joinable by `prunesearch worker`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.markup import escape

from ._common import Display, check_positive, console, err_console, print_json

NAME = "study"
HELP = "run a spec's generators x budgets x seeds as one resumable Optuna study (journal file or PostgreSQL)"
DESCRIPTION = (
    "Create or resume the study of a spec (search_spaces/NAME.yaml), enqueue every planned trial exactly "
    "once, train them from scratch (--workers N processes here; more machines join with "
    "'prunesearch worker --storage URL --study NAME'), then write RUN_DIR/run.json, records.jsonl and "
    "the report. Re-running the same command resumes: completed trials are never retrained."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="study spec YAML, e.g. search_spaces/demo.yaml")
    p.add_argument("--storage", default=os.environ.get("PRUNESEARCH_STORAGE"),
                   help="postgresql+psycopg://user:pass@host:port/db, or a journal file (default: "
                   "$PRUNESEARCH_STORAGE, which keeps a password out of the process list, else RUN_DIR/journal.log)")
    p.add_argument("--smoke", action="store_true", help="the spec's tiny 'smoke:' variant (CI, a quick look)")
    p.add_argument("--out", help="run dir (default: runs/STUDY_NAME)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1: in-process)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per training (default: the cores idle now, shared between the workers)")
    p.add_argument("--data-dir", help="where the dataset files live (default: the spec's data_dir or $PRUNESEARCH_DATA_DIR)")
    p.add_argument("--retry-failed", action="store_true", help="re-enqueue failed trials (e.g. after fixing a bug)")
    p.add_argument("--dry-run", action="store_true", help="plan and print the trials; train nothing, write nothing")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")


def run(args: argparse.Namespace) -> int:
    from ._common import quiet_optuna

    quiet_optuna()
    from ..pipelines import run_study_pipeline
    from ..resolve import resolve_base
    from ..study import load_spec, plan_trials
    from ..study.storage import describe_storage

    check_positive(args, "workers", "threads", limit=1024)
    plan = load_spec(args.spec, smoke=args.smoke, kind="study")
    if args.dry_run:
        base = resolve_base(plan.model, plan.dataset, plan.dataset_options)
        trials = plan_trials(plan, base)
        rows = [{"slot": t.slot, "generator": t.generator, "budget": t.budget, "budget_kind": plan.budget_kind,
                 "seed": t.seed, "params": t.user_attrs.get("params"), "macs": t.user_attrs.get("macs"),
                 "arch_id": t.user_attrs.get("arch_id")} for t in trials]
        if args.json:
            print_json({"study": plan.name, "trials": rows})
        else:
            for r in rows:
                console().print(f"{r['slot']:<40} params={r['params'] if r['params'] is not None else '(searched)'}",
                                highlight=False, soft_wrap=True)
            console().print(f"{len(rows)} trials planned for study {plan.name}", highlight=False)
        return 0
    with Display(args.json) as d:
        run = run_study_pipeline(plan, storage=args.storage, out=args.out, device=args.device, workers=args.workers,
                                 data_dir=args.data_dir, retry_failed=args.retry_failed, report=not args.no_report,
                                 threads=args.threads, on_event=d)
    result = run.result
    s = result.summary
    complete = sum(1 for r in result.records if r.state == "complete")
    failed = sum(1 for r in result.records if r.state in ("failed", "interrupted"))
    out = {
        "study": result.study, "storage": describe_storage(result.storage), "run_dir": str(result.run_dir),
        "planned": result.planned, "enqueued": result.enqueued, "complete": complete, "failed": failed,
        **s.to_dict(), "report": run.report,
    }
    if args.json:
        print_json(out)
    else:
        console().print(
            f"study [bold]{escape(result.study)}[/]: {complete}/{len(result.records)} trials complete "
            f"({s.trained} trained now, {s.cached} from the cache, {failed} failed); run dir {result.run_dir}",
            highlight=False, soft_wrap=True)
        if run.report and "error" in run.report:
            err_console().print(f"[yellow]report not written:[/] {escape(str(run.report['error']))}", soft_wrap=True)
        elif run.report:
            console().print(f"report: {Path(result.run_dir) / 'report'}", highlight=False)
        if result.incomplete:
            err_console().print(f"[red]{len(result.incomplete)} planned trial(s) did not complete[/]; see the report's "
                                "failed table; fix the cause and re-run with --retry-failed", soft_wrap=True)
    return 1 if result.incomplete else 0
