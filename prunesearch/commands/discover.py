"""`prunesearch discover`: pruning as architecture search, end to end (the CLI of
:func:`prunesearch.pipelines.run_discover`).

Train the base with the method's regulariser, prune it at each budget, extract the width patterns,
fit the design rules, then train the pruned, the guided (rule) and the uniform architecture from
scratch at every budget and seed (same budget, one study) and print the parameter-efficiency
report. With no arguments: the embedded CPU demo.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from ..errors import ConfigError
from ._common import Display, check_positive, parse_budgets, print_json

NAME = "discover"
HELP = "train + prune a base, fit a design rule, and compare pruned / guided / uniform from scratch"
DESCRIPTION = (
    "Train MODEL on DATASET with METHOD's regulariser, prune it at each budget, extract the width "
    "patterns, fit the design rules (DIR/rule.yaml, DIR/rules/), save the architectures "
    "(DIR/architectures/), then train the pruned, the guided (rule) and the uniform architecture "
    "from scratch at every budget and seed (equal parameter or MAC counts, one Optuna study in DIR; "
    "choices on the validation split, the final number on the test split) and print the "
    "parameter-efficiency report; the report files go to DIR/report. With no arguments it runs the "
    "embedded CPU demo on mnist5k."
)

# The embedded default (see README "Quick start" for the measured wall time on 2 cores).
DEFAULTS = {"model": "resnet8", "dataset": "mnist5k", "method": "slimming", "budgets": "0.3,0.6",
            "recipe": "demo", "seeds": 3}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULTS["model"], help=f"base model (default {DEFAULTS['model']})")
    p.add_argument("--dataset", default=DEFAULTS["dataset"],
                   help=f"cifar10, cifar100, mnist5k, digits, imagefolder:PATH (default {DEFAULTS['dataset']})")
    p.add_argument("--method", default=DEFAULTS["method"],
                   help=f"pruning method: slimming, l1norm, magnitude, ... (default {DEFAULTS['method']})")
    p.add_argument("--budgets", default=DEFAULTS["budgets"],
                   help=f"budgets: fractions of the base (<= 1) or counts (default {DEFAULTS['budgets']})")
    p.add_argument("--budget-kind", choices=["params", "macs"], default="params",
                   help="what the budgets count: parameters (default) or MACs (compute-matched arms)")
    p.add_argument("--seed", type=int, default=0, help="seed of the base training; the arms use seeds SEED.. "
                   "SEED+SEEDS-1 (default 0)")
    p.add_argument("--seeds", type=int, default=DEFAULTS["seeds"],
                   help=f"from-scratch seeds per arm and budget, paired across arms (default {DEFAULTS['seeds']})")
    p.add_argument("--sparsity", default=None,
                   help="strength of the method's sparsity penalty (slimming's s): a number, or 'auto' (default: "
                        "auto, scaled to the run's learning-rate sum so the penalty can slim)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--recipe", default=None, help=f"training recipe for the base and the arms (default {DEFAULTS['recipe']})")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out (stratified, seeded) for validation (default 0.1)")
    p.add_argument("--rule-kind", choices=["stage", "depth", "sparsity"], default=None,
                   help="which fitted rule is DIR/rule.yaml and drives the guided arm (default: stage; sparsity "
                        "for unstructured methods)")
    p.add_argument("--workers", type=int, default=1, help="from-scratch trainings run at once (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per training (default: the cores idle now, shared between the workers)")
    p.add_argument("--data-dir", default=None, help="where the dataset files live (default $PRUNESEARCH_DATA_DIR)")
    p.add_argument("--out", default=None, help="run dir (default runs/discover-MODEL-DATASET-METHOD-TIME; "
                   "an existing discover run dir of the same model and method is resumed)")
    p.add_argument("--no-scratch", action="store_true", help="stop after fitting the rule (train no arms)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the summary) on stdout")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def default_out(model: str, dataset: str, method: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / _slug(f"discover-{model}-{dataset}-{method}-{stamp}")
    out, i = base, 2
    while out.exists():
        out = base.with_name(f"{base.name}-{i}")
        i += 1
    return out


def parse_sparsity(text: str | None) -> dict:
    if text is None:
        return {}
    if text.strip().lower() == "auto":
        return {"s": "auto"}
    try:
        s = float(text)
    except ValueError:
        raise ConfigError(f"--sparsity must be a number >= 0 or 'auto', got {text!r}") from None
    if not (s >= 0 and s < 1e3):
        raise ConfigError(f"--sparsity must be a number in [0, 1000) or 'auto', got {text!r}")
    return {"s": s}


def run(args: argparse.Namespace) -> int:
    from ._common import quiet_optuna

    quiet_optuna()
    import json

    from ..pipelines import DiscoverConfig, run_discover
    from ..train import get_recipe

    check_positive(args, "epochs", "seeds", "workers", "threads")
    check_positive(args, "seeds", limit=1000)
    if not 0 <= args.seed < 2**31 - 1000:
        raise ConfigError(f"--seed must be an integer in [0, 2**31 - 1000), got {args.seed}")
    budgets = parse_budgets(args.budgets, args.budget_kind)
    recipe = get_recipe(args.recipe or DEFAULTS["recipe"], epochs=args.epochs)
    out = Path(args.out).expanduser() if args.out else default_out(args.model, args.dataset, args.method)
    cfg = DiscoverConfig(out=out, model=args.model, dataset=args.dataset, method=args.method, budgets=tuple(budgets),
                         seed=args.seed, seeds=args.seeds, recipe=recipe, device=args.device, data_dir=args.data_dir,
                         val_fraction=args.val_fraction, rule_kind=args.rule_kind, scratch=not args.no_scratch,
                         regularizer=parse_sparsity(args.sparsity), workers=args.workers, threads=args.threads)
    t0 = time.perf_counter()
    with Display(args.json) as d:
        result = run_discover(cfg, on_event=d)
    summary = json.loads(result.summary_file.read_text()) if result.summary_file else {}
    if args.json:
        print_json(summary)
        return _exit_code(result)
    if result.study is not None:
        from ..report import build_report
        from ._render import report_renderables

        rep = build_report(result.study.result.records, planned_seeds=cfg.seeds,
                           title=f"{args.model} on {args.dataset}: {args.method} pruned vs guided "
                                 f"({result.primary} rule) vs uniform, trained from scratch")
        for r in report_renderables(rep):
            d.con.print(r)
        d.report_line(result.study.report)
    d.line(f"summary: {result.summary_file}   ({time.perf_counter() - t0:.0f}s)")
    return _exit_code(result)


def _exit_code(result) -> int:
    """0 when every planned training finished; 1 when some failed (the table says which)."""
    if result.study is None:
        return 0
    return 1 if result.study.result.incomplete else 0
