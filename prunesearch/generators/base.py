"""The generator contract and registry."""

from __future__ import annotations

from typing import Any, ClassVar

from ..arch import Architecture, Budget
from ..registry import Registry


class Generator:
    """Turns a target (the unpruned architecture to shrink) and a budget into an Architecture.

    ``budget`` is a :class:`~prunesearch.arch.Budget` (or a number: a fraction of the target's
    parameters if <= 1, else a count). ``seed`` matters only for stochastic generators. ``options``
    are generator-specific (a rule for ``guided``/``transferred``, a discover run for ``pruned``).

    The contract every implementation keeps (``tests/test_generator_contract.py`` checks it for
    every registered generator): the result is a valid architecture of the target's model, within
    :data:`~prunesearch.arch.SOLVER_AIM` of the budget where the family's granularity allows and
    never outside :data:`~prunesearch.arch.TOLERANCE` (a :class:`~prunesearch.errors.BudgetError`
    instead), and the same for the same (target, budget, seed, options). Generators never train
    and never touch torch: they finish through the one solver, ``scale_to_budget``.
    """

    name: ClassVar[str]
    #: whether the architecture depends on the seed (then each seed is a different candidate)
    stochastic: ClassVar[bool] = False
    #: option names the generator accepts (checked before generating)
    options: ClassVar[tuple[str, ...]] = ()

    def generate(self, base: Architecture, budget: "Budget | float", seed: int = 0, **options: Any) -> Architecture:
        raise NotImplementedError


GENERATORS: Registry[Generator] = Registry("generator")


def register(cls: type[Generator]) -> type[Generator]:
    GENERATORS.register(cls.name, cls())
    return cls


def get_generator(name: str) -> Generator:
    return GENERATORS.get(name)


def check_options(name: str, options: dict[str, Any], known: tuple[str, ...]) -> None:
    from ..errors import ConfigError, suggest

    for k in options:
        if k not in known:
            if not known:
                raise ConfigError(f"generator '{name}' takes no options, got {', '.join(sorted(options))}")
            raise ConfigError(f"generator '{name}' has no option '{k}'{suggest(k, known)}; its options: {', '.join(known)}")
