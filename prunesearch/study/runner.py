"""The whole study, as ``prunesearch study`` / ``rethink`` / ``discover`` / ``transfer`` run it:
plan, create or resume the Optuna study, run its trials with one or more workers, read the records.
Reports are written by the pipeline layer above (``prunesearch.pipelines``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PrunesearchError
from .plan import PlannedTrial, plan_rethink, plan_trials
from .queue import EventFn, Prepared, Worker, WorkerSummary, prepare_study
from .rundir import default_storage, make_run_dir, write_records, write_run_json
from .spec import Plan, RethinkPlan
from .storage import is_url, open_storage


@dataclass
class StudyResult:
    run_dir: Path
    storage: str
    study: str
    planned: int
    enqueued: int
    summary: WorkerSummary
    records: list

    @property
    def incomplete(self) -> list:
        """Records of planned trials that did not complete (failed, interrupted, waiting, running)."""
        return [r for r in self.records if r.state != "complete"]


def study_name(plan: "Plan | RethinkPlan") -> str:
    return plan.name if isinstance(plan, Plan) else plan.run_name


def plan_of(plan: "Plan | RethinkPlan", base: Any) -> list[PlannedTrial]:
    return plan_trials(plan, base) if isinstance(plan, Plan) else plan_rethink(plan, base)


def prepare(plan: "Plan | RethinkPlan", storage: str, base: Any = None, data_dir: str | None = None,
            retry_failed: bool = False, planned: list[PlannedTrial] | None = None) -> Prepared:
    """Plan ``plan`` on ``base`` (default: its resolved base; ``planned``: trials already planned) and
    create or resume its study in ``storage`` with every planned trial enqueued once."""
    if planned is None:
        if base is None:
            from ..resolve import plan_base

            base = plan_base(plan)
        planned = plan_of(plan, base)
    plan_dict = plan.to_dict()
    plan_dict["model"] = plan_dict.get("model") or getattr(plan, "label", None)
    if data_dir is not None:
        plan_dict["data_dir"] = data_dir
    return prepare_study(plan_dict, study_name(plan), storage, planned, plan.settings, retry_failed=retry_failed)


def run_study(
    plan: "Plan | RethinkPlan",
    base: Any,
    storage: str | None = None,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    workers: int = 1,
    data_dir: str | None = None,
    retry_failed: bool = False,
    on_event: EventFn | None = None,
    threads: int | None = None,
) -> StudyResult:
    """Create/resume ``plan``'s study (``base``: the unpruned target from ``prunesearch.resolve``),
    enqueue what is missing, run it to the end with ``workers`` (1: in this process; N > 1: N
    worker subprocesses), write run.json and records.jsonl; returns the records."""
    from ..train import resolve_device

    # everything that can be wrong with the input fails before anything is written
    resolve_device(device)
    if storage is not None and is_url(storage):
        open_storage(storage)  # an unreachable database: StorageError, before the run dir exists
    elif storage is not None:
        from .journal import check_journal_file
        from .storage import journal_path

        check_journal_file(journal_path(storage))  # a directory or a foreign file: before the run dir exists
    planned = plan_of(plan, base)  # a plan that cannot be planned fails before the run dir exists
    name = study_name(plan)
    run_dir = make_run_dir(out if out is not None else Path("runs") / name)
    storage = storage or default_storage(run_dir)
    prepared = prepare(plan, storage, data_dir=data_dir, retry_failed=retry_failed, planned=planned)
    write_run_json(run_dir, storage, name, seeds=len(plan.seeds), kind=plan.kind)
    if on_event is not None:
        done = sum(1 for t in prepared.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
        on_event("planned", {"trials": prepared.planned, "enqueued": prepared.enqueued, "complete": done,
                             "run_dir": str(run_dir), "study": name})
    if workers <= 1:
        w = Worker(storage, name, device=device, data_dir=data_dir, run_dir=run_dir, on_event=on_event,
                   threads=threads)
        summary = w.run()
    else:
        summary = run_subprocess_workers(storage, name, device, data_dir, run_dir, workers, threads)
    from .records import load_records

    records = load_records(storage, name)
    write_records(run_dir, records)
    return StudyResult(run_dir, storage, name, prepared.planned, prepared.enqueued, summary, records)


def run_subprocess_workers(storage: str, name: str, device: str, data_dir: str | None, run_dir: Path,
                           n: int, threads: int | None = None) -> WorkerSummary:
    # the storage URL goes by environment, not argv: argv (with a password) is visible in `ps`
    env = dict(os.environ, PRUNESEARCH_STORAGE=storage)
    cmd = [sys.executable, "-m", "prunesearch", "worker", "--study", name, "--device", device,
           "--out", str(run_dir), "--json"]
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    if threads is None and not str(device).startswith("cuda"):
        from ..machine import threads_per_worker

        threads = threads_per_worker(n)  # the idle cores, shared: n workers never oversubscribe
    if threads is not None:
        cmd += ["--threads", str(threads)]
    # stderr is inherited: the workers' progress (and a worker's own error line) shows as it happens
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    total = WorkerSummary()
    errors: list[str] = []
    try:
        for p in procs:  # wait for every worker: one failing never cuts the others off
            out, _ = p.communicate()
            if p.returncode == 1 and out.strip():  # a worker whose trials failed: its summary says so
                try:
                    d = json.loads(out.strip().splitlines()[-1])
                    total.add(WorkerSummary(**{k: d.get(k, 0) for k in WorkerSummary().to_dict()}))
                    continue
                except (ValueError, IndexError, TypeError):
                    pass
            if p.returncode != 0:
                if p.returncode < 0:
                    import signal as _signal

                    why = f"was killed by {_signal.Signals(-p.returncode).name}"
                else:
                    why = f"exited with code {p.returncode} (its error is printed above)"
                errors.append(f"worker process {p.pid} {why}")
                continue
            try:
                d = json.loads(out.strip().splitlines()[-1])
                total.add(WorkerSummary(**{k: d.get(k, 0) for k in WorkerSummary().to_dict()}))
            except (ValueError, IndexError):
                pass
    except KeyboardInterrupt:
        for p in procs:  # they got the same SIGINT (one process group); let them mark their trials
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    if errors:
        raise PrunesearchError(f"{'; '.join(errors)}; the other workers finished what they could: fix that and re-run "
                               "the same command to resume")
    return total
