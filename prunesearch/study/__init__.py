"""Studies: the only package that imports optuna.

Spec (``search_spaces/*.yaml``) -> :class:`Plan` / :class:`RethinkPlan` -> planned trials (one per
slot, :mod:`.plan`) enqueued once into an Optuna study -> workers pop them exactly once
(:mod:`.queue`) and run each trial's job (``prunesearch.jobs``) -> records (:mod:`.records`).
Searched arms get their architecture from TPE when popped (:mod:`.searched`). Storages: a journal
file in the run dir (default) or PostgreSQL (``postgresql+psycopg://``); run-dir files in
:mod:`.rundir`.
"""

from .plan import PlannedTrial, cache_key, plan_rethink, plan_trials
from .queue import PLAN_ATTR, Prepared, Worker, WorkerSummary, get_dataset, prepare_study
from .records import load_records, records_from_study, trial_to_record
from .rundir import default_storage, make_run_dir, read_run_json, write_records, write_run_json
from .runner import StudyResult, prepare, run_study, study_name
from .searched import propose_searched
from .spec import Plan, RethinkPlan, generator_of, load_spec, plan_from_dict, rethink_plan_from_dict
from .storage import describe_storage, mask_url, open_storage

__all__ = [
    "PLAN_ATTR", "Plan", "prepare", "PlannedTrial", "Prepared", "RethinkPlan", "StudyResult", "Worker", "WorkerSummary",
    "cache_key", "default_storage", "describe_storage", "generator_of", "get_dataset", "load_records", "load_spec",
    "make_run_dir", "mask_url", "open_storage", "plan_from_dict", "plan_rethink", "plan_trials", "prepare_study",
    "propose_searched", "read_run_json", "records_from_study", "rethink_plan_from_dict", "run_study", "study_name",
    "trial_to_record", "write_records", "write_run_json",
]
