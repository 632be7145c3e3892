"""Optuna storages: the embedded journal file and RDB (PostgreSQL) for many machines.

``open_storage(url)`` accepts
  * ``postgresql+psycopg://user:pass@host:port/db`` (or any SQLAlchemy URL Optuna's RDBStorage takes);
  * a journal file path, optionally written ``journal:PATH`` (the default: ``RUN_DIR/journal.log``).

Passwords never reach the terminal, logs or files: :func:`mask_url` removes them, and every error
message is scrubbed. A URL without a password uses libpq's usual sources (``PGPASSWORD``,
``~/.pgpass``), so the password-free URL written to ``run.json`` still connects where the password
is configured.

Dead workers. A worker records a heartbeat every ``heartbeat_interval`` seconds while it holds a
trial; a RUNNING trial whose last heartbeat is older than ``grace_period`` is failed and re-enqueued
(:func:`retry_stale_trial`) by whichever worker notices first (:func:`fail_stale_trials`). RDB
storages use Optuna's own heartbeat (``heartbeat_interval``, ``grace_period``,
``heartbeat_stale_trial_callback`` — Optuna 5's name for ``failed_trial_callback``, whose
``RetryFailedTrialCallback`` is now ``RetryHeartbeatStaleTrialCallback``), timed by the database
clock. Optuna's journal storage has no heartbeat, so the same protocol is kept here with a trial
system attribute; the FAIL transition is the atomic step (a second worker's attempt raises
``UpdateFinishedTrialError``), so exactly one retry is created per dead trial.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from ..errors import StorageError
from ..fileio import make_private_dir
from ..urls import is_url, mask_url, scrub  # noqa: F401  (re-exported: one place for URL secrets)

# Importing this module changes no global state (Optuna's verbosity, warning filters): the CLI
# quiets Optuna's INFO lines itself (prunesearch.cli), a library user keeps their settings.

HEARTBEAT_ATTR = "prunesearch:heartbeat"  # unix time of the last heartbeat (journal storage)


def journal_path(storage: str) -> Path | None:
    """The journal file of a journal storage string, or None for an RDB URL."""
    s = str(storage)
    if s.startswith("journal:"):
        s = s[len("journal:"):]
        if s.startswith("//"):
            s = s[2:]
        return Path(s).expanduser()
    return None if is_url(s) else Path(s).expanduser()


def driver_reason(e: BaseException, storage: str) -> str:
    """``Type: message`` of a storage driver's error for a one-line message: the driver's own error
    when Optuna or SQLAlchemy wraps it, whitespace folded, SQLAlchemy's help link cut, secrets
    scrubbed, at most 200 characters."""
    cause = getattr(e, "orig", None) or e
    if isinstance(e, optuna.exceptions.StorageInternalError) and (e.__cause__ or e.__context__):
        cause = e.__cause__ or e.__context__
        cause = getattr(cause, "orig", None) or cause
    reason = scrub(" ".join(str(cause).split()), storage).split("(Background on this error")[0].strip()
    return f"{type(cause).__name__}: {reason[:200] + '...' if len(reason) > 200 else reason}"


def describe_storage(storage: str) -> str:
    """What run.json records: the masked URL, or the journal file's absolute path."""
    path = journal_path(storage)
    return str(path.resolve()) if path is not None else mask_url(storage)


def open_storage(
    storage: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    create: bool = True,
) -> BaseStorage:
    """An Optuna storage for ``storage`` (URL or journal path). ``create=False``: a journal file that
    does not exist is an error (workers join existing studies; they never start an empty journal).
    Unreachable databases raise :class:`StorageError` with one line and no password."""
    path = journal_path(storage)
    if path is not None:
        if not create and not path.is_file():
            raise StorageError(f"journal storage {path} does not exist; run 'prunesearch study SPEC' first "
                               "or give the run's journal.log / a postgresql+psycopg:// URL")
        from .journal import check_journal_file

        check_journal_file(path)  # a directory, a foreign file, an entry cut off mid-line: refused
        try:
            make_private_dir(path.parent)
            if not path.exists():
                # create it private: results can be sensitive and the journal is the only copy
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            # a worker SIGKILLed inside a (millisecond) append leaves the lock behind: others break
            # it after 10 s without a change (Optuna's default waits 30 s)
            backend = JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path), grace_period=10))
        except OSError as e:
            raise StorageError(f"cannot open journal storage {path} ({e.strerror or e}); "
                               "check the directory exists and is writable") from None
        js = JournalStorage(backend)
        js.prunesearch_heartbeat = (heartbeat_interval, grace_period)  # type: ignore[attr-defined]
        return js
    kwargs: dict[str, Any] = {}
    if heartbeat_interval is not None:
        kwargs = dict(heartbeat_interval=int(heartbeat_interval), grace_period=int(grace_period or 3 * heartbeat_interval),
                      heartbeat_stale_trial_callback=retry_stale_trial)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if str(storage).startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(str(storage), engine_kwargs=engine_kwargs, **kwargs)
    except ImportError as e:
        raise StorageError(f"storage {mask_url(storage)} needs a database driver ({scrub(str(e), storage)}); "
                           "pip install 'prunesearch[postgres]'") from None
    except Exception as e:  # sqlalchemy OperationalError/ArgumentError and friends
        raise StorageError(f"cannot reach storage {mask_url(storage)} ({driver_reason(e, storage)}); "
                           "check the URL, that the server runs and accepts this user") from None


# ---------------------------------------------------------------------------------------------
# Heartbeats and dead workers
# ---------------------------------------------------------------------------------------------
def _raw(storage: BaseStorage) -> BaseStorage:
    """The storage under Optuna's ``_CachedStorage`` wrapper (it wraps every RDBStorage)."""
    from optuna.storages._cached_storage import _CachedStorage

    return storage._backend if isinstance(storage, _CachedStorage) else storage


def _journal_settings(storage: BaseStorage) -> tuple[int | None, int | None]:
    return getattr(_raw(storage), "prunesearch_heartbeat", (None, None))


def heartbeat_enabled(storage: BaseStorage) -> bool:
    raw = _raw(storage)
    if isinstance(raw, RDBStorage):
        return raw.get_heartbeat_interval() is not None
    return _journal_settings(storage)[0] is not None


def record_heartbeat(storage: BaseStorage, trial_id: int) -> None:
    raw = _raw(storage)
    if isinstance(raw, RDBStorage):
        storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
    else:
        storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())


class Heartbeat:
    """Context manager: a daemon thread recording the trial's heartbeat every interval."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, float(interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # set when the storage says the trial was finished elsewhere

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                record_heartbeat(self.storage, self.trial_id)
                if self.storage.get_trial(self.trial_id).state.is_finished():
                    self.lost = True  # failed as stale by another worker while we were cut off
                    return
            except optuna.exceptions.UpdateFinishedTrialError:
                self.lost = True
                return
            except Exception:  # a transient database error: try again next interval
                pass

    def __enter__(self) -> "Heartbeat":
        if heartbeat_enabled(self.storage):
            record_heartbeat(self.storage, self.trial_id)  # synchronously: the trial is owned now
            if isinstance(_raw(self.storage), RDBStorage):
                # marks "has beaten once": a trial claimed but never beating is found by its start time
                self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, time.time())
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.trial_id}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


WORKER_ATTR = "worker"  # "hostname:pid" of the worker holding a trial


def worker_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_here(t: FrozenTrial) -> bool:
    """True when the trial's worker ran on this host and its process is gone (no need to wait for
    the grace period: a re-run `study` resumes at once after a crash). A reused PID only delays
    detection to the heartbeat path; it never fails a live trial."""
    tag = t.user_attrs.get(WORKER_ATTR)
    if not isinstance(tag, str) or ":" not in tag:
        return False
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but not ours (EPERM)
        return False
    return _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker stopped beating (or, on this host, whose worker process is
    gone) and re-enqueue them; returns the trial numbers this call failed (concurrent callers never
    double-retry: the FAIL transition succeeds once)."""
    storage = study._storage
    raw = _raw(storage)
    gone = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if _dead_here(t)]
    dead = _fail_and_retry(study, gone, reason="worker process gone (it ran on this host)") if gone else []
    return dead + _fail_stale_by_heartbeat(study, storage, raw)


def _fail_stale_by_heartbeat(study: optuna.Study, storage: BaseStorage, raw: BaseStorage) -> list[int]:
    if isinstance(raw, RDBStorage):
        if raw.get_heartbeat_interval() is None:
            return []
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # runs retry_stale_trial for the ones it failed
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        failed = sorted(before - {t.number for t in running})
        # Optuna only sees trials that beat at least once; one killed between its claim and its first
        # beat (milliseconds) is found by its start time instead, with a doubled grace period.
        grace = float(raw.grace_period if raw.grace_period is not None else 2 * raw.heartbeat_interval)
        orphans = [t for t in running if HEARTBEAT_ATTR not in t.system_attrs and t.datetime_start is not None
                   and time.time() - t.datetime_start.timestamp() > 2 * grace]
        return failed + _fail_and_retry(study, orphans)
    interval, grace = _journal_settings(storage)
    if interval is None:
        return []
    now = time.time()
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT_ATTR)
        if beat is None:
            start = t.datetime_start
            beat = start.timestamp() if start is not None else now
        if now - float(beat) > float(grace):
            stale.append(t)
    return _fail_and_retry(study, stale)


def _fail_and_retry(study: optuna.Study, trials: list[FrozenTrial], reason: str | None = None) -> list[int]:
    storage = study._storage
    failed: list[int] = []
    for t in trials:
        try:
            ok = storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if ok:
            failed.append(t.number)
            retry_stale_trial(study, storage.get_trial(t._trial_id), reason=reason)
    return failed


# Attributes that describe WHAT to train (set at plan time); a retry copies only these, never the
# partial results of the failed attempt.
PLAN_ATTRS = (
    "slot", "generator", "budget", "param_budget", "seed", "index", "arch", "arch_id", "params",
    "macs", "cache_key", "dataset", "dataset_options", "recipe", "method", "rule", "base_arch", "options", "plan_hash",
)
FAIL_REASON = "fail_reason"
STALE_REASON = "worker stopped (no heartbeat within the grace period)"


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial, reason: str | None = None,
                      enforce_limit: bool = True) -> None:
    """Re-enqueue a failed attempt as a new WAITING trial with the same plan attributes and params.

    Same bookkeeping as Optuna's ``RetryHeartbeatStaleTrialCallback`` (``failed_trial``,
    ``retry_history`` system attrs), but results of the failed attempt are not inherited. Gives up
    after ``settings.max_retries`` retries (kept in the ``max_retries`` user attr) unless
    ``enforce_limit`` is False (a worker's own environment failed, or the user asked for a retry)."""
    why = reason or trial.user_attrs.get(FAIL_REASON) or STALE_REASON
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    max_retries = trial.user_attrs.get("max_retries")
    if enforce_limit and max_retries is not None and len(history) > int(max_retries):
        return
    keep = {k: v for k, v in trial.user_attrs.items() if k in PLAN_ATTRS or k == "max_retries"}
    keep["retry_reason"] = why  # a finished trial's attrs are frozen: the reason travels with the retry
    system_attrs = {
        "failed_trial": history[0],
        "retry_history": history,
        "fixed_params": dict(trial.system_attrs.get("fixed_params", {})),
    }
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=keep,
            system_attrs=system_attrs,
        )
    )


def load_study(storage: BaseStorage, name: str, storage_text: str,
               sampler: Callable[[], Any] | None = None) -> optuna.Study:
    """Load an existing study; a missing one is a StorageError listing the study names there."""
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler() if sampler else None)
    except KeyError:
        try:
            names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        except Exception:
            names = []
        from ..errors import suggest

        known = ", ".join(names[:20]) if names else "none"
        raise StorageError(f"study '{name}' does not exist in {describe_storage(storage_text)}"
                           f"{suggest(name, names)}; studies there: {known}") from None
