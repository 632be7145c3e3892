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
