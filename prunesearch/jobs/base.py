"""The job contract and registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..registry import Registry


@dataclass
class JobContext:
    """Where and with what a job runs.

    ``data``: the loaded Dataset (with its validation split); ``device``: a torch.device;
    ``checkpoint_dir``: the trial's own resumable checkpoint folder; ``artifacts``: the run dir's
    folder for files trials hand to each other (a base's pruned weights); ``on_progress``: the
    trainer's progress callback (the worker uses it to stop a trial that was taken away)."""

    data: Any
    device: Any
    checkpoint_dir: Path | None
    artifacts: Path
    on_progress: Callable[[Any], None] | None = None
    threads: int | None = None


@dataclass
class JobResult:
    metrics: dict[str, Any]  # see train_metrics
    attrs: dict[str, Any] = field(default_factory=dict)  # stored with the trial


class Job:
    """One kind of training. ``resolve`` fills in what a trial could not know when it was planned
    (a dependent trial's architecture and recipe come from the trial it depends on); ``cacheable``:
    whether two trials with the same cache key may share one training."""

    name: str = ""
    cacheable: bool = False

    def resolve(self, attrs: Mapping[str, Any], deps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        return {}

    def run(self, attrs: Mapping[str, Any], ctx: JobContext) -> JobResult:
        raise NotImplementedError


JOBS: Registry[Job] = Registry("job")


def register(cls: type[Job]) -> type[Job]:
    JOBS.register(cls.name, cls())
    return cls


def get_job(name: str) -> Job:
    return JOBS.get(name)


def run_job(name: str, attrs: Mapping[str, Any], ctx: JobContext) -> JobResult:
    return get_job(name).run(attrs, ctx)


def train_metrics(result: Any) -> dict[str, Any]:
    """A TrainResult as the plain values a trial stores (accuracies are fractions)."""
    return {
        "final_acc": float(result.final_acc),
        "val_acc": None if result.val_acc is None else float(result.val_acc),
        "best_val_acc": None if result.best_val_acc is None else float(result.best_val_acc),
        "best_val_epoch": result.best_val_epoch,
        "test_at_best_val": None if result.test_at_best_val is None else float(result.test_at_best_val),
        "best_acc": float(result.best_acc),
        "train_seconds": float(result.train_seconds),
        "epochs": int(result.epochs),
        "images_per_second": float(result.images_per_second),
        "precision": str(result.precision),
        "device": str(result.device),
        "threads": result.threads,
        "resumed_from": result.resumed_from,
        "split": dict(result.split or {}),
        "curve": [[h.epoch, h.val_acc, h.test_acc, round(h.train_loss, 6)] for h in result.history],
    }
