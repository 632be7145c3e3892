"""The searched arm: TPE per-stage multipliers, projected onto the budget before any training.

Optuna's objective is the trial's final **validation** accuracy (never test), so TPE learns on data
the report never shows as a result; the report then picks, per budget and seed, the searched trial
with the best validation accuracy and shows its test accuracy.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from ..arch import Budget
from ..errors import BudgetError


def propose_searched(study: optuna.Study, trial_id: int, ua: dict[str, Any], sampler_seed: int = 0):
    """TPE per-stage multipliers for a searched slot, projected onto its budget before training.

    Returns ``(arch, info)``; the architecture is within the solver's tolerance of the budget."""
    from ..arch import Architecture, get_family

    base = Architecture.from_dict(ua["base_arch"], source="searched base")
    budget = Budget(float(ua["budget"]), str(ua.get("budget_kind", "params")))
    opts = ua.get("options") or {}
    lo = float(opts.get("min_multiplier", 0.25))
    slots = get_family(base.family).slots(base)
    stages = sorted({s.stage for s in slots})
    frozen = study._storage.get_trial(trial_id)
    # one sampler per trial, seeded by the trial number: workers never sample in lockstep
    # multivariate: after the projection only the ratios between stages matter, so the stage
    # multipliers interact and TPE models them jointly; group: each budget's parameters form their
    # own group (fixed arms have none), so the joint model is per budget
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.TPESampler(
            seed=int(sampler_seed) * 1_000_003 + frozen.number,
            n_startup_trials=int(opts.get("n_startup_trials", 4)),
            multivariate=True,
            group=True,
        )
        trial = optuna.trial.Trial(study, trial_id)
        return _project(trial, frozen, base, budget, lo, slots, stages)


def _project(trial, frozen, base, budget: Budget, lo, slots, stages):
    from ..arch import count_macs, count_params, scale_to_budget

    label = budget.label()
    mult = {st: trial.suggest_float(f"stage{st}_b{label}", lo, 1.0) for st in stages}
    ratios = [mult[s.stage] for s in slots]
    last: Exception | None = None
    # Multipliers the solver cannot reach are blended toward uniform (ratio ** alpha) until it can
    for alpha in (1.0, 0.75, 0.5, 0.25, 0.0):
        r = [x ** alpha for x in ratios]
        try:
            arch = scale_to_budget(base, budget, r)
        except BudgetError as e:
            last = e
            continue
        arch = arch.replace(name=f"searched{frozen.number}@{label}")
        target = budget.resolve(base)
        return arch, {
            "params": count_params(arch), "macs": count_macs(arch), "keep_ratios": r,
            "multipliers": {str(k): v for k, v in mult.items()}, "alpha": alpha,
            "budget_error": (budget.measure(arch) - target) / target,
        }
    raise BudgetError(f"searched trial {frozen.number}: no projection reaches budget {label} ({last})")
