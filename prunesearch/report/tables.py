"""Records in, tables as data out. No I/O, no formatting: writers and the CLI render these.

Units: accuracies are fractions in [0, 1] (the writers render percentages); gaps are fractions too
(rendered as percentage points); params, MACs and FLOPs are counts with FLOPs = 2 x MACs.

Conventions (repeated in every rendered footnote):

- accuracy = the record's ``final_acc``: **test** accuracy after the last epoch, mean ± sample
  standard deviation (ddof=1) over the complete seeds of a cell. Nothing in a report is chosen on
  test data: the searched arm's candidate for a (budget, seed) is the one with the best
  *validation* accuracy. The reference code's best-test-over-epochs (``best_acc``) is shown only in
  its own labelled column ("optimistic": it picks an epoch on the test set);
- cells are keyed by the *requested* budget of the record and its arm; one seed counts once (a
  retried seed uses its latest complete trial);
- gap, win rate and tests compare an arm with the baseline (``uniform``) on *matched seeds*: the
  seeds complete in both cells at that budget (paired: same seed, same data order). Per cell: the
  mean paired difference with its 95 % t-interval and a paired t-test, Holm-corrected across all
  compared cells of the report; exact sign and Wilcoxon tests as robustness checks, with the
  smallest p they can reach at that n. Per arm: one pooled paired test over every (budget, seed)
  pair (sign-flip permutation test, t-interval).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..records import COMPLETE, FAILED, INTERRUPTED, RUNNING, WAITING, RethinkRecord, TrialRecord
from .stats import (
    MeanCI,
    PairedTest,
    holm,
    mean,
    mean_ci,
    normalized_auc,
    paired_t_test,
    pareto_front,
    sample_std,
    sign_flip_test,
    sign_test,
    wilcoxon_signed_rank,
)

BASELINE = "uniform"
ALPHA = 0.05  # the significance level the notes speak of
MIN_SEEDS_FOR_TEST = 2  # a paired t-test needs two differences
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
    accs: tuple[float, ...]  # final-epoch test accuracy of each complete seed, same order (fractions)
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
    gap_ci: MeanCI | None = None  # 95 % t-interval of the mean paired difference
    t_test: PairedTest | None = None  # paired t-test of the differences
    p_holm: float | None = None  # the t-test's p, Holm-corrected across the report's compared cells
    val_mean: float | None = None  # mean final validation accuracy (what choices use)
    best_test_mean: float | None = None  # reference convention: best test accuracy over epochs (optimistic)
    budget_error: float | None = None  # largest |count - target| / target among the cell's architectures
    budget_kind: str = "params"
    chosen: tuple[int, ...] = ()  # trial numbers the cell reports (searched: chosen by validation)

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
    pooled: list[Pooled] = field(default_factory=list)
    min_seeds: int = 0  # fewest matched seeds of any compared cell (for the notes)

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
    return r.state == COMPLETE and r.final_acc is not None and math.isfinite(r.final_acc)


def _chosen(records: Sequence[TrialRecord]) -> TrialRecord:
    """The record a seed of a cell shows. Several candidates (the searched arm's trials) are chosen
    by final *validation* accuracy (ties: the lower trial number): never by a test number. One
    planned trial with retries shows its complete attempt, else its latest state."""
    indices = {r.extra.get("index", 0) for r in records}
    if len(indices) <= 1:
        return _latest(records)
    done = [r for r in records if _is_complete(r)]
    if not done:
        return _latest(records)
    return max(done, key=lambda r: (r.val_acc if r.val_acc is not None else -1.0,
                                    -(r.trial_number if r.trial_number is not None else 0)))


def _cell(budget: float, generator: str, recs: Sequence[TrialRecord], planned_seeds: int | None) -> Cell:
    by_seed: dict[int, list[TrialRecord]] = defaultdict(list)
    for r in recs:
        by_seed[r.seed].append(r)
    shown = {seed: _chosen(rs) for seed, rs in by_seed.items()}
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
    accs = tuple(float(r.final_acc) for _, r in complete)  # type: ignore[arg-type]
    # Sizes come from complete seeds; before any completes, from any seed whose architecture is
    # known (a searched trial that is still waiting has no architecture yet: params 0).
    sized = [r for _, r in complete] or [r for r in shown.values() if r.params > 0]
    params = [r.params for r in sized]
    vals = [float(r.val_acc) for _, r in complete if r.val_acc is not None]
    bests = [float(r.best_acc) for _, r in complete if r.best_acc is not None]
    errors = [abs(float(r.budget_error)) for r in sized if r.budget_error is not None]
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
        val_mean=mean(vals) if vals else None,
        best_test_mean=mean(bests) if bests else None,
        budget_error=max(errors) if errors else None,
        budget_kind=recs[0].budget_kind if recs else "params",
        chosen=tuple(r.trial_number for _, r in complete if r.trial_number is not None),
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
        gap_ci=mean_ci(diffs),
        t_test=paired_t_test(diffs),
    )


def matched_differences(cell: Cell, base: Cell) -> list[tuple[int, float]]:
    """(seed, acc - baseline acc) on the seeds complete in both cells."""
    mine = dict(zip(cell.seeds, cell.accs))
    theirs = dict(zip(base.seeds, base.accs))
    return [(s, mine[s] - theirs[s]) for s in sorted(set(mine) & set(theirs))]


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
        if r.task == "scratch":
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
    return _holm(groups)


def _holm(groups: list[BudgetGroup]) -> list[BudgetGroup]:
    """Holm-correct the cells' paired t-test p-values across the whole report (many cells, one
    family of questions: "does this arm beat uniform at this budget?")."""
    cells = [(gi, ci) for gi, g in enumerate(groups) for ci, c in enumerate(g.cells)
             if c.t_test is not None and c.t_test.p_value is not None]
    adjusted = holm([groups[gi].cells[ci].t_test.p_value for gi, ci in cells])  # type: ignore[union-attr]
    out = [list(g.cells) for g in groups]
    for (gi, ci), p in zip(cells, adjusted):
        out[gi][ci] = _replace(out[gi][ci], p_holm=p)
    return [BudgetGroup(g.budget, g.param_budget, tuple(cs)) for g, cs in zip(groups, out)]


@dataclass(frozen=True)
class Pooled:
    """One arm against the baseline over every matched (budget, seed) pair of the report."""

    generator: str
    n_pairs: int
    n_budgets: int
    mean_gap: float | None
    ci: MeanCI | None
    t_test: PairedTest | None
    sign_flip: PairedTest | None
    wins: int
    losses: int


def build_pooled(groups: Sequence[BudgetGroup], baseline: str = BASELINE) -> list[Pooled]:
    """The pooled paired comparison of each arm with the baseline across budgets: the primary
    answer to "does this arm beat uniform?" when every budget alone has few seeds."""
    diffs: dict[str, list[float]] = defaultdict(list)
    budgets: dict[str, set[float]] = defaultdict(set)
    for g in groups:
        base = next((c for c in g.cells if c.generator == baseline), None)
        if base is None:
            continue
        for c in g.cells:
            if c.generator == baseline:
                continue
            d = [x for _, x in matched_differences(c, base)]
            if d:
                diffs[c.generator] += d
                budgets[c.generator].add(g.budget)
    out = []
    for gen in _order(diffs, _GENERATOR_ORDER):
        d = diffs[gen]
        out.append(Pooled(gen, len(d), len(budgets[gen]), mean(d), mean_ci(d), paired_t_test(d), sign_flip_test(d),
                          sum(x > 0 for x in d), sum(x < 0 for x in d)))
    return out


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


def build_rethink(records: Iterable[TrialRecord | RethinkRecord]) -> tuple[list[RethinkRow], list[str]]:
    """The paper's fine-tune vs scratch table: rows = dataset/model/method (and pruned size),
    columns = arms (unpruned, finetune, scratch-e, scratch-b, then lottery arms). Accuracy is the
    final-epoch test accuracy; records of rethink arms not yet trained (no size yet) are skipped."""
    records = [r.to_trial_record() if isinstance(r, RethinkRecord) else r for r in records]
    records = [r for r in records if r.task == "rethink" and r.arm and (r.params > 0 or r.state in (COMPLETE, FAILED))]
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
    shown = {s: _latest(rs) for s, rs in by_seed.items()}
    complete = sorted((s, r) for s, r in shown.items() if _is_complete(r))
    accs = tuple(float(r.final_acc) for _, r in complete)  # type: ignore[arg-type]
    sized = [r for _, r in complete] or [r for r in shown.values() if r.params > 0] or list(shown.values())
    return RethinkArm(
        arm=arm,
        lr=sized[0].lr if sized else None,
        seeds=tuple(s for s, _ in complete),
        accs=accs,
        mean_acc=mean(accs) if accs else None,
        std_acc=sample_std(accs),
        params=int(round(mean([r.params for r in sized]))) if sized else None,
        macs=int(round(mean([r.macs for r in sized]))) if sized else None,
        epochs=tuple(sorted({r.epochs for r in sized if r.epochs is not None})),
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
    rethink: Iterable[TrialRecord | RethinkRecord] | None = None,
    rule_profile: RuleProfile | None = None,
    title: str = "prunesearch report",
    baseline: str = BASELINE,
    planned_seeds: int | None = None,
) -> Report:
    """All tables of a report, as data. ``records`` may mix study arms and rethink arms (they share
    one storage); ``rethink`` adds rethink records from elsewhere (old ``rethink.jsonl`` files)."""
    records = list(records)
    rethink = [r.to_trial_record() if isinstance(r, RethinkRecord) else r for r in (rethink or [])]
    rethink += [r for r in records if r.task == "rethink"]
    records = [r for r in records if r.task != "rethink"]
    groups = build_cells(records, baseline=baseline, planned_seeds=planned_seeds)
    scores, score_range = build_scores(groups)
    generators = _order({r.generator for r in records}, [baseline] + _GENERATOR_ORDER)
    # Seeds whose latest trial failed (a failed trial that was retried successfully is history).
    failed: list[TrialRecord] = []
    by_seed: dict[tuple[float, str, int], list[TrialRecord]] = defaultdict(list)
    for r in records + rethink:
        by_seed[(float(r.budget), r.arm or r.generator, r.seed, r.extra.get("index", 0))].append(r)
    for key in sorted(by_seed, key=lambda k: (k[0], k[1], k[2], k[3])):
        shown = _latest(by_seed[key])
        if shown.state == FAILED or (shown.state == COMPLETE and not _is_complete(shown)):
            failed.append(shown)
    counts: dict[str, int] = defaultdict(int)
    for r in records + rethink:
        counts[r.state] += 1
    rows, arms = build_rethink(rethink)
    compared = [c.n_matched for g in groups for c in g.cells if c.n_matched]
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
        records=records + rethink,
        pooled=build_pooled(groups, baseline),
        min_seeds=min(compared) if compared else 0,
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
        "metric": "final-epoch test accuracy (fraction); searched candidates chosen by validation accuracy",
        "pooled": [dataclasses.asdict(p) for p in report.pooled],
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


def flat_table(report: Report) -> list[dict]:
    """One row per (budget, arm): what ``--json`` summaries print (accuracies as fractions; the test
    accuracy is the final-epoch one; ``gap`` is the paired mean difference to the baseline)."""
    rows = []
    for g in report.budgets:
        for c in g.cells:
            rows.append({
                "budget": g.budget, "budget_kind": c.budget_kind, "target": g.param_budget, "generator": c.generator,
                "seeds": c.n_complete, "planned": c.planned, "mean_acc": c.mean_acc, "std_acc": c.std_acc,
                "val_mean": c.val_mean, "best_epoch_test_mean": c.best_test_mean, "params": c.params, "macs": c.macs,
                "max_abs_budget_error": c.budget_error, "gap": c.gap,
                "gap_ci95": [c.gap_ci.low, c.gap_ci.high] if c.gap_ci else None,
                "p_t": c.t_test.p_value if c.t_test else None, "p_holm": c.p_holm, "wins": c.wins,
                "losses": c.losses, "failed": len(c.failures),
            })
    return rows
