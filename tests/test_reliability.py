"""Faults lose nothing: `prunesearch study` SIGKILLed at the named kill points (during training, while
writing a checkpoint, between storing results and COMPLETE, after COMPLETE, while writing
records.jsonl), Ctrl-C during `study`, divergence shown as failed by `prunesearch report`, and
security (passwords, permissions, paths). Every process here is real; kills are real SIGKILLs,
placed by ``PRUNESEARCH_KILL_AT`` (prunesearch/faults.py)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from prunesearch.cli import main
from prunesearch.records import COMPLETE, INTERRUPTED
from prunesearch.study import load_records
from prunesearch.study.storage import open_storage

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
settings: {{heartbeat_interval: 1, grace_period: 3}}
"""


def write_spec(tmp_path: Path, name: str, epochs: int = 3, budgets: str = "[0.5]", seeds: str = "[0]",
               generators: str = "{uniform: {}, random: {}}") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(SPEC.format(name=name, epochs=epochs, budgets=budgets, seeds=seeds, generators=generators))
    return p


def study_cmd(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "prunesearch", "study", str(spec), "--out", str(out), "--device", "cpu",
            "--json", "--no-report", *extra]


def run_proc(cmd: list[str], kill_at: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PRUNESEARCH_KILL_AT", None)
    if kill_at:
        env["PRUNESEARCH_KILL_AT"] = kill_at
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=timeout)


def trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(storage, create=False)).get_trials()


def completed(storage: str, name: str) -> dict[int, tuple]:
    """number -> what a retraining would change (train time, completion time, accuracy)."""
    return {t.number: (t.user_attrs["slot"], t.user_attrs["train_seconds"], t.datetime_complete,
                       t.user_attrs["best_acc"])
            for t in trials(storage, name) if t.state == optuna.trial.TrialState.COMPLETE}


def assert_no_slot_twice(storage: str, name: str) -> None:
    slots = Counter(t.user_attrs["slot"] for t in trials(storage, name)
                    if t.state == optuna.trial.TrialState.COMPLETE)
    assert not slots or max(slots.values()) == 1, slots


def running_slots(storage: str, name: str) -> list[str]:
    return [t.user_attrs["slot"] for t in trials(storage, name) if t.state == optuna.trial.TrialState.RUNNING]


def test_study_killed_at_every_kill_point_completes_each_trial_once(tmp_path):
    spec = write_spec(tmp_path, "kp", seeds="[0, 1, 2]", generators="{uniform: {}}")
    out = tmp_path / "run"
    journal = str(out / "journal.log")
    cmd = study_cmd(spec, out)
    done_before: dict[int, tuple] = {}
    killed: dict[str, str] = {}  # kill point -> slot of the trial it interrupted
    # Per process counts: 4 steps per epoch, a checkpoint per epoch. Three trials, queued in order;
    # a killed trial's retry goes to the back of the queue. Run 1 kills T0 mid epoch 2; run 2 kills
    # T1 while writing its epoch-2 checkpoint; run 3 kills T2 after its results were stored, before
    # COMPLETE; run 4 completes T0 and is killed before removing its checkpoint; run 5 completes
    # T1 and T2 and is killed writing records.jsonl (file-write 1 is run.json); run 6 trains nothing.
    for kill_at in ("train-step:6", "checkpoint-write:2", "result-write:1", "trial-complete:1", "file-write:2"):
        r = run_proc(cmd, kill_at)
        assert r.returncode == -signal.SIGKILL, (kill_at, r.returncode, r.stderr[-2000:])
        now = completed(journal, "kp")
        for number, before in done_before.items():  # a completed trial is never touched again
            assert now[number] == before, (kill_at, number)
        assert_no_slot_twice(journal, "kp")
        dead = running_slots(journal, "kp")
        if kill_at in ("train-step:6", "checkpoint-write:2", "result-write:1"):
            assert len(dead) == 1 and dead[0] not in killed.values()
            killed[kill_at] = dead[0]
            ckpt = [d for d in out.glob("checkpoints/*") if d.name.startswith(dead[0].split("@")[0].replace("/", "_"))]
            assert len(ckpt) == 1 and (ckpt[0] / "last.pt").is_file()
        else:
            assert not dead
        if kill_at == "checkpoint-write:2":
            assert list(ckpt[0].glob(".last.pt.*.tmp"))  # the half-written file never replaced last.pt
        if kill_at == "result-write:1":
            t = [t for t in trials(journal, "kp") if t.state == optuna.trial.TrialState.RUNNING][0]
            assert "best_acc" in t.user_attrs  # killed between storing the result and COMPLETE
        if kill_at == "trial-complete:1":
            assert len(now) == 1 and len(list(out.glob("checkpoints/*/last.pt"))) == 3  # not yet removed
        if kill_at == "file-write:2":
            assert len(now) == 3
            assert not (out / "records.jsonl").exists()  # never a partial records file
            assert list(out.glob(".records.jsonl.*.tmp"))  # the write was under way
            assert not list(out.glob("checkpoints/*/last.pt"))  # leftovers of completed slots removed
        done_before = now
    final = run_proc(cmd)
    assert final.returncode == 0, final.stderr[-2000:]
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    assert summary["planned"] == summary["complete"] == 3 and summary["trained"] == 0 and summary["enqueued"] == 0
    assert completed(journal, "kp") == done_before
    by_slot = {t.user_attrs["slot"]: t for t in trials(journal, "kp") if t.state == optuna.trial.TrialState.COMPLETE}
    resumed = {k: by_slot[s].user_attrs["train_info"]["resumed_from"] for k, s in killed.items()}
    # mid epoch 2 and during the epoch-2 checkpoint: resumed from epoch 1 (the torn write was not
    # used); after the results were stored: resumed from the final checkpoint, no epoch retrained
    assert resumed == {"train-step:6": 1, "checkpoint-write:2": 1, "result-write:1": 3}
    assert all(len(t.system_attrs["retry_history"]) == 1 for t in by_slot.values())
    recs = load_records(journal, "kp")
    assert len(recs) == 3 and all(r.state == COMPLETE and r.epochs == 3 and r.train_seconds > 0 for r in recs)
    lines = (out / "records.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["trial_number"] for x in lines) == sorted(r.trial_number for r in recs)
    assert not list(out.glob(".*.tmp"))  # the temp file of the killed records write was cleaned up


def wait_for(pred, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_ctrl_c_during_study_marks_interrupted_and_the_next_study_run_resumes(tmp_path):
    # 150 tiny epochs: a light machine trains ~60 a second, so the run is still going when SIGINT lands
    spec = write_spec(tmp_path, "cc", epochs=150, generators="{uniform: {}}")
    out = tmp_path / "run"
    journal = str(out / "journal.log")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PRUNESEARCH_KILL_AT", None)
    proc = subprocess.Popen(study_cmd(spec, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(ROOT))
    try:  # Ctrl-C once the trial has a checkpoint to resume from
        wait_for(lambda: list(out.glob("checkpoints/*/last.pt")), 90, "a checkpoint")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, -signal.SIGINT), err[-2000:]
    assert "Traceback" not in err
    recs = load_records(journal, "cc", superseded=True)
    assert [r.state for r in recs] == [INTERRUPTED, "waiting"] and "interrupted" in recs[0].fail_reason
    t0 = time.time()
    r = run_proc(study_cmd(spec, out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.time() - t0 < 60  # no grace-period wait: the retry was WAITING already
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["complete"] == summary["planned"] == 1 and summary["trained"] == 1
    done = [t for t in trials(journal, "cc") if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 1 and done[0].user_attrs["train_info"]["resumed_from"] >= 1  # resumed, not restarted
    assert done[0].system_attrs["retry_history"] == [0]


def test_diverged_trials_are_reported_failed_with_reason_not_as_accuracy(tmp_path, capsys):
    spec = write_spec(tmp_path, "nan", epochs=1, seeds="[0, 1]")
    spec.write_text(spec.read_text().replace("batch_size: 32", "batch_size: 32, lr: 1.0e+12"))
    out = tmp_path / "run"
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--json", "--no-report"]) == 1
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["failed"] == 4 and s["complete"] == 0  # every trial ran (the study went on after a failure)
    assert main(["report", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["report"]
    assert len(rep["failed"]) == 4 and all(f["fail_reason"].startswith("diverged") for f in rep["failed"])
    for cell in rep["budgets"][0]["cells"]:
        assert cell["mean_acc"] is None and cell["accs"] == [] and cell["state_counts"] == {"failed": 2}
        assert all("loss nan" in f["reason"] or "loss inf" in f["reason"] for f in cell["failures"])
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "failed: diverged" in text and "0/2 (2 failed)" in text
    import csv

    rows = list(csv.DictReader((out / "report" / "trials.csv").open()))
    assert len(rows) == 4 and all(r["state"] == "failed" and r["test_acc_pct"] == "" for r in rows)
    assert all(r["fail_reason"].startswith("diverged") for r in rows)
    md = (out / "report" / "report.md").read_text()
    assert "failed: diverged" in md


# ---------------------------------------------------------------------------------------------
# Security
# ---------------------------------------------------------------------------------------------
def test_no_unpickling_of_user_files():
    """torch.load only with weights_only=True; YAML through safe_load; no pickle/marshal/eval."""
    import re

    bad = []
    for path in sorted((ROOT / "prunesearch").rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                bad.append(f"{path.name}: {call}")
        for pat in (r"\byaml\.load\(", r"\byaml\.unsafe_load", r"yaml\.(Full|Unsafe)?Loader\b", r"^\s*import pickle",
                    r"\bpickle\.loads?\(", r"\bmarshal\.", r"(?<![.\w])eval\(", r"allow_pickle\s*=\s*True",
                    r"\bdill\b", r"\bjoblib\.load"):
            bad += [f"{path.name}: {pat}" for _ in re.finditer(pat, text, re.M)]
    assert not bad, bad


def test_run_dirs_are_private_and_names_cannot_escape(tmp_path, capsys, monkeypatch):
    """Run dirs are 0o700 (the umask can only narrow it), the journal 0o600; files inside follow the
    umask but sit in the private dir. A study whose name would be a path (created in a shared
    storage by another tool) writes nothing outside the working directory."""
    from prunesearch.resolve import plan_base as resolve_base
    from prunesearch.study import PLAN_ATTR, load_spec, plan_trials

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    old = os.umask(0o022)
    try:
        spec = write_spec(tmp_path, "perm", epochs=1, generators="{uniform: {}}")
        assert main(["study", str(spec), "--device", "cpu", "--json"]) == 0  # default run dir runs/perm
        capsys.readouterr()
        run = work / "runs" / "perm"
        assert stat.S_IMODE(run.stat().st_mode) == 0o700
        assert stat.S_IMODE((run / "journal.log").stat().st_mode) == 0o600
        assert (run / "records.jsonl").is_file() and (run / "report").is_dir()
        out = work / "trainrun"
        assert main(["train", "resnet8", "--dataset", "synthetic", "--recipe", "smoke", "--epochs", "1",
                     "--device", "cpu", "--out", str(out), "--json"]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o700
        capsys.readouterr()

        # a study named like a path, planted next to ours in the same journal
        journal = str(run / "journal.log")
        plan = load_spec(spec)
        evil = "../../../escape"
        st = open_storage(journal)
        study = optuna.create_study(study_name=evil, storage=st, direction="maximize")
        study.set_user_attr(PLAN_ATTR, plan.to_dict())
        for p in plan_trials(plan, resolve_base(plan)):
            study.enqueue_trial({}, user_attrs=p.user_attrs)
        outside_before = sorted(str(p) for p in tmp_path.iterdir())
        assert main(["worker", "--storage", journal, "--study", evil, "--device", "cpu", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["trained"] == 1
        assert main(["report", "--storage", journal, "--study", evil, "--format", "md,csv", "--json"]) == 0
        written = json.loads(capsys.readouterr().out)["written"]
        assert written and all(Path(p).resolve().is_relative_to(work) for p in written.values())
        assert sorted(str(p) for p in tmp_path.iterdir()) == outside_before  # nothing outside work/
        assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    finally:
        os.umask(old)


@pytest.mark.slow
def test_study_killed_at_random_kill_points_many_times(tmp_path):
    """The heavier version: 12 trials (searched and a shared cache included), 10 runs each killed at a
    random kill point and count (a run that finishes before reaching it exits 0), then a clean run:
    every slot complete once, nothing retrained."""
    import random

    spec = write_spec(tmp_path, "chaos", epochs=4, budgets="[0.5, 0.3]", seeds="[0, 1]",
                      generators="{uniform: {}, random: {}, searched: {trials: 1, min_multiplier: 1.0}}")
    spec.write_text(spec.read_text().replace("grace_period: 3}", "grace_period: 3, max_retries: 100}"))
    out = tmp_path / "run"
    journal = str(out / "journal.log")
    cmd = study_cmd(spec, out)
    rng = random.Random(0)
    # point -> highest count worth drawing (4 steps and 1 checkpoint per epoch, 4 epochs per trial)
    points = {"train-step": 40, "checkpoint-write": 10, "result-write": 3, "trial-complete": 3, "file-write": 2}
    done_before: dict[int, tuple] = {}
    killed = 0
    for _ in range(10):
        point = rng.choice(sorted(points))
        r = run_proc(cmd, f"{point}:{rng.randint(1, points[point])}", timeout=300)
        assert r.returncode in (0, -signal.SIGKILL), r.stderr[-2000:]
        killed += r.returncode == -signal.SIGKILL
        now = completed(journal, "chaos")
        assert all(now[n] == before for n, before in done_before.items())  # never retrained or changed
        assert_no_slot_twice(journal, "chaos")
        done_before = now
    assert killed >= 5
    final = run_proc(cmd, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    assert summary["planned"] == summary["complete"] == 12
    now = completed(journal, "chaos")
    assert all(now[n] == before for n, before in done_before.items())
    assert len(now) == 12 and len({slot for slot, *_ in now.values()}) == 12
    assert not list(out.glob("checkpoints/*/last.pt"))
    recs = load_records(journal, "chaos")
    assert len(recs) == 12 and all(r.state == COMPLETE for r in recs)


def test_unusable_checkpoint_of_a_killed_trial_is_discarded_cleanly(tmp_path, capsys):
    """A kill leaves last.pt intact (atomic writes), but a disk that filled up or a bad copy can
    truncate it: the re-run discards it, says why, trains from scratch and leaves no file behind."""
    spec = write_spec(tmp_path, "disc", generators="{uniform: {}}")
    out = tmp_path / "run"
    r = run_proc(study_cmd(spec, out), "checkpoint-write:2")
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    (last,) = out.glob("checkpoints/*/last.pt")
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--json", "--no-report"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["complete"] == s["planned"] == 1 and s["trained"] == 1
    (t,) = [t for t in trials(str(out / "journal.log"), "disc") if t.state == optuna.trial.TrialState.COMPLETE]
    info = t.user_attrs["train_info"]
    assert "corrupt or truncated" in info["checkpoint_discarded"] and info["resumed_from"] is None
    assert t.user_attrs["epochs"] == 3 and t.system_attrs["retry_history"] == [0]
    assert not list(out.glob("checkpoints/*/*")) and not list(out.glob("checkpoints/*/.*"))
