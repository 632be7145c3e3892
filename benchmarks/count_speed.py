"""Architectures counted per second: analytic (prunesearch.arch) vs building the module and summing
``numel`` (what tools that count by instantiating do). Both run in this process on the same random
architectures; the ratio is what matters on a noisy shared machine.

    python benchmarks/count_speed.py [--model resnet56] [--n 200] [--json]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunesearch.arch import count_params, get_family, resolve_model, scale_to_budget  # noqa: E402


def random_archs(model: str, n: int, seed: int = 0):
    base = resolve_model(model)
    slots = get_family(base.family).slots(base)
    rng = random.Random(seed)
    return [scale_to_budget(base, rng.uniform(0.2, 0.9), [rng.uniform(0.1, 1) for _ in slots]) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--n", type=int, default=200, help="architectures counted analytically")
    ap.add_argument("--n-build", type=int, default=20, help="architectures built as modules")
    ap.add_argument("--json", action="store_true", help="only the JSON line")
    args = ap.parse_args()

    import torch

    from benchmarks._machine import write_result
    from prunesearch.models import build_model

    archs = random_archs(args.model, max(args.n, args.n_build))
    t0 = time.perf_counter()
    analytic = [count_params(a) for a in archs[: args.n]]
    t_analytic = (time.perf_counter() - t0) / args.n
    t0 = time.perf_counter()
    built = [sum(p.numel() for p in build_model(a).parameters()) for a in archs[: args.n_build]]
    t_build = (time.perf_counter() - t0) / args.n_build
    assert built == analytic[: args.n_build], "analytic counts disagree with the modules"
    result = {
        "model": args.model,
        "analytic_per_s": round(1 / t_analytic, 1),
        "build_per_s": round(1 / t_build, 2),
        "speedup": round(t_build / t_analytic, 1),
        "counted_analytic": args.n,
        "counted_by_build": args.n_build,
    }
    write_result(f"count_speed_{args.model}", result)


if __name__ == "__main__":
    main()
