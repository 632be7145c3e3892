"""`prunesearch arch list|count|scale|show`: architectures as exact data."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from ..arch import (
    FAMILIES,
    NAMED_VARIANTS,
    Architecture,
    count_params_macs,
    fit_budget,
    from_reference_cfg,
    get_family,
    load_architecture,
    resolve_model,
)
from ._common import console, print_json

NAME = "arch"
HELP = "list, count, scale and show architectures (exact params, MACs, FLOPs)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="arch_cmd", metavar="ACTION", required=True)
    sub.add_parser("list", help="families and named variants").add_argument("--json", action="store_true")

    def model_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("model", help="vgg16, resnet56, preresnet164, densenet40, ... or a named variant (resnet56-b)")
        q.add_argument("--head", choices=["slim", "l1"], help="VGG head (default slim; named L1 variants use l1)")
        q.add_argument("--num-classes", type=int, default=10)
        q.add_argument("--in-channels", type=int, default=3)
        q.add_argument("--input-size", type=int, default=32)
        q.add_argument("--json", action="store_true", help="print one JSON object")

    c = sub.add_parser("count", help="params, MACs and FLOPs of a model or a reference cfg")
    model_args(c)
    c.add_argument("--cfg", help='the reference code\'s width list, e.g. "32,64,M,128,..." (VGG) or one per block (ResNet)')
    s = sub.add_parser("scale", help="the uniformly scaled architecture at a parameter or MAC budget")
    model_args(s)
    s.add_argument("--budget", required=True, help="fraction of the base (<= 1) or an absolute count (> 1)")
    s.add_argument("--budget-kind", choices=["params", "macs"], default="params",
                   help="what the budget counts (default params)")
    sh = sub.add_parser("show", help="read an architecture file (YAML/JSON) and count it")
    sh.add_argument("file")
    sh.add_argument("--json", action="store_true")


def _model(args: argparse.Namespace) -> Architecture:
    from ..errors import ConfigError

    for opt in ("num_classes", "in_channels", "input_size"):
        if getattr(args, opt) < 1:
            raise ConfigError(f"--{opt.replace('_', '-')} must be >= 1, got {getattr(args, opt)}")
    return resolve_model(args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                         input_size=args.input_size, head=args.head)


def describe(arch: Architecture, **extra: Any) -> dict[str, Any]:
    params, macs = count_params_macs(arch)
    return {"model": arch.label, "family": arch.family, "depth": arch.depth, "head": arch.head,
            "params": params, "macs": macs, "flops": 2 * macs, "widths": list(arch.widths),
            "arch_id": arch.arch_id, **extra}


def _print(d: dict[str, Any], arch: Architecture) -> None:
    out = console()
    head = f" ({d['head']} head)" if d.get("head") else ""
    out.print(f"[bold]{d['model']}[/]{head}  arch_id {d['arch_id']}")
    out.print(f"  params {d['params']:,}   MACs {d['macs']:,}   FLOPs {d['flops']:,} (= 2 x MACs)")
    if "budget" in d:
        unit = "MACs" if d.get("budget_kind") == "macs" else "params"
        out.print(f"  budget {d['budget']:,} {unit}   off by {d['budget_error'] * 100:+.3f} %")
    slots = get_family(arch.family).slots(arch)
    if arch.family == "vgg":
        cfg = get_family("vgg").cfg(arch)  # type: ignore[attr-defined]
        out.print("  cfg " + ",".join(map(str, cfg)))
    else:
        kept = [f"{w}/{s.base_width}" for s, w in zip(slots, arch.widths)]
        out.print(f"  widths ({len(kept)} slots, kept/base): " + " ".join(kept))


def run(args: argparse.Namespace) -> int:
    if args.arch_cmd == "list":
        rows = []
        for name, fam in FAMILIES.items():
            for d in fam.named_depths:
                a = fam.base(d)
                p, m = count_params_macs(a)
                rows.append({"model": f"{name}{d}", "kind": "family", "rule": fam.depth_rule(), "params": p, "macs": m})
        for name, make in NAMED_VARIANTS.items():
            a = resolve_model(name)
            p, m = count_params_macs(a)
            rows.append({"model": name, "kind": "variant", "rule": f"{a.model_name} pruned (L1-norm, {a.head or 'one'} head)",
                         "params": p, "macs": m})
        if args.json:
            print_json(rows)
            return 0
        t = Table(title="prunesearch models (CIFAR, 10 classes, 32x32)")
        for col in ("model", "kind", "params", "MACs", "notes"):
            t.add_column(col, justify="right" if col in ("params", "MACs") else "left")
        for r in rows:
            t.add_row(r["model"], r["kind"], f"{r['params']:,}", f"{r['macs']:,}", r["rule"])
        console().print(t)
        return 0

    if args.arch_cmd == "show":
        arch = load_architecture(args.file)
        d = describe(arch)
    elif args.arch_cmd == "count":
        arch = _model(args)
        if args.cfg is not None:
            arch = from_reference_cfg(arch, args.cfg)
        d = describe(arch)
    else:  # scale
        base = _model(args)
        from ..arch.budget import check_fit
        from ..commands._common import parse_budgets

        (budget,) = parse_budgets(args.budget, args.budget_kind, option="--budget")
        fit = fit_budget(base, budget)
        check_fit(fit, base, budget)  # a budget the solver misses by more than 0.5 % is refused, never returned
        arch = fit.arch
        d = describe(arch, budget=fit.target, budget_kind=budget.kind, budget_error=fit.signed_error)
    if args.json:
        print_json(d)
    else:
        _print(d, arch)
    return 0
