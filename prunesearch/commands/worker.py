"""`prunesearch worker --storage URL --study NAME`: join a study and run its planned trials."""

from __future__ import annotations

import argparse
import os

from ._common import check_positive, console, print_json, print_trial_event

NAME = "worker"
HELP = "join a study (PostgreSQL or a shared journal file) and train its planned trials"
DESCRIPTION = (
    "Pop planned trials of an existing study one at a time and train them until none is left. Any "
    "number of workers, on any machines, finish every planned trial exactly once; a dead worker's "
    "trial is re-run after the heartbeat grace period; several workers may share one GPU."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=os.environ.get("PRUNESEARCH_STORAGE"),
                   help="postgresql+psycopg://user:pass@host:port/db or a journal file (default: "
                   "$PRUNESEARCH_STORAGE, which keeps a password out of the process list)")
    p.add_argument("--study", required=True, help="study name (see the run dir's run.json)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--data-dir", help="where the dataset files live on this machine")
    p.add_argument("--out", help="local dir for checkpoints (default runs/STUDY)")
    p.add_argument("--max-trials", type=int, help="stop after this many trials")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per training (default: the idle cores)")
    p.add_argument("--no-wait", action="store_true",
                   help="exit when nothing is waiting, instead of staying until other workers' trials finish")
    p.add_argument("--json", action="store_true", help="print one JSON summary at the end")


def run(args: argparse.Namespace) -> int:
    from ._common import quiet_optuna

    quiet_optuna()
    from ..errors import ConfigError
    from ..study import Worker

    check_positive(args, "max_trials", "threads", limit=1_000_000)
    if not args.storage:
        raise ConfigError("worker needs --storage URL (or $PRUNESEARCH_STORAGE); see the run dir's run.json")

    if args.json:  # machine use (also `study --workers N`): plain timestamped lines on stderr, no live bars
        w = Worker(args.storage, args.study, device=args.device, data_dir=args.data_dir, run_dir=args.out,
                   on_event=print_trial_event, threads=args.threads)
        s = w.run(max_trials=args.max_trials, wait=not args.no_wait)
    else:  # a person: the study's progress bar (trials done of planned, ETA) and one line per trial
        from ..pipelines.events import trial_events
        from ._common import Display

        with Display(False) as d:
            sink = trial_events(d)
            w = Worker(args.storage, args.study, device=args.device, data_dir=args.data_dir, run_dir=args.out,
                       on_event=sink, threads=args.threads)
            trials = w.study.get_trials(deepcopy=False)
            live = [t for t in trials if t.state.name in ("WAITING", "RUNNING", "COMPLETE")]
            sink("planned", {"study": args.study, "trials": len(live), "enqueued": 0,
                             "complete": sum(1 for t in live if t.state.name == "COMPLETE")})
            s = w.run(max_trials=args.max_trials, wait=not args.no_wait)
    if args.json:
        print_json({**s.to_dict(), "trials": s.trial_numbers})
    else:
        console().print(f"worker done: {s.trained} trained, {s.cached} cached, {s.failed} failed, "
                        f"{s.duplicates} duplicates skipped")
    return 1 if s.failed else 0  # a worker whose trials failed exits 1 (the failed table says why)
