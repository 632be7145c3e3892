"""Trials per hour of a study on this machine: one worker using every idle core ("unpacked") vs one
single-threaded worker per core ("packed"), the same demo study, side by side in one run.

Small networks do not scale across threads (a ResNet-8 step on 2 threads is far from twice as fast
as on 1), so several 1-thread trainings at once usually beat one N-thread training. This measures
it: the same spec (resnet8 on mnist5k, the ``demo`` recipe, uniform at two budgets over ``--seeds``
seeds) runs as ``prunesearch study --workers 1`` and as ``--workers N --threads 1`` (N = usable
cores), in alternating order, each into a fresh run dir; the wall time of each run gives trials/hour.

    python benchmarks/packing.py               # 2 x 2 runs of 8 trials (~6 min on 2 cores)
    python benchmarks/packing.py --seeds 2     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = """name: {name}
model: {model}
dataset: {dataset}
recipe: {{name: demo, overrides: {{epochs: {epochs}}}}}
budgets: [0.3, 0.6]
seeds: {seeds}
generators: {{uniform: {{}}, random: {{}}}}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per arm (trials = 2 arms x 2 budgets x seeds)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each mode, alternating (default 2)")
    return ap.parse_args(argv)


def run_mode(mode: str, workers: int, args: argparse.Namespace, work: Path, i: int) -> dict:
    name = f"pack-{mode}-{i}"
    spec = work / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, model=args.model, dataset=args.dataset, epochs=args.epochs,
                                seeds=args.seeds))
    cmd = [sys.executable, "-m", "prunesearch", "study", str(spec), "--out", str(work / name), "--device", "cpu",
           "--no-report", "--json"]
    cmd += ["--workers", "1"] if mode == "unpacked" else ["--workers", str(workers), "--threads", "1"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
        raise SystemExit(f"packing: {mode} run failed")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    trials = out["complete"]
    return {"mode": mode, "command": " ".join(cmd[2:]).replace(str(work), "WORK"), "wall_seconds": round(wall, 1),
            "trials": trials, "trials_per_hour": round(3600 * trials / wall, 1), "load_avg_1m_at_start": round(load, 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks._machine import write_result
    from prunesearch.machine import usable_cores

    workers = usable_cores()
    runs = []
    with tempfile.TemporaryDirectory(prefix="prunesearch-packing-") as tmp:
        for i in range(args.repeats):
            order = ("unpacked", "packed") if i % 2 == 0 else ("packed", "unpacked")
            for mode in order:
                runs.append(run_mode(mode, workers, args, Path(tmp), i))
                print(f"[packing] {runs[-1]}", file=sys.stderr, flush=True)
    per = {m: [r["trials_per_hour"] for r in runs if r["mode"] == m] for m in ("unpacked", "packed")}
    mean = {m: sum(v) / len(v) for m, v in per.items()}
    result = {
        "spec": SPEC.format(name="pack", model=args.model, dataset=args.dataset, epochs=args.epochs, seeds=args.seeds),
        "workers_packed": workers,
        "runs": runs,
        "trials_per_hour": {m: round(v, 1) for m, v in mean.items()},
        "packed_over_unpacked": round(mean["packed"] / mean["unpacked"], 2),
        "note": "same spec, alternating order, fresh run dirs; shared machine: see the load at each start",
    }
    write_result("packing", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
