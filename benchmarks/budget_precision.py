"""Budget precision: how close every generator path lands to its parameter budget.

Draws N random (rule, target model, budget) triples: a rule (stage or depth kind) is fitted from
random pruned patterns of a random source model, then applied to a random target model at a random
budget in [0.05, 0.95] (all through the one budget solver). Also checks uniform pruning at the same
budgets. Prints max and mean relative error (goal: max <= 0.5 %).

    python benchmarks/budget_precision.py [--n 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunesearch.arch import count_params, min_params, get_family, resolve_budget, resolve_model, scale_to_budget  # noqa: E402

MODELS = ["vgg11", "vgg16", "vgg19", "resnet20", "resnet56", "resnet110", "preresnet56", "preresnet164", "densenet40"]


def random_rule(rng: random.Random):
    from prunesearch.rules import extract_pattern, fit_rule

    src = resolve_model(rng.choice(MODELS))
    slots = get_family(src.family).slots(src)
    stage_keep = [rng.uniform(0.1, 1.0) for _ in range(5)]
    patterns = []
    for level in sorted(rng.sample([0.2, 0.3, 0.4, 0.5, 0.6, 0.7], k=rng.randint(1, 3))):
        ratios = [stage_keep[s.stage] * rng.uniform(0.7, 1.3) for s in slots]
        pruned = scale_to_budget(src, level, ratios)
        patterns.append(extract_pattern(pruned, {"model": src.model_name, "method": "synthetic-random"}))
    return fit_rule(patterns, rng.choice(["stage", "depth"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from benchmarks._machine import write_result
    from prunesearch.rules import apply_rule

    rng = random.Random(args.seed)
    errors: dict[str, list[float]] = {"rule": [], "uniform": []}
    worst = None
    rules = [random_rule(rng) for _ in range(max(1, args.n // 20))]
    t0 = time.perf_counter()
    for _ in range(args.n):
        rule = rng.choice(rules)
        target = resolve_model(rng.choice(MODELS))
        # budgets inside the reachable range (PreResNet/DenseNet keep unpruned block outputs)
        lowest = min_params(target) / count_params(target)
        budget = rng.uniform(max(0.05, 1.2 * lowest), 0.95)
        want = resolve_budget(target, budget)
        for kind, arch in (("rule", apply_rule(rule, target, budget)), ("uniform", scale_to_budget(target, budget))):
            err = abs(count_params(arch) - want) / want
            errors[kind].append(err)
            if worst is None or err > worst[0]:
                worst = (err, kind, target.model_name, round(budget, 4))
    seconds = time.perf_counter() - t0
    result = {
        "triples": args.n,
        "rules": len(rules),
        "max_rel_error_rule": max(errors["rule"]),
        "mean_rel_error_rule": sum(errors["rule"]) / args.n,
        "max_rel_error_uniform": max(errors["uniform"]),
        "mean_rel_error_uniform": sum(errors["uniform"]) / args.n,
        "within_0.5pct": sum(e <= 0.005 for v in errors.values() for e in v) / (2 * args.n),
        "worst": {"rel_error": worst[0], "generator": worst[1], "target": worst[2], "budget": worst[3]},
        "solves_per_s": round(2 * args.n / seconds, 1),
        "goal": "max <= 0.005",
    }
    write_result("budget_precision", result)


if __name__ == "__main__":
    main()
