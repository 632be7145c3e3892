"""Three worker processes on one study, on the journal file and on a real PostgreSQL server: every
planned trial completes exactly once, no write is lost, the result cache is shared across processes;
and a storage password never reaches the terminal or any file of the run.

PostgreSQL tests need PRUNESEARCH_PG_URL (start a server with `source .ci/postgres.sh && pg_start`);
they are skipped without it unless PRUNESEARCH_REQUIRE_PG is set (CI), where they fail instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest

from prunesearch.records import COMPLETE
from prunesearch.study import load_records, load_spec, prepare
from prunesearch.study.queue import RESULT_KEYS
from prunesearch.study.storage import open_storage
from prunesearch.urls import url_secrets

ROOT = Path(__file__).resolve().parents[1]


def write_spec(tmp_path: Path, budgets: str, seeds: str, generators: str) -> Path:
    name = f"rel-{uuid.uuid4().hex[:8]}"  # a fresh study per test on a shared server
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""
name: {name}
model: resnet8
dataset: synthetic
dataset_options: {{image_size: 8, n_train: 128, n_test: 64}}
recipe: {{name: smoke, overrides: {{epochs: 1, batch_size: 32}}}}
budgets: {budgets}
seeds: {seeds}
generators: {generators}
settings: {{heartbeat_interval: 1, grace_period: 5}}
""")
    return p


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.pop("PRUNESEARCH_KILL_AT", None)
    return e


def check_three_workers_exactly_once(tmp_path: Path, storage: str, budgets: str, seeds: str, planned: int,
                               keys: int) -> None:
    # uniform and searched with min_multiplier 1 (= the uniform architecture) share cache keys
    plan = load_spec(write_spec(tmp_path, budgets, seeds,
                                "{uniform: {}, random: {}, searched: {trials: 1, min_multiplier: 1.0}}"))
    assert prepare(plan, storage).enqueued == planned
    cmd = [sys.executable, "-m", "prunesearch", "worker", "--study", plan.name, "--device", "cpu",
           "--out", str(tmp_path / "w"), "--json"]
    e = dict(env(), PRUNESEARCH_STORAGE=storage)  # as `study --workers` passes it: not in argv
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e, cwd=str(ROOT))
             for _ in range(3)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert not any(pw in out + err for pw in url_secrets(storage))  # trial lines, never the password
        outs.append(json.loads(out.strip().splitlines()[-1]))
    trials = optuna.load_study(study_name=plan.name, storage=open_storage(storage, create=False)).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # exactly once: one COMPLETE trial per planned slot, nothing left, no trial claimed by two workers
    assert len(trials) == len(done) == planned, Counter(t.state.name for t in trials)
    assert set(Counter(t.user_attrs["slot"] for t in done).values()) == {1}
    numbers = [n for o in outs for n in o["trials"]]
    assert len(numbers) == len(set(numbers)) == planned and set(numbers) == {t.number for t in done}
    assert sum(o["duplicates"] + o["lost"] + o["failed"] for o in outs) == 0
    # no lost writes: every completed trial holds its full result, its worker and its versions
    for t in done:
        assert all(t.user_attrs.get(k) is not None for k in RESULT_KEYS), t.number
        # the objective Optuna sees is validation accuracy, never a test number
        assert t.value == t.user_attrs["val_acc"] and t.user_attrs["worker"] and t.user_attrs["versions"]
    # the cache is shared: one training per distinct result, every cached trial copies a trained one
    by_number = {t.number: t for t in done}
    trained = [t for t in done if "cached_from" not in t.user_attrs]
    assert sum(o["trained"] for o in outs) == len(trained) == len({t.user_attrs["cache_key"] for t in done}) == keys
    assert sum(o["cached"] for o in outs) == planned - keys
    for t in done:
        if "cached_from" in t.user_attrs:
            src = by_number[t.user_attrs["cached_from"]]
            assert "cached_from" not in src.user_attrs and src.user_attrs["cache_key"] == t.user_attrs["cache_key"]
            assert all(t.user_attrs[k] == src.user_attrs[k] for k in RESULT_KEYS)
    recs = load_records(storage, plan.name)
    assert len(recs) == planned and all(r.state == COMPLETE for r in recs)


def test_three_journal_workers_every_trial_exactly_once(tmp_path):
    check_three_workers_exactly_once(tmp_path, str(tmp_path / "journal.log"), "[0.5, 0.3]", "[0]", planned=6, keys=4)


@pytest.mark.postgres
def test_three_postgres_workers_every_trial_exactly_once(tmp_path, pg_url):
    check_three_workers_exactly_once(tmp_path, pg_url, "[0.5, 0.3]", "[0]", planned=6, keys=4)


@pytest.mark.slow
@pytest.mark.postgres
def test_three_postgres_workers_bigger_study(tmp_path, pg_url):
    check_three_workers_exactly_once(tmp_path, pg_url, "[0.5, 0.3]", "[0, 1, 2]", planned=18, keys=12)


@pytest.mark.slow
def test_three_journal_workers_bigger_study(tmp_path):
    check_three_workers_exactly_once(tmp_path, str(tmp_path / "journal.log"), "[0.5, 0.3]", "[0, 1, 2]",
                               planned=18, keys=12)


@pytest.mark.postgres
def test_postgres_password_never_printed_or_written(tmp_path, pg_url):
    """A whole study against a password-protected PostgreSQL (report on; worker processes are checked
    in the three-worker test), the
    report command, a worker joining, and a failing command with --debug: the password is in no
    output and in no file of the run."""
    pw = url_secrets(pg_url)[0]
    assert pw and len(pw) >= 8
    spec = write_spec(tmp_path, "[0.5]", "[0]", "{uniform: {}, random: {}}")
    name = load_spec(spec).name
    run = tmp_path / "run"
    base = [sys.executable, "-m", "prunesearch"]
    outputs = []
    for argv in (
        ["study", str(spec), "--storage", pg_url, "--out", str(run), "--device", "cpu"],
        ["report", str(run)],
        ["worker", "--storage", pg_url, "--study", name, "--device", "cpu", "--out", str(run), "--json"],
    ):
        r = subprocess.run(base + argv, capture_output=True, text=True, env=env(), cwd=str(tmp_path), timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        outputs.append(r.stdout + r.stderr)
    bad = subprocess.run(base + ["worker", "--storage", pg_url, "--study", "nope", "--debug"],
                         capture_output=True, text=True, env=env(), cwd=str(tmp_path), timeout=120)
    assert bad.returncode != 0  # --debug: the traceback is shown, the password still is not
    outputs.append(bad.stdout + bad.stderr)
    assert len((run / "records.jsonl").read_text().splitlines()) == 2
    assert "study 'nope' does not exist" in outputs[-1]
    for text in outputs:
        assert pw not in text
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"run.json", "records.jsonl", "report.md", "trials.csv"} <= {p.name for p in files}
    for p in files:
        assert pw.encode() not in p.read_bytes(), p
    assert json.loads((run / "run.json").read_text())["storage"].startswith("postgresql+psycopg://prunesearch@")
