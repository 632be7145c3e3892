"""Quality: does a pruning-derived architecture, trained from scratch, beat uniform pruning at the
same parameter count? (the paper's Section 5 claim, on data and cores we have)

The design is fixed before anything runs (nothing below is tuned on the outcome):

- **Model and data**: VGG-11 on mnist5k (3,600 train / 400 validation / 1,000 test images), the
  ``demo`` recipe (6 epochs, batch 32) for every training.
- **Pruning**: Network Slimming with its automatic penalty strength (``--sparsity auto``: scaled to
  the run's learning-rate sum so the penalty can slim); the sparsity diagnostic is recorded.
- **Budgets**: chosen by a pilot *on validation accuracy*, never test: uniform VGG-11 at each
  candidate budget (2 pilot seeds, 100 and 101, not used again) against the unpruned base; the
  study uses the two largest candidates where uniform loses at least one point of validation
  accuracy (a budget where uniform is as good as the full model cannot show any design effect).
- **Arms**: uniform (the baseline), pruned (the slimming architecture), guided (the rule fitted on
  it), transferred (a rule from another model and dataset: resnet20 on digits) and random (random
  keep ratios at the same budget), all at the same parameter count (within 0.2 % per cell).
- **Seeds**: 8 paired seeds (0-7) per arm and budget; final-epoch test accuracy.
- **Primary test** (stated in advance): the pooled paired comparison of *pruned vs uniform* over
  every (budget, seed) pair: mean difference with its 95 % t-interval and the exact sign-flip
  permutation p-value. Everything else (per-budget cells, Holm-corrected t-tests, the other arms)
  is secondary.

    python benchmarks/quality.py            # the committed run (~20-30 min on 2 shared cores)
    python benchmarks/quality.py --smoke    # a minute: resnet8, digits, 1 epoch, 2 seeds
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENERATORS = ("uniform", "pruned", "guided", "transferred", "random")
PRIMARY = "pruned"  # the arm of the primary, pre-registered test
PILOT_SEEDS = (100, 101)
MIN_LOSS = 0.01  # uniform must lose at least this much validation accuracy against the base


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vgg11", help="study model (default vgg11)")
    ap.add_argument("--dataset", default="mnist5k", help="study dataset (default mnist5k)")
    ap.add_argument("--method", default="slimming", help="pruning method of both discover runs (default slimming)")
    ap.add_argument("--candidates", default="0.003,0.005,0.01,0.02,0.05",
                    help="candidate budgets for the pilot (fractions of the base's parameters)")
    ap.add_argument("--budgets", default=None, help="skip the pilot and use these budgets")
    ap.add_argument("--seeds", type=int, default=8, help="paired training seeds per arm and budget (default 8)")
    ap.add_argument("--recipe", default="demo", help="recipe of every training (default demo)")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--transfer-model", default="resnet20", help="model of the transferred rule's discover run")
    ap.add_argument("--transfer-dataset", default="digits", help="dataset of the transferred rule's discover run")
    ap.add_argument("--workers", type=int, default=1, help="study worker processes (default 1)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", default=None, help="work dir for the runs (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the temp work dir")
    ap.add_argument("--smoke", action="store_true", help="tiny variant (resnet8 on digits, 1 epoch, 2 seeds)")
    ap.add_argument("--name", default=None, help="result name (default quality, or quality_smoke with --smoke)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.model, args.dataset, args.epochs, args.seeds = "resnet8", "digits", 1, 2
        args.candidates, args.transfer_model = "0.3,0.6", "resnet14"
    args.name = args.name or ("quality_smoke" if args.smoke else "quality")
    args.candidate_list = [float(b) for b in args.candidates.split(",") if b.strip()]
    if args.seeds < 2 or not args.candidate_list:
        ap.error("need at least two seeds (a paired test) and one candidate budget")
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
    print(f"[quality] {entry['command']} -> rc {proc.returncode} in {entry['wall_seconds']} s", file=sys.stderr,
          flush=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"quality: step failed: {entry['command']}")
    entry["stdout"] = proc.stdout
    return entry


def _tag(b: float) -> str:
    from prunesearch.arch import Budget

    return Budget(b).tag()


def choose_budgets(base_val: float, pilot: dict[float, list[float]], min_loss: float = MIN_LOSS) -> list[float]:
    """The two largest candidates where uniform's mean *validation* accuracy is at least ``min_loss``
    below the base's; the two smallest candidates when none is."""
    losing = sorted(b for b, vals in pilot.items() if vals and base_val - sum(vals) / len(vals) >= min_loss)
    if len(losing) >= 2:
        return losing[-2:]
    return sorted(pilot)[:2] if len(losing) < 1 else sorted(set(losing + sorted(pilot)[:1]))


def study_spec(args: argparse.Namespace, budgets: list[float], main_run: Path, transfer_run: Path) -> dict[str, Any]:
    overrides = {"epochs": args.epochs} if args.epochs else {}
    return {
        "name": args.name.replace("_", "-"),
        "description": f"benchmarks/quality.py: uniform vs pruned/guided ({args.method} on {args.model}/{args.dataset}) "
                       f"vs transferred ({args.method} on {args.transfer_model}/{args.transfer_dataset}) vs random",
        "model": args.model,
        "dataset": args.dataset,
        "recipe": {"name": args.recipe, "overrides": overrides},
        "budgets": budgets,
        "seeds": args.seeds,
        "generators": {
            "uniform": {},
            "pruned": {"run": str(main_run), "method": args.method},
            "guided": {"rule": str(main_run / "rule.yaml"), "method": args.method, "dataset": args.dataset},
            "transferred": {"rule": str(transfer_run / "rule.yaml"), "method": args.method},
            "random": {},
        },
    }


def summarise(records: list, planned_seeds: int) -> dict[str, Any]:
    """Records (TrialRecords) -> the report's cells and pooled tests, and the primary result."""
    from prunesearch.report import build_report, flat_table, report_to_dict

    rep = build_report(records, planned_seeds=planned_seeds, title="quality")
    pooled = report_to_dict(rep)["pooled"]
    primary = next((p for p in pooled if p["generator"] == PRIMARY), None)
    return {"table": flat_table(rep), "pooled": pooled, "primary": primary,
            "failed": sum(1 for r in records if r.state != "complete"), "records": len(records)}


def verdict(primary: dict[str, Any] | None) -> str:
    if not primary or primary.get("ci") is None:
        return "no result (too few complete pairs)"
    lo, hi = 100 * primary["ci"]["low"], 100 * primary["ci"]["high"]
    p = (primary.get("sign_flip") or {}).get("p_value")
    mean = 100 * primary["mean_gap"]
    if lo > 0:
        side = "pruned beats uniform"
    elif hi < 0:
        side = "uniform beats pruned"
    else:
        side = "no detectable difference between pruned and uniform"
    return f"{side}: mean paired gap {mean:+.2f} pp, 95 % CI [{lo:+.2f}, {hi:+.2f}], sign-flip p = {p:.3g}"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Quality benchmark ({result['date_utc']})", "",
             f"{result['spec']['description']}. Recipe `{result['spec']['recipe']['name']}` "
             f"{result['spec']['recipe']['overrides'] or ''}, {result['spec']['seeds']} paired seeds, budgets "
             f"{', '.join(f'{b:g}' for b in result['spec']['budgets'])} (chosen by the pilot on validation accuracy). "
             f"Total wall {result['wall_seconds']:.0f} s on {result['machine_note']}.", "",
             f"**Primary test (pre-registered): {result['verdict']}.**", "",
             f"Base {result['spec']['model']}: validation {100 * result['base']['val_acc']:.2f} %, test "
             f"{100 * result['base']['final_acc']:.2f} %; slimming penalty s = {result['base']['regularizer'].get('s')}; "
             f"{100 * result['diagnostic']['near_zero']:.1f} % of the scaling factors below 1 % of the largest.", "",
             "Pilot (uniform, validation accuracy, seeds 100-101):", "",
             "| budget | params | val acc (%) |", "| ---: | ---: | ---: |"]
    for b, row in sorted(result["pilot"].items(), key=lambda kv: float(kv[0])):
        vals = row["val_acc"]
        lines.append(f"| {float(b):g} | {row['params']:,} | {100 * sum(vals) / len(vals):.2f} |")
    lines += ["", "Final-epoch test accuracy (%), mean ± std over seeds; gap = paired mean difference to uniform "
              "(pp) with its 95 % t-interval; p = paired t-test / Holm-corrected:", "",
              "| budget | arm | params | seeds | test acc | gap [95% CI] | p (t / Holm) |",
              "| ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for r in result["table"]:
        acc = "—" if r["mean_acc"] is None else f"{100 * r['mean_acc']:.2f} ± {100 * (r['std_acc'] or 0):.2f}"
        gap = "baseline" if r["generator"] == "uniform" else (
            "—" if r["gap"] is None else f"{100 * r['gap']:+.2f}" + (
                f" [{100 * r['gap_ci95'][0]:+.2f}, {100 * r['gap_ci95'][1]:+.2f}]" if r["gap_ci95"] else ""))
        p = "—" if r["p_t"] is None else f"{r['p_t']:.3g} / {r['p_holm']:.3g}"
        lines.append(f"| {r['budget']:g} | {r['generator']} | {r['params'] or 0:,} | {r['seeds']} | {acc} | {gap} | {p} |")
    lines += ["", "Pooled over budgets (every matched budget x seed pair):", "",
              "| arm | pairs | mean gap (pp) | 95 % CI | wins / losses | sign-flip p | t-test p |",
              "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for p in result["pooled"]:
        ci = p.get("ci")
        ci_s = "—" if not ci else f"[{100 * ci['low']:+.2f}, {100 * ci['high']:+.2f}]"
        sf = (p.get("sign_flip") or {}).get("p_value")
        tt = (p.get("t_test") or {}).get("p_value")
        lines.append(f"| {p['generator']} | {p['n_pairs']} | {100 * p['mean_gap']:+.2f} | {ci_s} | {p['wins']} / "
                     f"{p['losses']} | {'—' if sf is None else f'{sf:.3g}'} | {'—' if tt is None else f'{tt:.3g}'} |")
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
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    try:
        main_run, transfer_run = work / "discover-main", work / "discover-transfer"
        candidates = [float(b) for b in (args.budgets or args.candidates).split(",")]
        common = ["--method", args.method, "--recipe", args.recipe, *epochs, "--sparsity", "auto", "--no-scratch",
                  "--device", args.device]
        # 1. the pruned architectures at every candidate budget, and the rule fitted on them
        _cli(["discover", "--model", args.model, "--dataset", args.dataset, "--budgets", ",".join(map(str, candidates)),
              *common, "--out", str(main_run)], steps)
        summary = json.loads((main_run / "summary.json").read_text())
        # 2. the pilot: uniform at every candidate, on validation accuracy only
        pilot: dict[float, dict[str, Any]] = {}
        if args.budgets is None:
            for b in candidates:
                vals = []
                for seed in PILOT_SEEDS:
                    e = _cli(["train", str(main_run / "architectures" / f"uniform-{_tag(b)}.yaml"), "--dataset",
                              args.dataset, "--recipe", args.recipe, *epochs, "--seed", str(seed), "--device",
                              args.device, "--json"], steps)
                    d = json.loads(e.pop("stdout").strip().splitlines()[-1])
                    vals.append(d["val_acc"])
                    pilot[b] = {"params": d["params"], "val_acc": vals}
            budgets = choose_budgets(summary["base"]["val_acc"], {b: r["val_acc"] for b, r in pilot.items()})
        else:
            budgets = candidates
        # 3. the transferred rule: another model on another dataset
        _cli(["discover", "--model", args.transfer_model, "--dataset", args.transfer_dataset,
              "--budgets", "0.3,0.6", *common, "--out", str(transfer_run)], steps)
        # 4. the study: five arms x budgets x paired seeds, from scratch
        spec = study_spec(args, budgets, main_run, transfer_run)
        import yaml

        spec_path = work / "quality.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        _cli(["study", str(spec_path), "--out", str(work / "study"), "--device", args.device, "--workers",
              str(args.workers), "--json"], steps)
        for s in steps:
            s.pop("stdout", None)
        from prunesearch.report import load_records_jsonl

        records = load_records_jsonl(work / "study" / "records.jsonl")
        summ = summarise(records, args.seeds)
        result = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "load_avg_1m_at_start": load0,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "machine_note": f"{os.cpu_count()} shared cores (load average {load0} at start)",
            "design": __doc__.split("\n\n", 1)[1].split("    python benchmarks")[0].strip(),
            "steps": steps,
            "spec": spec,
            "base": summary["base"] | {"arch": None},
            "diagnostic": summary.get("sparsity_diagnostic") or {},
            "pilot": {f"{b:g}": r for b, r in pilot.items()},
            "chosen_budgets": budgets,
            "verdict": verdict(summ["primary"]),
            **summ,
            "test_images": 1000 if args.dataset == "mnist5k" else None,
        }
        # the work dir is temporary: drop its paths from what is stored
        text = json.dumps(result, default=str).replace(str(work) + "/", "WORK/")
        result = json.loads(text)
        out_dir = results_dir()
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{args.name}.md").write_text(markdown(result))
        write_result(args.name, result)
        print(result["verdict"])
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
