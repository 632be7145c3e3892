"""Rethink: the paper's own comparison (REFERENCE §1, §3), fine-tune vs Scratch-E vs Scratch-B.

One experiment = a model, a dataset, a pruning method and how much to prune (a
:class:`~prunesearch.study.RethinkPlan`, from a spec file or the CLI). It runs as an Optuna study
like any other (``prunesearch.study.plan.plan_rethink``: per seed a base trial and the arms that
depend on it, see ``prunesearch.jobs.rethink``), so its results are trial records in the run's
storage: ``report``, ``worker``, resume and optuna-dashboard work on them.

Steps: ``check`` (method, model, recipe, and one prune of an untrained base so a bad budget or
option fails in seconds rather than after the base has trained), ``study`` (the trials), ``report``
(the paper-style table: rows = model/method/pruned size, columns = arms).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..study import RethinkPlan
from .events import Event, EventSink, ignore

PREFLIGHT_EPOCHS = 5


@dataclass
class RethinkResult:
    plan: RethinkPlan
    run_dir: Path
    records: list
    tables: list  # prunesearch.report.TextTable
    study: Any  # StudyRun


def preflight(plan: RethinkPlan) -> None:
    """Prune an untrained base once: a bad budget or option fails before hours of training."""
    import torch

    from ..arch import unpruned
    from ..data import load_dataset
    from ..jobs.rethink import prune_options, retrains_between_rounds
    from ..models import build_model
    from ..prune import get_method
    from ..resolve import resolve_target

    method = get_method(plan.method)
    base = unpruned(resolve_target(plan.variant or plan.model or "", plan.dataset, plan.dataset_options, plan.head))
    data = load_dataset(plan.dataset, data_dir=plan.data_dir, val_fraction=plan.val_fraction,
                        **plan.dataset_options) if method.needs_data else None
    attrs = {"prune_kw": {k: v for k, v in [("budget", plan.budget), ("budget_kind", plan.budget_kind),
                                            ("ratio", plan.ratio), ("variant", plan.variant)] if v is not None}
             | dict(plan.method_options)}
    kw = prune_options(attrs)
    with torch.random.fork_rng(devices=[]):
        probe = method.prepare(build_model(base), base)
        if getattr(method, "needs_init", False):
            kw["init_state"] = probe.state_dict()
        if retrains_between_rounds(method, kw):  # the check prunes every round; nothing is trained
            kw["retrain"] = lambda model, hooks: None
        method.prune(probe, base, data=data, **kw)


def run_rethink(
    plan: RethinkPlan,
    out: str | os.PathLike | None = None,
    *,
    device: str = "auto",
    storage: str | None = None,
    workers: int = 1,
    threads: int | None = None,
    retry_failed: bool = False,
    preflight_check: bool | None = None,
    on_event: EventSink = ignore,
) -> RethinkResult:
    """Run (or resume) the experiment in ``out`` (default ``runs/rethink-NAME``)."""
    from ..report import build_report
    from ..report.render import all_tables
    from ..study.plan import rethink_recipes
    from .study import run_study_pipeline

    run_dir = Path(out) if out is not None else Path("runs") / f"rethink-{plan.run_name}"
    base_recipe, _ = rethink_recipes(plan)
    if preflight_check if preflight_check is not None else base_recipe.epochs >= PREFLIGHT_EPOCHS:
        on_event(Event("step", name="check", text="checking the prune request on an untrained base"))
        preflight(plan)
    on_event(Event("step", name="study", text=f"rethink {plan.method} on {plan.label}, {plan.dataset}: seeds "
                                              f"{list(plan.seeds)}, recipe {plan.recipe} -> {run_dir}"))
    title = f"rethink: {plan.method} on {plan.label}, {plan.dataset}"
    run = run_study_pipeline(plan, storage=storage, out=run_dir, device=device, workers=workers,
                             retry_failed=retry_failed, title=title, threads=threads, on_event=on_event)
    records = run.result.records
    tables = all_tables(build_report(records, title=title, planned_seeds=len(plan.seeds)))
    return RethinkResult(plan, run.result.run_dir, records, tables, run)
