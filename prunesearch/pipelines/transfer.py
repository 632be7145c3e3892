"""Transfer: apply a design rule found elsewhere (another model, dataset or a published variant) to
a target model, and check by training from scratch, at equal counts and paired seeds, whether it
beats uniform pruning.

Steps: ``plan`` (load the rule, resolve the target, generate both arms at every budget: what
``--dry-run`` shows) and ``compare`` (one study in the run dir, then the report).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arch import Architecture, Budget, count_params, count_params_macs
from ..errors import ConfigError
from .events import Event, EventSink, ignore


@dataclass(frozen=True)
class TransferConfig:
    to: str
    rule: str | None = None  # a rule file, a discover run dir, a published variant; None: newest run in ./runs
    kind: str | None = None
    dataset: str | None = None
    budgets: tuple[Budget, ...] = (Budget(0.2), Budget(0.4), Budget(0.6))
    seeds: int = 5
    device: str = "auto"
    storage: str | None = None
    recipe: str | None = None  # default: paper on a GPU, fast on a CPU
    epochs: int | None = None
    data_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    out: Path | None = None
    workers: int = 1
    threads: int | None = None


@dataclass
class TransferPlan:
    rule: Any  # DesignRule
    rule_source: str  # what the study's option points at: an absolute file path or a variant name
    target: Architecture
    dataset: str
    rows: list[dict[str, Any]]

    def head(self) -> dict[str, Any]:
        return {"rule": self.rule_source, "rule_kind": self.rule.kind, "origin": self.rule.origin(),
                "target": self.target.label, "dataset": self.dataset, "base_params": count_params(self.target)}


@dataclass
class TransferResult:
    plan: TransferPlan
    study: Any  # StudyRun
    seconds: float


def latest_rule_source(runs: Path = Path("runs")) -> Path:
    """The newest discover run (by its rule.yaml's modification time) under ``runs``."""
    cands = [p for p in runs.glob("*/rule.yaml") if p.is_file()] if runs.is_dir() else []
    if not cands:
        raise ConfigError(f"no --rule given and no discover run with a rule.yaml under {runs}/; run "
                          "`prunesearch discover` first or give --rule FILE|RUN_DIR|VARIANT")
    return max(cands, key=lambda p: p.stat().st_mtime).parent


def describe_arm(arch: Architecture, budget: Budget, target: int) -> dict[str, Any]:
    params, macs = count_params_macs(arch)
    achieved = budget.measure(arch)
    d = {"widths": list(arch.widths), "params": params, "macs": macs, "flops": 2 * macs, "budget": budget.value,
         "budget_kind": budget.kind, "target": target, "budget_error": (achieved - target) / target,
         "arch_id": arch.arch_id}
    if arch.densities is not None:
        d["densities"] = [round(x, 6) for x in arch.densities]
    return d


def plan_transfer(cfg: TransferConfig) -> TransferPlan:
    """The rule, the target and both arms at every budget (nothing trains)."""
    from ..generators import get_generator
    from ..resolve import resolve_base
    from ..rules import is_variant, load_rule, rule_path

    if cfg.rule is not None and is_variant(cfg.rule):
        rule = load_rule(cfg.rule, kind=cfg.kind)
        source = cfg.rule.strip().lower()
    else:
        src = Path(cfg.rule).expanduser() if cfg.rule else latest_rule_source()
        rfile = rule_path(src, cfg.kind)
        rule = load_rule(rfile)
        source = str(rfile.resolve())
    dataset = cfg.dataset or (rule.datasets[0] if len(rule.datasets) == 1 else "cifar10")
    target = resolve_base(cfg.to, dataset, cfg.dataset_options)
    sparse = rule.domain == "density"
    opts: dict[str, Any] = {"rule": source, **({"kind": cfg.kind} if cfg.kind and is_variant(source) else {})}
    if sparse:
        opts["sparse"] = True
    rows = []
    for b in cfg.budgets:
        t = b.resolve(target)
        tr = get_generator("transferred").generate(target, b, 0, **opts)
        un = get_generator("uniform").generate(target, b, 0, **({"sparse": True} if sparse else {}))
        rows.append({"budget": b.value, "budget_kind": b.kind, "target": t, "transferred": describe_arm(tr, b, t),
                     "uniform": describe_arm(un, b, t)})
    return TransferPlan(rule, source, target, dataset, rows)


def run_transfer(cfg: TransferConfig, on_event: EventSink = ignore) -> TransferResult:
    from ..report import rule_profile_from_rule
    from ..study import plan_from_dict
    from ..train import resolve_device
    from .study import run_study_pipeline

    device = resolve_device(cfg.device)  # a bad --device fails before anything is written
    tp = plan_transfer(cfg)
    rule = tp.rule
    recipe = cfg.recipe or ("paper" if device.type == "cuda" else "fast")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    src = re.sub(r"[^A-Za-z0-9._-]+", "-", "+".join(rule.models) or "rule")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"transfer-{src}-to-{cfg.to}-{tp.dataset}-{stamp}").strip("-")[:100]
    if cfg.out is not None:
        out = Path(cfg.out).expanduser()
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", out.name).strip("-.")[:100] or name
    else:
        out, i = Path("runs") / name, 2
        while out.exists():
            out = Path("runs") / f"{name}-{i}"
            i += 1
    sparse = rule.domain == "density"
    transferred: dict[str, Any] = {"rule": tp.rule_source, **({"sparse": True} if sparse else {})}
    if cfg.kind and not Path(tp.rule_source).is_absolute():
        transferred["kind"] = cfg.kind
    spec: dict[str, Any] = {
        "name": name,
        "description": f"prunesearch transfer: {rule.describe()} -> {cfg.to}/{tp.dataset}",
        "model": cfg.to, "dataset": tp.dataset, "dataset_options": dict(cfg.dataset_options),
        "val_fraction": cfg.val_fraction,
        "recipe": {"name": recipe, "overrides": {"epochs": cfg.epochs} if cfg.epochs is not None else {}},
        "budgets": [b.value for b in cfg.budgets], "budget_kind": cfg.budgets[0].kind, "seeds": int(cfg.seeds),
        "generators": {"transferred": transferred, "uniform": {"sparse": True} if sparse else {}},
    }
    if cfg.data_dir:
        spec["data_dir"] = cfg.data_dir
    plan = plan_from_dict(spec, where="transfer", default_name=name)
    on_event(Event("message", text=f"transfer {rule.describe()} -> {cfg.to} on {tp.dataset}; budgets "
                                   f"{', '.join(b.label() for b in cfg.budgets)}, {cfg.seeds} seed(s), recipe {recipe}, "
                                   f"device {device} -> {out}"))
    t0 = time.perf_counter()
    run = run_study_pipeline(plan, storage=cfg.storage, out=out, device=str(device), workers=cfg.workers,
                             data_dir=cfg.data_dir, title=f"prunesearch transfer: {rule.origin()} -> {cfg.to}/{tp.dataset}",
                             rule_profile=rule_profile_from_rule(rule.to_dict()), threads=cfg.threads,
                             on_event=on_event)
    return TransferResult(tp, run, time.perf_counter() - t0)
