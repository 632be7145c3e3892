"""``prunesearch rethink``: the paper's fine-tune vs Scratch-E vs Scratch-B comparison."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError

NAME = "rethink"
HELP = "fine-tuned vs trained from scratch (Scratch-E, Scratch-B): the paper's own comparison"
DESCRIPTION = (
    "Train the base model (with the pruning method's regulariser), prune it, then train the pruned "
    "architecture three ways: fine-tuned from the inherited weights (lr 0.001, a quarter of the base "
    "epochs: 40 of 160), Scratch-E (same epochs as the base) and Scratch-B (epochs scaled by the "
    "base/pruned FLOP ratio); for weight-level methods (magnitude, lottery) also winning ticket vs "
    "random init at lr 0.1 and 0.01. Prints the paper-style table (mean ± std over seeds, params, MACs, "
    "epochs per arm). Every arm is a trial of one Optuna study in DIR (journal.log, or --storage): "
    "resumable, joinable by `prunesearch worker`, readable by `prunesearch report` and optuna-dashboard; "
    "the report goes to "
    "DIR/report (tables, CSV, figures). Give the experiment as options or as a spec file "
    "(search_spaces/paper/*.yaml; --smoke runs its tiny variant). Re-running into the same --out resumes."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", default=None, metavar="SPEC.yaml",
                   help="a rethink experiment spec (search_spaces/paper/*.yaml) instead of the options below")
    p.add_argument("--smoke", action="store_true", help="run the spec's tiny 'smoke:' variant (CI, seconds)")
    p.add_argument("--model", help="base model: vgg16, vgg19, resnet56, resnet110, preresnet164, densenet40, ...")
    p.add_argument("--variant", help="a predefined pruned target instead of --budget: vgg16-a, resnet56-a, resnet56-b, "
                   "resnet110-a, resnet110-b (methods l1norm, thinet, regression)")
    p.add_argument("--head", choices=["slim", "l1"], help="VGG head (default slim; the vgg16-a variant uses l1)")
    p.add_argument("--dataset", help="cifar10 (default), cifar100, mnist5k, digits, imagefolder:PATH, synthetic")
    p.add_argument("--method", help="pruning method: l1norm, slimming, magnitude, soft_filter, thinet, regression, "
                   "sss, lottery")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--budget", type=float, help="budget: fraction of the base (<= 1) or a count (> 1)")
    amount.add_argument("--ratio", type=float, help="the method's own ratio (slimming's percent, magnitude's prune ratio, ...)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for method.prune (repeatable), e.g. --option threshold=0.02")
    p.add_argument("--budget-kind", choices=["params", "macs"], default=None,
                   help="what --budget counts: parameters (default) or MACs")
    p.add_argument("--seeds", type=int, help="number of seeds (the paper used 5; default 5, or the spec's)")
    p.add_argument("--epochs", type=int, help="base / Scratch-E epochs (default: the recipe's, 160 for paper); "
                   "fine-tuning gets a quarter of them unless --finetune-epochs")
    p.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (default: a quarter of --epochs)")
    p.add_argument("--recipe", help="base recipe: paper (default), fast, smoke or a YAML file")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per training (default: the idle cores)")
    p.add_argument("--workers", type=int, default=1, help="trainings run at once (default 1)")
    p.add_argument("--storage", default=os.environ.get("PRUNESEARCH_STORAGE"),
                   help="postgresql+psycopg://... or a journal file (default $PRUNESEARCH_STORAGE, else RUN_DIR/journal.log)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of the training set held out for validation (default 0.1, or the spec's)")
    p.add_argument("--retry-failed", action="store_true", help="re-enqueue failed trials")
    p.add_argument("--data-dir", help="where CIFAR lives (default $PRUNESEARCH_DATA_DIR or ~/.cache/prunesearch/data)")
    p.add_argument("--out", help="run folder (default runs/rethink-NAME); re-running into it resumes")
    p.add_argument("--json", action="store_true", help="print the records and file paths as one JSON object")


def _parse_option(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise ConfigError(f"--option '{text}' must be KEY=VALUE, e.g. --option threshold=0.02")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


def _spec(args: argparse.Namespace):
    from ..study import load_spec, rethink_plan_from_dict
    from ..study.spec import check_rethink_plan

    options = dict(_parse_option(o) for o in args.option)
    if args.seeds is not None and not 1 <= args.seeds <= 1000:
        raise ConfigError(f"--seeds must be an integer in [1, 1000], got {args.seeds}")
    if args.spec is not None:
        for opt in ("model", "variant", "head", "dataset", "method", "budget", "ratio"):
            if getattr(args, opt) is not None:
                raise ConfigError(f"--{opt} conflicts with the spec file {args.spec}; edit the spec or drop the spec "
                                  "and give the experiment as options")
        spec = load_spec(args.spec, smoke=args.smoke, kind="rethink")
        changes: dict[str, Any] = {}
        if options:
            changes["method_options"] = {**spec.method_options, **options}
        if args.seeds is not None:
            changes["seeds"] = tuple(range(args.seeds))
        if args.recipe is not None:
            changes["recipe"] = args.recipe
        if args.epochs is not None:
            changes["recipe_overrides"] = {**spec.recipe_overrides, "epochs": args.epochs}
        if args.finetune_epochs is not None:
            changes["finetune_epochs"] = args.finetune_epochs
        if args.data_dir is not None:
            changes["data_dir"] = args.data_dir
        if args.val_fraction is not None:
            changes["val_fraction"] = args.val_fraction
        if changes:
            spec = spec.replace(**changes)
            check_rethink_plan(spec, args.spec)
        return spec
    if args.smoke:
        raise ConfigError("--smoke needs a spec file, e.g. prunesearch rethink search_spaces/paper/l1norm-resnet56-b.yaml --smoke")
    if args.method is None:
        raise ConfigError("rethink needs --method (l1norm, slimming, magnitude, ...) or a spec file; see prunesearch rethink --help")
    d: dict[str, Any] = {
        "model": args.model, "variant": args.variant, "head": args.head, "dataset": args.dataset or "cifar10",
        "method": args.method, "budget": args.budget, "budget_kind": args.budget_kind, "ratio": args.ratio,
        "seeds": args.seeds or 5,
        "recipe": {"name": args.recipe or "paper", "overrides": {"epochs": args.epochs} if args.epochs else {}},
        "finetune_epochs": args.finetune_epochs, "method_options": options, "data_dir": args.data_dir,
        "val_fraction": args.val_fraction,
    }
    if args.variant is None and args.model is None:
        raise ConfigError("rethink needs --model (e.g. resnet56) or --variant (e.g. resnet56-b)")
    return rethink_plan_from_dict({k: v for k, v in d.items() if v is not None}, where="rethink", require_kind=False)


def run(args: argparse.Namespace) -> int:
    from ._common import quiet_optuna

    quiet_optuna()
    from ..pipelines import run_rethink
    from ._common import Display, check_positive, print_json
    from ._render import table_rich

    check_positive(args, "epochs", "finetune_epochs", "threads", "workers")
    spec = _spec(args)
    out = Path(args.out) if args.out else Path("runs") / f"rethink-{spec.run_name}"
    with Display(args.json) as d:
        result = run_rethink(spec, out, device=args.device, storage=args.storage, workers=args.workers,
                             threads=args.threads, retry_failed=args.retry_failed, on_event=d)
    incomplete = result.study.result.incomplete
    if args.json:
        print_json({"out": str(result.run_dir), "study": result.study.result.study, "report": result.study.report,
                    "records": [r.to_dict() for r in result.records], "incomplete": len(incomplete)})
        return 1 if incomplete else 0
    for t in result.tables:
        d.con.print(table_rich(t))
    if any(str(r.dataset).startswith("synthetic") for r in result.records):
        d.line("[yellow]SYNTHETIC DATA[/]: these numbers only show the pipeline works")
    d.report_line(result.study.report)
    d.line(f"run dir: {result.run_dir}")
    return 1 if incomplete else 0
