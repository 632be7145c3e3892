"""`prunesearch transfer --to MODEL`: apply a design rule found elsewhere to another model/dataset
and check, by training from scratch at equal budgets and paired seeds, whether it beats uniform
pruning (the CLI of :func:`prunesearch.pipelines.run_transfer`)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ._common import Display, check_positive, console, parse_budgets, print_json

NAME = "transfer"
HELP = "apply a design rule to another model/dataset and compare it with uniform pruning from scratch"
DESCRIPTION = (
    "Map a design rule (a rule.yaml, a `prunesearch discover` run dir, or a published variant such as "
    "resnet56-b or vgg16-a; default: the most recent discover run under ./runs) onto --to MODEL by "
    "stage, role and relative depth, at every budget, and train the transferred and the uniform "
    "architecture (same parameter or MAC count) from scratch over paired seeds as one Optuna study; "
    "prints the parameter-efficiency report and writes it. --dry-run trains nothing and prints both "
    "architectures per budget."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rule", default=None, help="rule file, discover run dir or published variant (resnet56-b, "
                   "vgg16-a, ...; default: the newest discover run in ./runs)")
    p.add_argument("--kind", choices=["stage", "depth", "sparsity"], default=None,
                   help="which fitted rule: in a run dir DIR/rules/KIND.yaml (default DIR/rule.yaml); for a variant "
                        "the rule kind fitted to it (default depth)")
    p.add_argument("--to", required=True, dest="to", metavar="MODEL", help="target model: resnet56, vgg16, densenet40, ...")
    p.add_argument("--dataset", default=None, help="target dataset (default: the rule's dataset, else cifar10)")
    p.add_argument("--budgets", default="0.2,0.4,0.6", help="fractions of the target (<= 1) or counts (default 0.2,0.4,0.6)")
    p.add_argument("--budget-kind", choices=["params", "macs"], default="params",
                   help="what the budgets count: parameters (default) or MACs")
    p.add_argument("--seeds", type=int, default=5, help="seeds per arm, paired across arms (default 5)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--storage", default=os.environ.get("PRUNESEARCH_STORAGE"),
                   help="postgresql+psycopg://... or a journal file (default $PRUNESEARCH_STORAGE, else RUN_DIR/journal.log)")
    p.add_argument("--recipe", default=None, help="training recipe: paper, fast, ... or a YAML file (default: paper "
                   "on a GPU, fast on a CPU)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out for validation (default 0.1)")
    p.add_argument("--workers", type=int, default=1, help="trainings run at once (default 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per training (default: the idle cores)")
    p.add_argument("--data-dir", default=None, help="where the dataset files live")
    p.add_argument("--out", default=None, help="run dir (default runs/transfer-RULE-to-MODEL-DATASET-TIME)")
    p.add_argument("--dry-run", action="store_true", help="train nothing: print the transferred and uniform architectures")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _short(widths: list[int], n: int = 16) -> str:
    text = ",".join(map(str, widths[:n]))
    return text + (f",... ({len(widths)} slots)" if len(widths) > n else "")


def run(args: argparse.Namespace) -> int:
    from ._common import quiet_optuna

    quiet_optuna()
    from ..pipelines import TransferConfig, plan_transfer, run_transfer

    check_positive(args, "epochs", "workers", "threads")
    check_positive(args, "seeds", limit=1000)
    budgets = parse_budgets(args.budgets, args.budget_kind)
    cfg = TransferConfig(to=args.to, rule=args.rule, kind=args.kind, dataset=args.dataset, budgets=tuple(budgets),
                         seeds=args.seeds, device=args.device, storage=args.storage, recipe=args.recipe,
                         epochs=args.epochs, data_dir=args.data_dir, val_fraction=args.val_fraction,
                         out=Path(args.out) if args.out else None, workers=args.workers, threads=args.threads)
    if args.dry_run:
        tp = plan_transfer(cfg)
        head = tp.head()
        if args.json:
            print_json({**head, "budgets": tp.rows})
            return 0
        con = console()
        con.print(f"[bold]transfer[/] {tp.rule.describe()} -> {args.to} on {tp.dataset} "
                  f"({head['base_params']:,} params); dry run, nothing trained", highlight=False, soft_wrap=True)
        for r in tp.rows:
            for arm in ("transferred", "uniform"):
                a = r[arm]
                con.print(f"  budget {r['budget']:g} {arm:<11} {a['params']:>12,} params {a['macs']:>14,} MACs "
                          f"({100 * a['budget_error']:+.2f}% of the {r['budget_kind']} target)  widths "
                          f"{_short(a['widths'])}", highlight=False, soft_wrap=True)
        return 0
    t0 = time.perf_counter()
    with Display(args.json) as d:
        res = run_transfer(cfg, on_event=d)
    study = res.study.result
    if args.json:
        from ..report import build_report, flat_table

        rep = build_report(study.records, planned_seeds=cfg.seeds)
        print_json({**res.plan.head(), "budgets": res.plan.rows, "run_dir": str(study.run_dir), "study": study.study,
                    "report": res.study.report, "table": flat_table(rep),
                    "incomplete": len(study.incomplete), "seconds": round(res.seconds, 3)})
        return 1 if study.incomplete else 0
    from ..report import build_report
    from ._render import report_renderables

    rep = build_report(study.records, planned_seeds=cfg.seeds,
                       title=f"{res.plan.rule.origin()} -> {args.to} on {res.plan.dataset}: transferred vs uniform, "
                             "trained from scratch")
    for r in report_renderables(rep):
        d.con.print(r)
    d.report_line(res.study.report)
    d.line(f"run dir: {study.run_dir}   ({time.perf_counter() - t0:.0f}s)")
    return 1 if study.incomplete else 0
