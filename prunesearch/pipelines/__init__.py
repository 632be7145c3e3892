"""Pipelines: discover, transfer, rethink and studies, each a short function of named steps.

They sit above the packages that do the work (study, jobs, rules, prune, generators, train, data,
report) and below the commands, which only parse arguments and render. Each pipeline returns a
result dataclass and reports progress through :class:`Event`\\ s; none of them prints.
"""

from .events import Event, EventSink
from .discover import DiscoverConfig, DiscoverResult, run_discover
from .rethink import RethinkResult, run_rethink
from .study import StudyRun, run_study_pipeline, write_run_report
from .transfer import TransferConfig, TransferPlan, TransferResult, plan_transfer, run_transfer

__all__ = [
    "DiscoverConfig", "DiscoverResult", "Event", "EventSink", "RethinkResult", "StudyRun", "TransferConfig",
    "TransferPlan", "TransferResult", "plan_transfer", "run_discover", "run_rethink", "run_study_pipeline",
    "run_transfer", "write_run_report",
]
