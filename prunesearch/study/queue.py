"""Creating a study from a plan, and the workers that run its trials exactly once.

Exactly once, the design
------------------------
* **Every planned trial is a WAITING Optuna trial before anything trains**, the searched ones
  included ("pre-created slots"): :func:`prepare_study` enqueues one trial per slot, skipping slots
  that already have a trial in any state. So the number of trials is fixed by the plan: N workers
  can never overshoot it, and re-running ``study`` enqueues nothing twice.
* **Workers never call ``study.ask()``** (it would create unplanned trials when the queue is
  empty). They pop WAITING trials with the storage's atomic WAITING->RUNNING transition (what
  ``ask()`` does internally; the transition succeeds for exactly one caller), and stop when no
  WAITING or RUNNING trial is left.
* **Dependencies.** A trial may name slots it runs ``after`` (a rethink arm after its base). It is
  popped only once they are COMPLETE; when one of them failed for good, it fails too, saying why.
* **Duplicates cannot both run.** Should two concurrent ``study`` commands enqueue the same slot,
  the worker that pops a trial checks its slot: if a lower-numbered live (WAITING/RUNNING/COMPLETE)
  trial or any COMPLETE trial holds the slot, the popped one is failed as ``duplicate_of`` and
  skipped. The lowest-numbered live trial always proceeds, so exactly one runs.
* **Dead workers.** A RUNNING trial whose holder is gone is FAILED and re-enqueued once as a new
  WAITING trial with the same slot and params (plan attributes only), by whichever worker notices
  first (the FAIL transition succeeds once): at once when the holder ran on this host and its PID
  is gone, otherwise after ``grace_period`` seconds without a heartbeat (see ``storage.py``). A
  stalled holder that wakes up finds its trial failed: it stops training and discards its result
  (``lost``). **Ctrl-C** fails the trial as "interrupted" and re-enqueues it at once. An **OSError**
  (a full disk, a folder without permission) or a missing dataset is this worker's environment,
  not the trial's: the trial is re-enqueued with its checkpoint and the worker stops with one line
  saying what to fix. The retry resumes from the checkpoint (keyed by slot and arch_id).
* **Result cache** by :func:`~prunesearch.study.plan.cache_key`, read from the storage's COMPLETE
  trials so it works across workers and machines. A trial whose key is being trained by another
  RUNNING trial waits for it instead of training the same network twice; the lowest never waits.
* **The objective is validation accuracy.** Each trial's Optuna value is its final-epoch
  validation accuracy (a split of the training set); test accuracy is stored as a user attribute
  and only reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import BudgetError, ConfigError, PrunesearchError, StorageError, TrainingDiverged
from ..faults import kill_point
from ..records import versions
from .plan import PlannedTrial, cache_key
from .spec import SEARCHED
from .storage import (
    FAIL_REASON,
    Heartbeat,
    describe_storage,
    driver_reason,
    fail_stale_trials,
    load_study,
    open_storage,
    retry_stale_trial,
    scrub,
    worker_tag,
)

PLAN_ATTR = "prunesearch:plan"  # study user attr: the latest plan (dict)
FORMAT_ATTR = "prunesearch:format"
FORMAT = 2
RESULT_KEYS = ("final_acc", "val_acc", "best_val_acc", "best_val_epoch", "test_at_best_val", "best_acc",
               "train_seconds", "epochs", "images_per_second", "split", "curve")

EventFn = Callable[[str, dict[str, Any]], None]


@dataclass
class Prepared:
    study: optuna.Study
    storage: str
    planned: int  # trials in the plan
    enqueued: int  # trials added by this call
    retried: int = 0  # failed trials re-enqueued (retry_failed=True)


def _live(t: optuna.trial.FrozenTrial) -> bool:
    return t.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


def prepare_study(plan_dict: dict[str, Any], name: str, storage: str, planned: list[PlannedTrial],
                  settings: dict[str, Any], retry_failed: bool = False) -> Prepared:
    """Create or resume the study ``name`` and enqueue the planned trials that are not there yet.

    A study already holding another model's trials is refused (one study, one model: a report
    would otherwise average two models under one header)."""
    st = open_storage(storage, heartbeat_interval=settings["heartbeat_interval"], grace_period=settings["grace_period"])
    try:
        study = optuna.create_study(study_name=name, storage=st, direction="maximize", load_if_exists=True)
    except Exception as e:  # noqa: BLE001  (database errors after connecting)
        raise StorageError(f"cannot create study '{name}' in {describe_storage(storage)} "
                           f"({type(e).__name__}: {scrub(str(e).splitlines()[0] if str(e) else '', storage)})") from None
    old = study.user_attrs.get(PLAN_ATTR)
    if isinstance(old, dict) and old.get("model") and plan_dict.get("model") and (
            old.get("model") != plan_dict.get("model") or old.get("kind", "study") != plan_dict.get("kind", "study")):
        raise ConfigError(f"study '{name}' in {describe_storage(storage)} holds {old.get('kind', 'study')} results of "
                          f"{old.get('model')}, not {plan_dict.get('model')}; give this run another name (--out or "
                          "the spec's 'name') so the two are never averaged into one table")
    if isinstance(old, dict) and plan_dict.get("kind") == "rethink" and old.get("kind") == "rethink" and (
            _rethink_identity(old) != _rethink_identity(plan_dict)):
        changed = sorted(k for k in set(_rethink_identity(old)) | set(_rethink_identity(plan_dict))
                         if _rethink_identity(old).get(k) != _rethink_identity(plan_dict).get(k))
        raise ConfigError(f"study '{name}' in {describe_storage(storage)} holds a different rethink experiment "
                          f"({', '.join(changed)} differ); give this one another --out or 'name' (more seeds are fine)")
    study.set_user_attr(PLAN_ATTR, plan_dict)
    study.set_user_attr(FORMAT_ATTR, FORMAT)
    with contextlib.suppress(Exception), warnings.catch_warnings():  # optuna-dashboard shows the objective's name
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_acc"])
    existing = study.get_trials(deepcopy=False)
    have = {t.user_attrs.get("slot") for t in existing}
    enqueued = 0
    for p in planned:
        if p.slot in have:
            continue
        study.enqueue_trial({}, user_attrs=p.user_attrs)
        enqueued += 1
    retried = 0
    if retry_failed:
        by_slot: dict[str, list] = {}
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("slot"):
                by_slot.setdefault(t.user_attrs["slot"], []).append(t)
        for slot, ts in by_slot.items():
            if any(_live(t) for t in ts):
                continue
            last = max(ts, key=lambda t: t.number)
            if last.user_attrs.get("duplicate_of") is None:
                retry_stale_trial(study, last, reason=last.user_attrs.get(FAIL_REASON), enforce_limit=False)
                retried += 1
    return Prepared(study, storage, len(planned), enqueued, retried)


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------
def _rethink_identity(plan_dict: dict[str, Any]) -> dict[str, Any]:
    """What a resumed rethink run must share with the study it resumes (seeds may grow)."""
    return {k: v for k, v in plan_dict.items()
            if k not in ("seeds", "description", "source", "data_dir", "name", "settings", "smoke")}


class TrialLost(Exception):
    """The running trial was failed as stale elsewhere (this worker stalled past the grace period)."""


@dataclass
class WorkerSummary:
    trained: int = 0  # trials this worker trained (jobs run)
    cached: int = 0  # trials completed from the result cache
    failed: int = 0  # trials that failed here (divergence, errors, failed dependencies)
    duplicates: int = 0  # duplicate slot trials skipped
    lost: int = 0  # trials taken from this worker (failed as stale while it stalled); results discarded
    interrupted: int = 0
    trial_numbers: list[int] = field(default_factory=list)  # trials this worker completed

    def add(self, other: "WorkerSummary") -> None:
        for k in ("trained", "cached", "failed", "duplicates", "lost", "interrupted"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.trial_numbers += other.trial_numbers

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("trained", "cached", "failed", "duplicates", "lost", "interrupted")}


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:120] or "trial"


_DATA_CACHE: dict[str, Any] = {}


def get_dataset(name: str, data_dir: str | None = None, options: dict[str, Any] | None = None,
                val_fraction: float = 0.1):
    """Load a dataset once per process (split seed 0: every trial sees the same split)."""
    import json

    from ..data import load_dataset

    key = json.dumps([name, data_dir, options or {}, val_fraction], sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(name, data_dir=data_dir, seed=0, val_fraction=val_fraction, **(options or {}))
    return _DATA_CACHE[key]


class Worker:
    """Pops and runs planned trials of one study until none is WAITING or RUNNING."""

    def __init__(self, storage: str, study_name: str, device: str = "auto", data_dir: str | None = None,
                 run_dir: str | os.PathLike | None = None, on_event: EventFn | None = None,
                 poll_seconds: float | None = None, threads: int | None = None) -> None:
        st = open_storage(storage, create=False)
        probe = load_study(st, study_name, storage)
        plan_d = probe.user_attrs.get(PLAN_ATTR)
        if not isinstance(plan_d, dict):
            raise StorageError(f"study '{study_name}' in {describe_storage(storage)} was not created by "
                               "'prunesearch study' or 'prunesearch rethink'; give a study that was")
        self.settings = dict(plan_d.get("settings") or {})
        self.plan_dataset = ((plan_d["dataset"], plan_d.get("dataset_options") or {}, plan_d.get("val_fraction", 0.1))
                             if plan_d.get("dataset") else None)
        self.storage_text = storage
        self.storage = open_storage(storage, create=False,
                                    heartbeat_interval=int(self.settings.get("heartbeat_interval", 10)),
                                    grace_period=int(self.settings.get("grace_period", 60)))
        self.study = load_study(self.storage, study_name, storage)
        self.study_name = study_name
        self.device_text = device
        self.threads = threads
        self.data_dir = data_dir if data_dir is not None else plan_d.get("data_dir")
        self.run_dir = Path(run_dir) if run_dir is not None else Path("runs") / _safe_name(study_name)
        self.on_event = on_event or (lambda kind, info: None)
        self.interval = float(self.settings.get("heartbeat_interval", 10))
        self.poll = float(poll_seconds) if poll_seconds is not None else max(0.5, min(5.0, self.interval / 2))
        self.worker_tag = worker_tag()
        self.keep_checkpoints = bool(self.settings.get("keep_checkpoints", False))
        self._device = None
        self._hb: Heartbeat | None = None
        self._ctrl_c = False  # latched by the SIGINT handler (see run)

    # -- helpers -------------------------------------------------------------------------------
    def device(self):
        if self._device is None:
            from ..train import resolve_device

            self._device = resolve_device(self.device_text)
        return self._device

    def _set(self, trial_id: int, **attrs: Any) -> None:
        for k, v in attrs.items():
            self.study._storage.set_trial_user_attr(trial_id, k, v)

    def _trials(self, states=None) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states)

    def _data(self, ua: dict[str, Any]):
        return get_dataset(ua["dataset"], self.data_dir, ua.get("dataset_options"), float(ua.get("val_fraction", 0.1)))

    # -- the queue -----------------------------------------------------------------------------
    def _deps_state(self, ua: dict[str, Any], by_slot: dict[str, list]) -> tuple[str, list[str]]:
        """'ready', 'blocked' (a dependency is still to run) or 'failed' (one failed for good), with
        the slots responsible."""
        after = list(ua.get("after") or [])
        blocked, failed = [], []
        for slot in after:
            ts = by_slot.get(slot, [])
            if any(t.state == TrialState.COMPLETE for t in ts):
                continue
            if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in ts):
                blocked.append(slot)
            else:
                failed.append(slot)
        if failed:
            return "failed", failed
        return ("blocked", blocked) if blocked else ("ready", [])

    def _pop(self, summary: WorkerSummary) -> tuple[int | None, bool]:
        """Claim the lowest-numbered WAITING trial whose dependencies are complete (WAITING->RUNNING
        succeeds for one caller). Returns (trial id or None, whether blocked trials are waiting)."""
        storage = self.study._storage
        trials = self._trials()
        by_slot: dict[str, list] = {}
        for t in trials:
            if t.user_attrs.get("slot"):
                by_slot.setdefault(t.user_attrs["slot"], []).append(t)
        blocked = False
        for t in trials:
            if t.state != TrialState.WAITING:
                continue
            state, slots = self._deps_state(t.user_attrs, by_slot)
            if state == "blocked":
                blocked = True
                continue
            try:
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if state == "failed":
                reason = f"not run: the trial it depends on failed ({', '.join(s.split('@')[0] for s in slots)})"
                self._finish(t._trial_id, TrialState.FAIL, reason=reason)
                summary.failed += 1
                self.on_event("failed", {"trial": t.number, "slot": t.user_attrs.get("slot"), "reason": reason})
                continue
            return t._trial_id, blocked
        return None, blocked

    # -- the loop ------------------------------------------------------------------------------
    def run(self, max_trials: int | None = None, wait: bool = True) -> WorkerSummary:
        """Run trials until the study has nothing WAITING (and, with ``wait``, nothing RUNNING
        elsewhere that might still die and come back). ``max_trials``: stop after that many."""
        self.device()  # a bad --device fails before a trial is claimed
        if self.plan_dataset is not None:  # so does a dataset this machine does not have
            get_dataset(self.plan_dataset[0], self.data_dir, self.plan_dataset[1], float(self.plan_dataset[2]))
        summary = WorkerSummary()
        done = 0
        with self._latch_ctrl_c(), self._storage_errors():
            while max_trials is None or done < max_trials:
                fail_stale_trials(self.study)
                trial_id, blocked = self._pop(summary)
                if trial_id is None:
                    running = self._trials(states=(TrialState.RUNNING,))
                    if not running and not blocked:
                        break
                    if not wait and not blocked:
                        break
                    time.sleep(self.poll)  # another worker's trial may die (its retry is ours) or unblock others
                    continue
                self._run_one(trial_id, summary)
                done += 1
        self._remove_finished_checkpoints()
        return summary

    @contextlib.contextmanager
    def _storage_errors(self):
        """The storage going away mid-study (a stopped database, a dropped connection) is one line
        naming the storage (never its password) and what to do, not a driver traceback. The trial
        being trained is not lost: its heartbeat stops, so the next worker re-runs it from its
        checkpoint once the storage is back."""
        try:
            yield
        except PrunesearchError:
            raise
        except Exception as e:  # noqa: BLE001  (sqlalchemy / psycopg / optuna storage errors)
            mod = type(e).__module__ or ""
            if not (mod.startswith(("sqlalchemy", "psycopg")) or isinstance(e, optuna.exceptions.StorageInternalError)):
                raise
            raise StorageError(f"lost the storage {describe_storage(self.storage_text)} mid-study "
                               f"({driver_reason(e, self.storage_text)}); no completed trial is lost: start the database again and re-run the "
                               "same command (or 'prunesearch worker') to finish") from None

    @contextlib.contextmanager
    def _latch_ctrl_c(self):
        """Make Ctrl-C stick. Python raises KeyboardInterrupt wherever the main thread is, and a
        library's bare ``except:`` can swallow it (seen: a SIGINT landing in torch's lazy imports let
        the trial train to the end). The handler also latches a flag that the training progress
        callback re-raises on, so the trial always stops, is marked interrupted and re-queued."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum, frame):
            self._ctrl_c = True
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _checkpoint_dir(self, ua: dict[str, Any]) -> Path:
        return self.run_dir / "checkpoints" / _safe_name(f"{ua['slot']}-{ua.get('arch_id', '')}")

    def _remove_finished_checkpoints(self) -> None:
        """Checkpoints of completed slots left by a worker killed between COMPLETE and the removal."""
        if self.keep_checkpoints or not (self.run_dir / "checkpoints").is_dir():
            return
        for t in self._trials(states=(TrialState.COMPLETE,)):
            ua = t.user_attrs
            if ua.get("slot"):
                d = self._checkpoint_dir(ua)
                if d.exists():
                    shutil.rmtree(d, ignore_errors=True)

    def _requeue(self, trial_id: int, reason: str) -> None:
        storage = self.study._storage
        if self._finish(trial_id, TrialState.FAIL, reason=reason):
            retry_stale_trial(self.study, storage.get_trial(trial_id), reason=reason, enforce_limit=False)

    def _run_one(self, trial_id: int, summary: WorkerSummary) -> None:
        storage = self.study._storage
        with Heartbeat(storage, trial_id, self.interval) as hb:
            self._hb = hb
            self._trial_id = trial_id
            # first: who holds it (a dead local holder is then noticed without the grace period)
            self._set(trial_id, worker=self.worker_tag)
            frozen = storage.get_trial(trial_id)
            ua = dict(frozen.user_attrs)
            number = frozen.number
            slot = ua.get("slot")
            if slot is None:  # e.g. someone called study.ask() by hand: not part of the plan
                self._finish(trial_id, TrialState.FAIL, reason="not a planned trial (no slot attribute)")
                summary.failed += 1
                return
            dup = self._duplicate_of(slot, number)
            if dup is not None:
                self._set(trial_id, duplicate_of=dup)
                self._finish(trial_id, TrialState.FAIL, reason=f"duplicate of trial {dup} (same slot {slot})")
                summary.duplicates += 1
                self.on_event("duplicate", {"trial": number, "of": dup, "slot": slot})
                return
            self._set(trial_id, versions=versions())
            try:
                ua.update(self._resolve(trial_id, frozen, ua))
                self._evaluate(trial_id, number, ua, summary)
            except (TrialLost, optuna.exceptions.UpdateFinishedTrialError):
                summary.lost += 1  # failed as stale by another worker: its retry owns the slot
                self.on_event("lost", {"trial": number, "slot": slot})
            except KeyboardInterrupt:
                reason = "interrupted (Ctrl-C); re-enqueued, the next run resumes it"
                self._set(trial_id, interrupted=True)
                self._requeue(trial_id, reason)
                summary.interrupted += 1
                raise
            except TrainingDiverged as e:
                self._finish(trial_id, TrialState.FAIL, reason=f"diverged: {e}")
                summary.failed += 1
                self.on_event("failed", {"trial": number, "slot": slot, "reason": str(e)})
            except (BudgetError, ConfigError) as e:  # this trial's architecture/recipe is invalid
                self._finish(trial_id, TrialState.FAIL, reason=f"{type(e).__name__}: {e}")
                summary.failed += 1
                self.on_event("failed", {"trial": number, "slot": slot, "reason": str(e)})
            except OSError as e:  # this worker's disk or permissions: give the trial back, stop
                what = f"{type(e).__name__}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")
                reason = f"{what} on worker {self.worker_tag}"
                self._requeue(trial_id, reason)
                raise StorageError(f"trial {number} ({slot.split('@')[0]}) could not write its files: {what}; it is "
                                   "re-queued with its checkpoint: fix the disk or permissions and run the same "
                                   "command again to finish") from None
            except PrunesearchError as e:  # this worker's environment (data, device): give it back
                reason = f"{type(e).__name__} on worker {self.worker_tag}: {e}"
                self._requeue(trial_id, reason)
                raise
            except Exception as e:  # noqa: BLE001  a bug or OOM: record it, keep the study going
                msg = " ".join(str(e).split())[:300]
                self._finish(trial_id, TrialState.FAIL, reason=f"{type(e).__name__}: {msg}")
                summary.failed += 1
                self.on_event("failed", {"trial": number, "slot": slot, "reason": msg})

    def _check_owned(self, event: Any = None) -> None:
        """Training progress callback: stop a trial that another worker has failed as stale, or
        that a swallowed Ctrl-C should have stopped."""
        if self._ctrl_c:
            raise KeyboardInterrupt
        if self._hb is not None and self._hb.lost:
            raise TrialLost("trial was failed as stale by another worker")
        if event is not None and getattr(event, "kind", None) == "epoch":
            if event.val_acc is not None and getattr(self, "_trial_id", None) is not None:
                # the learning curve optuna-dashboard draws: validation accuracy per epoch
                with contextlib.suppress(Exception):
                    self.study._storage.set_trial_intermediate_value(self._trial_id, int(event.epoch),
                                                                     float(event.val_acc))
            self.on_event("epoch", {"epoch": event.epoch, "epochs": event.epochs, "val_acc": event.val_acc,
                                    "elapsed": event.elapsed})

    def _finish(self, trial_id: int, state: TrialState, value: float | None = None,
                reason: str | None = None) -> bool:
        """Tell the storage; False if another worker already finished it (it was marked stale)."""
        try:
            if reason is not None:
                self._set(trial_id, **{FAIL_REASON: reason})
            number = self.study._storage.get_trial(trial_id).number  # tell() takes numbers, not ids
            self.study.tell(number, value if state == TrialState.COMPLETE else None, state=state)
            return True
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            # "Cannot tell a FAIL trial": another worker failed it as stale (we were frozen or cut
            # off past the grace period); its retry owns the slot now
            if self.study._storage.get_trial(trial_id).state.is_finished():
                return False
            raise

    def _duplicate_of(self, slot: str, number: int) -> int | None:
        others = [t for t in self._trials() if t.user_attrs.get("slot") == slot and t.number != number]
        for t in others:
            if t.state == TrialState.COMPLETE:
                return t.number
        lower = [t.number for t in others if _live(t) and t.number < number]
        return min(lower) if lower else None

    def _resolve(self, trial_id: int, frozen, ua: dict[str, Any]) -> dict[str, Any]:
        """What a trial could not know when planned: a searched trial's architecture (TPE), a
        dependent trial's architecture and recipe (from the trial it runs after); its cache key."""
        from ..jobs import get_job
        from .searched import propose_searched

        updates: dict[str, Any] = {}
        task = str(ua.get("task", "scratch"))
        if ua.get("generator") == SEARCHED:
            arch, info = propose_searched(self.study, trial_id, ua, int(self.settings.get("sampler_seed", 0)))
            updates = dict(arch=arch.to_dict(), arch_id=arch.arch_id, params=info["params"], macs=info["macs"],
                           keep_ratios=info["keep_ratios"], multipliers=info["multipliers"], alpha=info["alpha"],
                           budget_error=info["budget_error"])
        elif ua.get("after"):
            deps = {}
            for t in self._trials(states=(TrialState.COMPLETE,)):
                if t.user_attrs.get("slot") in ua["after"]:
                    deps[t.user_attrs["slot"]] = t.user_attrs
            updates = get_job(task).resolve(ua, deps)
        merged = {**ua, **updates}
        if "cache_key" not in ua or updates:
            extra = None
            if task != "scratch":
                extra = [merged.get("init"), merged.get("source"), merged.get("method")]
            updates["cache_key"] = cache_key(merged.get("arch_id", ""), merged["recipe"], merged["dataset"],
                                             int(merged["seed"]), merged.get("dataset_options"),
                                             float(merged.get("val_fraction", 0.1)), task=task, extra=extra)
        if updates:
            self._set(trial_id, **updates)
        return updates

    # -- cache + training ------------------------------------------------------------------------
    def _cached_source(self, key: str, number: int) -> optuna.trial.FrozenTrial | None:
        """A COMPLETE trial with the same cache key, after waiting for one being trained."""
        while True:
            done = [t for t in self._trials(states=(TrialState.COMPLETE,))
                    if t.user_attrs.get("cache_key") == key and t.user_attrs.get("final_acc") is not None]
            if done:
                return min(done, key=lambda t: t.number)
            blocking = [t for t in self._trials(states=(TrialState.RUNNING,))
                        if t.number != number and t.user_attrs.get("cache_key") == key
                        and (t.user_attrs.get("training") or t.number < number)]
            if not blocking:
                return None
            self.on_event("waiting", {"trial": number, "for": [t.number for t in blocking]})
            time.sleep(self.poll)
            fail_stale_trials(self.study)

    def _evaluate(self, trial_id: int, number: int, ua: dict[str, Any], summary: WorkerSummary) -> None:
        from ..jobs import JobContext, get_job

        task = str(ua.get("task", "scratch"))
        job = get_job(task)
        key = ua["cache_key"]
        init = ua.get("init")
        if job.cacheable and init in (None, "scratch"):
            src = self._cached_source(key, number)
            if src is not None:
                copied = {k: src.user_attrs[k] for k in RESULT_KEYS if k in src.user_attrs}
                origin = src.user_attrs.get("cached_from")
                self._set(trial_id, cached_from=int(origin if origin is not None else src.number), **copied)
                if self._finish(trial_id, TrialState.COMPLETE, value=_objective(copied)):
                    summary.cached += 1
                    summary.trial_numbers.append(number)
                    self.on_event("cached", {"trial": number, "from": src.number, "slot": ua["slot"], **copied})
                else:
                    summary.lost += 1
                return
        self._set(trial_id, training=True)
        self.on_event("start", {"trial": number, "slot": ua["slot"], "params": ua.get("params") or 0,
                                "epochs": (ua.get("recipe") or {}).get("epochs")})
        data = self._data(ua)
        ckpt = self._checkpoint_dir(ua)
        ctx = JobContext(data=data, device=self.device(), checkpoint_dir=ckpt, artifacts=self.run_dir / "artifacts",
                         on_progress=self._check_owned, threads=self.threads)
        result = job.run(ua, ctx)
        metrics = result.metrics
        summary.trained += 1
        self._set(trial_id, **{k: metrics[k] for k in RESULT_KEYS if k in metrics}, **result.attrs,
                  train_info={k: metrics.get(k) for k in ("precision", "device", "threads", "resumed_from",
                                                          "checkpoint_discarded")},
                  dataset_synthetic=bool(getattr(data, "synthetic", False)))
        kill_point("result-write")
        if self._finish(trial_id, TrialState.COMPLETE, value=_objective(metrics)):
            kill_point("trial-complete")
            # only now is the result safe in the storage: a kill before this point resumes the
            # retry from the final checkpoint instead of training the network again
            if not self.keep_checkpoints:
                shutil.rmtree(ckpt, ignore_errors=True)
            summary.trial_numbers.append(number)
            self.on_event("done", {"trial": number, "slot": ua["slot"], **{k: metrics.get(k) for k in RESULT_KEYS}})
        else:
            summary.lost += 1
            self.on_event("lost", {"trial": number, "slot": ua["slot"]})


def _objective(metrics: dict[str, Any]) -> float:
    """Optuna's value of a trial: final validation accuracy (choices never look at test data)."""
    v = metrics.get("val_acc")
    return float(v) if v is not None else 0.0
