"""`prunesearch discover`: pruning as architecture search, end to end.

Train the base with the method's regulariser, prune it at each budget, extract the width patterns,
fit the design rules, then train the pruned, the guided (rule) and the uniform architecture from
scratch at every budget (same parameter count, as one study) and print the parameter-efficiency
table. With no arguments: the embedded CPU demo (a few minutes on two cores).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from ..errors import ConfigError
from ._common import console, err_console, make_out_dir, parse_budgets, print_json

NAME = "discover"
HELP = "train + prune a base, fit a design rule, and compare pruned / guided / uniform from scratch"
DESCRIPTION = (
    "Train MODEL on DATASET with METHOD's regulariser, prune it at each budget, extract the width "
    "patterns, fit the design rules (DIR/rule.yaml, DIR/rules/), save the architectures "
    "(DIR/architectures/), then train the pruned, the guided (rule) and the uniform architecture "
    "from scratch at every budget (equal parameter counts, one Optuna study in DIR) and print the "
    "parameter-efficiency table; the report goes to DIR/report. With no arguments it runs the "
    "embedded CPU demo (resnet8 on mnist5k, about 2 minutes on 2 cores)."
)

# The embedded default. Measured (`time prunesearch discover`, 2-core CPU shared with other jobs at
# load average 5.5): 2 min 9 s wall, 74 s CPU; the 7 trainings (base + 3 arms x 2 budgets) reach
# 71-88 % on mnist5k. resnet20 with 3 epochs took 5 min under the same load: too close to the limit.
DEFAULTS = {"model": "resnet8", "dataset": "mnist5k", "method": "slimming", "budgets": "0.3,0.6",
            "recipe": "fast", "epochs": 4}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULTS["model"], help=f"base model (default {DEFAULTS['model']})")
    p.add_argument("--dataset", default=DEFAULTS["dataset"],
                   help=f"cifar10, cifar100, mnist5k, digits, imagefolder:PATH (default {DEFAULTS['dataset']})")
    p.add_argument("--method", default=DEFAULTS["method"],
                   help=f"pruning method: slimming, l1norm, magnitude, ... (default {DEFAULTS['method']})")
    p.add_argument("--budgets", default=DEFAULTS["budgets"],
                   help=f"parameter budgets: fractions of the base (<= 1) or counts (default {DEFAULTS['budgets']})")
    p.add_argument("--seed", type=int, default=0, help="seed of the base training and of the from-scratch runs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--recipe", default=None, help=f"training recipe for the base and the arms (default {DEFAULTS['recipe']})")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"override the recipe's epochs (default {DEFAULTS['epochs']} with the default recipe)")
    p.add_argument("--rule-kind", choices=["stage", "depth", "sparsity"], default=None,
                   help="which fitted rule is DIR/rule.yaml and drives the guided arm (default: stage; sparsity "
                        "for unstructured methods)")
    p.add_argument("--data-dir", default=None, help="where the dataset files live (default $PRUNESEARCH_DATA_DIR)")
    p.add_argument("--out", default=None, help="run dir (default runs/discover-MODEL-DATASET-METHOD-TIME; "
                   "an existing discover run dir is resumed)")
    p.add_argument("--no-scratch", action="store_true", help="stop after fitting the rule (train no arms)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the summary) on stdout")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def _run_dir(args: argparse.Namespace, model_name: str) -> Path:
    if args.out:
        out = Path(args.out).expanduser()
        summary = out / "summary.json"
        if summary.is_file():
            import json

            try:
                prev = json.loads(summary.read_text())
            except ValueError:
                prev = {}
            want = {"model": model_name, "method": args.method}
            have = {k: prev.get(k) for k in want}
            if have != want:
                raise ConfigError(f"--out {out} holds a discover run of {have['model']}/{have['method']}, not "
                                  f"{model_name}/{args.method}; give a new --out (runs are never overwritten)")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / _slug(f"discover-{args.model}-{args.dataset}-{args.method}-{stamp}")
    out, i = base, 2
    while out.exists():
        out = base.with_name(f"{base.name}-{i}")
        i += 1
    return out


class _Display:
    """Progress: rich bars on a terminal, plain lines otherwise (stderr when stdout carries JSON)."""

    def __init__(self, json_mode: bool) -> None:
        self.con = err_console() if json_mode else console()
        stream = sys.stderr if json_mode else sys.stdout
        self.tty = stream.isatty()

    def line(self, text: str) -> None:
        self.con.print(text, highlight=False, soft_wrap=True)

    def train_base(self, fn, epochs: int):
        if not self.tty:
            def plain(event) -> None:
                if event.kind == "epoch":
                    acc = f" test {100 * event.test_acc:.2f}%" if event.test_acc is not None else ""
                    self.line(f"  base epoch {event.epoch}/{event.epochs} loss {event.loss:.4f}{acc} "
                              f"{event.images_per_second:.0f} img/s {event.elapsed:.0f}s")
            return fn(plain)
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cols = [TextColumn("  base epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("acc {task.fields[acc]}"),
                TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*cols, console=self.con) as bar:
            task = bar.add_task("base", total=None, epoch=0, epochs=epochs, loss="-", acc="-")

            def on_progress(event) -> None:
                if event.kind == "start":
                    bar.update(task, total=event.epochs * event.steps, completed=(event.epoch - 1) * event.steps,
                               epoch=event.epoch)
                elif event.kind in ("step", "epoch"):
                    f = dict(epoch=event.epoch, loss=f"{event.loss:.3f}")
                    if event.best_acc is not None and event.best_acc >= 0:
                        f["acc"] = f"{100 * event.best_acc:.2f}%"
                    bar.update(task, completed=(event.epoch - 1) * event.steps + event.step, **f)

            return fn(on_progress)

    def study(self, fn, total: int):
        if not self.tty:
            def plain(kind: str, info: dict[str, Any]) -> None:
                if kind == "start":
                    self.line(f"  training {info['slot'].split('@')[0]} ({info['params']:,} params)")
                elif kind == "done":
                    self.line(f"    best {100 * info['best_acc']:.2f}% in {info['train_seconds']:.1f}s")
                elif kind == "cached":
                    self.line(f"  {info['slot'].split('@')[0]}: same architecture as trial {info['from']} (cached)")
                elif kind == "failed":
                    self.line(f"  [red]trial {info['trial']} failed[/]: {escape(str(info['reason']))}")
            return fn(plain)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        cols = [TextColumn("  arms"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[now]}"),
                TimeElapsedColumn()]
        with Progress(*cols, console=self.con) as bar:
            task = bar.add_task("arms", total=total, now="")

            def on_event(kind: str, info: dict[str, Any]) -> None:
                slot = str(info.get("slot", "")).split("@")[0]
                if kind == "start":
                    bar.update(task, now=f"training {slot} ({info['params']:,} params)")
                elif kind == "done":
                    bar.advance(task)
                    bar.console.print(f"  {slot}: best {100 * info['best_acc']:.2f}% in {info['train_seconds']:.1f}s",
                                      highlight=False)
                elif kind == "cached":
                    bar.advance(task)
                    bar.console.print(f"  {slot}: same architecture as trial {info['from']} (cached)", highlight=False)
                elif kind == "failed":
                    bar.advance(task)
                    bar.console.print(f"  [red]trial {info['trial']} failed[/]: {escape(str(info['reason']))}")

            return fn(on_event)


def efficiency_table(records: list, generators: tuple[str, ...] = ("pruned", "guided", "transferred", "uniform")) -> list[dict[str, Any]]:
    """Records -> rows {budget, generator, params, macs, best_acc (mean), std, seeds, vs_uniform}."""
    import statistics

    groups: dict[tuple[float, str], list] = {}
    for r in records:
        if r.state == "complete" and r.best_acc is not None:
            groups.setdefault((float(r.budget), r.generator), []).append(r)
    rows = []
    for b in sorted({k[0] for k in groups}):
        uni = groups.get((b, "uniform"))
        uni_acc = statistics.fmean(r.best_acc for r in uni) if uni else None
        order = [g for g in generators if (b, g) in groups] + sorted(g for bb, g in groups if bb == b and g not in generators)
        for g in order:
            rs = groups[(b, g)]
            accs = [r.best_acc for r in rs]
            mean = statistics.fmean(accs)
            rows.append({
                "budget": b, "generator": g, "params": rs[0].params, "param_budget": rs[0].param_budget,
                "macs": rs[0].macs, "best_acc": mean, "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "seeds": len(accs), "vs_uniform": None if uni_acc is None or g == "uniform" else mean - uni_acc,
                "arch_id": rs[0].arch_id,
            })
    return rows


def print_table(rows: list[dict[str, Any]], title: str, synthetic: bool = False) -> None:
    from rich.table import Table

    t = Table(title=title + (" [SYNTHETIC DATA]" if synthetic else ""))
    for col, just in (("budget", "right"), ("arm", "left"), ("params", "right"), ("vs budget", "right"),
                      ("MACs", "right"), ("best acc", "right"), ("vs uniform", "right"), ("seeds", "right")):
        t.add_column(col, justify=just)
    last = None
    for r in rows:
        if last is not None and r["budget"] != last:
            t.add_section()
        last = r["budget"]
        acc = f"{100 * r['best_acc']:.2f}%" + (f" ± {100 * r['std']:.2f}" if r["seeds"] > 1 else "")
        vs = "" if r["vs_uniform"] is None else f"{100 * r['vs_uniform']:+.2f}"
        off = (r["params"] - r["param_budget"]) / r["param_budget"] if r.get("param_budget") else 0.0
        t.add_row(f"{r['budget']:g}", r["generator"], f"{r['params']:,}", f"{100 * off:+.2f}%", _si(r["macs"]),
                  acc, vs, str(r["seeds"]))
    console().print(t)


def _si(n: int) -> str:
    """12,239,488 -> '12.24M' (MACs; FLOPs = 2 x MACs)."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def rule_profile(rule) -> dict[str, list[tuple[float, float]]]:
    """{param fraction: [(relative position, value)]} of a rule's pooled profile (for the report)."""
    out = {}
    for lv in rule.levels:
        vals = lv.values["all"]
        n = len(vals)
        out[f"{lv.param_fraction:.3g}"] = [((i + 0.5) / n, v) for i, v in enumerate(vals)]
    return out


def run(args: argparse.Namespace) -> int:
    from ..arch import count_params_macs
    from ..data import load_dataset
    from ..prune import get_method
    from ..rules.discovery import base_for, budget_tag, discover_rules, needs_target, train_base, write_summary
    from ..train import get_recipe, resolve_device

    budgets = parse_budgets(args.budgets)
    if len(set(budgets)) != len(budgets):
        raise ConfigError(f"--budgets lists a budget twice ({args.budgets}); remove the duplicate")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
    method = get_method(args.method)
    kinds = ("stage", "depth") if method.structured else ("sparsity",)
    if args.rule_kind is not None and args.rule_kind not in kinds:
        raise ConfigError(f"--rule-kind {args.rule_kind} does not fit {args.method} ("
                          f"{'structured' if method.structured else 'unstructured'}); choose {' or '.join(kinds)}")
    if getattr(method, "prunes", "channels") == "blocks":
        raise ConfigError(f"{args.method} prunes whole blocks (depth), not widths, so no width pattern or design rule "
                          "can be fitted from it; use slimming, l1norm, soft_filter or magnitude")
    recipe_name = args.recipe or DEFAULTS["recipe"]
    epochs = args.epochs if args.epochs is not None else (DEFAULTS["epochs"] if args.recipe is None else None)
    recipe = get_recipe(recipe_name, epochs=epochs)
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    base = base_for(args.model, data)
    from ..generators import get_generator

    for b in budgets:  # an unreachable budget fails before anything trains (BudgetError names the range)
        get_generator("uniform").generate(base, b)
    from ..prune.base import check_request

    # a method that cannot prune this model says so now, not after the base has trained
    check_request(method, base, budgets[0], None, data=data)
    out = _run_dir(args, base.model_name)
    make_out_dir(out)  # private (0o700) and writable, before anything trains

    d = _Display(args.json)
    params, macs = count_params_macs(base)
    t0 = time.perf_counter()
    d.line(f"[bold]discover[/]: {args.model} ({params:,} params, {macs:,} MACs) on {data.describe()}")
    d.line(f"  method {args.method}, budgets {', '.join(f'{b:g}' for b in budgets)}, recipe {recipe.name} "
           f"({recipe.epochs} epochs), device {device}, seed {args.seed} -> {out}")

    def base_run(budget=None):
        ckpt = out / "base" if budget is None else out / "base" / budget_tag(budget)
        return d.train_base(lambda cb: train_base(base, args.method, data, recipe=recipe, device=str(device),
                                                  seed=args.seed, on_progress=cb, checkpoint_dir=ckpt, budget=budget),
                            recipe.epochs)

    if needs_target(method, base):  # e.g. soft filter pruning prunes while it trains: one base per budget
        d.line(f"[bold]1/3[/] training one base per budget with the {args.method} regulariser")
        trained_by_budget = {}
        for b in budgets:
            trained_by_budget[b] = base_run(b)
            d.line(f"  base for {b:g}: best {100 * trained_by_budget[b].best_acc:.2f}% "
                   f"in {trained_by_budget[b].train_seconds:.1f}s")
        trained = trained_by_budget[budgets[0]]
        to_prune = trained_by_budget
    else:
        d.line(f"[bold]1/3[/] training the base with the {args.method} regulariser")
        trained = to_prune = base_run()
        d.line(f"  base: best {100 * trained.best_acc:.2f}% in {trained.train_seconds:.1f}s")

    d.line("[bold]2/3[/] pruning at each budget, fitting the rules")

    def on_step(kind: str, info: dict[str, Any]) -> None:
        if kind == "pruned":
            p = count_params_macs(info["arch"])[0]
            ratio = f", global ratio {info['ratio']:.3f}" if info.get("ratio") is not None else ""
            d.line(f"  budget {info['budget']:g}: pruned to {p:,} params{ratio}")

    disc = discover_rules(to_prune, budgets, out, primary=args.rule_kind, on_step=on_step)
    disc.seconds["base"] = (sum(t.train_seconds for t in to_prune.values()) if isinstance(to_prune, dict)
                            else trained.train_seconds)
    rule = disc.rule
    for lv in rule.levels:
        vals = " ".join(f"{v:.2f}" for v in lv.values["all"])
        d.line(f"  {rule.kind} rule at params x {lv.param_fraction:.3f}: {vals}")
    d.line(f"  wrote {out / 'rule.yaml'}, {out / 'rules'}, {out / 'architectures'}")

    table: list[dict[str, Any]] | None = None
    report_paths: dict[str, str] | None = None
    if not args.no_scratch:
        table, report_paths = _scratch(args, d, disc, recipe, epochs, out, budgets, str(device))
    summary = write_summary(disc, table, run_dir=str(out), report=report_paths,
                            wall_seconds=round(time.perf_counter() - t0, 3))
    if args.json:
        import json

        print_json(json.loads(summary.read_text()))
        return 0
    if table:
        print_table(table, f"{args.model} on {data.name}: {args.method} pruned vs guided ({rule.kind} rule) vs uniform, "
                    "trained from scratch", synthetic=trained.synthetic)
    if report_paths:
        d.line(f"report: {report_paths.get('md') or next(iter(report_paths.values()))}")
    d.line(f"summary: {summary}   ({time.perf_counter() - t0:.0f}s)")
    return 0


def _scratch(args, d: _Display, disc, recipe, epochs, out: Path, budgets, device: str):
    from ..study import plan_from_dict, run_study

    d.line("[bold]3/3[/] training pruned, guided and uniform from scratch (one study, equal parameter counts)")
    run = str(out.resolve())
    overrides = {"epochs": epochs} if epochs is not None else {}
    spec = {
        "name": _slug(out.name)[:100],
        "description": f"prunesearch discover: {args.method} on {args.model}/{args.dataset}",
        "model": args.model, "dataset": args.dataset,
        "recipe": {"name": recipe.name if args.recipe is None else args.recipe, "overrides": overrides},
        "budgets": list(budgets), "seeds": [int(args.seed)],
        "generators": {
            "pruned": {"run": run, "method": args.method},
            "guided": {"rule": str(Path(run) / "rule.yaml"), "method": args.method, "dataset": disc.trained.dataset},
            "uniform": {},
        },
    }
    if disc.rule.domain == "density":  # unstructured: compare against uniform sparsity, not uniform width
        spec["generators"]["guided"]["sparse"] = True
        spec["generators"]["uniform"]["sparse"] = True
    if args.data_dir:
        spec["data_dir"] = args.data_dir
    plan = plan_from_dict(spec, where="discover", default_name=spec["name"])
    total = len(plan.budgets) * len(plan.generators) * len(plan.seeds)
    t0 = time.perf_counter()
    result = d.study(lambda cb: run_study(plan, out=out, device=device, data_dir=args.data_dir, on_event=cb,
                                          report=False), total)
    disc.seconds["scratch"] = time.perf_counter() - t0
    table = efficiency_table(result.records)
    report_paths = None
    try:
        from ..report import write_report

        paths = write_report(result.records, out / "report", rule_profile=rule_profile(disc.rule),
                             title=f"prunesearch discover: {args.method} on {args.model}/{disc.trained.dataset}",
                             planned_seeds=len(plan.seeds))
        report_paths = {k: str(v) for k, v in (paths or {}).items()}
    except ImportError:  # the report package is optional for discover itself
        pass
    return table, report_paths
