"""Discovery: train a base with a pruning method's regulariser, prune it at budgets, extract the
width patterns and fit the design rules. Torch is imported here only (``prunesearch.rules`` itself
stays torch-free); the ``discover`` command and the ``pruned`` generator call these functions.

Files a discovery writes into its run dir (``write_discovery``)::

    rule.yaml                     the primary rule (stage for structured methods, sparsity otherwise)
    rules/<kind>.yaml             every fitted rule (stage, depth | sparsity)
    patterns/pruned-b<B>.yaml     the width (or density) pattern at each budget
    architectures/<gen>-b<B>.yaml pruned, guided and uniform architectures (save_architecture)
    base/last.pt                  the trained base (the trainer's checkpoint: a re-run resumes it)
    summary.json                  what was done, the counts, and (after training) the table
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arch import Architecture, atomic_write_text, count_params_macs, resolve_model, save_architecture, unpruned
from ..errors import ConfigError
from .pattern import Provenance, WidthPattern, extract_pattern, save_pattern
from .rule import RULE_FILE, DesignRule, apply_rule, fit_rule, save_rule


def budget_tag(budget: float) -> str:
    """0.25 -> 'b0.25', 250000 -> 'b250000' (file names)."""
    return f"b{budget:g}" if budget <= 1 else f"b{int(round(budget))}"


@dataclass
class TrainedBase:
    """A base model trained with a pruning method's regulariser."""

    arch: Architecture  # the unpruned architecture, shaped for the dataset
    method: str
    dataset: str
    seed: int
    recipe: dict[str, Any]
    model: Any  # nn.Module (trained, on the CPU)
    best_acc: float
    final_acc: float
    train_seconds: float
    synthetic: bool = False
    budget: float | None = None  # the target the regulariser was given (methods that prune while training)
    data: Any = field(default=None, repr=False)  # the Dataset (methods that read activations need it)


def base_for(model: str, data: Any) -> Architecture:
    """The unpruned ``model`` shaped for a Dataset (classes, channels, image size)."""
    arch = resolve_model(model, num_classes=data.num_classes, in_channels=data.in_channels, input_size=data.image_size)
    return unpruned(arch)


def needs_target(method: str | Any, base: Architecture) -> bool:
    """True if ``method``'s regulariser needs the pruning target (soft filter pruning prunes while
    training): then the base is trained once per budget. Detected through the contract itself: such a
    regulariser refuses to be built without ``budget=``."""
    from ..prune import get_method

    m = get_method(method) if isinstance(method, str) else method
    try:
        m.regularizer(base)
        return False
    except ConfigError:
        m.regularizer(base, budget=0.5)  # a family the method does not take raises here, too
        return True


def train_base(
    base: Architecture,
    method: str,
    dataset: str | Any,
    *,
    recipe: Any = "fast",
    epochs: int | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    seed: int = 0,
    on_progress: Callable[[Any], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    budget: float | None = None,
) -> TrainedBase:
    """Train ``base`` (unpruned) on ``dataset`` with ``method``'s regulariser (e.g. slimming's BN
    L1 penalty), after the method's ``prepare``; the model comes back on the CPU for pruning.
    ``budget``: the target, for methods whose regulariser needs it (see :func:`needs_target`)."""
    import torch

    from ..data import load_dataset
    from ..models import build_model
    from ..prune import get_method
    from ..train import get_recipe, train

    m = get_method(method)
    data = load_dataset(dataset, data_dir=data_dir) if isinstance(dataset, str) else dataset
    base = unpruned(base).replace(num_classes=data.num_classes, in_channels=data.in_channels,
                                  input_size=data.image_size)
    rec = get_recipe(recipe, epochs=epochs)
    hook = m.regularizer(base, budget=budget) if budget is not None else m.regularizer(base)
    torch.manual_seed(int(seed))  # the initial weights (the trainer seeds only its own randomness)
    model = m.prepare(build_model(base), base)
    res = train(model, data, rec, seed=int(seed), device=device, on_progress=on_progress,
                hooks=[hook] if hook is not None else [], checkpoint_dir=checkpoint_dir)
    model.to("cpu")
    if hasattr(model, "to"):
        model = model.to(memory_format=torch.contiguous_format)
    return TrainedBase(base, method, data.name, int(seed), rec.to_dict(), model, float(res.best_acc),
                       float(res.final_acc), float(res.train_seconds), bool(getattr(data, "synthetic", False)),
                       budget, data)


def prune_at(trained: TrainedBase, budget: float):
    """The method's PruneResult at ``budget`` (it bisects its own global ratio onto the budget)."""
    from ..prune import get_method

    m = get_method(trained.method)
    if getattr(m, "needs_data", False):
        return m.prune(trained.model, trained.arch, budget=budget, data=trained.data)
    return m.prune(trained.model, trained.arch, budget=budget)


def pattern_of(trained: TrainedBase, result: Any, budget: float) -> WidthPattern:
    prov = Provenance(model=trained.arch.model_name, dataset=trained.dataset, method=trained.method,
                      budget=float(budget), global_ratio=getattr(result, "ratio", None), seed=trained.seed,
                      extra={"base_best_acc": round(trained.best_acc, 6)})
    return extract_pattern(result.arch, prov)


@dataclass
class Discovery:
    """What ``discover_rules`` found (all of it also written into ``out``)."""

    out: Path
    trained: TrainedBase
    budgets: tuple[float, ...]
    pruned: dict[float, Architecture]
    patterns: list[WidthPattern]
    rules: dict[str, DesignRule]
    primary: str  # the kind written to rule.yaml
    architectures: dict[str, dict[float, Architecture]] = field(default_factory=dict)  # generator -> budget -> arch
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rule(self) -> DesignRule:
        return self.rules[self.primary]


def fit_rules(patterns: Sequence[WidthPattern], primary: str | None = None) -> tuple[dict[str, DesignRule], str]:
    """Every rule kind the patterns support, and which one is primary."""
    density = patterns[0].quantity == "density"
    kinds = ["sparsity"] if density else ["stage", "depth"]
    if primary is not None and primary not in kinds:
        raise ConfigError(f"rule kind '{primary}' cannot be fitted from {'density' if density else 'width'} patterns; "
                          f"choose {' or '.join(kinds)}")
    rules = {k: fit_rule(patterns, k) for k in kinds}
    return rules, primary or kinds[0]


def discover_rules(
    trained: TrainedBase | Mapping[float, TrainedBase],
    budgets: Sequence[float],
    out: str | Path,
    *,
    primary: str | None = None,
    on_step: Callable[[str, dict[str, Any]], None] | None = None,
) -> Discovery:
    """Prune the trained base at every budget (``trained``: one base, or one per budget for methods
    that prune while training), extract the patterns, fit the rules, and write the files."""
    from ..generators import get_generator

    per_budget = dict(trained) if isinstance(trained, Mapping) else {b: trained for b in budgets}
    trained = per_budget[budgets[0]]
    step = on_step or (lambda kind, info: None)
    out = Path(out)
    pruned: dict[float, Architecture] = {}
    patterns: list[WidthPattern] = []
    t0 = time.perf_counter()
    for b in budgets:
        res = prune_at(per_budget[b], b)
        pruned[b] = res.arch
        patterns.append(pattern_of(per_budget[b], res, b))
        step("pruned", {"budget": b, "arch": res.arch, "ratio": getattr(res, "ratio", None)})
    rules, kind = fit_rules(patterns, primary)
    disc = Discovery(out, trained, tuple(budgets), pruned, patterns, rules, kind)
    disc.seconds["prune"] = time.perf_counter() - t0

    # The three arms at every budget, all through the generators (so they equal what the study trains).
    rule_file = out / RULE_FILE
    write_rules(disc)
    arms: dict[str, dict[float, Architecture]] = {"pruned": {}, "guided": {}, "uniform": {}}
    for b in budgets:
        arms["pruned"][b] = get_generator("pruned").generate(trained.arch, b, trained.seed, run=str(out))
        arms["guided"][b] = get_generator("guided").generate(trained.arch, b, trained.seed, rule=str(rule_file),
                                                             sparse=disc.rule.domain == "density")
        arms["uniform"][b] = get_generator("uniform").generate(trained.arch, b, trained.seed)
    disc.architectures = arms
    for gen in ("guided", "uniform"):
        for b, a in arms[gen].items():
            save_architecture(a, out / "architectures" / f"{gen}-{budget_tag(b)}.yaml", generator=gen, budget=b,
                              method=trained.method, model=trained.arch.model_name, dataset=trained.dataset)
    write_summary(disc)
    return disc


def write_rules(disc: Discovery) -> None:
    """Patterns, pruned architectures and rules (before the arms are generated from them)."""
    out, t = disc.out, disc.trained
    for b, p in zip(disc.budgets, disc.patterns):
        save_pattern(p, out / "patterns" / f"pruned-{budget_tag(b)}.yaml")
        save_architecture(disc.pruned[b], out / "architectures" / f"pruned-{budget_tag(b)}.yaml", generator="pruned",
                          budget=b, method=t.method, model=t.arch.model_name, dataset=t.dataset,
                          global_ratio=p.provenance.global_ratio)
    for k, r in disc.rules.items():
        save_rule(r, out / "rules" / f"{k}.yaml")
    save_rule(disc.rule, out / RULE_FILE)


def summary_dict(disc: Discovery, table: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    t = disc.trained
    base_params, base_macs = count_params_macs(t.arch)
    arms = {}
    for gen, per in disc.architectures.items():
        for b, a in per.items():
            p, m = count_params_macs(a)
            arms.setdefault(gen, []).append({"budget": b, "params": p, "macs": m, "widths": list(a.widths),
                                             "arch_id": a.arch_id,
                                             **({"densities": list(a.densities)} if a.densities else {})})
    d: dict[str, Any] = {
        "model": t.arch.model_name,
        "dataset": t.dataset,
        "synthetic": t.synthetic,
        "method": t.method,
        "seed": t.seed,
        "budgets": list(disc.budgets),
        "recipe": t.recipe,
        "base": {"params": base_params, "macs": base_macs, "best_acc": t.best_acc, "final_acc": t.final_acc,
                 "train_seconds": round(t.train_seconds, 3), "arch": t.arch.to_dict()},
        "rule": {"file": RULE_FILE, "kind": disc.primary, "files": {k: f"rules/{k}.yaml" for k in disc.rules}},
        "patterns": [{"budget": b, "param_fraction": p.param_fraction, "global_ratio": p.provenance.global_ratio,
                      "file": f"patterns/pruned-{budget_tag(b)}.yaml"} for b, p in zip(disc.budgets, disc.patterns)],
        "architectures": arms,
        "seconds": {k: round(v, 3) for k, v in disc.seconds.items()},
    }
    if table is not None:
        d["table"] = table
    d.update(extra)
    return d


def write_summary(disc: Discovery, table: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
    p = disc.out / "summary.json"
    atomic_write_text(p, json.dumps(summary_dict(disc, table, **extra), indent=2) + "\n")
    return p
