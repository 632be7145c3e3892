"""Planning: a spec's plan -> the exact list of trials (one per slot), before anything trains.

A slot is the deterministic key of one planned trial: ``ARM/bLABEL/sSEED/INDEX@HASH``. The hash
covers what the arm means (model, data and split, recipe, budget kind, the arm's options) and, for
fixed arms, the planned architecture's ``arch_id``: results are keyed by what is trained, never by a
path whose content can change (an edited rule file plans new trials instead of reporting stale ones).

Budgets are a contract here: every fixed arm's architecture is within the solver's tolerance of its
target (the solver raises otherwise), and the arms of one cell (budget x seed) are within
:data:`~prunesearch.arch.CELL_TOLERANCE` of each other, or planning stops with one line naming them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..arch import CELL_TOLERANCE, Architecture, Budget, count_macs, count_params
from ..errors import BudgetError, ConfigError, PrunesearchError
from .spec import SEARCHED, Plan, RethinkPlan, generator_of


@dataclass(frozen=True)
class PlannedTrial:
    slot: str
    generator: str  # the arm label (a generator name, optionally @label; "rethink" for rethink arms)
    budget: float
    seed: int
    index: int
    user_attrs: dict[str, Any]


def data_identity(dataset: str, options: dict[str, Any] | None, val_fraction: float, split_seed: int = 0) -> list:
    """What the data side of a result means: the canonical name, loader options and the split."""
    from ..data.dataset import canonical_dataset

    return [canonical_dataset(dataset), dict(options or {}), float(val_fraction), int(split_seed)]


def cache_key(arch_id: str, recipe: dict[str, Any], dataset: str, seed: int,
              dataset_options: dict[str, Any] | None = None, val_fraction: float = 0.1, *, task: str = "scratch",
              extra: Any = None) -> str:
    """Identity of a training result: same job, architecture, recipe, data (and split) and seed =
    same result. ``extra``: what else the job depends on (a rethink arm's base and init)."""
    blob = json.dumps([task, arch_id, recipe, data_identity(dataset, dataset_options, val_fraction), int(seed), extra],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _recipe(name: str, overrides: dict[str, Any]):
    from ..train import get_recipe

    return get_recipe(name, **overrides)


def plan_trials(plan: Plan, base: Architecture) -> list[PlannedTrial]:
    """Every trial of a study plan. Fixed arms get their architecture now (from the generators
    registry); searched slots get theirs when a worker pops them. Order: fixed arms, then searched
    trials index-major (so TPE has history for every budget as early as possible)."""
    from ..generators import GENERATORS

    recipe = _recipe(plan.recipe_name, plan.recipe_overrides).to_dict()
    where = plan.source or "spec"
    so = plan.searched_options()
    n_fixed = len([g for g in plan.generators if g != SEARCHED])
    check_plan_size(len(plan.seeds) * len(plan.budgets) * (n_fixed + (int(so["trials"]) if so else 0)), where)
    common = {"task": "scratch", "dataset": plan.dataset, "dataset_options": dict(plan.dataset_options),
              "val_fraction": plan.val_fraction, "recipe": recipe, "max_retries": plan.settings["max_retries"],
              "budget_kind": plan.budget_kind, "model": plan.model}
    targets: dict[Budget, int] = {}
    for b in plan.budgets:
        try:
            targets[b] = b.resolve(base)
        except BudgetError as e:
            raise BudgetError(f"{where}: 'budgets': {e}") from None
    out: list[PlannedTrial] = []
    fixed = [g for g in plan.generators if g != SEARCHED]
    for seed in plan.seeds:
        for b in plan.budgets:
            cell: list[tuple[str, int]] = []
            for arm in fixed:
                opts = plan.generators[arm]
                gen = GENERATORS.get(generator_of(arm))
                try:
                    arch = gen.generate(base, b, seed, **opts)
                except PrunesearchError as e:
                    raise type(e)(f"{where}: arm '{arm}' at budget {b.label()}: {e}") from None
                achieved = b.measure(arch)
                cell.append((arm, achieved))
                slot = f"{arm}/b{b.label()}/s{seed}/0@{plan.arm_hash(arm)}-{arch.arch_id}"
                # what optuna-dashboard lists first: arm, budget, seed, size
                attrs = {"generator": arm, "budget": b.value, "budget_kind": b.kind, "seed": seed,
                         "params": count_params(arch), "macs": count_macs(arch)}
                attrs.update(common)
                attrs.update(
                    slot=slot, param_budget=targets[b], index=0, arch=arch.to_dict(), arch_id=arch.arch_id,
                    budget_error=(achieved - targets[b]) / targets[b], options=opts, plan_hash=plan.arm_hash(arm),
                    cache_key=cache_key(arch.arch_id, recipe, plan.dataset, seed, plan.dataset_options,
                                        plan.val_fraction),
                )
                if "method" in opts:
                    attrs["method"] = str(opts["method"])
                if "rule" in opts:
                    attrs["rule"] = str(opts["rule"])
                out.append(PlannedTrial(slot, arm, b.value, seed, 0, attrs))
            check_cell(cell, b, seed, where)
    if so is not None:
        h = plan.arm_hash(SEARCHED)
        for i in range(int(so["trials"])):
            for seed in plan.seeds:
                for b in plan.budgets:
                    slot = f"{SEARCHED}/b{b.label()}/s{seed}/{i}@{h}"
                    attrs = {"generator": SEARCHED, "budget": b.value, "budget_kind": b.kind, "seed": seed}
                    attrs.update(common)
                    attrs.update(
                        slot=slot, param_budget=targets[b], index=i,
                        base_arch=base.to_dict(), options=dict(so), plan_hash=h,
                    )
                    out.append(PlannedTrial(slot, SEARCHED, b.value, seed, i, attrs))
    return out


def check_cell(cell: list[tuple[str, int]], budget: Budget, seed: int, where: str) -> None:
    """The arms of one cell must be within CELL_TOLERANCE of each other (equal budget means equal)."""
    if len(cell) < 2:
        return
    lo = min(cell, key=lambda t: t[1])
    hi = max(cell, key=lambda t: t[1])
    spread = (hi[1] - lo[1]) / lo[1]
    if spread > CELL_TOLERANCE:
        raise BudgetError(
            f"{where}: at budget {budget.label()} (seed {seed}) the arms are {100 * spread:.2f} % apart ({hi[0]} "
            f"{hi[1]:,} vs {lo[0]} {lo[1]:,} {budget.unit}), more than {100 * CELL_TOLERANCE:.1f} %: one channel is "
            "too big a step at this size; choose another budget or a larger model")


# ---------------------------------------------------------------------------------------------
# Rethink
# ---------------------------------------------------------------------------------------------
def lr_tag(lr: float) -> str:
    return f"lr{lr:g}"


def finetune_epochs_for(plan: RethinkPlan, base_epochs: int) -> int:
    from .spec import PAPER_EPOCHS, PAPER_FINETUNE_EPOCHS

    if plan.finetune_epochs is not None:
        return plan.finetune_epochs
    return max(1, int(round(base_epochs * PAPER_FINETUNE_EPOCHS / PAPER_EPOCHS)))


def rethink_recipes(plan: RethinkPlan):
    """(base / Scratch-E recipe, fine-tune recipe)."""
    from ..train import get_recipe

    base = _recipe(plan.recipe, plan.recipe_overrides)
    if base.mode != "scratch-e":
        base = base.replace(mode="scratch-e")
    ft_template = get_recipe("finetune")
    ft = base.replace(name="finetune", epochs=finetune_epochs_for(plan, base.epochs), lr=ft_template.lr,
                      schedule=ft_template.schedule, mode="finetune", warmup_epochs=0, warmup_lr=None)
    return base, ft


def plan_rethink(plan: RethinkPlan, base: Architecture) -> list[PlannedTrial]:
    """Every trial of a rethink plan. Per seed: the base (trained with the regulariser, then pruned)
    and, depending on it, fine-tune / Scratch-E / Scratch-B; for weight-mask methods also a winning
    ticket and a random-init control at each lottery learning rate (a base at that rate when it is
    not the base recipe's)."""
    import math

    from ..prune import get_method

    method = get_method(plan.method)
    base_recipe, ft_recipe = rethink_recipes(plan)
    ident = json.dumps([plan.identity(), base.arch_id], sort_keys=True, default=str)
    h = hashlib.sha256(ident.encode()).hexdigest()[:8]
    prune_kw: dict[str, Any] = dict(plan.method_options)
    if plan.budget is not None:
        prune_kw.update(budget=plan.budget, budget_kind=plan.budget_kind)
    if plan.ratio is not None:
        prune_kw["ratio"] = plan.ratio
    if plan.variant is not None:
        prune_kw["variant"] = plan.variant
    common = {"dataset": plan.dataset, "dataset_options": dict(plan.dataset_options),
              "val_fraction": plan.val_fraction, "max_retries": plan.settings["max_retries"], "method": plan.method,
              "model": plan.label, "budget_kind": plan.budget_kind, "budget": plan.budget or 0.0, "param_budget": 0}
    out: list[PlannedTrial] = []

    def add(arm: str, seed: int, attrs: dict[str, Any]) -> str:
        slot = f"rethink/{arm}/s{seed}@{h}"
        a = dict(common)
        a.update(attrs, slot=slot, generator="rethink", arm=arm, seed=seed, index=0, plan_hash=h)
        out.append(PlannedTrial(slot, "rethink", float(plan.budget or 0.0), seed, 0, a))
        return slot

    def add_base(arm: str, seed: int, recipe) -> str:
        artifact = f"{plan.run_name}-{arm}-s{seed}-{h}"
        return add(arm, seed, {"task": "rethink-base", "base_arch": base.to_dict(), "arch": base.to_dict(),
                               "arch_id": base.arch_id, "params": count_params(base), "macs": count_macs(base),
                               "recipe": recipe.to_dict(), "lr": recipe.lr, "prune_kw": prune_kw,
                               "reg_kw": dict(plan.regularizer_options), "artifact": artifact})

    def add_train(arm: str, seed: int, source: str, init: str, recipe, epochs_rule: str | None = None) -> str:
        attrs = {"task": "rethink-train", "source": source, "after": [source], "init": init,
                 "recipe": recipe.to_dict(), "lr": recipe.lr}
        if epochs_rule:
            attrs.update(epochs_rule=epochs_rule, scratch_b=plan.scratch_b)
        return add(arm, seed, attrs)

    for seed in plan.seeds:
        b = add_base("unpruned", seed, base_recipe)
        add_train("finetune", seed, b, "inherit", ft_recipe)
        add_train("scratch-e", seed, b, "scratch", base_recipe)
        add_train("scratch-b", seed, b, "scratch", base_recipe.replace(mode="scratch-b"), epochs_rule="scratch-b")
        if method.prunes != "weights":
            continue
        for lr in plan.lottery_lrs:
            tag = lr_tag(lr)
            recipe_lr = base_recipe.replace(lr=lr)
            src = b if math.isclose(lr, base_recipe.lr) else add_base(f"unpruned-{tag}", seed, recipe_lr)
            add_train(f"winning-ticket-{tag}", seed, src, "ticket", recipe_lr)
            add_train(f"random-init-{tag}", seed, src, "scratch", recipe_lr)
    return out


def check_plan_size(n: int, where: str, limit: int = 200_000) -> None:
    if n > limit:
        raise ConfigError(f"{where}: the plan has {n:,} trials, more than the {limit:,} a study can hold; "
                          "use fewer budgets, seeds or searched trials")
