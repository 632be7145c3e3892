"""Budgets and the one budget solver.

A :class:`Budget` is how much of a model a comparison allows: a fraction (<= 1) of the unpruned
model or an absolute count (> 1, a whole number), of parameters (``params``, the paper's measure) or
of multiply-accumulates per image (``macs``, equal compute). It is parsed, resolved to a target count
and labelled in one place, so a spec, the CLI, generators and reports all read it the same way.

The solver (:func:`fit_budget`, :func:`scale_to_budget`) turns relative widths (a pattern) into
integer widths at that target. Every generator (uniform, pruned, guided, transferred, random,
searched) ends here, so "equal budget" means the same thing for all of them. It bisects a global
multiplier ``m`` on the pattern (width_i = round(m * keep_ratio_i * base_width_i), clamped to
[min_width, base_width], tied slots rounded together), then refines the rounding by moving single
tie groups by one channel towards the target (each at most once), so a pattern moves by at most one
channel per group. It aims at :data:`SOLVER_AIM` (0.1 %), so that any two arms of a comparison are
within :data:`CELL_TOLERANCE` (0.2 %) of each other; a result outside :data:`TOLERANCE` (0.5 %) is a
:class:`~prunesearch.errors.BudgetError` that names the counts the model can reach near the target,
never a silent miss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BudgetError, ConfigError
from .architecture import Architecture
from .counting import conv_weight_counts, count_macs, count_params, count_params_macs
from .families import get_family

TOLERANCE = 0.005  # every architecture handed to training is within 0.5 % of its target
CELL_TOLERANCE = 0.002  # the arms of one comparison cell are within 0.2 % of each other
SOLVER_AIM = CELL_TOLERANCE / 2  # so each arm aims at 0.1 % of the target
DEFAULT_TOLERANCE = TOLERANCE  # old name
BUDGET_KINDS = ("params", "macs")
UNITS = {"params": "params", "macs": "MACs"}


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


def count(arch: Architecture, kind: str = "params") -> int:
    """Parameters or MACs of ``arch`` (``kind`` in :data:`BUDGET_KINDS`)."""
    return count_params(arch) if kind == "params" else count_macs(arch)


def min_params(base: Architecture) -> int:
    fam = get_family(base.family)
    return count_params(_fast(base, widths=(fam.min_width,) * len(base.widths), selections=None, densities=None))


# ------------------------------------------------------------------------------------------------
# The Budget value
# ------------------------------------------------------------------------------------------------
def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise BudgetError(f"{what} {value!r} is not a number; give a fraction of the base model like 0.25 or a count like 250000")
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        try:
            value = float(text)
        except ValueError:
            raise BudgetError(f"{what} {value!r} is not a number; give a fraction of the base model like 0.25 "
                              "or a count like 250000") from None
    if not isinstance(value, (int, float)):
        raise BudgetError(f"{what} {value!r} is not a number; give a fraction like 0.25 or a count like 250000")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"{what} {value!r} must be a positive finite number; give e.g. 0.2, 0.4 or 250000")
    if value > 1 and not value.is_integer():
        raise BudgetError(f"{what} {value:g} is above 1, so it is an absolute count and must be a whole number; "
                          f"give a fraction <= 1 or a count like {int(value)}")
    if value > 1e15:
        raise BudgetError(f"{what} {value:g} is larger than any model prunesearch builds; give a fraction <= 1 or a smaller count")
    return value


def check_kind(kind: Any) -> str:
    if kind not in BUDGET_KINDS:
        from ..errors import suggest

        raise ConfigError(f"budget kind {kind!r} is not one of {', '.join(BUDGET_KINDS)}{suggest(str(kind), BUDGET_KINDS)}; "
                          "use params (the paper's equal-parameter comparison) or macs (equal compute)")
    return kind


@dataclass(frozen=True)
class Budget:
    """How much of a model an architecture may use.

    ``value <= 1`` is a fraction of the unpruned model's count, ``> 1`` an absolute count (a whole
    number); ``kind`` says what is counted: ``params`` (trainable parameters) or ``macs``
    (multiply-accumulates per image; FLOPs = 2 x MACs). Hashable: use it as a dict key.
    """

    value: float
    kind: str = "params"

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _number(self.value, "budget"))
        check_kind(self.kind)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def of(cls, budget: "Budget | float | str", kind: str | None = None) -> "Budget":
        """``budget`` as a Budget (numbers and text take ``kind``, default params)."""
        if isinstance(budget, Budget):
            if kind is not None and kind != budget.kind:
                raise ConfigError(f"budget {budget.label()} is a {budget.kind} budget, not {kind}")
            return budget
        return cls(_number(budget, "budget"), kind or "params")

    @classmethod
    def parse_list(cls, text: "str | Sequence[Any]", kind: str = "params", what: str = "--budgets") -> list["Budget"]:
        """'0.2,0.4,0.6' (or a list) -> Budgets; duplicates and empty lists are one-line errors."""
        items = [p for p in str(text).split(",")] if isinstance(text, str) else list(text)
        out: list[Budget] = []
        for item in items:
            if isinstance(item, str) and not item.strip():
                continue
            try:
                b = cls(_number(item, "budget"), kind)
            except BudgetError as e:
                raise BudgetError(f"{what}: {e}") from None
            if b in out:
                raise BudgetError(f"{what} lists budget {b.label()} twice; remove the duplicate")
            out.append(b)
        if not out:
            raise BudgetError(f"{what} is empty; give e.g. 0.2,0.4,0.6 (fractions of the base) or 250000 (a count)")
        if len(out) > 1000:
            raise BudgetError(f"{what} lists {len(out)} budgets; at most 1000 are supported")
        return out

    # -- meaning -------------------------------------------------------------------------------
    @property
    def is_fraction(self) -> bool:
        return self.value <= 1

    @property
    def unit(self) -> str:
        return UNITS[self.kind]

    def measure(self, arch: Architecture) -> int:
        """``arch``'s count of this budget's kind."""
        return count(arch, self.kind)

    def resolve(self, base: Architecture) -> int:
        """The absolute target count for ``base``'s model (a fraction of its unpruned count)."""
        full = count(unpruned(base), self.kind)
        target = int(round(self.value * full)) if self.is_fraction else int(self.value)
        if target > full:
            raise BudgetError(
                f"budget {target:,} {self.unit} is above the unpruned {base.model_name} ({full:,} {self.unit}); "
                f"give a fraction <= 1 or a count <= {full:,}"
            )
        if target < 1:
            raise BudgetError(f"budget {self.label()} of {base.model_name} ({full:,} {self.unit}) is below one "
                              f"{self.unit[:-1] if self.unit.endswith('s') else self.unit}; raise it")
        return target

    def fraction_of(self, base: Architecture) -> float:
        """The target as a fraction of ``base``'s unpruned count."""
        return self.resolve(base) / count(unpruned(base), self.kind)

    def error(self, arch: Architecture, base: Architecture | None = None) -> float:
        """Signed relative error of ``arch`` against this budget: (count - target) / target."""
        target = self.resolve(base if base is not None else arch)
        return (self.measure(arch) - target) / target

    # -- text ----------------------------------------------------------------------------------
    def label(self) -> str:
        """Stable short text for keys, slots and parameter names: '0.25', '250000', '0.25-macs'."""
        core = f"{self.value:g}" if self.is_fraction else str(int(self.value))
        return core if self.kind == "params" else f"{core}-macs"

    def tag(self) -> str:
        """File-name tag: 'b0.25', 'b250000', 'b0.25-macs'."""
        return f"b{self.label()}"

    def describe(self, base: Architecture | None = None) -> str:
        """'0.25 of the params (213,254 params)' / '250,000 MACs' for people."""
        if not self.is_fraction:
            return f"{int(self.value):,} {self.unit}"
        text = f"{self.value:g} of the {self.unit}"
        return text if base is None else f"{text} ({self.resolve(base):,} {self.unit})"

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind}

    def __str__(self) -> str:
        return self.label()


def resolve_budget(base: Architecture, budget: "Budget | float", kind: str | None = None) -> int:
    """Absolute target of ``budget`` (a :class:`Budget`, or a number: ``<= 1`` a fraction of the base
    model, ``> 1`` a count) for ``base``'s model."""
    return Budget.of(budget, kind).resolve(base)


# ------------------------------------------------------------------------------------------------
# The solver
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetFit:
    """What the solver found: ``arch`` with ``achieved`` counts against ``target`` (of ``kind``)."""

    arch: Architecture
    target: int
    achieved: int
    kind: str = "params"
    max_reachable: int | None = None  # set when the pattern tops out below the target

    @property
    def params(self) -> int:  # the old field name (params budgets)
        return self.achieved

    @property
    def rel_error(self) -> float:
        return abs(self.achieved - self.target) / self.target

    @property
    def signed_error(self) -> float:
        return (self.achieved - self.target) / self.target


def scale_to_budget(
    base: Architecture,
    budget: "Budget | float",
    keep_ratios: Sequence[float] | None = None,
    tolerance: float = TOLERANCE,
    kind: str | None = None,
) -> Architecture:
    """Integer widths following ``keep_ratios`` (one per slot, relative to the unpruned widths;
    ``None`` = uniform) whose count is within ``tolerance`` of ``budget``. Raises
    :class:`BudgetError` naming the counts reachable near the target when it cannot be met."""
    fit = fit_budget(base, budget, keep_ratios, tolerance, kind=kind)
    check_fit(fit, base, Budget.of(budget, kind), tolerance, pattern=keep_ratios is not None)
    return fit.arch


def check_fit(fit: BudgetFit, base: Architecture, budget: Budget, tolerance: float = TOLERANCE,
              pattern: bool = True, what: str | None = None) -> None:
    """BudgetError unless ``fit`` is within ``tolerance`` of its target."""
    if fit.rel_error <= tolerance:
        return
    unit = budget.unit
    who = what or (f"this pattern on {base.model_name}" if pattern else f"uniform {base.model_name}")
    near = _neighbours(base, budget, fit)
    raise BudgetError(
        f"{who} cannot reach {fit.target:,} {unit} (budget {budget.label()}) within {100 * tolerance:.1f} %: "
        f"the closest is {fit.achieved:,} {unit} ({100 * fit.signed_error:+.2f} %), {near}"
    )


def _neighbours(base: Architecture, budget: Budget, fit: BudgetFit) -> str:
    """What to change: reachable counts near the target (uniform widths one channel apart)."""
    if fit.max_reachable is not None and fit.achieved < fit.target:
        return (f"the most this pattern can reach (slots with a zero ratio stay at the minimum width); lower the "
                f"budget to at most {fit.achieved:,} {budget.unit} or give those slots a positive ratio")
    return ("one channel is a bigger step than the tolerance at this size; use a budget equal to a reachable "
            f"count such as {fit.achieved:,} {budget.unit}, or a larger model")


def fit_budget(
    base: Architecture,
    budget: "Budget | float",
    keep_ratios: Sequence[float] | None = None,
    tolerance: float = TOLERANCE,
    kind: str | None = None,
    aim: float | None = None,
) -> BudgetFit:
    """The solver without the tolerance check: the closest architecture it finds, with its error.

    ``aim``: the relative error at which rounding refinement stops (default :data:`SOLVER_AIM`, or
    a fifth of ``tolerance`` when that is smaller)."""
    b = Budget.of(budget, kind)
    kind = b.kind
    fam = get_family(base.family)
    ref = unpruned(base)
    slots = fam.slots(ref)
    target = b.resolve(ref)
    ratios = _check_ratios(keep_ratios, len(slots))
    aim = min(SOLVER_AIM, 0.2 * tolerance) if aim is None else aim

    # Tie groups share one ratio (their mean) and one width.
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(slots):
        groups.setdefault(s.tie or f"#{i}", []).append(i)
    members = list(groups.values())
    g_base = [slots[m[0]].base_width for m in members]
    g_ratio = [sum(ratios[i] for i in m) / len(m) for m in members]
    lo_w = fam.min_width
    which = 0 if kind == "params" else 1

    def widths_for(gw: list[int]) -> tuple[int, ...]:
        w = [0] * len(slots)
        for m, v in zip(members, gw):
            for i in m:
                w[i] = v
        return tuple(w)

    def measure(gw: list[int]) -> int:
        return count_params_macs(_fast(ref, widths=widths_for(gw)))[which]

    def at(mult: float) -> list[int]:
        return [min(bw, max(lo_w, int(mult * r * bw + 0.5))) for bw, r in zip(g_base, g_ratio)]

    smallest = measure([lo_w] * len(members))
    if target < smallest:
        raise BudgetError(
            f"budget {target:,} {b.unit} is below the smallest {ref.model_name} ({smallest:,} {b.unit} at width "
            f"{lo_w} per slot); raise the budget to at least {smallest:,}"
        )
    # Bisection on the multiplier: measure(at(m)) is non-decreasing in m.
    m_hi = max((1.0 / r for r in g_ratio if r > 0), default=1.0) * 1.0001
    top = at(m_hi)
    largest = measure(top)
    if target > largest:
        return BudgetFit(_arch(ref, widths_for(top)), target, largest, kind, max_reachable=largest)
    lo, hi = 0.0, m_hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if measure(at(mid)) <= target:
            lo = mid
        else:
            hi = mid
    # Rounding moves many groups at once (every slot with the same base width and ratio flips at
    # the same multiplier), so the two bracketing roundings can both miss the target. Refine from
    # the one below it by single channels: add one to a group, take one from a group, or both at
    # once (a swap, whose net change can be far smaller than any one channel), always the move that
    # lands closest, while that brings the count closer. No group moves more than MAX_DRIFT
    # channels from the rounded pattern, so the pattern is kept.
    best = _refine(at(lo), target, aim, measure, lo_w, g_base)
    best_p = measure(best)
    above = at(hi)
    above_p = measure(above)
    if abs(above_p - target) < abs(best_p - target):
        best, best_p = above, above_p
    return BudgetFit(_arch(ref, widths_for(best)), target, best_p, kind)


MAX_DRIFT = 2  # channels a refinement may move one tie group away from the rounded pattern


def _refine(start: list[int], target: int, aim: float, measure: Callable[[list[int]], int], lo_w: int,
            g_base: list[int], max_moves: int = 64) -> list[int]:
    best, best_p = list(start), measure(start)
    n = len(best)
    for _ in range(max_moves):
        need = target - best_p
        if abs(need) <= aim * target:
            break
        up: dict[int, int] = {}
        down: dict[int, int] = {}
        for j in range(n):
            if best[j] + 1 <= g_base[j] and best[j] + 1 - start[j] <= MAX_DRIFT:
                t = best.copy()
                t[j] += 1
                up[j] = measure(t) - best_p
            if best[j] - 1 >= lo_w and start[j] - (best[j] - 1) <= MAX_DRIFT:
                t = best.copy()
                t[j] -= 1
                down[j] = measure(t) - best_p
        # candidate moves with their estimated change (a swap's estimate is exact unless the two
        # groups touch one layer; the best few are measured exactly)
        cands: list[tuple[int, tuple[tuple[int, int], ...]]] = [(d, ((j, 1),)) for j, d in up.items()]
        cands += [(d, ((k, -1),)) for k, d in down.items()]
        cands += [(du + dd, ((j, 1), (k, -1))) for j, du in up.items() for k, dd in down.items() if j != k]
        cands.sort(key=lambda c: abs(need - c[0]))
        chosen, chosen_p = None, best_p
        for _, moves in cands[:12]:
            t = best.copy()
            for j, d in moves:
                t[j] += d
            p = measure(t)
            if abs(target - p) < abs(target - chosen_p):
                chosen, chosen_p = t, p
        if chosen is None:
            break
        best, best_p = chosen, chosen_p
    return best


def _arch(ref: Architecture, widths: tuple[int, ...]) -> Architecture:
    return Architecture(ref.family, ref.depth, widths, ref.num_classes, ref.in_channels, ref.input_size,
                        head=ref.head, blocks=ref.blocks)


def scale_densities_to_budget(
    base: Architecture,
    budget: "Budget | float",
    density_ratios: Sequence[float] | None = None,
    tolerance: float = TOLERANCE,
    kind: str | None = None,
) -> Architecture:
    """Unstructured sparsity at a budget: keep ``base``'s widths and give every conv a density
    proportional to ``density_ratios`` (one per conv; ``None`` = the same everywhere)."""
    b = Budget.of(budget, kind)
    target = b.resolve(unpruned(base))
    n_w = conv_weight_counts(base)
    ratios = _check_ratios(density_ratios, len(n_w), what="density ratio", unit="conv layer")
    floor = [1.0 / n for n in n_w]
    dense = _fast(base, densities=None, selections=base.selections)

    def dens(mult: float) -> tuple[float, ...]:
        return tuple(min(1.0, max(f, mult * r)) for f, r in zip(floor, ratios))

    def measure(d: tuple[float, ...]) -> int:
        return b.measure(_fast(dense, densities=d))

    smallest, largest = measure(dens(0.0)), measure(dens(max(1.0 / r for r in ratios if r > 0) * 1.0001))
    if not smallest <= target <= largest:
        raise BudgetError(
            f"budget {target:,} {b.unit} is outside what sparsifying {base.label} with this pattern can reach "
            f"({smallest:,} to {largest:,} {b.unit}); choose a budget in that range"
        )
    lo, hi = 0.0, max(1.0 / r for r in ratios if r > 0) * 1.0001
    for _ in range(60):
        mid = (lo + hi) / 2
        if measure(dens(mid)) <= target:
            lo = mid
        else:
            hi = mid
    best = min((dens(lo), dens(hi)), key=lambda d: abs(measure(d) - target))
    arch = Architecture.from_dict({**base.to_dict(), "densities": list(best)})
    fit = BudgetFit(arch, target, measure(best), b.kind)
    check_fit(fit, base, b, tolerance, what=f"sparse {base.model_name}")
    return arch


def _check_ratios(ratios: Sequence[float] | None, n: int, what: str = "keep ratio", unit: str = "slot") -> list[float]:
    if ratios is None:
        return [1.0] * n
    out = list(ratios)
    if len(out) != n:
        raise ConfigError(f"expected one {what} per {unit} ({n}), got {len(out)}")
    for r in out:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
            raise ConfigError(f"every {what} must be a finite number >= 0, got {r!r}")
    if not any(r > 0 for r in out):
        raise ConfigError(f"at least one {what} must be positive; an all-zero pattern says nothing about widths")
    top = max(out)
    # only the shape matters: normalise (huge values cannot overflow), and treat vanishing ratios as 0
    return [float(r) / top if r / top >= 1e-9 else 0.0 for r in out]
