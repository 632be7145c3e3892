"""``prunesearch rethink``: the paper's fine-tune vs Scratch-E vs Scratch-B comparison."""

from __future__ import annotations

import argparse
import sys
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
    "epochs per arm) and writes DIR/rethink.jsonl (one record per arm, appended as each finishes), "
    "DIR/rethink.md and the pruned architectures. Give the experiment as options or as a spec file "
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
    amount.add_argument("--budget", type=float, help="parameter budget: fraction of the base (<= 1) or a count (> 1)")
    amount.add_argument("--ratio", type=float, help="the method's own ratio (slimming's percent, magnitude's prune ratio, ...)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for method.prune (repeatable), e.g. --option threshold=0.02")
    p.add_argument("--seeds", type=int, help="number of seeds (the paper used 5; default 1, or the spec's)")
    p.add_argument("--epochs", type=int, help="base / Scratch-E epochs (default: the recipe's, 160 for paper); "
                   "fine-tuning gets a quarter of them unless --finetune-epochs")
    p.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (default: a quarter of --epochs)")
    p.add_argument("--recipe", help="base recipe: paper (default), fast, smoke or a YAML file")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: free cores)")
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
    from ..rethink import load_rethink_spec, spec_from_dict

    options = dict(_parse_option(o) for o in args.option)
    if args.spec is not None:
        for opt in ("model", "variant", "head", "dataset", "method", "budget", "ratio"):
            if getattr(args, opt) is not None:
                raise ConfigError(f"--{opt} conflicts with the spec file {args.spec}; edit the spec or drop the spec "
                                  "and give the experiment as options")
        spec = load_rethink_spec(args.spec, smoke=args.smoke)
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
        if changes:
            from ..rethink import check_spec

            spec = spec.replace(**changes)
            check_spec(spec, args.spec)
        return spec
    if args.smoke:
        raise ConfigError("--smoke needs a spec file, e.g. prunesearch rethink search_spaces/paper/l1norm-resnet56-b.yaml --smoke")
    if args.method is None:
        raise ConfigError("rethink needs --method (l1norm, slimming, magnitude, ...) or a spec file; see prunesearch rethink --help")
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    d: dict[str, Any] = {
        "model": args.model, "variant": args.variant, "head": args.head, "dataset": args.dataset or "cifar10",
        "method": args.method, "budget": args.budget, "ratio": args.ratio, "seeds": args.seeds or 1,
        "recipe": {"name": args.recipe or "paper", "overrides": {"epochs": args.epochs} if args.epochs else {}},
        "finetune_epochs": args.finetune_epochs, "method_options": options, "data_dir": args.data_dir,
    }
    if args.variant is None and args.model is None:
        raise ConfigError("rethink needs --model (e.g. resnet56) or --variant (e.g. resnet56-b)")
    return spec_from_dict({k: v for k, v in d.items() if v is not None}, where="rethink", require_kind=False)


def run(args: argparse.Namespace) -> int:
    from ..rethink import run_rethink
    from ._common import console, err_console, print_json

    for opt in ("epochs", "finetune_epochs", "threads"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise ConfigError(f"--{opt.replace('_', '-')} must be >= 1, got {value}")
    spec = _spec(args)
    out = Path(args.out) if args.out else Path("runs") / f"rethink-{spec.run_name}"
    con = err_console() if args.json else console()
    stream = sys.stderr if args.json else sys.stdout
    con.print(f"[bold]rethink[/] {spec.method} on {spec.label}, {spec.dataset}: seeds {list(spec.seeds)}, "
              f"recipe {spec.recipe}{' ' + str(spec.recipe_overrides) if spec.recipe_overrides else ''} -> {out}",
              highlight=False, soft_wrap=True)
    if stream.isatty():
        result = _run_with_progress(con, spec, out, args)
    else:
        result = run_rethink(spec, out, device=args.device, threads=args.threads, on_event=_plain_printer(stream))
    if args.json:
        print_json({"out": str(out), "files": {k: str(v) for k, v in result.files.items()},
                    "records": [r.to_dict() for r in result.records]})
        return 0
    from ..report.terminal import table_rich

    for t in result.tables:
        con.print(table_rich(t))
    if any(r.dataset.startswith("synthetic") for r in result.records):
        con.print("[yellow]SYNTHETIC DATA[/]: these numbers only show the pipeline works", highlight=False)
    con.print(f"records {result.files['rethink.jsonl']}  table {result.files['rethink.md']}", highlight=False, soft_wrap=True)
    return 0


def _describe(ev) -> str:
    r = ev.record
    if r is None:
        return f"seed {ev.seed} {ev.arm}"
    acc = "failed: " + (r.fail_reason or "?") if r.best_acc is None else f"best {100 * r.best_acc:.2f}%"
    return (f"seed {r.seed} {r.arm}: {acc}  ({r.epochs} epochs, lr {r.lr:g}, {r.params:,} params, "
            f"{r.macs:,} MACs{', ' + ev.message if ev.message else ''})")


def _plain_printer(stream):
    def on_event(ev) -> None:
        if ev.kind == "arm-start":
            print(f"seed {ev.seed} {ev.arm}: training {ev.epochs} epochs", file=stream, flush=True)
        elif ev.kind == "arm-end":
            print(_describe(ev), file=stream, flush=True)
        elif ev.kind == "skip":
            print(_describe(ev) + " [recorded earlier]", file=stream, flush=True)
        elif ev.kind == "pruned":
            print(ev.message, file=stream, flush=True)
        elif ev.kind == "progress" and ev.progress.kind == "epoch" and ev.progress.epochs >= 10:
            p = ev.progress
            acc = f" test {100 * p.test_acc:.2f}%" if p.test_acc is not None else ""
            print(f"  {ev.arm} epoch {p.epoch}/{p.epochs} loss {p.loss:.4f}{acc}", file=stream, flush=True)
    return on_event


def _run_with_progress(con, spec, out, args):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..rethink import run_rethink

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=con, transient=False) as bar:
        task = None

        def on_event(ev) -> None:
            nonlocal task
            if ev.kind == "arm-start":
                if task is not None:
                    bar.remove_task(task)
                task = bar.add_task(f"seed {ev.seed} {ev.arm}", total=ev.epochs, info="")
            elif ev.kind == "progress" and task is not None:
                p = ev.progress
                if p.kind == "epoch":
                    info = f"best {100 * p.best_acc:.2f}%" if p.best_acc is not None and p.best_acc >= 0 else ""
                    bar.update(task, completed=p.epoch, info=info)
                elif p.kind == "start":
                    bar.update(task, completed=p.epoch - 1)
            elif ev.kind in ("arm-end", "skip"):
                if task is not None and ev.kind == "arm-end":
                    bar.remove_task(task)
                    task = None
                bar.console.print(_describe(ev) + (" [recorded earlier]" if ev.kind == "skip" else ""), highlight=False)
            elif ev.kind == "pruned":
                bar.console.print(ev.message, highlight=False)

        return run_rethink(spec, out, device=args.device, threads=args.threads, on_event=on_event)
