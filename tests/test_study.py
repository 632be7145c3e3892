"""Studies on the embedded journal storage: real (tiny) training, resume, cache, searched feasibility,
dead and interrupted workers, storage errors. Every training here is real: resnet8 on the
``synthetic`` set for one short epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from prunesearch.cli import main
from prunesearch.errors import StorageError
from prunesearch.records import COMPLETE, INTERRUPTED
from prunesearch.study import Worker, load_records, load_spec, prepare, propose_searched
from prunesearch.study.storage import mask_url, open_storage


def _pop_waiting(study) -> int | None:
    """Claim the lowest-numbered WAITING trial (WAITING -> RUNNING) as a worker does."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        if study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.RUNNING):
            return t._trial_id
    return None

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
name: {name}
model: resnet8
dataset: synthetic
dataset_options: {{image_size: 8, n_train: 128, n_test: 64}}
recipe: {{name: smoke, overrides: {{epochs: {epochs}, batch_size: 32}}}}
budgets: {budgets}
seeds: {seeds}
generators: {generators}
settings: {{heartbeat_interval: 1, grace_period: {grace}}}
smoke:
  recipe: {{overrides: {{epochs: 1}}}}
"""


def spec(tmp_path: Path, name: str = "t", epochs: int = 1, budgets: str = "[0.5]", seeds: str = "[0]",
         generators: str = "{uniform: {}}", grace: int = 3) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(SPEC.format(name=name, epochs=epochs, budgets=budgets, seeds=seeds, generators=generators,
                             grace=grace))
    return p


def run_cli(argv: list[str], capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def trials(journal: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(str(journal), create=False)).get_trials()


def test_smoke_study_end_to_end_and_rerun_trains_nothing(tmp_path, capsys):
    p = spec(tmp_path, "e2e", generators="{uniform: {}, random: {}, searched: {trials: 1}}")
    out = tmp_path / "run"
    first = run_cli(["study", str(p), "--smoke", "--out", str(out), "--device", "cpu", "--json", "--no-report"], capsys)
    assert first["planned"] == first["enqueued"] == first["complete"] == 3 and first["trained"] == 3
    run = json.loads((out / "run.json").read_text())
    assert run["study"] == "e2e-smoke" and Path(run["storage"]) == (out / "journal.log").resolve()
    recs = load_records(run["storage"], run["study"])
    assert {r.generator for r in recs} == {"uniform", "random", "searched"}
    for r in recs:
        assert r.state == COMPLETE and 0 <= r.best_acc <= 1 and r.train_seconds > 0 and r.epochs == 1
        assert r.arch["family"] == "resnet" and r.arch_id and r.params > 0 and r.macs > 0
        assert abs(r.params - r.param_budget) <= 0.005 * r.param_budget
        assert r.dataset == "synthetic" and r.recipe["epochs"] == 1 and r.seed == 0
        assert {"prunesearch", "torch", "optuna"} <= set(r.versions)
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["study"] == "e2e-smoke"
    before = {t.number: (t.state, t.user_attrs["train_seconds"], t.datetime_complete) for t in trials(out / "journal.log", "e2e-smoke")}

    again = run_cli(["study", str(p), "--smoke", "--out", str(out), "--device", "cpu", "--json", "--no-report"], capsys)
    assert again["enqueued"] == 0 and again["trained"] == 0 and again["cached"] == 0 and again["complete"] == 3
    after = {t.number: (t.state, t.user_attrs["train_seconds"], t.datetime_complete) for t in trials(out / "journal.log", "e2e-smoke")}
    assert after == before  # nothing retrained, nothing new


def test_cache_reuses_the_same_architecture(tmp_path):
    # searched with min_multiplier 1 proposes all-equal stage multipliers = the uniform architecture
    p = spec(tmp_path, "cache", generators="{uniform: {}, searched: {trials: 1, min_multiplier: 1.0}}")
    plan = load_spec(p)
    journal = str(tmp_path / "journal.log")
    prepare(plan, journal)
    s = Worker(journal, plan.name, device="cpu", run_dir=tmp_path).run()
    assert s.trained == 1 and s.cached == 1
    recs = {r.generator: r for r in load_records(journal, plan.name)}
    assert recs["searched"].arch_id == recs["uniform"].arch_id
    assert recs["searched"].cached_from == recs["uniform"].trial_number
    assert recs["searched"].best_acc == recs["uniform"].best_acc
    # a second worker process later: the cache lives in the storage, not in a process
    plan2 = load_spec(spec(tmp_path, "cache", generators="{uniform: {}, searched: {trials: 2, min_multiplier: 1.0}}"))
    assert prepare(plan2, journal).enqueued == 1
    s2 = Worker(journal, plan.name, device="cpu", run_dir=tmp_path).run()
    assert s2.trained == 0 and s2.cached == 1


@pytest.mark.parametrize("model, budgets", [("resnet20", [0.1, 0.5, 0.9]), ("vgg11", [0.05, 0.3, 0.95])])
def test_searched_never_proposes_an_infeasible_candidate(tmp_path, model, budgets):
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(f"""
        name: feas
        model: {model}
        dataset: synthetic
        recipe: smoke
        budgets: {budgets}
        seeds: [0]
        generators: {{searched: {{trials: 8, n_startup_trials: 3, min_multiplier: 0.05}}}}
    """))
    plan = load_spec(p)
    journal = str(tmp_path / "j.log")
    study = prepare(plan, journal).study
    seen = 0
    while (tid := _pop_waiting(study)) is not None:
        frozen = study._storage.get_trial(tid)
        arch, info = propose_searched(study, tid, frozen.user_attrs)
        target = frozen.user_attrs["param_budget"]
        assert abs(info["params"] - target) <= 0.005 * target, (info, target)
        # TPE needs finished trials to leave its random start-up phase; the value here is only
        # a ranking signal for the sampler (the widest first stage), nothing is reported as accuracy
        study.tell(frozen.number, float(info["keep_ratios"][0]))
        seen += 1
    assert seen == 8 * len(budgets)
    names = {n for t in study.get_trials() for n in t.params}
    assert all("_b" in n for n in names)  # per-budget parameters: TPE learns within a budget


def _wait_for(pred, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _worker_proc(storage: str, study: str, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "prunesearch", "worker", "--storage", storage, "--study", study,
         "--device", "cpu", "--out", str(out), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT),
    )


def _training_trial(storage: str, study: str):
    st = open_storage(storage, create=False)
    ts = optuna.load_study(study_name=study, storage=st).get_trials(states=(optuna.trial.TrialState.RUNNING,))
    return [t for t in ts if t.user_attrs.get("training")]


def test_killed_worker_trial_is_rerun_at_once_on_the_same_host(tmp_path):
    # grace 60 s: a re-run well within it proves the dead local PID was noticed, not the heartbeat
    p = spec(tmp_path, "kill", epochs=60, grace=60)
    plan = load_spec(p)
    journal = str(tmp_path / "journal.log")
    prepare(plan, journal)
    proc = _worker_proc(journal, plan.name, tmp_path)
    try:  # kill it once it has written a checkpoint (one per epoch)
        _wait_for(lambda: list(tmp_path.glob("checkpoints/*/last.pt")), 90, "a checkpoint")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t0 = time.time()
    s = Worker(journal, plan.name, device="cpu", run_dir=tmp_path).run()
    assert s.trained == 1 and time.time() - t0 < 45
    ts = trials(Path(journal), plan.name)
    assert [t.state.name for t in ts] == ["FAIL", "COMPLETE"]
    assert ts[1].system_attrs["retry_history"] == [0] and ts[1].user_attrs["slot"] == ts[0].user_attrs["slot"]
    assert "best_acc" not in ts[0].user_attrs  # the retry inherits the plan, not partial results
    assert "worker process gone" in ts[1].user_attrs["retry_reason"]
    recs = load_records(journal, plan.name)
    assert len(recs) == 1 and recs[0].state == COMPLETE and recs[0].trial_number == 1
    assert recs[0].extra["train_info"]["resumed_from"] >= 1 and recs[0].epochs == 60  # resumed, not restarted
    assert not list(tmp_path.glob("checkpoints/*/last.pt"))  # removed once the result is stored
    old = load_records(journal, plan.name, superseded=True)
    assert len(old) == 2 and old[0].state == "failed" and old[0].extra["superseded_by"] == 1


def test_stalled_worker_is_replaced_after_grace_and_its_late_result_discarded(tmp_path):
    # SIGSTOP = a hung or cut-off worker: its process lives, its heartbeats stop. After the 3 s
    # grace another worker re-runs the trial; the stalled one, resumed, must not complete it again.
    p = spec(tmp_path, "stall", epochs=60)
    plan = load_spec(p)
    journal = str(tmp_path / "journal.log")
    prepare(plan, journal)
    proc = _worker_proc(journal, plan.name, tmp_path)
    try:
        _wait_for(lambda: _training_trial(journal, plan.name), 60, "the worker to start training")
        proc.send_signal(signal.SIGSTOP)
        t0 = time.time()
        s = Worker(journal, plan.name, device="cpu", run_dir=tmp_path / "b").run()
        assert s.trained == 1 and time.time() - t0 >= 2.5  # waited for the grace period
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    late = json.loads(out.strip().splitlines()[-1])
    assert late["lost"] == 1 and late["trials"] == []
    ts = trials(Path(journal), plan.name)
    assert [t.state.name for t in ts] == ["FAIL", "COMPLETE"]
    assert "no heartbeat" in ts[1].user_attrs["retry_reason"]
    recs = load_records(journal, plan.name)
    assert len(recs) == 1 and recs[0].state == COMPLETE


def test_ctrl_c_marks_interrupted_and_the_next_run_resumes(tmp_path):
    # enough epochs that the run cannot finish before the signal lands (a light machine trains 60 of
    # these tiny epochs in about a second), few enough that the resumed run below stays short
    p = spec(tmp_path, "intr", epochs=300)
    plan = load_spec(p)
    journal = str(tmp_path / "journal.log")
    prepare(plan, journal)
    proc = _worker_proc(journal, plan.name, tmp_path)
    try:
        _wait_for(lambda: _training_trial(journal, plan.name), 60, "the worker to start training")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # 130 from the CLI; a Ctrl-C landing in interpreter teardown ends the process by SIGINT itself
    assert proc.returncode in (130, -signal.SIGINT), err
    recs = load_records(journal, plan.name, superseded=True)
    assert [r.state for r in recs] == [INTERRUPTED, "waiting"] and "interrupted" in recs[0].fail_reason
    # no grace-period wait is needed: the retry is WAITING already (asserted above), so it runs at once
    s = Worker(journal, plan.name, device="cpu", run_dir=tmp_path).run(wait=False)
    assert s.trained == 1
    recs = load_records(journal, plan.name)
    assert len(recs) == 1 and recs[0].state == COMPLETE


def test_storage_errors_are_one_line_without_password(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        load_records(str(tmp_path / "missing.log"), "x")
    journal = str(tmp_path / "j.log")
    plan = load_spec(spec(tmp_path, "present"))
    prepare(plan, journal)
    with pytest.raises(StorageError) as e:
        load_records(journal, "presnt")
    assert "did you mean 'present'" in str(e.value)
    url = "postgresql+psycopg://alice:s3cret-pw@127.0.0.1:1/db"
    with pytest.raises(StorageError) as e:
        load_records(url, "x")
    msg = str(e.value)
    assert "s3cret-pw" not in msg and "\n" not in msg and "alice@127.0.0.1:1" in msg
    assert mask_url(url) == "postgresql+psycopg://alice@127.0.0.1:1/db"


def test_worker_cli_errors(tmp_path, capsys):
    assert main(["worker", "--storage", str(tmp_path / "none.log"), "--study", "x"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "none.log").exists()  # a worker never creates an empty journal


def test_diverged_trials_fail_with_reason_and_the_study_goes_on(tmp_path, capsys):
    p = spec(tmp_path, "nan", generators="{uniform: {}, random: {}}")
    p.write_text(p.read_text().replace("batch_size: 32", "batch_size: 32, lr: 1.0e+12"))
    # a study whose trials failed exits 1 (scripts see it), after running every trial
    assert main(["study", str(p), "--out", str(tmp_path / "run"), "--device", "cpu", "--json", "--no-report"]) == 1
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["failed"] == 2 and r["complete"] == 0  # the second trial ran after the first failed
    recs = load_records(str(tmp_path / "run" / "journal.log"), "nan")
    assert [r.state for r in recs] == ["failed", "failed"]
    assert all("diverged" in r.fail_reason and r.best_acc is None for r in recs)


def _planned_exactly_once(journal: str, name: str, planned: int) -> None:
    ts = trials(Path(journal), name)
    done = [t for t in ts if t.state == optuna.trial.TrialState.COMPLETE]
    slots = [t.user_attrs["slot"] for t in done]
    assert len(done) == planned and len(set(slots)) == planned, (len(done), len(set(slots)))
    assert not [t for t in ts if t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)]


@pytest.mark.slow
def test_three_journal_workers_exactly_once_with_shared_cache(tmp_path):
    p = spec(tmp_path, "three", budgets="[0.5, 0.3]", seeds="[0, 1]",
             generators="{uniform: {}, random: {}, searched: {trials: 2, min_multiplier: 1.0}}")
    plan = load_spec(p)
    journal = str(tmp_path / "journal.log")
    assert prepare(plan, journal).enqueued == 16
    procs = [_worker_proc(journal, plan.name, tmp_path) for _ in range(3)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    _planned_exactly_once(journal, plan.name, 16)
    done = [set(o["trials"]) for o in outs]
    assert sum(len(d) for d in done) == len(set().union(*done)) == 16  # no trial completed twice
    keys = {t.user_attrs["cache_key"] for t in trials(Path(journal), plan.name)}
    assert sum(o["trained"] for o in outs) == len(keys) == 8  # one training per distinct result


@pytest.mark.slow
def test_study_killed_at_random_points_ends_exactly_once(tmp_path):
    import random

    p = spec(tmp_path, "chaos", epochs=15, budgets="[0.5, 0.3]", seeds="[0, 1]",
             generators="{uniform: {}, random: {}, searched: {trials: 1}}")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prunesearch", "study", str(p), "--out", str(out), "--device", "cpu",
           "--json", "--no-report"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(0)
    for _ in range(4):  # kill -9 at a random moment: planning, training, checkpointing, telling
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        time.sleep(rng.uniform(3, 12))
        proc.kill()
        proc.communicate()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["planned"] == 12 and summary["complete"] == 12
    journal = str(out / "journal.log")
    _planned_exactly_once(journal, "chaos", 12)
    recs = load_records(journal, "chaos")
    assert len(recs) == 12 and all(r.state == COMPLETE for r in recs)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    assert json.loads(again.stdout.strip().splitlines()[-1])["trained"] == 0


@pytest.mark.parametrize("extra, hint", [
    (["--device", "tpu"], "device 'tpu' is not known"),
    (["--storage", "postgresql+psycopg://alice:s3cret-pw@127.0.0.1:1/db"], "cannot reach storage"),
])
def test_study_bad_environment_writes_nothing(tmp_path, capsys, extra, hint):
    p = spec(tmp_path, "env")
    out = tmp_path / "run"
    assert main(["study", str(p), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert hint in err and err.count("\n") == 0 and "s3cret-pw" not in err
    assert not out.exists()


@pytest.mark.slow
def test_study_command_with_two_worker_processes(tmp_path, capsys):
    p = spec(tmp_path, "two", budgets="[0.5, 0.3]", generators="{uniform: {}, random: {}}")
    out = tmp_path / "run"
    r = run_cli(["study", str(p), "--out", str(out), "--device", "cpu", "--workers", "2", "--json", "--no-report"], capsys)
    assert r["planned"] == r["complete"] == 4 and r["trained"] == 4 and r["failed"] == 0
    _planned_exactly_once(str(out / "journal.log"), "two", 4)
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
