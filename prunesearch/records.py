"""TrialRecord: one trained (or failed) candidate, with everything needed to rebuild and retrain it.

Torch-free and Optuna-free: the study layer turns Optuna trials into records, the report reads
records. Accuracies are fractions in [0, 1]; the report renders percentages.

Which accuracy means what (the report leads with the first):

- ``final_acc``: **test** accuracy after the last epoch: the reported number;
- ``val_acc`` / ``best_val_acc``: validation accuracy (a split carved from the training set) at the
  last epoch / the best epoch: what every choice is made on (the searched arm's objective, a best
  epoch); ``test_at_best_val``: test accuracy at that best-validation epoch;
- ``best_acc``: the best **test** accuracy over epochs, the reference code's convention. It selects
  on the test set, so it is optimistic; it is kept, labelled so, to compare with published numbers.

A study arm is ``task="scratch"`` (an architecture trained from scratch); the paper's fine-tune vs
scratch comparison (``prunesearch rethink``) stores its arms as records too (``task="rethink"``,
``arm`` = unpruned, finetune, scratch-e, scratch-b, winning-ticket-lr0.1, ...), in the same storage.
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
SCRATCH, RETHINK = "scratch", "rethink"


def legacy_final_acc(final_acc: float | None, best_acc: float | None, state: str, extra: dict[str, Any]) -> float | None:
    """The final-epoch accuracy of a record; for a complete record written before prunesearch kept
    it (only the best test accuracy over epochs), that optimistic number, flagged in ``extra``
    (``legacy_best_acc``) so the report labels it."""
    if final_acc is None and state == COMPLETE and best_acc is not None:
        extra["legacy_best_acc"] = True
        return best_acc
    return final_acc


@dataclass(frozen=True)
class TrialRecord:
    generator: str  # uniform | pruned | guided | transferred | random | searched | unpruned | rethink
    budget: float  # the requested budget value as given (fraction of the base if <= 1, else absolute)
    param_budget: int  # the absolute target the architecture was solved for (in budget_kind units)
    seed: int
    arch: dict[str, Any]  # Architecture.to_dict()
    arch_id: str
    params: int
    macs: int
    dataset: str
    recipe: dict[str, Any]
    state: str = COMPLETE
    best_acc: float | None = None  # best TEST accuracy over epochs: the reference's optimistic convention
    final_acc: float | None = None  # TEST accuracy after the last epoch: the reported number
    train_seconds: float | None = None
    epochs: int | None = None
    fail_reason: str | None = None
    study: str | None = None
    trial_number: int | None = None
    method: str | None = None  # pruning method behind 'pruned'/'guided'/'transferred'/rethink arms
    rule: str | None = None  # rule file / provenance for guided and transferred arms
    cached_from: int | None = None  # trial number whose training result was reused
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    val_acc: float | None = None  # validation accuracy after the last epoch (choices use it)
    best_val_acc: float | None = None
    best_val_epoch: int | None = None
    test_at_best_val: float | None = None
    budget_kind: str = "params"  # params | macs
    budget_error: float | None = None  # signed (count - target) / target of this architecture
    split: dict[str, Any] = field(default_factory=dict)  # val_fraction, split_seed, sizes
    task: str = SCRATCH  # scratch (a study arm) | rethink (an arm of the fine-tune vs scratch comparison)
    arm: str | None = None  # rethink arm: unpruned, finetune, scratch-e, scratch-b, winning-ticket-lr0.1, ...
    model: str | None = None  # the model as a table shows it (a variant name such as resnet56-b)
    lr: float | None = None

    @property
    def flops(self) -> int:
        """FLOPs = 2 x MACs (one multiply-add counts as two floating-point operations)."""
        return 2 * self.macs

    @property
    def target(self) -> int:
        """The absolute budget target, in ``budget_kind`` units."""
        return self.param_budget

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flops"] = self.flops
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialRecord":
        if "arm" in d and "generator" not in d:  # a rethink.jsonl line written before records were unified
            return RethinkRecord.from_dict(d).to_trial_record()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class RethinkRecord:
    """The rethink record format of earlier versions (``rethink.jsonl``); read, converted to
    :class:`TrialRecord` (``task="rethink"``) and reported like any other."""

    arm: str
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
    recipe: dict[str, Any] = field(default_factory=dict)
    budget: float | None = None
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

    def to_trial_record(self) -> TrialRecord:
        extra: dict[str, Any] = {k: v for k, v in (("ratio", self.ratio), ("variant", self.variant)) if v is not None}
        final = legacy_final_acc(self.final_acc, self.best_acc, self.state, extra)
        return TrialRecord(
            generator="rethink", budget=float(self.budget or 0.0), param_budget=0, seed=self.seed, arch=dict(self.arch),
            arch_id="", params=self.params, macs=self.macs, dataset=self.dataset, recipe=dict(self.recipe),
            state=self.state, best_acc=self.best_acc, final_acc=final, train_seconds=self.train_seconds,
            epochs=self.epochs, fail_reason=self.fail_reason, method=self.method, versions=dict(self.versions),
            extra=extra,
            task=RETHINK, arm=self.arm, model=self.model, lr=self.lr,
        )
