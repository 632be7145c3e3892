"""Generators from pruning: ``pruned`` (a method's own architecture), ``guided`` (a rule from the same
model and dataset) and ``transferred`` (a rule from elsewhere). All finish through the one budget
solver, so they sit on the budget like every other arm; none of them trains anything.

Options (what a study spec's ``generators:`` block or ``generate(..., **options)`` passes):

- ``guided`` / ``transferred``: ``rule`` (a rule file, a ``prunesearch discover`` run dir, a
  published variant such as ``resnet56-b``, a :class:`~prunesearch.rules.DesignRule` or its dict),
  ``kind`` (in a run dir, which fitted rule: ``stage``/``depth``/``sparsity``; for a variant, which
  rule to fit; default the run's ``rule.yaml`` / ``stage``), ``sparse`` (true to apply a sparsity
  rule: the result carries per-conv densities and must be trained mask-aware; a width rule with it,
  or a sparsity rule without it, is a ConfigError), and for ``guided`` the optional expectations
  ``dataset`` and ``method`` (checked against the rule's provenance). ``guided`` refuses a rule
  fitted on another model (that is ``transferred``).
- ``pruned``: ``run`` (a discover run dir: its ``architectures/pruned-<budget tag>.yaml``), or
  ``architectures`` (budget -> file), or ``architecture`` (one file, rescaled to every budget);
  ``method`` (the method's name, for labels). The architecture is re-centred on the budget through
  the solver with its own widths as the pattern, so all arms of a cell have the same size. To run
  a method, use ``prunesearch discover`` (it trains, prunes and writes the run dir this reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..arch import (
    SOLVER_AIM,
    TOLERANCE,
    Architecture,
    Budget,
    get_family,
    load_architecture,
    scale_densities_to_budget,
    scale_to_budget,
    unpruned,
)
from ..errors import BudgetError, ConfigError
from .base import Generator, check_options, register


def _rule(options: Mapping[str, Any], name: str):
    from ..rules import DesignRule, load_rule

    rule = options.get("rule")
    kind = options.get("kind")
    if rule is None:
        raise ConfigError(f"generator '{name}' needs a 'rule' option: a rule.yaml, a `prunesearch discover` run dir "
                          "or a published variant (resnet56-b)")
    if isinstance(rule, DesignRule):
        return rule
    if isinstance(rule, Mapping):
        return DesignRule.from_dict(rule, source=f"generator '{name}' rule")
    return load_rule(str(rule), kind=kind)


class _RuleGenerator(Generator):
    options: tuple[str, ...] = ("rule", "kind", "sparse")

    def check(self, rule, base: Architecture, options: Mapping[str, Any]) -> None:
        pass

    def generate(self, base: Architecture, budget: "Budget | float", seed: int = 0, **options: Any) -> Architecture:
        from ..rules import apply_rule

        check_options(self.name, options, self.options)
        b = Budget.of(budget)
        rule = _rule(options, self.name)
        ref = unpruned(base)
        self.check(rule, ref, options)
        sparse = options.get("sparse", False)
        if not isinstance(sparse, bool):
            raise ConfigError(f"generator '{self.name}' option 'sparse' must be true or false, got {sparse!r}")
        if rule.domain == "density" and not sparse:
            raise ConfigError(f"generator '{self.name}' got a sparsity rule ({rule.describe()}): it sets per-conv "
                              "densities, not widths; add 'sparse: true' to build sparse architectures (guided "
                              "sparsification; they must be trained mask-aware) or give a stage/depth rule")
        arch = apply_rule(rule, ref, b, domain="density" if sparse else "width")
        return arch.replace(name=f"{self.name}@{b.label()}")


@register
class Guided(_RuleGenerator):
    """The paper's guided pruning: a rule fitted on this model (and dataset) applied at the budget."""

    name = "guided"
    options = ("rule", "kind", "sparse", "dataset", "method")

    def check(self, rule, base, options):
        where = rule.describe()
        if rule.models and base.model_name not in rule.models:
            raise ConfigError(f"guided uses a rule from the same model, but the {where} was not fitted on "
                              f"{base.model_name}; use the 'transferred' generator for a rule from another model")
        ds = options.get("dataset")
        if ds is not None and rule.datasets:
            from ..data.dataset import canonical_dataset

            if canonical_dataset(str(ds)) not in {canonical_dataset(d) for d in rule.datasets}:
                raise ConfigError(f"guided uses a rule from the same dataset, but the {where} was fitted on "
                                  f"{', '.join(rule.datasets)}, not {ds}; use the 'transferred' generator")
        method = options.get("method")
        if method is not None and rule.methods and str(method) not in rule.methods:
            raise ConfigError(f"the {where} was found by {', '.join(rule.methods)}, not {method}; "
                              "give the rule of that method or drop the 'method' option")


@register
class Transferred(_RuleGenerator):
    """Transferred guided pruning: a rule fitted on another model or dataset, mapped onto this one
    by stage position / relative depth and slot role (same code as ``guided``, no same-model check)."""

    name = "transferred"
    options = ("rule", "kind", "sparse", "dataset", "method")


# ------------------------------------------------------------------------------------------------
# pruned
# ------------------------------------------------------------------------------------------------
def pruned_architecture_file(run: str | Path, budget: "Budget | float") -> Path:
    """The pruned architecture a discover run saved for ``budget`` (``architectures/pruned-<tag>.yaml``)."""
    b = Budget.of(budget)
    d = Path(run).expanduser()
    adir = d / "architectures"
    if not adir.is_dir():
        raise ConfigError(f"{d} has no architectures/ folder; give a `prunesearch discover` run dir (option 'run')")
    f = adir / f"pruned-{b.tag()}.yaml"
    if f.is_file():
        return f
    have = sorted(p.stem[len("pruned-b"):] for p in adir.glob("pruned-b*.yaml"))
    raise ConfigError(f"discover run {d} has no pruned architecture at budget {b.label()} (it has: "
                      f"{', '.join(have) or 'none'}); use one of those budgets or re-run discover with --budgets "
                      "including it")


def _selection_for(old: tuple[int, ...] | None, width: int, available: int) -> tuple[int, ...] | None:
    """Keep a pruned selection's channels when the solver changes its width: drop the last kept
    indices, or add the lowest unused ones."""
    if old is None:
        return None
    sel = sorted(old)
    if width <= len(sel):
        return tuple(sel[:width])
    extra = [i for i in range(available) if i not in set(sel)][: width - len(sel)]
    return tuple(sorted(sel + extra))


def finish_pruned(pruned: Architecture, base: Architecture, budget: "Budget | float",
                  tolerance: float = TOLERANCE) -> Architecture:
    """A method's pruned architecture on ``base``'s model at ``budget``: kept as is when it already
    sits within the solver's aim (selections included), else re-centred by the budget solver with
    its widths (or densities) as the pattern, so it is as close to the budget as every other arm."""
    b = Budget.of(budget)
    full = unpruned(base)
    if (pruned.family, pruned.depth, pruned.head) != (full.family, full.depth, full.head) or (
            full.blocks is not None and pruned.blocks != full.blocks):
        raise ConfigError(f"the pruned architecture is a {pruned.label} but the target is {full.model_name}; "
                          "use the pruned architectures of the same model (or a rule with 'transferred')")
    target = b.resolve(full)  # the budget is relative to the full-depth target
    shaped = pruned.replace(num_classes=full.num_classes, in_channels=full.in_channels, input_size=full.input_size)
    if abs(b.measure(shaped) - target) <= SOLVER_AIM * target:
        return shaped
    absolute = Budget(target, b.kind)
    if shaped.densities is not None:
        dense = shaped.replace(densities=None)
        return scale_densities_to_budget(dense, absolute, list(shaped.densities), tolerance)
    ref = unpruned(shaped)  # a depth-pruned (blocks) result keeps its depth; only widths are rescaled
    if shaped.blocks != full.blocks:
        top = b.measure(ref)
        if target > top:
            raise BudgetError(
                f"the pruned {shaped.label} has fewer blocks ({list(shaped.blocks or ())} per stage) and reaches at "
                f"most {top:,} {b.unit} at full width, below the budget's {target:,}; depth pruning cannot be "
                "re-centred on this budget: compare it at its own size or choose a budget at most that large")
    fam = get_family(ref.family)
    slots = fam.slots(ref)
    ratios = [w / s.base_width for w, s in zip(shaped.widths, slots)]
    arch = scale_to_budget(ref, absolute, ratios, tolerance)
    if shaped.selections is not None:
        sel_slots = [(s, w) for s, w in zip(slots, arch.widths) if s.kind == "select"]
        sels = tuple(_selection_for(old, w, s.base_width) for old, (s, w) in zip(shaped.selections, sel_slots))
        arch = arch.replace(selections=sels)
    return arch


@register
class Pruned(Generator):
    """A pruning method's own architecture at the budget (from a discover run or files), re-centred
    on the budget through the solver."""

    name = "pruned"
    options = ("run", "architectures", "architecture", "method")

    def generate(self, base: Architecture, budget: "Budget | float", seed: int = 0, **options: Any) -> Architecture:
        check_options(self.name, options, self.options)
        b = Budget.of(budget)
        sources = [k for k in ("run", "architectures", "architecture") if options.get(k) is not None]
        if len(sources) > 1:
            raise ConfigError(f"generator 'pruned' takes one of run, architectures, architecture; got {', '.join(sources)}")
        if sources == ["run"]:
            pruned = load_architecture(pruned_architecture_file(options["run"], b))
        elif sources == ["architectures"]:
            files = options["architectures"]
            if not isinstance(files, Mapping):
                raise ConfigError("generator 'pruned' option 'architectures' must map budgets to architecture files")
            match = [f for k, f in files.items() if _same_budget(k, b)]
            if not match:
                raise ConfigError(f"generator 'pruned' has no architecture file for budget {b.label()} "
                                  f"(it has: {', '.join(str(k) for k in files)}); add one")
            pruned = load_architecture(match[0])
        elif sources == ["architecture"]:
            pruned = load_architecture(options["architecture"])
        else:
            raise ConfigError("generator 'pruned' needs 'run' (a `prunesearch discover` run dir), 'architectures' "
                              "(budget -> file) or 'architecture' (a file); run `prunesearch discover` to prune")
        method = options.get("method")
        label = f"pruned-{method}" if method else "pruned"
        return finish_pruned(pruned, base, b).replace(name=f"{label}@{b.label()}")


def _same_budget(key: Any, budget: Budget) -> bool:
    """A key of an ``architectures`` mapping names ``budget`` (its value or its label)."""
    if isinstance(key, str) and key.strip() == budget.label():
        return True
    try:
        return Budget.of(key, budget.kind) == budget
    except (BudgetError, ConfigError):
        return False
