"""The generator contract and registry."""

from __future__ import annotations

from typing import Any, ClassVar

from ..arch import Architecture
from ..registry import Registry


class Generator:
    """Turns a target (the unpruned architecture to shrink) and a budget into an Architecture.

    ``budget`` is a fraction of the target's parameters (<= 1) or an absolute count (> 1).
    ``seed`` matters only for stochastic generators. ``options`` are generator-specific (a rule
    file for ``guided``/``transferred``, a discover run for ``pruned``). Implementations must
    return an architecture within 0.5 % of the budget: use ``scale_to_budget``.
    """

    name: ClassVar[str]
    #: whether the architecture depends on the seed (then each seed is a different candidate)
    stochastic: ClassVar[bool] = False

    def generate(self, base: Architecture, budget: float, seed: int = 0, **options: Any) -> Architecture:
        raise NotImplementedError


GENERATORS: Registry[Generator] = Registry("generator")


def register(cls: type[Generator]) -> type[Generator]:
    GENERATORS.register(cls.name, cls())
    return cls


def get_generator(name: str) -> Generator:
    return GENERATORS.get(name)
