"""Jobs: what one study trial trains. A study trial names its job in its ``task`` attribute and a
worker runs it through :func:`run_job`; jobs know nothing about Optuna (the study layer stores what
they return).

- ``scratch``: an architecture trained from scratch (every arm of a budgeted comparison);
- ``rethink-base``: the paper's base model, trained with the pruning method's regulariser, then
  pruned; its pruned architecture, inherited weights and initialisation are saved as an artifact
  for the trials that depend on it;
- ``rethink-train``: a pruned architecture from a base's artifact, trained from the inherited
  weights (fine-tune), from scratch (Scratch-E / Scratch-B) or from the rewound initialisation
  (winning ticket).

Every job returns :class:`JobResult`: the training metrics (validation and test accuracy, time,
epochs) and attributes to store with the trial (e.g. the pruned architecture).
"""

from __future__ import annotations

from .base import JOBS, JobContext, JobResult, get_job, run_job, train_metrics
from . import scratch  # noqa: F401  (registers 'scratch')
from . import rethink  # noqa: F401  (registers 'rethink-base' and 'rethink-train')
from .scratch import train_candidate

__all__ = ["JOBS", "JobContext", "JobResult", "get_job", "run_job", "train_candidate", "train_metrics"]
