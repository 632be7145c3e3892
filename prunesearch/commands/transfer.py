"""`prunesearch transfer --to MODEL`: apply a design rule found elsewhere to another model/dataset
and check, by training from scratch at equal parameter counts, whether it beats uniform pruning."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._common import console, parse_budgets, print_json

NAME = "transfer"
HELP = "apply a design rule to another model/dataset and compare it with uniform pruning from scratch"
DESCRIPTION = (
    "Map a design rule (a rule.yaml, or a `prunesearch discover` run dir; default: the most recent "
    "discover run under ./runs) onto --to MODEL by stage position / relative depth, at every budget, "
    "and train the transferred and the uniform architecture (same parameter count) from scratch as one "
    "Optuna study; prints the parameter-efficiency table and writes the report. --dry-run trains "
    "nothing and prints both architectures per budget."
)

# Shapes of the built-in datasets (classes, channels, side) so that --dry-run needs no data files.
_SHAPES = {"cifar10": (10, 3, 32), "cifar100": (100, 3, 32), "mnist5k": (10, 1, 32), "digits": (10, 1, 32),
           "synthetic": (10, 3, 32)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rule", default=None, help="rule file or discover run dir (default: the newest discover run in ./runs)")
    p.add_argument("--kind", choices=["stage", "depth", "sparsity"], default=None,
                   help="in a run dir, which fitted rule (DIR/rules/KIND.yaml; default DIR/rule.yaml)")
    p.add_argument("--to", required=True, dest="to", metavar="MODEL", help="target model: resnet56, vgg16, densenet40, ...")
    p.add_argument("--dataset", default=None, help="target dataset (default: the rule's dataset, else cifar10)")
    p.add_argument("--budgets", default="0.2,0.4,0.6", help="fractions of the target's params (<= 1) or counts (default 0.2,0.4,0.6)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--storage", default=os.environ.get("PRUNESEARCH_STORAGE"),
                   help="postgresql+psycopg://... or a journal file (default $PRUNESEARCH_STORAGE, else RUN_DIR/journal.log)")
    p.add_argument("--recipe", default=None, help="training recipe: paper, fast, ... or a YAML file (default: paper "
                   "on a GPU, fast on a CPU)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--data-dir", default=None, help="where the dataset files live")
    p.add_argument("--out", default=None, help="run dir (default runs/transfer-RULE-to-MODEL-DATASET-TIME)")
    p.add_argument("--dry-run", action="store_true", help="train nothing: print the transferred and uniform architectures")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def latest_rule_source(runs: Path = Path("runs")) -> Path:
    """The newest discover run (by its rule.yaml's modification time) under ``runs``."""
    cands = [p for p in runs.glob("*/rule.yaml") if p.is_file()] if runs.is_dir() else []
    if not cands:
        raise ConfigError(f"no --rule given and no discover run with a rule.yaml under {runs}/; run "
                          "`prunesearch discover` first or give --rule FILE|RUN_DIR")
    return max(cands, key=lambda p: p.stat().st_mtime).parent


def _target(model: str, dataset: str, data_dir: str | None):
    from ..arch import resolve_model, unpruned

    shape = _SHAPES.get(dataset.lower())
    if shape is None:
        from ..data import load_dataset

        data = load_dataset(dataset, data_dir=data_dir)
        shape = (data.num_classes, data.in_channels, data.image_size)
    n, c, s = shape
    return unpruned(resolve_model(model, num_classes=n, in_channels=c, input_size=s))


def describe_arm(arch, budget: float, param_budget: int) -> dict[str, Any]:
    from ..arch import count_params_macs

    params, macs = count_params_macs(arch)
    d = {"widths": list(arch.widths), "params": params, "macs": macs, "flops": 2 * macs, "budget": budget,
         "param_budget": param_budget, "budget_error": (params - param_budget) / param_budget, "arch_id": arch.arch_id}
    if arch.densities is not None:
        d["densities"] = [round(x, 6) for x in arch.densities]
    return d


def run(args: argparse.Namespace) -> int:
    from ..arch import count_params, resolve_budget
    from ..generators import get_generator
    from ..rules import load_rule, rule_path

    budgets = parse_budgets(args.budgets)
    if len(set(budgets)) != len(budgets):
        raise ConfigError(f"--budgets lists a budget twice ({args.budgets}); remove the duplicate")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
    source = Path(args.rule).expanduser() if args.rule else latest_rule_source()
    rfile = rule_path(source, args.kind)
    rule = load_rule(rfile)
    dataset = args.dataset or (rule.datasets[0] if len(rule.datasets) == 1 else "cifar10")
    target = _target(args.to, dataset, args.data_dir)
    opts: dict[str, Any] = {"rule": str(rfile.resolve())}
    if rule.domain == "density":
        opts["sparse"] = True
    rows = []
    for b in budgets:
        pb = resolve_budget(target, b)
        tr = get_generator("transferred").generate(target, b, 0, **opts)
        un = get_generator("uniform").generate(target, b, 0, **({"sparse": True} if rule.domain == "density" else {}))
        rows.append({"budget": b, "param_budget": pb, "transferred": describe_arm(tr, b, pb),
                     "uniform": describe_arm(un, b, pb)})
    head = {"rule": str(rfile), "rule_kind": rule.kind, "origin": rule.origin(), "target": args.to,
            "dataset": dataset, "base_params": count_params(target)}

    if args.dry_run:
        if args.json:
            print_json({**head, "budgets": rows})
            return 0
        con = console()
        con.print(f"[bold]transfer[/] {rule.describe()} -> {args.to} on {dataset} "
                  f"({head['base_params']:,} params); dry run, nothing trained", highlight=False, soft_wrap=True)
        for r in rows:
            for arm in ("transferred", "uniform"):
                a = r[arm]
                con.print(f"  budget {r['budget']:g} {arm:<11} {a['params']:>12,} params ({100 * a['budget_error']:+.2f}%) "
                          f"{a['macs']:>14,} MACs  widths {_short(a['widths'])}", highlight=False, soft_wrap=True)
        return 0

    return _train(args, rule, rfile, dataset, budgets, head)


def _short(widths: list[int], n: int = 16) -> str:
    text = ",".join(map(str, widths[:n]))
    return text + (f",... ({len(widths)} slots)" if len(widths) > n else "")


def _train(args, rule, rfile: Path, dataset: str, budgets: list[float], head: dict[str, Any]) -> int:
    import re

    from ..study import plan_from_dict, run_study
    from .discover import _Display, efficiency_table, print_table, rule_profile

    from ..train import resolve_device

    device = resolve_device(args.device)  # a bad --device fails before anything is written
    recipe = args.recipe or ("paper" if device.type == "cuda" else "fast")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    src = re.sub(r"[^A-Za-z0-9._-]+", "-", "+".join(rule.models) or "rule")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"transfer-{src}-to-{args.to}-{dataset}-{stamp}").strip("-")[:100]
    if args.out:
        out = Path(args.out).expanduser()
    else:
        out, i = Path("runs") / name, 2
        while out.exists():
            out = Path("runs") / f"{name}-{i}"
            i += 1
    spec: dict[str, Any] = {
        "name": name if not args.out else re.sub(r"[^A-Za-z0-9._-]+", "-", out.name).strip("-.")[:100] or name,
        "description": f"prunesearch transfer: {rule.describe()} -> {args.to}/{dataset}",
        "model": args.to, "dataset": dataset,
        "recipe": {"name": recipe, "overrides": {"epochs": args.epochs} if args.epochs is not None else {}},
        "budgets": list(budgets), "seeds": int(args.seeds),
        "generators": {"transferred": {"rule": str(rfile.resolve()), **({"sparse": True} if rule.domain == "density" else {})},
                       "uniform": {"sparse": True} if rule.domain == "density" else {}},
    }
    if args.data_dir:
        spec["data_dir"] = args.data_dir
    plan = plan_from_dict(spec, where="transfer", default_name=spec["name"])
    d = _Display(args.json)
    d.line(f"[bold]transfer[/] {rule.describe()} -> {args.to} on {dataset}; budgets "
           f"{', '.join(f'{b:g}' for b in budgets)}, {args.seeds} seed(s), recipe {recipe}, device {device} -> {out}")
    t0 = time.perf_counter()
    total = len(plan.budgets) * len(plan.generators) * len(plan.seeds)
    result = d.study(lambda cb: run_study(plan, storage=args.storage, out=out, device=str(device),
                                          data_dir=args.data_dir, on_event=cb, report=False), total)
    table = efficiency_table(result.records)
    report_paths = None
    try:
        from ..report import write_report

        paths = write_report(result.records, Path(result.run_dir) / "report", rule_profile=rule_profile(rule),
                             title=f"prunesearch transfer: {rule.origin()} -> {args.to}/{dataset}",
                             planned_seeds=len(plan.seeds))
        report_paths = {k: str(v) for k, v in (paths or {}).items()}
    except ImportError:
        pass
    summary = {**head, "run_dir": str(result.run_dir), "study": result.study, "table": table,
               "report": report_paths, "wall_seconds": round(time.perf_counter() - t0, 3)}
    if args.json:
        print_json(summary)
        return 0
    print_table(table, f"{rule.origin()} rule ({rule.kind}) transferred to {args.to} on {dataset} vs uniform, "
                "trained from scratch")
    if report_paths:
        d.line(f"report: {report_paths.get('md') or next(iter(report_paths.values()))}")
    return 0
