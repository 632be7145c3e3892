"""Generators from pruning: ``pruned`` (a method's own architecture), ``guided`` (a rule from the same
model and dataset) and ``transferred`` (a rule from elsewhere). All finish through the one budget
solver, so they sit within 0.5 % of the budget like every other arm.

Options (what a study spec's ``generators:`` block or ``generate(..., **options)`` passes):

- ``guided`` / ``transferred``: ``rule`` (a rule file, a ``prunesearch discover`` run dir, a
  :class:`~prunesearch.rules.DesignRule` or its dict), ``kind`` (in a run dir, which fitted rule:
  ``stage``/``depth``/``sparsity``; default the run's ``rule.yaml``), ``sparse`` (true to apply a
  sparsity rule: the result carries per-conv densities and must be trained mask-aware; a width
  rule with it, or a sparsity rule without it, is a ConfigError), and for ``guided`` the optional
  expectations ``dataset`` and ``method`` (checked against the rule's provenance).
  ``guided`` refuses a rule fitted on another model (that is ``transferred``).
- ``pruned``: ``run`` (a discover run dir: its ``architectures/pruned-*.yaml`` at this budget), or
  ``architectures`` (budget -> file), or ``architecture`` (one file, rescaled to every budget), or
  ``method`` (+ ``dataset``, ``recipe``, ``epochs``, ``data_dir``, ``device``, ``seed``): train the
  base with the method's regulariser and prune it now (cached per process, so budgets share one
  trained base).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..arch import (
    Architecture,
    count_params,
    get_family,
    load_architecture,
    resolve_budget,
    scale_densities_to_budget,
    scale_to_budget,
    unpruned,
)
from ..errors import ConfigError
from .base import Generator, register

TOLERANCE = 0.005


def _check_options(name: str, options: Mapping[str, Any], known: tuple[str, ...]) -> None:
    from ..errors import suggest

    for k in options:
        if k not in known:
            raise ConfigError(f"generator '{name}' has no option '{k}'{suggest(k, known)}; its options: {', '.join(known)}")


def _rule(options: Mapping[str, Any], name: str):
    from ..rules import DesignRule, load_rule

    rule = options.get("rule")
    kind = options.get("kind")
    if rule is None:
        raise ConfigError(f"generator '{name}' needs a 'rule' option: a rule.yaml or a `prunesearch discover` run dir")
    if isinstance(rule, DesignRule):
        return rule
    if isinstance(rule, Mapping):
        return DesignRule.from_dict(rule, source=f"generator '{name}' rule")
    return load_rule(str(rule), kind=kind)


class _RuleGenerator(Generator):
    options: tuple[str, ...] = ("rule", "kind", "sparse")

    def check(self, rule, base: Architecture, options: Mapping[str, Any]) -> None:
        pass

    def generate(self, base: Architecture, budget: float, seed: int = 0, **options: Any) -> Architecture:
        from ..rules import apply_rule

        _check_options(self.name, options, self.options)
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
        arch = apply_rule(rule, ref, budget, tolerance=TOLERANCE, domain="density" if sparse else "width")
        return arch.replace(name=f"{self.name}@{budget:g}")


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
        if ds is not None and rule.datasets and str(ds) not in rule.datasets:
            raise ConfigError(f"guided uses a rule from the same dataset, but the {where} was fitted on "
                              f"{', '.join(rule.datasets)}, not {ds}; use the 'transferred' generator")
        method = options.get("method")
        if method is not None and rule.methods and str(method) not in rule.methods:
            raise ConfigError(f"the {where} was found by {', '.join(rule.methods)}, not {method}; "
                              "give the rule of that method or drop the 'method' option")


@register
class Transferred(_RuleGenerator):
    """Transferred guided pruning: a rule fitted on another model or dataset, mapped onto this one
    by stage position / relative depth (same code as ``guided``, no same-model check)."""

    name = "transferred"
    options = ("rule", "kind", "sparse", "dataset", "method")


# ------------------------------------------------------------------------------------------------
# pruned
# ------------------------------------------------------------------------------------------------
def _same_budget(a: Any, b: float) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def pruned_architecture_file(run: str | Path, budget: float) -> Path:
    """The pruned architecture a discover run saved for ``budget``."""
    from ..fileio import read_document

    d = Path(run).expanduser()
    adir = d / "architectures"
    if not adir.is_dir():
        raise ConfigError(f"{d} has no architectures/ folder; give a `prunesearch discover` run dir (option 'run')")
    seen = []
    for f in sorted(adir.glob("*.yaml")):
        doc = read_document(f, "architecture")
        if not isinstance(doc, Mapping) or doc.get("generator") != "pruned":
            continue
        seen.append(doc.get("budget"))
        if _same_budget(doc.get("budget"), budget):
            return f
    have = ", ".join(f"{b:g}" for b in seen if isinstance(b, (int, float))) or "none"
    raise ConfigError(f"discover run {d} has no pruned architecture at budget {budget:g} (it has: {have}); "
                      "use one of those budgets or re-run discover with --budgets including it")


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


def finish_pruned(pruned: Architecture, base: Architecture, budget: float, tolerance: float = TOLERANCE) -> Architecture:
    """A method's pruned architecture on ``base``'s model at ``budget``: kept as is when it already
    sits within ``tolerance`` (selections included), else rescaled by the budget solver with its
    widths (or densities) as the pattern."""
    full = unpruned(base)
    if (pruned.family, pruned.depth, pruned.head) != (full.family, full.depth, full.head) or (
            full.blocks is not None and pruned.blocks != full.blocks):
        raise ConfigError(f"the pruned architecture is a {pruned.label} but the target is {full.model_name}; "
                          "use the pruned architectures of the same model (or a rule with 'transferred')")
    target = resolve_budget(full, budget)  # the budget is relative to the full-depth target
    shaped = pruned.replace(num_classes=full.num_classes, in_channels=full.in_channels, input_size=full.input_size)
    ref = unpruned(shaped)  # a depth-pruned (blocks) result keeps its depth; only widths are rescaled
    budget = target
    if abs(count_params(shaped) - target) <= tolerance * target:
        return shaped
    if shaped.densities is not None:
        dense = shaped.replace(densities=None)
        return scale_densities_to_budget(dense, budget, list(shaped.densities), tolerance)
    fam = get_family(ref.family)
    slots = fam.slots(ref)
    ratios = [w / s.base_width for w, s in zip(shaped.widths, slots)]
    arch = scale_to_budget(ref, budget, ratios, tolerance)
    if shaped.selections is not None:
        sel_slots = [(s, w) for s, w in zip(slots, arch.widths) if s.kind == "select"]
        sels = tuple(_selection_for(old, w, s.base_width) for old, (s, w) in zip(shaped.selections, sel_slots))
        arch = arch.replace(selections=sels)
    return arch


_PRUNED_CACHE: dict[tuple, Any] = {}


@register
class Pruned(Generator):
    """A pruning method's own architecture at the budget (from a discover run, files, or by running
    the method), finished through the budget solver."""

    name = "pruned"
    options = ("run", "architectures", "architecture", "method", "dataset", "recipe", "epochs", "data_dir",
               "device", "seed")

    def generate(self, base: Architecture, budget: float, seed: int = 0, **options: Any) -> Architecture:
        _check_options(self.name, options, self.options)
        sources = [k for k in ("run", "architectures", "architecture") if options.get(k) is not None]
        if len(sources) > 1:
            raise ConfigError(f"generator 'pruned' takes one of run, architectures, architecture; got {', '.join(sources)}")
        if sources == ["run"]:
            pruned = load_architecture(pruned_architecture_file(options["run"], budget))
        elif sources == ["architectures"]:
            files = options["architectures"]
            if not isinstance(files, Mapping):
                raise ConfigError("generator 'pruned' option 'architectures' must map budgets to architecture files")
            match = [f for b, f in files.items() if _same_budget(b, budget)]
            if not match:
                raise ConfigError(f"generator 'pruned' has no architecture file for budget {budget:g} "
                                  f"(it has: {', '.join(str(b) for b in files)}); add one")
            pruned = load_architecture(match[0])
        elif sources == ["architecture"]:
            pruned = load_architecture(options["architecture"])
        elif options.get("method") is not None:
            pruned = self._run_method(base, budget, seed, options)
        else:
            raise ConfigError("generator 'pruned' needs 'run' (a discover run dir), 'architectures' "
                              "(budget -> file), 'architecture' (a file) or 'method' (run the method now)")
        method = options.get("method")
        label = f"pruned-{method}" if method else "pruned"
        return finish_pruned(pruned, base, budget).replace(name=f"{label}@{budget:g}")

    def _run_method(self, base: Architecture, budget: float, seed: int, options: Mapping[str, Any]) -> Architecture:
        from ..rules.discovery import needs_target, prune_at, train_base

        if options.get("dataset") is None:
            raise ConfigError("generator 'pruned' with 'method' needs 'dataset' (the base is trained on it)")
        s = int(options.get("seed", seed) or 0)
        target = budget if needs_target(str(options["method"]), unpruned(base)) else None
        key = (unpruned(base).arch_id, str(options["method"]), str(options["dataset"]), str(options.get("recipe")),
               options.get("epochs"), options.get("data_dir"), s, target)
        if key not in _PRUNED_CACHE:
            _PRUNED_CACHE[key] = train_base(
                unpruned(base), str(options["method"]), str(options["dataset"]), recipe=options.get("recipe") or "fast",
                epochs=options.get("epochs"), data_dir=options.get("data_dir"), device=options.get("device") or "auto",
                seed=s, budget=target,
            )
        return prune_at(_PRUNED_CACHE[key], budget).arch
