"""Optuna trials -> :class:`~prunesearch.records.TrialRecord` (what the report reads)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..records import (COMPLETE, FAILED, INTERRUPTED, RETHINK, RUNNING, SCRATCH, WAITING, TrialRecord,
                       legacy_final_acc)
from .storage import FAIL_REASON, STALE_REASON, load_study, open_storage

_STATE = {
    TrialState.COMPLETE: COMPLETE,
    TrialState.FAIL: FAILED,
    TrialState.PRUNED: FAILED,
    TrialState.RUNNING: RUNNING,
    TrialState.WAITING: WAITING,
}
_EXTRA = ("retry_reason", "slot", "index", "keep_ratios", "multipliers", "alpha", "images_per_second", "worker",
          "train_info", "options", "cache_key", "dataset_synthetic", "duplicate_of", "curve", "pruned_arch",
          "pruned_params", "pruned_macs", "prune_info", "prune_ratio", "regularizer", "sparsity_diagnostic",
          "init", "source", "dataset_options", "val_fraction")


def trial_to_record(t: FrozenTrial, study_name: str | None = None, superseded_by: int | None = None,
                    reason: str | None = None) -> TrialRecord:
    """One Optuna trial as a record; ``reason``: why it failed when the trial itself cannot say
    (a trial failed as stale is frozen; its retry carries the reason)."""
    ua = t.user_attrs
    state = _STATE.get(t.state, FAILED)
    done = state == COMPLETE

    def result(key: str) -> Any:
        return ua.get(key) if done else None

    if t.state == TrialState.FAIL and ua.get("interrupted"):
        state = INTERRUPTED
    extra: dict[str, Any] = {k: ua[k] for k in _EXTRA if k in ua}
    if t.params:
        extra["sampled"] = dict(t.params)
    history = t.system_attrs.get("retry_history")
    if history:
        extra["retry_of"] = list(history)
    if superseded_by is not None:
        extra["superseded_by"] = superseded_by
    final = legacy_final_acc(result("final_acc"), result("best_acc"), state, extra)
    return TrialRecord(
        generator=str(ua.get("generator", "")),
        budget=float(ua.get("budget", 0.0) or 0.0),
        param_budget=int(ua.get("param_budget", 0) or 0),
        seed=int(ua.get("seed", 0)),
        arch=dict(ua.get("arch") or {}),
        arch_id=str(ua.get("arch_id", "")),
        params=int(ua.get("params", 0) or 0),
        macs=int(ua.get("macs", 0) or 0),
        dataset=str(ua.get("dataset", "")),
        recipe=dict(ua.get("recipe") or {}),
        state=state,
        best_acc=result("best_acc"),
        final_acc=final,
        train_seconds=result("train_seconds"),
        epochs=result("epochs"),
        fail_reason=(ua.get(FAIL_REASON) or reason or STALE_REASON) if state in (FAILED, INTERRUPTED) else None,
        study=study_name,
        trial_number=t.number,
        method=ua.get("method"),
        rule=ua.get("rule"),
        cached_from=ua.get("cached_from"),
        versions=dict(ua.get("versions") or {}),
        extra=extra,
        val_acc=result("val_acc"),
        best_val_acc=result("best_val_acc"),
        best_val_epoch=result("best_val_epoch"),
        test_at_best_val=result("test_at_best_val"),
        budget_kind=str(ua.get("budget_kind", "params")),
        budget_error=ua.get("budget_error"),
        split=dict(result("split") or {}),
        task=RETHINK if str(ua.get("task", "scratch")).startswith("rethink") else SCRATCH,
        arm=ua.get("arm"),
        model=ua.get("model"),
        lr=ua.get("lr"),
    )


def records_from_study(study: optuna.Study, superseded: bool = False) -> list[TrialRecord]:
    trials = [t for t in study.get_trials(deepcopy=False) if "slot" in t.user_attrs]
    retried: dict[int, int] = {}  # attempt -> the retry that replaced it
    reasons: dict[int, str] = {}
    for t in trials:
        history = t.system_attrs.get("retry_history", []) or []
        if history:
            retried[int(history[-1])] = t.number
            if t.user_attrs.get("retry_reason"):
                reasons[int(history[-1])] = str(t.user_attrs["retry_reason"])
    out = []
    for t in trials:
        dup = t.user_attrs.get("duplicate_of") is not None
        later = retried.get(t.number) if t.state == TrialState.FAIL else None
        if (dup or later is not None) and not superseded:
            continue
        out.append(trial_to_record(t, study.study_name, superseded_by=later, reason=reasons.get(t.number)))
    return out


def load_records(storage: str, study: str, *, superseded: bool = False) -> list[TrialRecord]:
    """Every planned trial of ``study`` as a TrialRecord: complete, failed (with ``fail_reason``),
    interrupted, running and waiting (searched trials not yet popped have no architecture: ``arch``
    is ``{}`` and ``params`` 0). Attempts superseded by a retry (dead worker, Ctrl-C) and duplicate
    slot trials are left out unless ``superseded=True`` (then ``extra['superseded_by']`` /
    ``extra['duplicate_of']`` mark them), so there is one record per planned trial."""
    st = open_storage(storage, create=False)
    s = load_study(st, study, storage)
    return records_from_study(s, superseded=superseded)
