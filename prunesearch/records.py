"""TrialRecord: one trained (or failed) candidate, with everything needed to rebuild and retrain it.

Torch-free and Optuna-free: the study layer turns Optuna trials into records, the report reads
records. Accuracies are fractions in [0, 1]; the report renders percentages.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass, field
from typing import Any

def versions() -> dict[str, str]:
    """Versions that produced a result (stored with every record). Reads package metadata, so it
    imports neither torch nor optuna."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"prunesearch": __version__, "python": platform.python_version()}
    for pkg in ("torch", "optuna"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# Trial states as the report sees them.
COMPLETE, FAILED, RUNNING, WAITING, INTERRUPTED = "complete", "failed", "running", "waiting", "interrupted"
STATES = (COMPLETE, FAILED, RUNNING, WAITING, INTERRUPTED)


@dataclass(frozen=True)
class TrialRecord:
    generator: str  # uniform | pruned | guided | transferred | random | searched | unpruned
    budget: float  # the requested budget as given (fraction of base params if <= 1, else absolute)
    param_budget: int  # the absolute parameter budget the architecture was solved for
    seed: int
    arch: dict[str, Any]  # Architecture.to_dict()
    arch_id: str
    params: int
    macs: int
    dataset: str
    recipe: dict[str, Any]
    state: str = COMPLETE
    best_acc: float | None = None  # best test accuracy over epochs (the paper's metric), fraction
    final_acc: float | None = None
    train_seconds: float | None = None
    epochs: int | None = None
    fail_reason: str | None = None
    study: str | None = None
    trial_number: int | None = None
    method: str | None = None  # pruning method behind 'pruned'/'guided'/'transferred' arms
    rule: str | None = None  # rule file / provenance for guided and transferred arms
    cached_from: int | None = None  # trial number whose training result was reused
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        """FLOPs = 2 x MACs (one multiply-add counts as two floating-point operations)."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flops"] = self.flops
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class RethinkRecord:
    """One arm of the paper's fine-tune vs scratch comparison (``prunesearch rethink``)."""

    arm: str  # unpruned | finetune | scratch-e | scratch-b | winning-ticket-lr0.1 | random-init-lr0.1 | ...
    seed: int
    model: str
    dataset: str
    method: str
    params: int
    macs: int
    epochs: int
    best_acc: float | None
    final_acc: float | None = None
    lr: float | None = None
    state: str = COMPLETE
    fail_reason: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    train_seconds: float | None = None
    recipe: dict[str, Any] = field(default_factory=dict)  # the arm's full recipe: enough to retrain it
    budget: float | None = None  # what the pruning was asked for (budget, ratio or named variant)
    ratio: float | None = None
    variant: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flops"] = self.flops
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RethinkRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
