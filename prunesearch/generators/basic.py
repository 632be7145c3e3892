"""Baselines: uniform pruning (one multiplier for all layers) and random per-stage multipliers."""

from __future__ import annotations

import random as _random
from typing import Any

from ..arch import Architecture, get_family, scale_densities_to_budget, scale_to_budget, unpruned
from ..errors import ConfigError
from .base import Generator, register


def _no_options(name: str, options: dict[str, Any]) -> None:
    if options:
        raise ConfigError(f"generator '{name}' takes no options, got {', '.join(sorted(options))}")


@register
class Uniform(Generator):
    """Every slot keeps the same fraction of its width: the baseline the paper compares against.

    ``sparse=True``: the unstructured counterpart, every conv keeps the same fraction of its weights
    (the baseline for guided sparsification)."""

    name = "uniform"

    def generate(self, base: Architecture, budget: float, seed: int = 0, *, sparse: bool = False,
                 **options: Any) -> Architecture:
        _no_options(self.name, options)
        if not isinstance(sparse, bool):
            raise ConfigError(f"generator 'uniform' option sparse must be true or false, got {sparse!r}")
        if sparse:
            return scale_densities_to_budget(unpruned(base), budget).replace(name=f"uniform-sparse@{budget:g}")
        return scale_to_budget(unpruned(base), budget).replace(name=f"uniform@{budget:g}")


@register
class RandomStages(Generator):
    """Random per-stage keep ratios (uniform in [0.25, 1]), then scaled to the budget: a sanity
    baseline that any useful pattern must beat."""

    name = "random"
    stochastic = True

    def generate(self, base: Architecture, budget: float, seed: int = 0, **options: Any) -> Architecture:
        _no_options(self.name, options)
        ref = unpruned(base)
        fam = get_family(ref.family)
        rng = _random.Random(f"random-stages:{seed}")
        stage_ratio = [rng.uniform(0.25, 1.0) for _ in range(fam.num_stages)]
        ratios = [stage_ratio[s.stage] for s in fam.slots(ref)]
        return scale_to_budget(ref, budget, ratios).replace(name=f"random{seed}@{budget:g}")
