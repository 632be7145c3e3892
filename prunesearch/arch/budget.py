"""The one budget solver: relative widths (a pattern) -> integer widths at an exact parameter budget.

Every generator (uniform, pruned, guided, transferred, random, searched) ends here, so "equal budget"
means the same thing for all of them. The solver bisects a global multiplier ``m`` on the pattern
(width_i = round(m * keep_ratio_i * base_width_i), clamped to [min_width, base_width], tied slots
rounded together), then refines the rounding below the budget by adding one channel to single tie
groups (each at most once; one channel off another group after an overshoot), so a pattern moves by
at most one channel per group. When even that
cannot land within the tolerance (tiny models: one channel is a big step), the closest result is
returned and ``fit_budget`` reports its error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import BudgetError, ConfigError
from .architecture import Architecture
from .counting import conv_weight_counts, count_params
from .families import get_family

DEFAULT_TOLERANCE = 0.005  # 0.5 % of the budget


def _fast(base: Architecture, **changes) -> Architecture:
    """An Architecture built without re-validation (the solver only produces valid widths)."""
    obj = object.__new__(Architecture)
    for f in Architecture.__dataclass_fields__:
        object.__setattr__(obj, f, changes.get(f, getattr(base, f)))
    return obj


def unpruned(arch: Architecture) -> Architecture:
    """The base (unpruned) architecture of ``arch``'s model: same depth/blocks/head/classes/input."""
    fam = get_family(arch.family)
    return Architecture(arch.family, arch.depth, tuple(fam.base_widths(arch)), arch.num_classes,
                        arch.in_channels, arch.input_size, head=arch.head, blocks=arch.blocks)


def min_params(base: Architecture) -> int:
    fam = get_family(base.family)
    return count_params(_fast(base, widths=(fam.min_width,) * len(base.widths), selections=None, densities=None))


def resolve_budget(base: Architecture, budget: float) -> int:
    """Absolute parameter budget: ``budget <= 1`` is a fraction of the base model, ``> 1`` a count."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise BudgetError(f"budget must be a positive number (fraction <= 1 or a parameter count), got {budget!r}")
    full = count_params(unpruned(base))
    target = int(round(budget * full)) if budget <= 1 else int(round(budget))
    if target > full:
        raise BudgetError(
            f"budget {target:,} params is above the unpruned {base.model_name} ({full:,} params); "
            f"give a fraction <= 1 or a count <= {full:,}"
        )
    return target


@dataclass(frozen=True)
class BudgetFit:
    arch: Architecture
    target: int
    params: int

    @property
    def rel_error(self) -> float:
        return abs(self.params - self.target) / self.target


def scale_to_budget(
    base: Architecture,
    budget: float,
    keep_ratios: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Architecture:
    """Integer widths following ``keep_ratios`` (one per slot, relative to the unpruned widths;
    ``None`` = uniform) whose parameter count is within ``tolerance`` of ``budget`` (or the closest
    achievable when one channel is a bigger step than the tolerance: see ``fit_budget``)."""
    return fit_budget(base, budget, keep_ratios, tolerance).arch


def fit_budget(
    base: Architecture,
    budget: float,
    keep_ratios: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> BudgetFit:
    fam = get_family(base.family)
    ref = unpruned(base)
    slots = fam.slots(ref)
    target = resolve_budget(ref, budget)
    ratios = _check_ratios(keep_ratios, len(slots))

    # Tie groups share one ratio (their mean) and one width.
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(slots):
        groups.setdefault(s.tie or f"#{i}", []).append(i)
    members = list(groups.values())
    g_base = [slots[m[0]].base_width for m in members]
    g_ratio = [sum(ratios[i] for i in m) / len(m) for m in members]
    lo_w = fam.min_width

    def widths_for(gw: list[int]) -> tuple[int, ...]:
        w = [0] * len(slots)
        for m, v in zip(members, gw):
            for i in m:
                w[i] = v
        return tuple(w)

    def params_of(gw: list[int]) -> int:
        return count_params(_fast(ref, widths=widths_for(gw)))

    def at(mult: float) -> list[int]:
        return [min(b, max(lo_w, int(mult * r * b + 0.5))) for b, r in zip(g_base, g_ratio)]

    smallest = params_of([lo_w] * len(members))
    if target < smallest:
        raise BudgetError(
            f"budget {target:,} params is below the smallest {ref.model_name} ({smallest:,} params at width "
            f"{lo_w} per slot); raise the budget to at least {smallest:,}"
        )
    # Bisection on the multiplier: params(at(m)) is non-decreasing in m.
    m_hi = max((1.0 / r for r in g_ratio if r > 0), default=1.0) * 1.0001
    lo, hi = 0.0, m_hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if params_of(at(mid)) <= target:
            lo = mid
        else:
            hi = mid
    # Rounding moves many groups at once (every slot with the same base width and ratio flips at
    # the same multiplier), so the two bracketing roundings can both miss the budget by more than
    # the tolerance. Refine from the one below the budget: move single tie groups by one channel
    # towards the budget (add below it, remove above it), each group at most once, always the move
    # that lands closest, while that brings params closer.
    # The pattern moves by at most one channel per group; it aims at a fifth of the tolerance so
    # results do not sit on its edge.
    best = at(lo)
    best_p = params_of(best)
    moved: set[int] = set()
    while abs(best_p - target) > 0.2 * tolerance * target:
        step = 1 if best_p < target else -1  # after an overshoot, take a channel off another group
        move, move_p = None, best_p
        for j in range(len(members)):
            v = best[j] + step
            if j in moved or not lo_w <= v <= g_base[j]:
                continue
            trial = best.copy()
            trial[j] = v
            p = params_of(trial)
            if abs(p - target) < abs(move_p - target):
                move, move_p, move_j = trial, p, j
        if move is None:
            break
        best, best_p = move, move_p
        moved.add(move_j)
    above = at(hi)
    if abs(params_of(above) - target) < abs(best_p - target):
        best, best_p = above, params_of(above)
    arch = Architecture(ref.family, ref.depth, widths_for(best), ref.num_classes, ref.in_channels,
                        ref.input_size, head=ref.head, blocks=ref.blocks)
    return BudgetFit(arch, target, best_p)


def scale_densities_to_budget(
    base: Architecture,
    budget: float,
    density_ratios: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Architecture:
    """Unstructured sparsity at a parameter budget: keep ``base``'s widths and give every conv a
    density proportional to ``density_ratios`` (one per conv; ``None`` = the same everywhere)."""
    target = resolve_budget(unpruned(base), budget)
    n_w = conv_weight_counts(base)
    ratios = _check_ratios(density_ratios, len(n_w), what="density ratio", unit="conv layer")
    floor = [1.0 / n for n in n_w]
    dense = _fast(base, densities=None, selections=base.selections)

    def dens(mult: float) -> tuple[float, ...]:
        return tuple(min(1.0, max(f, mult * r)) for f, r in zip(floor, ratios))

    def params_of(d: tuple[float, ...]) -> int:
        return count_params(_fast(dense, densities=d))

    smallest, largest = params_of(dens(0.0)), count_params(dense)
    if not smallest <= target <= largest:
        raise BudgetError(
            f"budget {target:,} params is outside what sparsifying {base.label} can reach "
            f"({smallest:,} to {largest:,} params); choose a budget in that range"
        )
    lo, hi = 0.0, max(1.0 / r for r in ratios if r > 0) * 1.0001
    for _ in range(60):
        mid = (lo + hi) / 2
        if params_of(dens(mid)) <= target:
            lo = mid
        else:
            hi = mid
    best = min((dens(lo), dens(hi)), key=lambda d: abs(params_of(d) - target))
    return Architecture.from_dict({**base.to_dict(), "densities": list(best)})


def _check_ratios(ratios: Sequence[float] | None, n: int, what: str = "keep ratio", unit: str = "slot") -> list[float]:
    if ratios is None:
        return [1.0] * n
    out = list(ratios)
    if len(out) != n:
        raise ConfigError(f"expected one {what} per {unit} ({n}), got {len(out)}")
    for r in out:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or math.isnan(r) or r < 0:
            raise ConfigError(f"every {what} must be a number >= 0, got {r!r}")
    if not any(r > 0 for r in out):
        raise ConfigError(f"at least one {what} must be positive")
    return [float(r) for r in out]
