"""Soak: N worker processes x M tiny trials on one study, with random SIGKILLs, for a bounded time.

    python -m benchmarks.soak [--workers 3] [--trials 12] [--seconds 120] [--kill-every 4]
                              [--storage journal|pg|URL] [--epochs 60] [--seed 0]

Plans M trials (synthetic data, the smoke recipe, resnet8; uniform and random arms over seeds) and
runs ``prunesearch worker`` processes against it. For ``--seconds`` a random live worker is
SIGKILLed every ``--kill-every`` seconds on average (and a fresh one started in its place); a third
of the workers are also started with a random kill point (``PRUNESEARCH_KILL_AT``: mid-training,
mid-checkpoint, between storing a result and COMPLETE, right after COMPLETE), so the critical windows
are hit, not only whatever happens to run; another third get an injected ``OSError`` (a full disk,
``PRUNESEARCH_FAIL_AT``) at a checkpoint write, which must re-queue the trial. On a journal, every
``--cut-every`` seconds a half-written entry is appended to the journal (a crash inside an append):
workers must refuse to touch it, and the soak then runs ``prunesearch repair`` as an operator would
(only while no worker holds the append lock). Then the workers drain the study (at most
``--drain-seconds``). Prints and writes ``benchmarks/results/soak.json`` (``soak_pg.json`` on
PostgreSQL): trials planned / completed / duplicated / lost (the goal: lost 0, duplicated 0), plus
kills, attempts, resumed trials and any completed trial missing a result field.

``--storage pg`` uses ``$PRUNESEARCH_PG_URL`` (``source .ci/postgres.sh && pg_start``); the URL goes
to the workers by environment, never by argv, and is never printed.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILL_POINTS = ("train-step:{n}", "checkpoint-write:{n}", "result-write:1", "trial-complete:1")

SPEC = """
name: {name}
model: resnet8
dataset: synthetic
dataset_options: {{image_size: 8, n_train: 512, n_test: 64}}
recipe: {{name: smoke, overrides: {{epochs: {epochs}, batch_size: 32}}}}
budgets: [0.5]
seeds: {seeds}
generators: {{uniform: {{}}, random: {{}}}}
settings: {{heartbeat_interval: 1, grace_period: 4, max_retries: 1000}}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=3, help="worker processes alive at a time (default 3)")
    p.add_argument("--trials", type=int, default=12, help="planned trials, rounded up to even (default 12)")
    p.add_argument("--seconds", type=float, default=120, help="how long to keep killing (default 120)")
    p.add_argument("--drain-seconds", type=float, default=60, help="then at most this long to finish (default 60)")
    p.add_argument("--kill-every", type=float, default=4, help="mean seconds between SIGKILLs (default 4)")
    p.add_argument("--storage", default="journal", help="journal (a file in a temp run dir), pg ($PRUNESEARCH_PG_URL) or a URL")
    p.add_argument("--epochs", type=int, default=60, help="epochs per trial (default 60: a few seconds, so kills land in training)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill schedule (default 0)")
    p.add_argument("--cut-every", type=float, default=30, help="journal: mean seconds between cut-off entries "
                   "(default 30; 0: none)")
    p.add_argument("--out", help="run dir (default: a temp dir, removed at the end)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    a = p.parse_args(argv)
    if a.workers < 1 or a.trials < 2 or a.seconds <= 0 or a.kill_every <= 0 or a.epochs < 1:
        p.error("--workers >= 1, --trials >= 2, --seconds > 0, --kill-every > 0 and --epochs >= 1")
    return a


def storage_url(text: str, run_dir: Path) -> tuple[str, str]:
    """(storage, kind); a PostgreSQL URL is only ever handled, never printed."""
    if text == "journal":
        return str(run_dir / "journal.log"), "journal"
    if text == "pg":
        url = os.environ.get("PRUNESEARCH_PG_URL")
        if not url:
            sys.exit("soak: --storage pg needs $PRUNESEARCH_PG_URL (source .ci/postgres.sh && pg_start)")
        return url, "postgresql"
    return text, "postgresql" if text.startswith("postgresql") else "journal"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from prunesearch.study import load_spec, prepare
    from prunesearch.study.queue import RESULT_KEYS
    from prunesearch.study.storage import FAIL_REASON

    import optuna

    from prunesearch.study.storage import open_storage

    rng = random.Random(args.seed)
    nonlocal_counts = Counter()
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="prunesearch-soak-")
    run_dir = Path(args.out or tmp.name)
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    storage, kind = storage_url(args.storage, run_dir)
    name = f"soak-{uuid.uuid4().hex[:8]}"
    spec = run_dir / f"{name}.yaml"
    seeds = (args.trials + 1) // 2
    spec.write_text(SPEC.format(name=name, epochs=args.epochs, seeds=list(range(seeds))))
    plan = load_spec(spec)
    prepared = prepare(plan, storage)
    planned_slots = {t.user_attrs["slot"] for t in prepared.study.get_trials()}

    env = dict(os.environ, PYTHONPATH=str(ROOT), PRUNESEARCH_STORAGE=storage)
    env.pop("PRUNESEARCH_KILL_AT", None)
    cmd = [sys.executable, "-m", "prunesearch", "worker", "--study", name, "--device", "cpu",
           "--out", str(run_dir), "--json"]
    steps = 16 * args.epochs  # n_train 512 / batch 32 per epoch

    def start(chaos: bool) -> subprocess.Popen:
        e = dict(env)
        roll = rng.random() if chaos else 1.0
        if roll < 1 / 3:
            e["PRUNESEARCH_KILL_AT"] = rng.choice(KILL_POINTS).format(n=rng.randint(1, max(1, steps)))
        elif roll < 2 / 3:
            e["PRUNESEARCH_FAIL_AT"] = f"checkpoint-write:{rng.randint(1, 3)}"
            nonlocal_counts["oserrors_armed"] += 1
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e,
                                cwd=str(ROOT), start_new_session=True)

    def unfinished() -> int:
        st = optuna.load_study(study_name=name, storage=open_storage(storage, create=False))
        return sum(1 for t in st.get_trials(deepcopy=False)
                   if t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING))

    from prunesearch.study.journal import damaged_tail, repair_journal
    from prunesearch.study.storage import journal_path

    jpath = journal_path(storage) if kind == "journal" else None
    cuts = repairs = 0

    def cut_and_repair() -> None:
        """Append half an entry (as a crash inside an append leaves it), then repair it as an operator
        would, waiting until no worker is inside an append."""
        nonlocal cuts, repairs
        if jpath is None or os.path.lexists(str(jpath) + ".lock"):
            return
        with open(jpath, "ab") as f:
            f.write(b'{"op_code": 5, "worker_id": "soak-cut", "trial_id": 0, "par')
        cuts += 1
        deadline = time.time() + 30
        while time.time() < deadline:
            if not os.path.lexists(str(jpath) + ".lock"):
                try:
                    repair_journal(jpath)
                    repairs += damaged_tail(jpath) is None
                    return
                except Exception:  # noqa: BLE001  a worker took the lock in between: try again
                    pass
            time.sleep(0.1)

    t0 = time.time()
    procs = [start(True) for _ in range(args.workers)]
    kills = self_kills = 0
    next_kill = t0 + rng.expovariate(1 / args.kill_every)
    next_cut = t0 + (rng.expovariate(1 / args.cut_every) if args.cut_every > 0 else float("inf"))
    while time.time() - t0 < args.seconds:
        time.sleep(0.2)
        for i, p in enumerate(procs):
            if p.poll() is not None:  # finished, or killed itself at a kill point
                self_kills += p.returncode == -signal.SIGKILL
                procs[i] = start(True)
        if time.time() >= next_kill:
            victim = rng.choice(procs)
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills += 1
            next_kill = time.time() + rng.expovariate(1 / args.kill_every)
        if time.time() >= next_cut:
            cut_and_repair()
            next_cut = time.time() + rng.expovariate(1 / args.cut_every)
        if unfinished() == 0:
            break
    chaos_seconds = time.time() - t0
    # drain: no more kills; keep workers alive until every planned trial is finished
    drain_end = time.time() + args.drain_seconds
    while time.time() < drain_end:
        for i, p in enumerate(procs):
            if p.poll() is not None:
                if p.returncode == -signal.SIGKILL:
                    self_kills += 1
                procs[i] = None  # type: ignore[call-overload]
        procs = [p for p in procs if p is not None]
        left = unfinished()
        if left == 0 and not procs:
            break
        if left and len(procs) < args.workers:
            procs.append(start(False))
        time.sleep(0.3)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    st = optuna.load_study(study_name=name, storage=open_storage(storage, create=False))
    trials = st.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    per_slot = Counter(t.user_attrs["slot"] for t in done)
    result = {
        "storage": kind,
        "workers": args.workers,
        "epochs_per_trial": args.epochs,
        "seconds": round(chaos_seconds, 1),
        "kill_every": args.kill_every,
        "kills": kills + self_kills,
        "kills_external": kills,
        "kills_at_kill_points": self_kills,
        "workers_with_injected_oserror": nonlocal_counts["oserrors_armed"],
        "oserror_requeues": sum(1 for t in trials if "No space left" in str(t.user_attrs.get(FAIL_REASON) or "")),
        "journal_cuts": cuts,
        "journal_repairs": repairs,
        "trials_planned": len(planned_slots),
        "trials_completed": len(per_slot),
        "duplicated": sum(n - 1 for n in per_slot.values()),
        "lost": len(planned_slots - set(per_slot)),
        "attempts": len(trials),
        "resumed_from_checkpoint": sum(1 for t in done if (t.user_attrs.get("train_info") or {}).get("resumed_from")),
        "incomplete_results": sum(1 for t in done if any(t.user_attrs.get(k) is None for k in RESULT_KEYS)),
        "unfinished": sum(1 for t in trials if not t.state.is_finished()),
        "wall_seconds": round(time.time() - t0, 1),
        "command": "python -m benchmarks.soak " + " ".join(argv if argv is not None else sys.argv[1:]).replace(storage, "<storage>"),
    }
    if tmp is not None:
        tmp.cleanup()
    if args.no_write:
        import json

        print(json.dumps(result))
    else:
        from benchmarks._machine import write_result

        write_result("soak" if kind == "journal" else "soak_pg", result)
    return result


if __name__ == "__main__":
    r = main()
    sys.exit(0 if r["lost"] == 0 and r["duplicated"] == 0 and r["incomplete_results"] == 0 else 1)
