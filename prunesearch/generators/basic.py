"""Baselines: uniform pruning (one multiplier for all layers) and random per-stage multipliers."""

from __future__ import annotations

import random as _random
from typing import Any

from ..arch import Architecture, Budget, get_family, scale_densities_to_budget, scale_to_budget, unpruned
from ..errors import ConfigError
from .base import Generator, check_options, register


@register
class Uniform(Generator):
    """Every slot keeps the same fraction of its width: the baseline the paper compares against.

    ``sparse=True``: the unstructured counterpart, every conv keeps the same fraction of its weights
    (the baseline for guided sparsification)."""

    name = "uniform"
    options = ("sparse",)

    def generate(self, base: Architecture, budget: "Budget | float", seed: int = 0, *, sparse: bool = False,
                 **options: Any) -> Architecture:
        check_options(self.name, options, ())
        if not isinstance(sparse, bool):
            raise ConfigError(f"generator 'uniform' option sparse must be true or false, got {sparse!r}")
        b = Budget.of(budget)
        if sparse:
            return scale_densities_to_budget(unpruned(base), b).replace(name=f"uniform-sparse@{b.label()}")
        return scale_to_budget(unpruned(base), b).replace(name=f"uniform@{b.label()}")


@register
class RandomStages(Generator):
    """Random per-stage keep ratios (uniform in [0.25, 1]), then scaled to the budget: a sanity
    baseline that any useful pattern must beat."""

    name = "random"
    stochastic = True

    def generate(self, base: Architecture, budget: "Budget | float", seed: int = 0, **options: Any) -> Architecture:
        check_options(self.name, options, ())
        b = Budget.of(budget)
        ref = unpruned(base)
        fam = get_family(ref.family)
        rng = _random.Random(f"random-stages:{seed}")
        stage_ratio = [rng.uniform(0.25, 1.0) for _ in range(fam.num_stages)]
        ratios = [stage_ratio[s.stage] for s in fam.slots(ref)]
        return scale_to_budget(ref, b, ratios).replace(name=f"random{seed}@{b.label()}")
