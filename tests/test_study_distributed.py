"""Many workers on one study, on a real PostgreSQL server (CI starts one with .ci/postgres.sh).

Skipped only when PRUNESEARCH_PG_URL is unset and PRUNESEARCH_REQUIRE_PG is not set; with
PRUNESEARCH_REQUIRE_PG=1 (CI) a missing server fails instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest

from prunesearch.records import COMPLETE
from prunesearch.study import Worker, load_records, load_spec, prepare
from prunesearch.study.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.postgres


def write_spec(tmp_path: Path, generators: str, seeds: str, epochs: int = 1) -> Path:
    name = f"pg-{uuid.uuid4().hex[:8]}"  # a fresh study per test on the shared server
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""
name: {name}
model: resnet8
dataset: synthetic
dataset_options: {{image_size: 8, n_train: 128, n_test: 64}}
recipe: {{name: smoke, overrides: {{epochs: {epochs}, batch_size: 32}}}}
budgets: [0.5, 0.3]
seeds: {seeds}
generators: {generators}
settings: {{heartbeat_interval: 1, grace_period: 3}}
""")
    return p


def worker_proc(url: str, study: str, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "prunesearch", "worker", "--storage", url, "--study", study, "--device", "cpu",
         "--out", str(out), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT),
    )


def all_trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(url, create=False)).get_trials()


def test_two_worker_processes_finish_every_trial_exactly_once(tmp_path, pg_url):
    # uniform + searched(min_multiplier 1 = the uniform architecture) share cache keys: the cache
    # must work across the two processes (one training per key), the slots exactly once each
    plan = load_spec(write_spec(tmp_path, "{uniform: {}, random: {}, searched: {trials: 1, min_multiplier: 1.0}}", "[0, 1]"))
    prepared = prepare(plan, pg_url)
    assert prepared.planned == prepared.enqueued == 12
    assert prepare(plan, pg_url).enqueued == 0  # idempotent
    procs = [worker_proc(pg_url, plan.name, tmp_path) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    done = [set(o["trials"]) for o in outs]
    assert not (done[0] & done[1])  # no trial completed by both
    trials = all_trials(pg_url, plan.name)
    assert len(trials) == 12 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert done[0] | done[1] == {t.number for t in trials}  # none lost
    slots = Counter(t.user_attrs["slot"] for t in trials)
    assert len(slots) == 12 and set(slots.values()) == {1}
    keys = {t.user_attrs["cache_key"] for t in trials}
    trained = sum(o["trained"] for o in outs)
    assert trained == len(keys) == 8 and sum(o["cached"] for o in outs) == 4
    recs = load_records(pg_url, plan.name)
    assert len(recs) == 12 and all(r.state == COMPLETE for r in recs)
    for r in recs:
        if r.generator == "searched":
            assert r.cached_from is not None
    print(f"worker trial counts: {[len(d) for d in done]}")


def test_stalled_worker_trial_is_rerun_by_another_after_grace(tmp_path, pg_url):
    # SIGSTOP: the process lives but stops beating (a hung or cut-off machine), so only Optuna's
    # RDB heartbeat can tell; after the 3 s grace a second worker re-runs the trial, and the first,
    # resumed, must not complete it a second time
    plan = load_spec(write_spec(tmp_path, "{uniform: {}}", "[0]", epochs=60))
    prepare(plan, pg_url)
    proc = worker_proc(pg_url, plan.name, tmp_path)
    try:
        end = time.time() + 90
        while time.time() < end:
            running = [t for t in all_trials(pg_url, plan.name)
                       if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("training")]
            if running:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the worker never started training")
        proc.send_signal(signal.SIGSTOP)
        stalled = running[0].number
        t0 = time.time()
        s = Worker(pg_url, plan.name, device="cpu", run_dir=tmp_path / "b").run()
        assert time.time() - t0 >= 2.5  # the grace period
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    late = json.loads(out.strip().splitlines()[-1])
    assert late["lost"] == 1 and stalled not in late["trials"]
    assert s.trained + late["trained"] == 2  # the re-run and the other budget, once each
    trials = all_trials(pg_url, plan.name)
    assert trials[stalled].state == optuna.trial.TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("retry_history") == [stalled]]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
    assert "no heartbeat" in retry[0].user_attrs["retry_reason"]
    recs = load_records(pg_url, plan.name)
    assert len(recs) == 2 and all(r.state == COMPLETE for r in recs)
    assert Counter(r.extra["slot"] for r in recs).most_common(1)[0][1] == 1


def test_unknown_study_and_masked_run_json(tmp_path, pg_url):
    from prunesearch.errors import StorageError
    from prunesearch.study.runner import write_run_json
    from prunesearch.urls import url_secrets

    with pytest.raises(StorageError) as e:
        load_records(pg_url, f"nope-{uuid.uuid4().hex[:6]}")
    pw = url_secrets(pg_url)[0]
    assert "does not exist" in str(e.value) and pw and pw not in str(e.value)
    text = write_run_json(tmp_path, pg_url, "s").read_text()
    assert pw not in text and json.loads(text)["storage"].startswith("postgresql+psycopg://prunesearch@")
