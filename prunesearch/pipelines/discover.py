"""Discover: pruning as architecture search, end to end, as named steps.

1. ``check``      everything that can be wrong fails before anything trains (model, method, budgets);
2. ``train-base`` the base with the method's regulariser (one per budget for methods that prune while
                  training, e.g. soft filter pruning); checkpointed, a re-run resumes;
3. ``prune``      the method at every budget (it bisects its own ratio onto the budget);
4. ``diagnose``   did the regulariser sparsify? (slimming: share of |gamma| near zero, gap at the cut);
5. ``fit-rules``  width patterns -> design rules; files written (rule.yaml, rules/, patterns/,
                  architectures/);
6. ``compare``    pruned vs guided (the rule) vs uniform, trained from scratch at every budget and
                  seed with equal counts, as one Optuna study in the run dir (skipped with scratch=False);
7. ``report``     tables, curves and statistics in RUN/report; ``summary.json``.

Files a discovery writes into its run dir::

    rule.yaml                     the primary rule (stage for structured methods, sparsity otherwise)
    rules/<kind>.yaml             every fitted rule (stage, depth | sparsity)
    patterns/pruned-<tag>.yaml    the width (or density) pattern at each budget
    architectures/<gen>-<tag>.yaml pruned, guided and uniform architectures (save_architecture)
    base/last.pt                  the trained base (the trainer's checkpoint: a re-run resumes it)
    journal.log, run.json         the study of the from-scratch trainings
    summary.json                  what was done, the counts, the diagnostic and the table
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arch import Architecture, Budget, count_params_macs, save_architecture
from ..errors import ConfigError
from ..fileio import atomic_write_text
from ..rules import RULE_FILE, DesignRule, Provenance, WidthPattern, extract_pattern, fit_rules, save_pattern, save_rule
from .events import Event, EventSink, ignore

STEPS = ("check", "train-base", "prune", "diagnose", "fit-rules", "compare", "report")


@dataclass(frozen=True)
class DiscoverConfig:
    out: Path
    model: str = "resnet8"
    dataset: str = "mnist5k"
    method: str = "slimming"
    budgets: tuple[Budget, ...] = (Budget(0.3), Budget(0.6))
    seed: int = 0  # the base's training seed
    seeds: int = 3  # from-scratch seeds per arm and budget (paired across arms)
    recipe: Any = "fast"  # a Recipe or a recipe name: base and arms
    device: str = "auto"
    data_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    rule_kind: str | None = None
    scratch: bool = True
    regularizer: dict[str, Any] = field(default_factory=dict)  # e.g. {"s": 1e-4} or {"s": "auto"}
    storage: str | None = None
    workers: int = 1
    threads: int | None = None


@dataclass
class TrainedBase:
    """A base model trained with a pruning method's regulariser."""

    arch: Architecture
    method: str
    dataset: str
    seed: int
    recipe: dict[str, Any]
    model: Any  # nn.Module (trained, on the CPU)
    result: Any  # TrainResult
    regularizer: dict[str, Any]
    synthetic: bool = False
    budget: Budget | None = None  # the target the regulariser was given (methods that prune while training)


@dataclass
class DiscoverResult:
    out: Path
    base: Architecture
    trained: dict[Budget | None, TrainedBase]
    pruned: dict[Budget, Architecture]
    patterns: list[WidthPattern]
    rules: dict[str, DesignRule]
    primary: str
    diagnostic: dict[str, Any] | None
    architectures: dict[str, dict[Budget, Architecture]] = field(default_factory=dict)
    study: Any = None  # StudyRun of the comparison
    seconds: dict[str, float] = field(default_factory=dict)
    summary_file: Path | None = None

    @property
    def rule(self) -> DesignRule:
        return self.rules[self.primary]

    @property
    def first(self) -> TrainedBase:
        return next(iter(self.trained.values()))


def needs_target(method: Any, base: Architecture) -> bool:
    """True if ``method``'s regulariser needs the pruning target (soft filter pruning prunes while
    training): then the base is trained once per budget. Detected through the contract itself: such
    a regulariser refuses to be built without ``budget=``."""
    try:
        method.regularizer(base)
        return False
    except ConfigError:
        method.regularizer(base, budget=0.5)  # a family the method does not take raises here, too
        return True


def check_run_dir(out: Path, model: str, method: str) -> None:
    """A run dir holds one discovery (one model and method) or the command refuses."""
    summary = out / "summary.json"
    if not summary.is_file():
        return
    try:
        prev = json.loads(summary.read_text())
    except (OSError, ValueError):
        prev = {}
    have = {k: prev.get(k) for k in ("model", "method")} if isinstance(prev, dict) else {}
    if have != {"model": model, "method": method}:
        raise ConfigError(f"--out {out} holds a discover run of {have.get('model')}/{have.get('method')}, not "
                          f"{model}/{method}; give a new --out (runs are never overwritten)")


def run_discover(cfg: DiscoverConfig, on_event: EventSink = ignore) -> DiscoverResult:
    """Run (or resume) a discovery into ``cfg.out``; see the module docstring for the steps."""
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}

    def step(i: int, name: str, text: str) -> None:
        on_event(Event("step", name=name, text=text, data={"index": i, "total": len(STEPS) - (0 if cfg.scratch else 1)}))

    # 1. check ------------------------------------------------------------------------------
    from ..data import load_dataset
    from ..study.rundir import make_run_dir
    from ..generators import get_generator
    from ..prune import get_method
    from ..prune.base import check_request
    from ..resolve import resolve_base
    from ..train import get_recipe, resolve_device

    method = get_method(cfg.method)
    if method.prunes == "blocks":
        raise ConfigError(f"{cfg.method} prunes whole blocks (depth), not widths, so no width pattern or design rule "
                          "can be fitted from it; use slimming, l1norm, soft_filter or magnitude")
    kinds = ("stage", "depth") if method.structured else ("sparsity",)
    if cfg.rule_kind is not None and cfg.rule_kind not in kinds:
        raise ConfigError(f"--rule-kind {cfg.rule_kind} does not fit {cfg.method} ("
                          f"{'structured' if method.structured else 'unstructured'}); choose {' or '.join(kinds)}")
    recipe = get_recipe(cfg.recipe) if isinstance(cfg.recipe, str) else cfg.recipe
    device = resolve_device(cfg.device)
    base = resolve_base(cfg.model, cfg.dataset, cfg.dataset_options)
    for b in cfg.budgets:  # an unreachable budget fails before anything trains
        get_generator("uniform").generate(base, b)
    check_request(method, base, cfg.budgets[0], None, data=True)
    check_run_dir(cfg.out, base.model_name, cfg.method)
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction, **cfg.dataset_options)
    make_run_dir(cfg.out)  # only once the data is there: a missing dataset leaves nothing behind
    check_request(method, base, cfg.budgets[0], None, data=data)
    params, macs = count_params_macs(base)
    on_event(Event("message", text=f"discover: {cfg.model} ({params:,} params, {macs:,} MACs) on {data.describe()}"))
    if device.type == "cpu":
        from ..machine import threads_per_worker

        n = cfg.threads or threads_per_worker(cfg.workers)
        on_event(Event("message", text=f"  CPU threads per training: {n} ({'--threads' if cfg.threads else 'the cores idle now'}"
                                       f"{f', {cfg.workers} workers' if cfg.workers > 1 else ''})"))
    on_event(Event("message", text=f"  method {cfg.method}, budgets {', '.join(b.label() for b in cfg.budgets)}"
                                   f"{' (MACs)' if cfg.budgets[0].kind == 'macs' else ''}, recipe {recipe.name} "
                                   f"({recipe.epochs} epochs), {cfg.seeds} seed(s) per arm, device {device} -> {cfg.out}"))

    # 2. train-base -------------------------------------------------------------------------
    per_budget = needs_target(method, base)
    step(1, "train-base", f"training {'one base per budget' if per_budget else 'the base'} with the "
                          f"{cfg.method} regulariser")
    t = time.perf_counter()
    trained: dict[Budget | None, TrainedBase] = {}
    for b in (cfg.budgets if per_budget else (None,)):
        tb = train_base(base, method, data, recipe, cfg, device, b, on_event)
        trained[b] = tb
        label = "base" if b is None else f"base for {b.label()}"
        r = tb.result
        on_event(Event("message", text=f"  {label}: test {100 * r.final_acc:.2f}% (validation "
                                       f"{100 * (r.val_acc or 0):.2f}%) in {r.train_seconds:.1f}s"))
    seconds["base"] = time.perf_counter() - t

    chance = 1.0 / max(2, data.num_classes)
    for tb in trained.values():
        if tb.result.val_acc is not None and tb.result.val_acc < 2 * chance:
            on_event(Event("warning", text=(
                f"the base trained with the {cfg.method} regulariser reached only {100 * tb.result.val_acc:.1f} % "
                f"validation accuracy (chance {100 * chance:.0f} %): its pattern means nothing; lower the strength "
                "(--sparsity) or train longer")))
    # 3. prune ------------------------------------------------------------------------------
    step(2, "prune", "pruning at each budget")
    t = time.perf_counter()
    results = {}
    for b in cfg.budgets:
        tb = trained[b if per_budget else None]
        res = method.prune(tb.model, base, budget=b, data=data if method.needs_data else None)
        results[b] = res
        p = b.measure(res.arch)
        ratio = f", global ratio {res.ratio:.3f}" if res.ratio is not None else ""
        on_event(Event("message", text=f"  budget {b.label()}: pruned to {p:,} {b.unit}{ratio}"))
    seconds["prune"] = time.perf_counter() - t

    # 4. diagnose ---------------------------------------------------------------------------
    step(3, "diagnose", f"did the {cfg.method} regulariser sparsify?")
    diagnostic = None
    first = next(iter(trained.values()))
    if not per_budget:
        thresholds = {b.label(): r.threshold for b, r in results.items() if r.threshold is not None}
        diagnostic = method.diagnose(first.model, base, thresholds)
    if diagnostic is not None:
        diagnostic = {**diagnostic, "regularizer": first.regularizer}
        gaps = ", ".join(f"{k}: {v:.3f}" for k, v in diagnostic.get("gaps", {}).items())
        on_event(Event("message", text=f"  {100 * diagnostic['near_zero']:.1f} % of the scaling factors are below 1 % "
                                       f"of the largest; median {diagnostic['median']:.3g}"
                                       + (f"; gap at each cut (share of the largest): {gaps}" if gaps else "")))
        if not diagnostic["distinguishable"]:
            on_event(Event("warning", text=(
                f"the {cfg.method} pattern is not distinguishable from the unregularised start (only "
                f"{100 * diagnostic['near_zero']:.1f} % of factors near zero, median {diagnostic['median_ratio']:.2f} "
                "of its initial value): train longer or raise the strength (--sparsity)")))

    # 5. fit-rules --------------------------------------------------------------------------
    step(4, "fit-rules", "fitting the design rules")
    patterns = [pattern_of(trained[b if per_budget else None], results[b], b) for b in cfg.budgets]
    rules, primary = fit_rules(patterns, cfg.rule_kind)
    out = cfg.out
    for b, p in zip(cfg.budgets, patterns):
        save_pattern(p, out / "patterns" / f"pruned-{b.tag()}.yaml")
        save_architecture(results[b].arch, out / "architectures" / f"pruned-{b.tag()}.yaml", generator="pruned",
                          budget=b.value, budget_kind=b.kind, method=cfg.method, model=base.model_name,
                          dataset=data.name, global_ratio=p.provenance.global_ratio)
    for k, r in rules.items():
        save_rule(r, out / "rules" / f"{k}.yaml")
    save_rule(rules[primary], out / RULE_FILE)
    rule = rules[primary]
    for lv in rule.levels:
        vals = " ".join(f"{v:.2f}" for v in lv.values["all"])
        on_event(Event("message", text=f"  {rule.kind} rule at params x {lv.param_fraction:.3f}: {vals}"))
    sparse = rule.domain == "density"
    arms: dict[str, dict[Budget, Architecture]] = {"pruned": {}, "guided": {}, "uniform": {}}
    rule_file = str((out / RULE_FILE).resolve())
    for b in cfg.budgets:  # through the generators, so they equal what the study trains
        arms["pruned"][b] = get_generator("pruned").generate(base, b, 0, run=str(out.resolve()))
        arms["guided"][b] = get_generator("guided").generate(base, b, 0, rule=rule_file, sparse=sparse)
        arms["uniform"][b] = get_generator("uniform").generate(base, b, 0, sparse=sparse)
    for gen in ("guided", "uniform"):
        for b, a in arms[gen].items():
            save_architecture(a, out / "architectures" / f"{gen}-{b.tag()}.yaml", generator=gen, budget=b.value,
                              budget_kind=b.kind, method=cfg.method, model=base.model_name, dataset=data.name)
    on_event(Event("message", text=f"  wrote {out / RULE_FILE}, {out / 'rules'}, {out / 'architectures'}"))
    result = DiscoverResult(out, base, trained, {b: r.arch for b, r in results.items()}, patterns, rules, primary,
                            diagnostic, arms, seconds=seconds)

    # 6. compare ----------------------------------------------------------------------------
    if cfg.scratch:
        step(5, "compare", "training pruned, guided and uniform from scratch (one study, equal counts)")
        t = time.perf_counter()
        result.study = compare(cfg, result, recipe, data.name, str(device), on_event)
        seconds["scratch"] = time.perf_counter() - t
    result.summary_file = write_summary(result, cfg, recipe, data, wall_seconds=time.perf_counter() - t0)
    return result


def train_base(base: Architecture, method: Any, data: Any, recipe: Any, cfg: DiscoverConfig, device: Any,
               budget: Budget | None, on_event: EventSink) -> TrainedBase:
    """Train ``base`` with ``method``'s regulariser (after its ``prepare``); checkpointed under
    ``OUT/base`` (``OUT/base/<tag>`` per budget), so a re-run resumes; the model comes back on the CPU."""
    import torch

    from ..models import build_model
    from ..prune.base import regularizer_options
    from ..train import train

    kw = regularizer_options(method, cfg.regularizer, budget=budget, lr_sum=recipe.lr_sum(data.num_train))
    hook = method.regularizer(base, **kw)
    torch.manual_seed(int(cfg.seed))  # the initial weights (the trainer seeds only its own randomness)
    model = method.prepare(build_model(base), base)
    ckpt = cfg.out / "base" if budget is None else cfg.out / "base" / budget.tag()
    res = train(model, data, recipe, seed=int(cfg.seed), device=device, hooks=[hook] if hook is not None else [],
                checkpoint_dir=ckpt, threads=cfg.threads,
                on_progress=lambda ev: on_event(Event("train", name="base", progress=ev)))
    model.to("cpu")
    reg = {k: v for k, v in kw.items() if k not in ("lr_sum", "budget")}  # the target is recorded as the budget
    if hasattr(hook, "s"):
        reg["s"] = hook.s
    if "lr_sum" in kw:
        reg["lr_sum"] = kw["lr_sum"]
    return TrainedBase(base, method.name, data.name, int(cfg.seed), recipe.to_dict(), model, res, reg,
                       bool(data.synthetic), budget)


def pattern_of(trained: TrainedBase, result: Any, budget: Budget) -> WidthPattern:
    prov = Provenance(model=trained.arch.model_name, dataset=trained.dataset, method=trained.method,
                      budget=float(budget.value), global_ratio=getattr(result, "ratio", None), seed=trained.seed,
                      extra={"base_final_acc": round(trained.result.final_acc, 6), "budget_kind": budget.kind})
    return extract_pattern(result.arch, prov)


def compare(cfg: DiscoverConfig, disc: DiscoverResult, recipe: Any, dataset: str, device: str,
            on_event: EventSink):
    """The from-scratch comparison of the discovered arms, as one study in the run dir."""
    import re

    from ..study import plan_from_dict
    from .study import run_study_pipeline

    run = str(disc.out.resolve())
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", disc.out.name).strip("-.")[:100] or "discover"
    sparse = disc.rule.domain == "density"
    spec = {
        "name": name,
        "description": f"prunesearch discover: {cfg.method} on {cfg.model}/{dataset}",
        "model": cfg.model, "dataset": cfg.dataset, "dataset_options": dict(cfg.dataset_options),
        "val_fraction": cfg.val_fraction,
        "recipe": {"name": _builtin_name(recipe), "overrides": _overrides(recipe)},
        "budgets": [b.value for b in cfg.budgets], "budget_kind": cfg.budgets[0].kind,
        "seeds": list(range(int(cfg.seed), int(cfg.seed) + int(cfg.seeds))),
        "generators": {
            "pruned": {"run": run, "method": cfg.method},
            "guided": {"rule": str(Path(run) / RULE_FILE), "method": cfg.method, "dataset": dataset,
                       **({"sparse": True} if sparse else {})},
            "uniform": {"sparse": True} if sparse else {},
        },
    }
    if cfg.data_dir:
        spec["data_dir"] = cfg.data_dir
    plan = plan_from_dict(spec, where="discover", default_name=name)
    from ..report import rule_profile_from_rule

    return run_study_pipeline(plan, storage=cfg.storage, out=disc.out, device=device, workers=cfg.workers,
                              data_dir=cfg.data_dir, title=f"prunesearch discover: {cfg.method} on {cfg.model}/{dataset}",
                              rule_profile=rule_profile_from_rule(disc.rule.to_dict()), threads=cfg.threads,
                              on_event=on_event)


def _builtin_name(recipe: Any) -> str:
    from ..train.recipe import BUILTIN

    return recipe.name if recipe.name in BUILTIN else "paper"


def _overrides(recipe: Any) -> dict[str, Any]:
    """A Recipe as a built-in name's overrides (so the study spec can carry it)."""
    from ..train import get_recipe

    ref = get_recipe(_builtin_name(recipe)).to_dict()
    return {k: v for k, v in recipe.to_dict().items() if k not in ("name", "description", "extra") and ref.get(k) != v}


def summary_dict(res: DiscoverResult, cfg: DiscoverConfig, recipe: Any, data: Any, **extra: Any) -> dict[str, Any]:
    base_params, base_macs = count_params_macs(res.base)
    arms: dict[str, list] = {}
    for gen, per in res.architectures.items():
        for b, a in per.items():
            p, m = count_params_macs(a)
            arms.setdefault(gen, []).append({"budget": b.value, "budget_kind": b.kind, "params": p, "macs": m,
                                             "widths": list(a.widths), "arch_id": a.arch_id,
                                             **({"densities": list(a.densities)} if a.densities else {})})
    first = res.first
    r = first.result
    d: dict[str, Any] = {
        "model": res.base.model_name,
        "dataset": data.name,
        "synthetic": bool(data.synthetic),
        "method": cfg.method,
        "seed": cfg.seed,
        "seeds": cfg.seeds,
        "budgets": [b.value for b in cfg.budgets],
        "budget_kind": cfg.budgets[0].kind,
        "recipe": recipe.to_dict(),
        "split": data.split,
        "base": {"params": base_params, "macs": base_macs, "final_acc": r.final_acc, "val_acc": r.val_acc,
                 "best_acc": r.best_acc, "train_seconds": round(r.train_seconds, 3), "arch": res.base.to_dict(),
                 "regularizer": first.regularizer},
        "sparsity_diagnostic": res.diagnostic,
        "rule": {"file": RULE_FILE, "kind": res.primary, "files": {k: f"rules/{k}.yaml" for k in res.rules}},
        "patterns": [{"budget": b.value, "param_fraction": p.param_fraction, "global_ratio": p.provenance.global_ratio,
                      "file": f"patterns/pruned-{b.tag()}.yaml"} for b, p in zip(cfg.budgets, res.patterns)],
        "architectures": arms,
        "seconds": {k: round(v, 3) for k, v in res.seconds.items()},
    }
    if res.study is not None:
        from ..report import build_report, flat_table, report_to_dict

        study = res.study.result
        rep = build_report(study.records, planned_seeds=cfg.seeds)
        d.update(run_dir=str(res.out), study=study.study, report=res.study.report, table=flat_table(rep),
                 pooled=report_to_dict(rep)["pooled"], incomplete=len(study.incomplete))
    d.update(extra)
    return d


def write_summary(res: DiscoverResult, cfg: DiscoverConfig, recipe: Any, data: Any, **extra: Any) -> Path:
    p = res.out / "summary.json"
    d = summary_dict(res, cfg, recipe, data, **{k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()})
    atomic_write_text(p, json.dumps(d, indent=2, default=str) + "\n")
    return p
