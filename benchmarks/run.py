"""The CPU benchmark suite: each benchmark runs as its own subprocess (a fresh interpreter, nothing
shared), prints one JSON line and writes ``NAME.json`` (with machine info) into the results dir;
a summary table follows at the end.

    python -m benchmarks                      # the full suite into benchmarks/results/ (~35-45 min here)
    python -m benchmarks --quick              # small sizes, into a temp dir (a few minutes)
    python -m benchmarks --only count_speed,budget_precision
    python -m benchmarks --skip quality --results /tmp/bench

The machine is shared with other jobs: wall times are noisy. The speed claims are ratios measured
inside one process (ours vs the reference loop, analytic vs built counts), which the load shifts
much less than absolute numbers. The GPU benchmark is separate: ``benchmarks/gpu.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Bench:
    name: str  # suite name (--only / --skip) and result file stem
    script: str
    full: tuple[str, ...]  # arguments of the full suite
    quick: tuple[str, ...]  # arguments of --quick
    headline: Callable[[dict[str, Any]], str]
    out_flag: bool = False  # the script takes --out PATH (else it writes NAME.json via _machine)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.3f} %"


def _throughput(d: dict[str, Any]) -> str:
    same = f", {d['speedup_same_threads']}x at equal threads" if "speedup_same_threads" in d else ""
    return (f"ours {d.get('ours_img_s')} img/s vs reference {d.get('reference_img_s')} img/s: "
            f"{d.get('speedup')}x{same} ({d.get('images')} images)")


def _quality(d: dict[str, Any]) -> str:
    parts = [f"{p['generator']} vs uniform {100 * p['mean_gap']:+.2f} pts over {p['n_pairs']} pairs"
             for p in d.get("pooled", []) if p.get("mean_gap") is not None]
    return f"{d.get('verdict')}; " + "; ".join(parts) + f"; {d.get('wall_seconds')} s"


TT = "train_throughput.py"
SUITE: tuple[Bench, ...] = (
    Bench("count_speed_resnet56", "count_speed.py", ("--model", "resnet56", "--json"),
          ("--model", "resnet56", "--n", "50", "--n-build", "5", "--json"),
          lambda d: f"analytic {d['analytic_per_s']}/s vs build {d['build_per_s']}/s: {d['speedup']}x"),
    Bench("budget_precision", "budget_precision.py", ("--n", "1000"), ("--n", "100"),
          lambda d: (f"max error rule {_pct(d['max_rel_error_rule'])}, uniform {_pct(d['max_rel_error_uniform'])}; "
                     f"mean rule {_pct(d['mean_rel_error_rule'])} ({d['triples']} triples)")),
    # CPU: short runs (ours is ~2-3x the reference here; the GPU sizes live in gpu.sh)
    Bench("train_throughput_resnet20", TT, ("--model", "resnet20", "--images", "1280", "--warmup-images", "256", "--json"),
          ("--model", "resnet20", "--images", "192", "--warmup-images", "64", "--repeats", "1", "--json"),
          _throughput, out_flag=True),
    Bench("train_throughput_resnet56", TT, ("--model", "resnet56", "--images", "640", "--warmup-images", "128", "--json"),
          ("--model", "resnet56", "--images", "128", "--warmup-images", "64", "--repeats", "1", "--json"),
          _throughput, out_flag=True),
    Bench("train_throughput_vgg16", TT, ("--model", "vgg16", "--images", "640", "--warmup-images", "128", "--json"),
          ("--model", "vgg16", "--images", "128", "--warmup-images", "64", "--repeats", "1", "--json"),
          _throughput, out_flag=True),
    Bench("discover_walltime", "discover_walltime.py", (), ("--extra", "--epochs 1", "--name", "discover_walltime"),
          lambda d: (f"{d['wall_seconds']} s wall ({d['cpu_seconds']} s CPU), goal {d['goal_seconds']} s, "
                     f"load {d['load_avg_at_start'][0]} at start")),
    Bench("packing", "packing.py", (), ("--seeds", "1", "--epochs", "1", "--repeats", "1"),
          lambda d: (f"packed {d['trials_per_hour']['packed']} vs unpacked {d['trials_per_hour']['unpacked']} "
                     f"trials/h: {d['packed_over_unpacked']}x")),
    Bench("quality", "quality.py", (), ("--smoke", "--name", "quality"), _quality),
)
NAMES = tuple(b.name for b in SUITE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (minutes); results into a temp dir unless --results")
    ap.add_argument("--only", default=None, help=f"comma-separated names: {', '.join(NAMES)} (a prefix selects several)")
    ap.add_argument("--skip", default=None, help="comma-separated names (or prefixes) to leave out")
    ap.add_argument("--results", default=None, help="results dir (default benchmarks/results; --quick: a temp dir)")
    ap.add_argument("--list", action="store_true", help="print the suite's commands and exit")
    args = ap.parse_args(argv)

    def pick(text: str | None, flag: str) -> list[str]:
        if not text:
            return []
        names = [n.strip() for n in text.split(",") if n.strip()]
        for n in names:
            if not any(b.startswith(n) for b in NAMES):
                ap.error(f"{flag}: unknown benchmark '{n}'; known: {', '.join(NAMES)}")
        return names

    only, skip = pick(args.only, "--only"), pick(args.skip, "--skip")
    args.selected = [b for b in SUITE if (not only or any(b.name.startswith(n) for n in only))
                     and not any(b.name.startswith(n) for n in skip)]
    return args


def command(b: Bench, quick: bool, results: Path) -> list[str]:
    argv = [sys.executable, str(HERE / b.script), *(b.quick if quick else b.full)]
    if b.out_flag:
        argv += ["--out", str(results / f"{b.name}.json")]
    return argv


def run_one(b: Bench, quick: bool, results: Path) -> dict[str, Any]:
    env = {**os.environ, "PRUNESEARCH_BENCH_RESULTS": str(results), "PYTHONPATH": str(ROOT)}
    argv = command(b, quick, results)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"name": b.name, "seconds": round(wall, 1), "load_avg_1m_at_start": round(load, 2),
                           "returncode": proc.returncode}
    path = results / f"{b.name}.json"
    if proc.returncode == 0 and path.is_file():
        doc = json.loads(path.read_text())
        print(json.dumps(doc), flush=True)  # the one JSON line (train_throughput prints indented JSON)
        try:
            row["headline"] = b.headline(doc)
        except (KeyError, TypeError, ValueError) as e:
            row["headline"] = f"(result without the expected keys: {e})"
    else:
        tail = (proc.stdout[-1500:] + proc.stderr[-1500:]).strip().splitlines()
        row["headline"] = "FAILED: " + (tail[-1] if tail else f"exit {proc.returncode}")
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.results:
        results = Path(args.results)
    elif args.quick:
        results = Path(tempfile.gettempdir()) / "prunesearch-bench-quick-XXXX" if args.list else \
            Path(tempfile.mkdtemp(prefix="prunesearch-bench-quick-"))
    else:
        results = HERE / "results"
    if args.list:
        for b in args.selected:
            print(f"{b.name}: " + " ".join(command(b, args.quick, results)))
        return 0
    results.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"benchmarks: {', '.join(b.name for b in args.selected)} -> {results} "
          f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; shared machine: times are noisy)",
          file=sys.stderr, flush=True)
    for b in args.selected:
        print(f"[{b.name}] running ...", file=sys.stderr, flush=True)
        rows.append(run_one(b, args.quick, results))
    width = max((len(r["name"]) for r in rows), default=4)
    print("\nsummary" + (" (--quick: small sizes, not the committed numbers)" if args.quick else ""))
    print(f"{'benchmark':<{width}}  {'seconds':>8}  {'load':>5}  result")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['seconds']:>8.1f}  {r['load_avg_1m_at_start']:>5.2f}  {r['headline']}")
    print(f"results: {results}")
    return 0 if all(r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
