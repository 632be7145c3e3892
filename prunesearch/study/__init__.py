"""Studies: the only package that imports optuna.

Spec (``search_spaces/*.yaml``) -> :class:`Plan` -> planned trials (generator x budget x seed, plus
searched slots) enqueued once into an Optuna study -> workers pop them exactly once, train each
from scratch through :func:`evaluate` (result cache by arch_id/recipe/dataset/seed) -> records.
Storages: a journal file in the run dir (default) or PostgreSQL (``postgresql+psycopg://``).
"""

from .evaluation import evaluate
from .records import load_records, records_from_study, trial_to_record
from .runner import (
    PlannedTrial,
    Prepared,
    StudyResult,
    Worker,
    WorkerSummary,
    cache_key,
    plan_trials,
    prepare_study,
    propose_searched,
    resolve_base,
    run_study,
    write_run_json,
)
from .spec import Plan, budget_label, load_spec, plan_from_dict
from .storage import describe_storage, mask_url, open_storage

__all__ = [
    "Plan", "PlannedTrial", "Prepared", "StudyResult", "Worker", "WorkerSummary", "budget_label",
    "cache_key", "describe_storage", "evaluate", "load_records", "load_spec", "mask_url", "open_storage",
    "plan_from_dict", "plan_trials", "prepare_study", "propose_searched", "records_from_study",
    "resolve_base", "run_study", "trial_to_record", "write_run_json",
]
