"""Studies of arms (generator x budget x seed) trained from scratch, run by any number of workers.

Exactly once, the design
------------------------
* **Every planned trial is a WAITING Optuna trial before anything trains**, the searched ones
  included ("pre-created slots"): ``prepare_study`` enqueues one trial per (generator, budget, seed,
  index) with a deterministic ``slot`` key in its user attrs, skipping slots that already have a
  trial in any state. So the number of trials, searched ones too, is fixed by the plan: N workers
  can never overshoot it, and re-running ``study`` enqueues nothing twice.
* **Workers never call ``study.ask()``** (it would create unplanned trials when the queue is
  empty). They pop WAITING trials with the storage's atomic WAITING->RUNNING transition (what
  ``ask()`` does internally; the transition succeeds for exactly one caller), and stop when no
  WAITING or RUNNING trial is left.
* **Duplicates cannot both run.** Should two concurrent ``study`` commands enqueue the same slot,
  the worker that pops a trial checks its slot: if a lower-numbered live (WAITING/RUNNING/COMPLETE)
  trial or any COMPLETE trial holds the slot, the popped one is failed as ``duplicate_of`` and
  skipped. The lowest-numbered live trial always proceeds, so exactly one runs.
* **Searched trials** sample TPE per-stage multipliers when popped (parameters named per budget,
  so TPE learns within a budget) and project them onto the budget with ``scale_to_budget`` before
  any training: feasible by construction. Multipliers the solver cannot reach are blended toward
  uniform (ratio ** alpha, alpha 1 -> 0) until it can; alpha is recorded.
* **Dead workers.** A RUNNING trial whose holder is gone is FAILED and re-enqueued once as a new
  WAITING trial with the same slot and params (plan attributes only: partial results of the failed
  attempt are not inherited), by whichever worker notices first (the FAIL transition succeeds
  once): at once when the holder ran on this host and its PID is gone (a re-run ``study`` resumes
  immediately after a crash), otherwise after ``grace_period`` seconds without a heartbeat (see
  ``storage.py``). A stalled holder that wakes up finds its trial failed: it stops training and
  discards its result (``lost``), so the slot still completes exactly once. **Ctrl-C** fails the
  trial with reason "interrupted" and re-enqueues it at once. Either way the retry resumes from the
  checkpoint (checkpoints are keyed by slot and arch_id, not by trial number); an unusable one is
  discarded. ``load_records`` hides superseded attempts.
* **Result cache** by (arch_id, recipe, dataset, seed), read from the storage's COMPLETE trials so
  it works across workers and machines. A trial whose key is being trained by another RUNNING
  trial (one that started training, or has a lower number) waits for it instead of training the
  same network twice; the lowest never waits, so there is no deadlock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import BudgetError, ConfigError, PrunesearchError, StorageError, TrainingDiverged
from ..faults import kill_point
from ..records import versions
from . import evaluation as _evaluation
from .spec import SEARCHED, Plan, budget_label
from .storage import (
    FAIL_REASON,
    Heartbeat,
    describe_storage,
    fail_stale_trials,
    is_url,
    load_study,
    open_storage,
    retry_stale_trial,
    worker_tag,
)

PLAN_ATTR = "prunesearch:plan"  # study user attr: the latest plan (dict)
FORMAT_ATTR = "prunesearch:format"
FORMAT = 1
RESULT_KEYS = ("best_acc", "final_acc", "train_seconds", "epochs", "images_per_second")

EventFn = Callable[[str, dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedTrial:
    slot: str
    generator: str
    budget: float
    seed: int
    index: int
    user_attrs: dict[str, Any]


def _recipe(plan: Plan):
    from ..train import get_recipe

    return get_recipe(plan.recipe_name, **plan.recipe_overrides)


_DATA_CACHE: dict[str, Any] = {}


def get_dataset(name: str, data_dir: str | None = None, options: dict[str, Any] | None = None):
    """Load a dataset once per process (split seed 0: every trial sees the same split)."""
    from ..data import load_dataset

    key = json.dumps([name, data_dir, options or {}], sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(name, data_dir=data_dir, seed=0, **(options or {}))
    return _DATA_CACHE[key]


def resolve_base(plan: Plan, data_dir: str | None = None):
    """The unpruned architecture for the plan's model, shaped for its dataset."""
    from ..arch import resolve_model, unpruned

    data = get_dataset(plan.dataset, data_dir if data_dir is not None else plan.data_dir, plan.dataset_options)
    try:
        base = resolve_model(plan.model, num_classes=data.num_classes, in_channels=data.in_channels,
                             input_size=data.image_size)
    except ConfigError as e:
        raise ConfigError(f"{plan.source or 'spec'}: 'model': {e}") from None
    return unpruned(base).replace(name=plan.model)


def cache_key(arch_id: str, recipe: dict[str, Any], dataset: str, seed: int,
              dataset_options: dict[str, Any] | None = None) -> str:
    """Identity of a training result: same architecture, recipe, data and seed = same result."""
    blob = json.dumps([arch_id, recipe, dataset, dataset_options or {}, int(seed)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan_trials(plan: Plan, base: Any) -> list[PlannedTrial]:
    """Every trial of the plan. Fixed arms get their architecture now (from the generators
    registry); searched slots get theirs when a worker pops them. Order: fixed arms, then searched
    trials index-major (so TPE has history for every budget as early as possible)."""
    from ..arch import count_macs, count_params, resolve_budget

    recipe = _recipe(plan).to_dict()
    where = plan.source or "spec"
    common = {"dataset": plan.dataset, "dataset_options": dict(plan.dataset_options), "recipe": recipe,
              "max_retries": plan.settings["max_retries"]}
    out: list[PlannedTrial] = []
    param_budgets: dict[float, int] = {}
    for b in plan.budgets:
        try:
            param_budgets[b] = resolve_budget(base, b)
        except BudgetError as e:
            raise BudgetError(f"{where}: 'budgets': {e}") from None
    fixed = [g for g in plan.generators if g != SEARCHED]
    if fixed:
        from ..generators import GENERATORS

    for seed in plan.seeds:
        for b in plan.budgets:
            for g in fixed:
                opts = plan.generators[g]
                gen = GENERATORS.get(g)
                try:
                    arch = gen.generate(base, b, seed, **opts)
                except PrunesearchError as e:
                    raise type(e)(f"{where}: generator '{g}' at budget {budget_label(b)}: {e}") from None
                slot = f"{g}/b{budget_label(b)}/s{seed}/0@{plan.arm_hash(g)}"
                attrs = dict(common)
                attrs.update(
                    slot=slot, generator=g, budget=b, param_budget=param_budgets[b], seed=seed, index=0,
                    arch=arch.to_dict(), arch_id=arch.arch_id, params=count_params(arch),
                    macs=count_macs(arch), options=opts, plan_hash=plan.arm_hash(g),
                    cache_key=cache_key(arch.arch_id, recipe, plan.dataset, seed, plan.dataset_options),
                )
                if "method" in opts:
                    attrs["method"] = str(opts["method"])
                if "rule" in opts:
                    attrs["rule"] = str(opts["rule"])
                out.append(PlannedTrial(slot, g, b, seed, 0, attrs))
    so = plan.searched_options()
    if so is not None:
        h = plan.arm_hash(SEARCHED)
        for i in range(int(so["trials"])):
            for seed in plan.seeds:
                for b in plan.budgets:
                    slot = f"{SEARCHED}/b{budget_label(b)}/s{seed}/{i}@{h}"
                    attrs = dict(common)
                    attrs.update(
                        slot=slot, generator=SEARCHED, budget=b, param_budget=param_budgets[b], seed=seed,
                        index=i, base_arch=base.to_dict(), options=dict(so), plan_hash=h,
                    )
                    out.append(PlannedTrial(slot, SEARCHED, b, seed, i, attrs))
    return out


# ---------------------------------------------------------------------------------------------
# Creating / resuming a study
# ---------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    study: optuna.Study
    storage: str
    planned: int  # trials in the plan
    enqueued: int  # trials added by this call
    retried: int = 0  # failed trials re-enqueued (retry_failed=True)


def _live(t: optuna.trial.FrozenTrial) -> bool:
    return t.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


def prepare_study(plan: Plan, storage: str, data_dir: str | None = None, retry_failed: bool = False,
                  base: Any = None, planned: list[PlannedTrial] | None = None) -> Prepared:
    """Create or resume the study and enqueue the planned trials that are not there yet."""
    if planned is None:  # before touching the storage: a bad plan leaves nothing behind
        planned = plan_trials(plan, base if base is not None else resolve_base(plan, data_dir))
    st = open_storage(storage, heartbeat_interval=plan.settings["heartbeat_interval"],
                      grace_period=plan.settings["grace_period"])
    try:
        study = optuna.create_study(study_name=plan.name, storage=st, direction="maximize", load_if_exists=True)
    except Exception as e:  # noqa: BLE001  (database errors after connecting)
        from .storage import scrub

        raise StorageError(f"cannot create study '{plan.name}' in {describe_storage(storage)} "
                           f"({type(e).__name__}: {scrub(str(e).splitlines()[0] if str(e) else '', storage)})") from None
    study.set_user_attr(PLAN_ATTR, plan.to_dict())
    study.set_user_attr(FORMAT_ATTR, FORMAT)
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
class TrialLost(Exception):
    """The running trial was failed as stale elsewhere (this worker stalled past the grace period)."""


@dataclass
class WorkerSummary:
    trained: int = 0  # trials this worker trained (evaluate() calls)
    cached: int = 0  # trials completed from the result cache
    failed: int = 0  # trials that failed here (divergence, errors)
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


def _pop_waiting(study: optuna.Study) -> int | None:
    """Atomically claim the lowest-numbered WAITING trial (WAITING->RUNNING succeeds for one caller)."""
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:120] or "trial"


class Worker:
    """Pops and runs planned trials of one study until none is WAITING or RUNNING."""

    def __init__(self, storage: str, study_name: str, device: str = "auto", data_dir: str | None = None,
                 run_dir: str | os.PathLike | None = None, on_event: EventFn | None = None,
                 poll_seconds: float | None = None) -> None:
        st = open_storage(storage, create=False)
        probe = load_study(st, study_name, storage)
        plan_d = probe.user_attrs.get(PLAN_ATTR)
        if not isinstance(plan_d, dict):
            raise StorageError(f"study '{study_name}' in {describe_storage(storage)} was not created by "
                               "'prunesearch study'; give a study that was")
        self.settings = dict(plan_d.get("settings") or {})
        self.plan_dataset = (plan_d["dataset"], plan_d.get("dataset_options") or {}) if plan_d.get("dataset") else None
        self.storage_text = storage
        self.storage = open_storage(storage, create=False,
                                    heartbeat_interval=int(self.settings.get("heartbeat_interval", 10)),
                                    grace_period=int(self.settings.get("grace_period", 60)))
        self.study = load_study(self.storage, study_name, storage)
        self.study_name = study_name
        self.device_text = device
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

    # -- the loop ------------------------------------------------------------------------------
    def run(self, max_trials: int | None = None, wait: bool = True) -> WorkerSummary:
        """Run trials until the study has nothing WAITING (and, with ``wait``, nothing RUNNING
        elsewhere that might still die and come back). ``max_trials``: stop after that many."""
        self.device()  # a bad --device fails before a trial is claimed
        if self.plan_dataset is not None:  # so does a dataset this machine does not have
            get_dataset(self.plan_dataset[0], self.data_dir, self.plan_dataset[1])
        summary = WorkerSummary()
        done = 0
        with self._latch_ctrl_c():
            while max_trials is None or done < max_trials:
                fail_stale_trials(self.study)
                trial_id = _pop_waiting(self.study)
                if trial_id is None:
                    running = self._trials(states=(TrialState.RUNNING,))
                    if not wait or not running:
                        break
                    time.sleep(self.poll)  # another worker's trial may die: then its retry is ours
                    continue
                self._run_one(trial_id, summary)
                done += 1
        self._remove_finished_checkpoints()
        return summary

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

    def _remove_finished_checkpoints(self) -> None:
        """Checkpoints of completed slots left by a worker killed between COMPLETE and the removal."""
        if self.keep_checkpoints or not (self.run_dir / "checkpoints").is_dir():
            return
        for t in self._trials(states=(TrialState.COMPLETE,)):
            ua = t.user_attrs
            if ua.get("slot") and ua.get("arch_id"):
                d = self.run_dir / "checkpoints" / _safe_name(f"{ua['slot']}-{ua['arch_id']}")
                if d.exists():
                    shutil.rmtree(d, ignore_errors=True)

    def _run_one(self, trial_id: int, summary: WorkerSummary) -> None:
        storage = self.study._storage
        with Heartbeat(storage, trial_id, self.interval) as hb:
            self._hb = hb
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
                arch = self._architecture(trial_id, frozen, ua)
                self._evaluate(trial_id, number, arch, ua, summary)
            except (TrialLost, optuna.exceptions.UpdateFinishedTrialError):
                summary.lost += 1  # failed as stale by another worker: its retry owns the slot
                self.on_event("lost", {"trial": number, "slot": slot})
            except KeyboardInterrupt:
                reason = "interrupted (Ctrl-C); re-enqueued, the next run resumes it"
                self._set(trial_id, interrupted=True)
                if self._finish(trial_id, TrialState.FAIL, reason=reason):
                    retry_stale_trial(self.study, storage.get_trial(trial_id), reason=reason, enforce_limit=False)
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
            except PrunesearchError as e:  # this worker's environment (data, device): give it back
                reason = f"{type(e).__name__} on worker {self.worker_tag}: {e}"
                if self._finish(trial_id, TrialState.FAIL, reason=reason):
                    retry_stale_trial(self.study, storage.get_trial(trial_id), reason=reason, enforce_limit=False)
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

    def _architecture(self, trial_id: int, frozen, ua: dict[str, Any]):
        from ..arch import Architecture

        if ua.get("generator") != SEARCHED:
            return Architecture.from_dict(ua["arch"], source=f"trial {frozen.number} arch")
        arch, info = propose_searched(self.study, trial_id, ua, int(self.settings.get("sampler_seed", 0)))
        recipe = ua["recipe"]
        self._set(trial_id, arch=arch.to_dict(), arch_id=arch.arch_id, params=info["params"], macs=info["macs"],
                  keep_ratios=info["keep_ratios"], multipliers=info["multipliers"], alpha=info["alpha"],
                  cache_key=cache_key(arch.arch_id, recipe, ua["dataset"], int(ua["seed"]), ua.get("dataset_options")))
        return arch

    # -- cache + training ------------------------------------------------------------------------
    def _cached_source(self, key: str, number: int) -> optuna.trial.FrozenTrial | None:
        """A COMPLETE trial with the same cache key, after waiting for one being trained."""
        while True:
            done = [t for t in self._trials(states=(TrialState.COMPLETE,))
                    if t.user_attrs.get("cache_key") == key and t.user_attrs.get("best_acc") is not None]
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

    def _evaluate(self, trial_id: int, number: int, arch: Any, ua: dict[str, Any], summary: WorkerSummary) -> None:
        from ..arch import count_macs, count_params

        key = ua.get("cache_key") or cache_key(arch.arch_id, ua["recipe"], ua["dataset"], int(ua["seed"]),
                                               ua.get("dataset_options"))
        src = self._cached_source(key, number)
        if src is not None:
            copied = {k: src.user_attrs[k] for k in RESULT_KEYS if k in src.user_attrs}
            origin = src.user_attrs.get("cached_from")
            self._set(trial_id, cached_from=int(origin if origin is not None else src.number), **copied)
            if self._finish(trial_id, TrialState.COMPLETE, value=float(copied["best_acc"])):
                summary.cached += 1
                summary.trial_numbers.append(number)
                self.on_event("cached", {"trial": number, "from": src.number, "slot": ua["slot"],
                                         "best_acc": copied["best_acc"]})
            else:
                summary.lost += 1
            return
        self._set(trial_id, training=True, params=count_params(arch), macs=count_macs(arch))
        self.on_event("start", {"trial": number, "slot": ua["slot"], "params": count_params(arch)})
        data = get_dataset(ua["dataset"], self.data_dir, ua.get("dataset_options"))
        ckpt = self.run_dir / "checkpoints" / _safe_name(f"{ua['slot']}-{arch.arch_id}")
        metrics = _evaluation.evaluate(arch, int(ua["seed"]), data, ua["recipe"], self.device(), ckpt,
                                       on_progress=self._check_owned)
        summary.trained += 1
        self._set(trial_id, **{k: metrics[k] for k in RESULT_KEYS},
                  train_info={k: metrics.get(k) for k in ("precision", "device", "threads", "resumed_from",
                                                          "checkpoint_discarded")},
                  dataset_synthetic=bool(getattr(data, "synthetic", False)))
        kill_point("result-write")
        if self._finish(trial_id, TrialState.COMPLETE, value=float(metrics["best_acc"])):
            kill_point("trial-complete")
            # only now is the result safe in the storage: a kill before this point resumes the
            # retry from the final checkpoint instead of training the network again
            if not self.keep_checkpoints:
                shutil.rmtree(ckpt, ignore_errors=True)
            summary.trial_numbers.append(number)
            self.on_event("done", {"trial": number, "slot": ua["slot"], **{k: metrics[k] for k in RESULT_KEYS}})
        else:
            summary.lost += 1
            self.on_event("lost", {"trial": number, "slot": ua["slot"]})


def propose_searched(study: optuna.Study, trial_id: int, ua: dict[str, Any], sampler_seed: int = 0):
    """TPE per-stage multipliers for a searched slot, projected onto its budget before training.

    Returns ``(arch, info)``; the architecture is within the solver's tolerance of the budget."""
    from ..arch import Architecture, get_family

    base = Architecture.from_dict(ua["base_arch"], source="searched base")
    budget = float(ua["budget"])
    opts = ua.get("options") or {}
    lo = float(opts.get("min_multiplier", 0.25))
    slots = get_family(base.family).slots(base)
    stages = sorted({s.stage for s in slots})
    frozen = study._storage.get_trial(trial_id)
    # one sampler per trial, seeded by the trial number: workers never sample in lockstep
    # multivariate: after the projection only the ratios between stages matter, so the stage
    # multipliers interact and TPE models them jointly; group: each budget's parameters form their
    # own group (fixed arms have none), so the joint model is per budget
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.TPESampler(
            seed=int(sampler_seed) * 1_000_003 + frozen.number,
            n_startup_trials=int(opts.get("n_startup_trials", 4)),
            multivariate=True,
            group=True,
        )
        trial = optuna.trial.Trial(study, trial_id)
        return _project(study, trial, frozen, base, budget, lo, slots, stages)


def _project(study, trial, frozen, base, budget, lo, slots, stages):
    from ..arch import count_macs, count_params, scale_to_budget

    label = budget_label(budget)
    mult = {st: trial.suggest_float(f"stage{st}_b{label}", lo, 1.0) for st in stages}
    ratios = [mult[s.stage] for s in slots]
    last: Exception | None = None
    for alpha in (1.0, 0.75, 0.5, 0.25, 0.0):
        r = [x ** alpha for x in ratios]
        try:
            arch = scale_to_budget(base, budget, r)
        except BudgetError as e:
            last = e
            continue
        arch = arch.replace(name=f"searched{frozen.number}@{label}")
        return arch, {
            "params": count_params(arch), "macs": count_macs(arch), "keep_ratios": r,
            "multipliers": {str(k): v for k, v in mult.items()}, "alpha": alpha,
        }
    raise BudgetError(f"searched trial {frozen.number}: no projection reaches budget {label} ({last})")


# ---------------------------------------------------------------------------------------------
# The whole study, as the `study` command runs it
# ---------------------------------------------------------------------------------------------
@dataclass
class StudyResult:
    run_dir: Path
    storage: str
    study: str
    planned: int
    enqueued: int
    summary: WorkerSummary
    records: list
    report: dict[str, Any] | None = None


def default_storage(run_dir: Path) -> str:
    return str(run_dir / "journal.log")


def write_run_json(run_dir: Path, storage: str, study: str, seeds: int | None = None) -> Path:
    d: dict[str, Any] = {"storage": describe_storage(storage), "study": study}
    if seeds is not None:
        d["seeds"] = int(seeds)
    return _atomic_write(run_dir / "run.json", json.dumps(d, indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    kill_point("file-write")
    os.replace(tmp, path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
        pid = stale.name[len(path.name) + 2:-4]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def make_run_dir(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = p / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"run dir {p} is not writable ({e.strerror or e}); give --out a writable directory") from None
    return p


def write_records(run_dir: Path, records: list) -> Path:
    return _atomic_write(run_dir / "records.jsonl", "".join(r.to_json() + "\n" for r in records))


def run_study(
    plan: Plan,
    storage: str | None = None,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    workers: int = 1,
    data_dir: str | None = None,
    retry_failed: bool = False,
    on_event: EventFn | None = None,
    report: bool = True,
) -> StudyResult:
    """Create/resume ``plan``'s study, enqueue what is missing, run it to the end with ``workers``
    (1: in this process; N > 1: N worker subprocesses), write run.json, records.jsonl and the report."""
    # everything that can be wrong with the input fails before anything is written
    from ..train import resolve_device

    resolve_device(device)
    if storage is not None and is_url(storage):
        open_storage(storage)  # an unreachable database: StorageError, before the run dir exists
    base = resolve_base(plan, data_dir)
    planned = plan_trials(plan, base)
    run_dir = make_run_dir(out if out is not None else Path("runs") / plan.name)
    storage = storage or default_storage(run_dir)
    prepared = prepare_study(plan, storage, data_dir=data_dir, retry_failed=retry_failed, base=base,
                             planned=planned)
    write_run_json(run_dir, storage, plan.name, seeds=len(plan.seeds))
    summary = WorkerSummary()
    if workers <= 1:
        w = Worker(storage, plan.name, device=device, data_dir=data_dir, run_dir=run_dir, on_event=on_event)
        summary = w.run()
    else:
        summary = _run_subprocess_workers(storage, plan.name, device, data_dir, run_dir, workers)
    from .records import load_records

    records = load_records(storage, plan.name)
    write_records(run_dir, records)
    rep = None
    if report:
        rep = _write_report(records, run_dir, plan)
    return StudyResult(run_dir, storage, plan.name, prepared.planned, prepared.enqueued, summary, records, rep)


def _write_report(records: list, run_dir: Path, plan: Plan) -> dict[str, Any] | None:
    try:
        from ..report import write_report
    except ImportError:
        return None
    try:
        paths = write_report(records, run_dir / "report", title=f"prunesearch study {plan.name}",
                             planned_seeds=len(plan.seeds))
    except Exception as e:  # noqa: BLE001  the results are safe in the storage; say so, do not fail
        return {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}; the results are in the "
                         f"study and records.jsonl: run 'prunesearch report {run_dir}' after fixing it"}
    return {k: str(v) for k, v in (paths or {}).items()}


def _run_subprocess_workers(storage: str, name: str, device: str, data_dir: str | None, run_dir: Path,
                            n: int) -> WorkerSummary:
    import subprocess
    import sys

    # the storage URL goes by environment, not argv: argv (with a password) is visible in `ps`
    env = dict(os.environ, PRUNESEARCH_STORAGE=storage)
    cmd = [sys.executable, "-m", "prunesearch", "worker", "--study", name, "--device", device,
           "--out", str(run_dir), "--json"]
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    total = WorkerSummary()
    try:
        for p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                raise PrunesearchError(f"a worker process exited with code {p.returncode} (its message is above); "
                                       "fix that and re-run the same command to resume")
            try:
                d = json.loads(out.strip().splitlines()[-1])
                total.add(WorkerSummary(**{k: d.get(k, 0) for k in WorkerSummary().to_dict()}))
            except (ValueError, IndexError):
                pass
    except KeyboardInterrupt:
        for p in procs:  # they got the same SIGINT (one process group); let them mark their trials
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    return total
