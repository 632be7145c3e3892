"""Quality: does pruning work as architecture search on data we have? (the paper's claim, §5)

Runs, as a user would, through the CLI (each command is recorded in the result):

1. ``prunesearch discover --no-scratch`` on the study's model/dataset (Network Slimming by default):
   trains the base with the method's regulariser, prunes it at every budget (-> the ``pruned`` arm's
   architectures) and fits the design rule (-> the ``guided`` arm);
2. ``prunesearch discover --no-scratch`` on ANOTHER model and dataset (default resnet20 on digits):
   its rule is the ``transferred`` arm;
3. ``prunesearch study SPEC`` with the arms uniform, pruned, guided, transferred and random at every
   budget and seed, each trained from scratch at the same parameter count (the spec is written next to
   the run and copied into the result).

Reports the mean best test accuracy per generator per budget, and, on matched (budget, seed) pairs,
how often pruned / guided / transferred / random beat uniform. The test set has 1,000 images: one
image is 0.1 point and the binomial standard error of one accuracy is ~0.5-1 point, so single wins
are noise; look at the win rate over all pairs and at the mean differences.

    python benchmarks/quality.py                       # the committed run (~25 min on 2 shared cores)
    python benchmarks/quality.py --smoke               # seconds: digits, 1 epoch, 2 budgets, 1 seed
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENERATORS = ("uniform", "pruned", "guided", "transferred", "random")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet14", help="study model (default resnet14)")
    ap.add_argument("--dataset", default="mnist5k", help="study dataset (default mnist5k)")
    ap.add_argument("--method", default="slimming", help="pruning method of both discover runs (default slimming)")
    ap.add_argument("--budgets", default="0.2,0.35,0.5,0.7", help="parameter budgets, fractions of the base")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per arm (default 3)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of every training (fast recipe; default 4)")
    ap.add_argument("--transfer-model", default="resnet20", help="model of the transferred rule's discover run")
    ap.add_argument("--transfer-dataset", default="digits", help="dataset of the transferred rule's discover run")
    ap.add_argument("--transfer-epochs", type=int, default=8, help="epochs of that discover run's base (default 8)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", default=None, help="work dir for the runs (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the temp work dir")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny variant (digits, 1 epoch, 2 budgets, 1 seed); writes quality_smoke.json")
    ap.add_argument("--name", default=None, help="result name (default quality, or quality_smoke with --smoke)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.dataset, args.epochs, args.budgets, args.seeds = "digits", 1, "0.3,0.6", 1
        args.model, args.transfer_model, args.transfer_epochs = "resnet8", "resnet14", 1
    args.name = args.name or ("quality_smoke" if args.smoke else "quality")
    args.budget_list = [float(b) for b in args.budgets.split(",") if b.strip()]
    if len(args.budget_list) < 1 or args.seeds < 1 or args.epochs < 1:
        ap.error("need at least one budget, one seed and one epoch")
    return args


def _cli(argv: list[str], log: list[dict[str, Any]]) -> dict[str, Any]:
    """Run ``prunesearch ARGV`` as a subprocess (as a user would); record command, wall time, load."""
    cmd = [sys.executable, "-m", "prunesearch", *argv]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    entry = {"command": "prunesearch " + shlex.join(argv), "wall_seconds": round(time.perf_counter() - t0, 1),
             "load_avg_1m_at_start": round(load, 2), "returncode": proc.returncode}
    log.append(entry)
    print(f"[quality] {entry['command']} -> rc {proc.returncode} in {entry['wall_seconds']} s", file=sys.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"quality: step failed: {entry['command']}")
    return entry


def study_spec(args: argparse.Namespace, main_run: Path, transfer_run: Path) -> dict[str, Any]:
    return {
        "name": args.name.replace("_", "-"),
        "description": f"benchmarks/quality.py: uniform vs pruned/guided ({args.method} on {args.model}/{args.dataset}) "
                       f"vs transferred ({args.method} on {args.transfer_model}/{args.transfer_dataset}) vs random",
        "model": args.model,
        "dataset": args.dataset,
        "recipe": {"name": "fast", "overrides": {"epochs": args.epochs}},
        "budgets": args.budget_list,
        "seeds": args.seeds,
        "generators": {
            "uniform": {},
            "pruned": {"run": str(main_run), "method": args.method},
            "guided": {"rule": str(main_run / "rule.yaml"), "method": args.method, "dataset": args.dataset},
            "transferred": {"rule": str(transfer_run / "rule.yaml"), "method": args.method},
            "random": {},
        },
    }


def summarise(records: list[dict[str, Any]], budgets: list[float]) -> dict[str, Any]:
    """Records (dicts from records.jsonl) -> mean accuracy table and wins over uniform on matched seeds."""
    acc: dict[tuple[str, float, int], float] = {}
    params: dict[tuple[str, float], int] = {}
    for r in records:
        if r.get("state") == "complete" and r.get("best_acc") is not None:
            key = (r["generator"], float(r["budget"]), int(r["seed"]))
            acc[key] = float(r["best_acc"])
            params[(r["generator"], float(r["budget"]))] = int(r["params"])
    gens = [g for g in GENERATORS if any(k[0] == g for k in acc)]
    table = []
    for b in budgets:
        for g in gens:
            vals = [v for (gg, bb, _), v in acc.items() if gg == g and bb == b]
            if vals:
                table.append({"budget": b, "generator": g, "params": params.get((g, b)), "mean_acc": round(statistics.fmean(vals), 4),
                              "std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0, "seeds": len(vals)})
    vs_uniform: dict[str, Any] = {}
    for g in gens:
        if g == "uniform":
            continue
        per_budget, wins, ties, n, diffs = {}, 0, 0, 0, []
        for b in budgets:
            pairs = [(v, acc[("uniform", b, s)]) for (gg, bb, s), v in acc.items()
                     if gg == g and bb == b and ("uniform", b, s) in acc]
            w = sum(1 for a, u in pairs if a > u)
            t = sum(1 for a, u in pairs if a == u)
            per_budget[f"{b:g}"] = {"wins": w, "ties": t, "pairs": len(pairs),
                                    "mean_diff": round(statistics.fmean(a - u for a, u in pairs), 4) if pairs else None}
            wins, ties, n = wins + w, ties + t, n + len(pairs)
            diffs += [a - u for a, u in pairs]
        vs_uniform[g] = {"wins": wins, "ties": ties, "pairs": n, "win_rate": round(wins / n, 3) if n else None,
                         "mean_diff": round(statistics.fmean(diffs), 4) if diffs else None, "per_budget": per_budget}
    failed = sum(1 for r in records if r.get("state") != "complete")
    return {"table": table, "vs_uniform": vs_uniform, "records": len(records), "failed": failed}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Quality benchmark ({result['date_utc']})", "",
             f"Study: {result['spec']['description']}; {result['spec']['model']} on {result['spec']['dataset']}, "
             f"fast recipe {result['spec']['recipe']['overrides']['epochs']} epochs, seeds {result['spec']['seeds']}, "
             f"total wall {result['wall_seconds']:.0f} s (load average at start {result['load_avg_1m_at_start']}, "
             "machine shared with other jobs).", "",
             "Mean best test accuracy (%) per generator and budget:", "",
             "| budget | generator | params | mean acc | std | seeds |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in result["table"]:
        lines.append(f"| {r['budget']:g} | {r['generator']} | {r['params']:,} | {100 * r['mean_acc']:.2f} | "
                     f"{100 * r['std']:.2f} | {r['seeds']} |")
    lines += ["", "Against uniform on matched (budget, seed) pairs:", "",
              "| generator | wins | ties | pairs | mean diff (points) |", "| --- | ---: | ---: | ---: | ---: |"]
    for g, v in result["vs_uniform"].items():
        md = "" if v["mean_diff"] is None else f"{100 * v['mean_diff']:+.2f}"
        lines.append(f"| {g} | {v['wins']} | {v['ties']} | {v['pairs']} | {md} |")
    lines += ["", "Commands:", ""] + [f"    {s['command']}   # {s['wall_seconds']} s" for s in result["steps"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks._machine import results_dir, write_result

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="prunesearch-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    load0 = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    steps: list[dict[str, Any]] = []
    try:
        main_run, transfer_run = work / "discover-main", work / "discover-transfer"
        common = ["--method", args.method, "--budgets", args.budgets, "--no-scratch", "--device", args.device]
        _cli(["discover", "--model", args.model, "--dataset", args.dataset, "--epochs", str(args.epochs),
              *common, "--out", str(main_run)], steps)
        _cli(["discover", "--model", args.transfer_model, "--dataset", args.transfer_dataset,
              "--epochs", str(args.transfer_epochs), *common, "--out", str(transfer_run)], steps)
        spec = study_spec(args, main_run, transfer_run)
        import yaml

        spec_path = work / "quality.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        _cli(["study", str(spec_path), "--out", str(work / "study"), "--device", args.device, "--json"], steps)
        records = [json.loads(line) for line in (work / "study" / "records.jsonl").read_text().splitlines() if line.strip()]
        rules = {}
        for tag, run in (("guided", main_run), ("transferred", transfer_run)):
            rule = yaml.safe_load((run / "rule.yaml").read_text())
            rules[tag] = {"kind": rule.get("kind"), "provenance": rule.get("provenance") or rule.get("sources")}
        result = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "load_avg_1m_at_start": load0,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "note": "2-core machine shared with other jobs: wall times are noisy; accuracies are not",
            "steps": steps,
            "spec": spec,
            "rules": rules,
            **summarise(records, args.budget_list),
            "test_images": 1000 if args.dataset == "mnist5k" else None,
        }
        # the work dir is temporary: drop its paths from the stored spec's rule options
        result["spec"] = json.loads(json.dumps(spec).replace(str(work) + "/", "WORK/"))
        for s in steps:
            s["command"] = s["command"].replace(str(work) + "/", "WORK/")
        out_dir = results_dir()
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{args.name}.md").write_text(markdown(result))
        write_result(args.name, result)
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
