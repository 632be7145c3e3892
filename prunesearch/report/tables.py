"""Records in, tables as data out. No I/O, no formatting: writers and the CLI render these.

Units: accuracies are fractions in [0, 1] (the writers render percentages); gaps are fractions too
(rendered as percentage points); params, MACs and FLOPs are counts with FLOPs = 2 x MACs.

Conventions (repeated in every rendered footnote):

- accuracy = the record's ``best_acc`` (best test accuracy over epochs, the paper's metric);
  mean ± sample standard deviation (ddof=1) over the complete seeds of a cell;
- cells are keyed by the *requested* ``budget`` of the record and its ``generator``; one seed counts
  once (a retried seed uses its latest complete trial);
- gap / win rate / paired tests compare a generator with the baseline (``uniform``) on *matched
  seeds*: the seeds complete in both cells at that budget.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..records import COMPLETE, FAILED, INTERRUPTED, RUNNING, WAITING, RethinkRecord, TrialRecord
from .stats import PairedTest, mean, normalized_auc, pareto_front, sample_std, sign_test, wilcoxon_signed_rank

BASELINE = "uniform"
# Reference arms that are a single point, not a curve over budgets: excluded from the AUC score range.
REFERENCE_GENERATORS = frozenset({"unpruned"})
_GENERATOR_ORDER = ["uniform", "pruned", "guided", "transferred", "searched", "random", "unpruned"]
_ARM_ORDER = ["unpruned", "finetune", "scratch-e", "scratch-b"]
# Which state a seed shows when it has several trials: a complete result wins over anything.
_STATE_PRIORITY = {COMPLETE: 0, RUNNING: 1, WAITING: 2, INTERRUPTED: 3, FAILED: 4}

# A rule profile: budget level -> [(relative_depth in [0, 1], keep_ratio), ...].
RuleProfile = Mapping[float | str, Sequence[tuple[float, float]]]


@dataclass(frozen=True)
class SeedFailure:
    seed: int
    trial_number: int | None
    reason: str


@dataclass(frozen=True)
class Cell:
    """One budget x generator cell: the seeds that ran, their accuracies and the test vs baseline."""

    budget: float
    param_budget: int
    generator: str
    planned: int  # seeds planned for this cell (distinct seeds seen, or the study's plan if larger)
    seeds: tuple[int, ...]  # complete seeds, ascending
    accs: tuple[float, ...]  # best_acc of each complete seed, same order (fractions)
    mean_acc: float | None
    std_acc: float | None  # sample std (ddof=1); None with fewer than two seeds
    params: int | None  # mean over the cell's seeds (equal for deterministic generators)
    macs: int | None
    params_vary: bool  # True when seeds of this cell have different architectures (random/searched)
    state_counts: dict[str, int]  # seeds per state (complete/running/waiting/interrupted/failed)
    failures: tuple[SeedFailure, ...]
    is_baseline: bool = False
    n_matched: int = 0  # seeds complete in both this cell and the baseline cell
    gap: float | None = None  # mean over matched seeds of (acc - baseline acc), fraction
    wins: int = 0
    ties: int = 0
    losses: int = 0
    sign: PairedTest | None = None
    wilcoxon: PairedTest | None = None

    @property
    def n_complete(self) -> int:
        return len(self.seeds)

    @property
    def partial(self) -> bool:
        return self.n_complete < self.planned

    @property
    def flops(self) -> int | None:
        """FLOPs = 2 x MACs."""
        return None if self.macs is None else 2 * self.macs

    @property
    def win_rate(self) -> float | None:
        """Fraction of matched seeds where this generator beats the baseline (ties count as no win)."""
        return self.wins / self.n_matched if self.n_matched else None


@dataclass(frozen=True)
class BudgetGroup:
    budget: float
    param_budget: int
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Score:
    """Mean accuracy of a generator's curve over the common log10(params) range (AUC / range)."""

    generator: str
    score: float | None  # fraction; None when the generator does not cover the common range
    n_budgets: int  # budgets with at least one complete seed
    partial: bool  # some of the cells under the curve are partial


@dataclass(frozen=True)
class ParetoPoint:
    generator: str
    budget: float
    params: int
    mean_acc: float
    partial: bool


@dataclass(frozen=True)
class RethinkArm:
    """One arm of one rethink row: mean ± std over seeds, with its size and epochs."""

    arm: str
    lr: float | None
    seeds: tuple[int, ...]
    accs: tuple[float, ...]
    mean_acc: float | None
    std_acc: float | None
    params: int | None
    macs: int | None
    epochs: tuple[int, ...]  # distinct epoch counts (one, normally)
    planned: int
    failures: tuple[SeedFailure, ...]

    @property
    def flops(self) -> int | None:
        return None if self.macs is None else 2 * self.macs

    @property
    def partial(self) -> bool:
        return len(self.seeds) < self.planned


@dataclass(frozen=True)
class RethinkRow:
    """The paper's table row: one dataset/model/method (and pruned size) with one cell per arm."""

    dataset: str
    model: str
    method: str
    pruned_params: int | None
    arms: dict[str, RethinkArm]


@dataclass
class Report:
    """Everything the writers render. Built only from records (no typed-in numbers)."""

    title: str
    baseline: str
    budgets: list[BudgetGroup]
    generators: list[str]
    scores: list[Score]
    score_range: tuple[int, int] | None  # common params range of the AUC score (min, max)
    pareto: list[ParetoPoint]
    failed: list[TrialRecord]  # seeds whose latest state is failed
    state_counts: dict[str, int]  # records per state, whole study
    rethink_rows: list[RethinkRow] = field(default_factory=list)
    rethink_arms: list[str] = field(default_factory=list)
    rule_profile: dict[str, list[tuple[float, float]]] | None = None
    records: list[TrialRecord] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return any(c.partial for g in self.budgets for c in g.cells) or any(
            a.partial for r in self.rethink_rows for a in r.arms.values()
        )

    def cells(self) -> list[Cell]:
        return [c for g in self.budgets for c in g.cells]

    def group(self, budget: float) -> BudgetGroup | None:
        """The budget group whose requested budget equals ``budget`` (relative tolerance 1e-9)."""
        for g in self.budgets:
            if math.isclose(g.budget, budget, rel_tol=1e-9, abs_tol=1e-12):
                return g
        return None


def _order(names: Iterable[str], canonical: Sequence[str]) -> list[str]:
    """``names`` in canonical order (first occurrence wins), unknown names after, alphabetically."""
    names = set(names)
    known = list(dict.fromkeys(n for n in canonical if n in names))
    return known + sorted(n for n in names if n not in canonical)


def _latest(records: Sequence[TrialRecord]) -> TrialRecord:
    """The record a seed shows: best state first, then the latest trial."""
    return min(
        records,
        key=lambda r: (_STATE_PRIORITY.get(r.state, 9), -(r.trial_number if r.trial_number is not None else -1)),
    )


def _is_complete(r: TrialRecord | RethinkRecord) -> bool:
    return r.state == COMPLETE and r.best_acc is not None and math.isfinite(r.best_acc)


def _cell(budget: float, generator: str, recs: Sequence[TrialRecord], planned_seeds: int | None) -> Cell:
    by_seed: dict[int, list[TrialRecord]] = defaultdict(list)
    for r in recs:
        by_seed[r.seed].append(r)
    shown = {seed: _latest(rs) for seed, rs in by_seed.items()}
    complete = sorted((s, r) for s, r in shown.items() if _is_complete(r))
    counts: dict[str, int] = defaultdict(int)
    for r in shown.values():
        # A complete state without an accuracy is not a result: count it as failed.
        counts[r.state if r.state != COMPLETE or _is_complete(r) else FAILED] += 1
    failures = tuple(
        SeedFailure(s, r.trial_number, r.fail_reason or ("no accuracy recorded" if r.state == COMPLETE else "unknown"))
        for s, r in sorted(shown.items())
        if r.state == FAILED or (r.state == COMPLETE and not _is_complete(r))
    )
    accs = tuple(float(r.best_acc) for _, r in complete)  # type: ignore[arg-type]
    # Sizes come from complete seeds; before any completes, from any seed whose architecture is
    # known (a searched trial that is still waiting has no architecture yet: params 0).
    sized = [r for _, r in complete] or [r for r in shown.values() if r.params > 0]
    params = [r.params for r in sized]
    return Cell(
        budget=budget,
        param_budget=int(round(mean([r.param_budget for r in recs]))),
        generator=generator,
        planned=max(len(shown), planned_seeds or 0),
        seeds=tuple(s for s, _ in complete),
        accs=accs,
        mean_acc=mean(accs) if accs else None,
        std_acc=sample_std(accs),
        params=int(round(mean(params))) if params else None,
        macs=int(round(mean([r.macs for r in sized]))) if sized else None,
        params_vary=len({r.arch_id for r in sized}) > 1,
        state_counts=dict(counts),
        failures=failures,
    )


def _compare(cell: Cell, base: Cell | None) -> Cell:
    """Fill the matched-seed comparison of ``cell`` against the baseline cell."""
    if base is None or cell.generator == base.generator:
        return cell
    mine = dict(zip(cell.seeds, cell.accs))
    theirs = dict(zip(base.seeds, base.accs))
    matched = sorted(set(mine) & set(theirs))
    diffs = [mine[s] - theirs[s] for s in matched]
    if not diffs:
        return _replace(cell)
    return _replace(
        cell,
        n_matched=len(diffs),
        gap=mean(diffs),
        wins=sum(d > 0 for d in diffs),
        ties=sum(d == 0 for d in diffs),
        losses=sum(d < 0 for d in diffs),
        sign=sign_test(diffs),
        wilcoxon=wilcoxon_signed_rank(diffs),
    )


def _replace(cell: Cell, **changes) -> Cell:
    import dataclasses

    return dataclasses.replace(cell, **changes)


def build_cells(
    records: Iterable[TrialRecord], baseline: str = BASELINE, planned_seeds: int | None = None
) -> list[BudgetGroup]:
    """Group records into budget x generator cells and compare each with the baseline.

    ``planned_seeds``: seeds the study planned per cell (from the spec); when None, a cell's plan is
    the number of distinct seeds it has trials for, so waiting/running trials mark it partial.
    """
    by_cell: dict[tuple[float, str], list[TrialRecord]] = defaultdict(list)
    for r in records:
        by_cell[(float(r.budget), r.generator)].append(r)
    budgets: dict[float, list[Cell]] = defaultdict(list)
    for (budget, gen), recs in by_cell.items():
        budgets[budget].append(_cell(budget, gen, recs, planned_seeds))
    groups = []
    for budget, cells in budgets.items():
        base = next((c for c in cells if c.generator == baseline), None)
        order = _order([c.generator for c in cells], [baseline] + _GENERATOR_ORDER)
        cells = sorted(cells, key=lambda c: order.index(c.generator))
        cells = [_replace(c, is_baseline=True) if c is base else _compare(c, base) for c in cells]
        param_budget = int(round(mean([c.param_budget for c in cells])))
        groups.append(BudgetGroup(budget, param_budget, tuple(cells)))
    # Smallest first; the requested budget breaks ties between equal absolute budgets.
    groups.sort(key=lambda g: (g.param_budget, g.budget))
    return groups


def build_scores(groups: Sequence[BudgetGroup]) -> tuple[list[Score], tuple[int, int] | None]:
    """One score per generator: mean accuracy of its accuracy-vs-log10(params) curve over the
    common params range (the intersection of the ranges of all generators with >= 2 budgets),
    i.e. AUC / range. A generator that does not cover the whole common range gets None."""
    curves: dict[str, list[tuple[float, float, bool]]] = defaultdict(list)
    for g in groups:
        for c in g.cells:
            if c.mean_acc is not None and c.params:
                curves[c.generator].append((math.log10(c.params), c.mean_acc, c.partial))
    ranged = {k: v for k, v in curves.items() if k not in REFERENCE_GENERATORS}
    if not ranged:
        return [], None
    # The range comes from real curves (>= 2 budgets) so that one generator with a single finished
    # budget cannot collapse everyone's range to a point; such a generator is scored only if it
    # happens to cover the range (else its score is None).
    curved = {k: v for k, v in ranged.items() if len({round(x, 9) for x, _, _ in v}) > 1} or ranged
    lo = max(min(x for x, _, _ in v) for v in curved.values())
    hi = min(max(x for x, _, _ in v) for v in curved.values())
    scores = []
    for gen in _order(ranged, _GENERATOR_ORDER):
        pts = ranged[gen]
        score = normalized_auc([(x, y) for x, y, _ in pts], lo, hi) if lo <= hi else None
        under = [p for x, _, p in pts if lo - 1e-12 <= x <= hi + 1e-12]
        scores.append(Score(gen, score, len(pts), any(under)))
    rng = (int(round(10**lo)), int(round(10**hi))) if lo <= hi else None
    return scores, rng


def build_pareto(groups: Sequence[BudgetGroup]) -> list[ParetoPoint]:
    """Pareto front (fewer params, higher mean accuracy) over all cells with a complete seed."""
    cells = [c for g in groups for c in g.cells if c.mean_acc is not None and c.params is not None]
    idx = pareto_front([(float(c.params), c.mean_acc) for c in cells])  # type: ignore[misc]
    return [ParetoPoint(cells[i].generator, cells[i].budget, cells[i].params, cells[i].mean_acc, cells[i].partial) for i in idx]  # type: ignore[arg-type]


def build_rethink(records: Iterable[RethinkRecord]) -> tuple[list[RethinkRow], list[str]]:
    """The paper's fine-tune vs scratch table: rows = dataset/model/method (and pruned size),
    columns = arms (unpruned, finetune, scratch-e, scratch-b, then lottery arms)."""
    records = list(records)
    groups: dict[tuple[str, str, str], list[RethinkRecord]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.model, r.method)].append(r)
    arms_seen = _order({r.arm for r in records}, _ARM_ORDER)
    rows = []
    for (dataset, model, method), recs in sorted(groups.items()):
        # Unpruned arms (also the lottery check's "unpruned-lrX" bases) are shared by every row.
        unpruned = [r for r in recs if r.arm == "unpruned" or r.arm.startswith("unpruned-")]
        pruned = [r for r in recs if not (r.arm == "unpruned" or r.arm.startswith("unpruned-"))]
        # Several prune ratios of one method give several rows. Seeds pruned to one budget land a
        # channel or so apart: sizes within 1 % of a row's smallest are that row (mean size shown).
        sizes: list[list[int]] = []
        for size in sorted({r.params for r in pruned}):
            if sizes and size <= sizes[-1][0] * 1.01:
                sizes[-1].append(size)
            else:
                sizes.append([size])
        for group in sizes or [[]]:
            members = unpruned + [r for r in pruned if r.params in group]
            by_arm: dict[str, list[RethinkRecord]] = defaultdict(list)
            for r in members:
                by_arm[r.arm].append(r)
            arms = {arm: _rethink_arm(arm, rs) for arm, rs in by_arm.items()}
            shown = int(round(mean([r.params for r in pruned if r.params in group]))) if group else None
            rows.append(RethinkRow(dataset, model, method, shown, dict(sorted(arms.items(), key=lambda kv: arms_seen.index(kv[0])))))
    return rows, arms_seen


def _rethink_arm(arm: str, recs: Sequence[RethinkRecord]) -> RethinkArm:
    by_seed: dict[int, list[RethinkRecord]] = defaultdict(list)
    for r in recs:
        by_seed[r.seed].append(r)
    shown = {s: min(rs, key=lambda r: _STATE_PRIORITY.get(r.state, 9)) for s, rs in by_seed.items()}
    complete = sorted((s, r) for s, r in shown.items() if _is_complete(r))
    accs = tuple(float(r.best_acc) for _, r in complete)  # type: ignore[arg-type]
    sized = [r for _, r in complete] or list(shown.values())
    return RethinkArm(
        arm=arm,
        lr=sized[0].lr if sized else None,
        seeds=tuple(s for s, _ in complete),
        accs=accs,
        mean_acc=mean(accs) if accs else None,
        std_acc=sample_std(accs),
        params=int(round(mean([r.params for r in sized]))) if sized else None,
        macs=int(round(mean([r.macs for r in sized]))) if sized else None,
        epochs=tuple(sorted({r.epochs for r in sized})),
        planned=len(shown),
        failures=tuple(
            SeedFailure(s, None, r.fail_reason or "unknown") for s, r in sorted(shown.items()) if not _is_complete(r) and r.state in (FAILED, COMPLETE)
        ),
    )


def normalize_rule_profile(profile: RuleProfile | None) -> dict[str, list[tuple[float, float]]] | None:
    """Check and sort a rule profile: {budget level: [(relative_depth, keep_ratio), ...]}."""
    if profile is None:
        return None
    from ..errors import ConfigError

    out: dict[str, list[tuple[float, float]]] = {}
    for level, points in profile.items():
        try:
            pts = sorted((float(d), float(k)) for d, k in points)
        except (TypeError, ValueError):
            raise ConfigError(
                f"rule profile level {level!r} is not a list of (relative_depth, keep_ratio) pairs; "
                "pass e.g. {0.3: [(0.0, 0.9), (0.5, 0.6), (1.0, 0.2)]}"
            ) from None
        out[str(level)] = pts
    return out


def build_report(
    records: Iterable[TrialRecord],
    *,
    rethink: Iterable[RethinkRecord] | None = None,
    rule_profile: RuleProfile | None = None,
    title: str = "prunesearch report",
    baseline: str = BASELINE,
    planned_seeds: int | None = None,
) -> Report:
    """All tables of a report, as data."""
    records = list(records)
    groups = build_cells(records, baseline=baseline, planned_seeds=planned_seeds)
    scores, score_range = build_scores(groups)
    generators = _order({r.generator for r in records}, [baseline] + _GENERATOR_ORDER)
    # Seeds whose latest trial failed (a failed trial that was retried successfully is history).
    failed: list[TrialRecord] = []
    by_seed: dict[tuple[float, str, int], list[TrialRecord]] = defaultdict(list)
    for r in records:
        by_seed[(float(r.budget), r.generator, r.seed)].append(r)
    for key in sorted(by_seed, key=lambda k: (k[0], generators.index(k[1]), k[2])):
        shown = _latest(by_seed[key])
        if shown.state == FAILED or (shown.state == COMPLETE and not _is_complete(shown)):
            failed.append(shown)
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        counts[r.state] += 1
    rows, arms = build_rethink(rethink or [])
    return Report(
        title=title,
        baseline=baseline,
        budgets=groups,
        generators=generators,
        scores=scores,
        score_range=score_range,
        pareto=build_pareto(groups),
        failed=failed,
        state_counts=dict(counts),
        rethink_rows=rows,
        rethink_arms=arms,
        rule_profile=normalize_rule_profile(rule_profile),
        records=records,
    )


def report_to_dict(report: Report) -> dict:
    """JSON-ready tables (fractions, counts), without the raw records."""
    import dataclasses

    def cell(c: Cell) -> dict:
        d = dataclasses.asdict(c)
        d.update(n_complete=c.n_complete, partial=c.partial, flops=c.flops, win_rate=c.win_rate)
        return d

    def arm(a: RethinkArm) -> dict:
        d = dataclasses.asdict(a)
        d.update(flops=a.flops, partial=a.partial)
        return d

    return {
        "title": report.title,
        "baseline": report.baseline,
        "partial": report.partial,
        "state_counts": report.state_counts,
        "budgets": [{"budget": g.budget, "param_budget": g.param_budget, "cells": [cell(c) for c in g.cells]}
                    for g in report.budgets],
        "scores": [dataclasses.asdict(s) for s in report.scores],
        "score_range_params": list(report.score_range) if report.score_range else None,
        "pareto": [dataclasses.asdict(p) for p in report.pareto],
        "failed": [{"budget": r.budget, "generator": r.generator, "seed": r.seed, "trial_number": r.trial_number,
                    "fail_reason": r.fail_reason} for r in report.failed],
        "rethink": [{"dataset": r.dataset, "model": r.model, "method": r.method, "pruned_params": r.pruned_params,
                     "arms": {k: arm(a) for k, a in r.arms.items()}} for r in report.rethink_rows],
    }
