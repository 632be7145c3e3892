"""Report data -> text tables (headers, rows, footnotes) shared by the Markdown, HTML, CSV-free and
terminal renderers, so every output format shows exactly the same strings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..records import COMPLETE, FAILED
from .stats import min_exact_p
from .tables import Cell, Report, RethinkArm

DASH = "—"
ACC_NOTE = (
    "Accuracy: test accuracy after the last epoch (%), mean ± sample std (ddof=1) over complete seeds; a cell "
    "marked (k/n) is partial: k of n planned seeds complete. Val.: the same on the validation split carved from "
    "the training set, which every choice uses (the searched arm's candidate per budget and seed is the one "
    "with the best validation accuracy). Nothing is chosen on test data."
)
BEST_NOTE = (
    "Best-epoch test †: the reference code's convention, the best test accuracy over epochs; it picks the epoch on "
    "the test set, so it is optimistic and shown only for comparison with published numbers."
)
COUNT_NOTE = ("Params: trainable parameters; MACs: multiply-accumulates per image; FLOPs = 2 × MACs. Δ budget: the "
              "largest |count − target| / target among a cell's architectures (of the budget's kind).")
TEST_NOTE = (
    "Gap: mean over matched seeds (same seed in both arms) of (arm − {baseline}) in percentage points, with its 95 % "
    "t-interval; p (t / Holm): two-sided paired t-test, then Holm-corrected across all compared cells of this "
    "report; exact p (sign / Wilcoxon): exact two-sided sign and Wilcoxon signed-rank tests, zero differences "
    "dropped, as robustness checks. The pooled table tests each arm over every (budget, seed) pair at once "
    "(sign-flip permutation test): the primary test when each budget has few seeds."
)


@dataclass
class TextTable:
    """A rendered table: what Markdown, HTML and rich all show."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    key: str = ""  # short id: cells-<budget>, scores, pareto, failed, rethink, rethink-arms


def pct(x: float | None, digits: int = 2) -> str:
    return DASH if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def count(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def pvalue(p: float | None) -> str:
    if p is None:
        return DASH
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def budget_label(budget: float, param_budget: int, kind: str = "params") -> str:
    """'budget 0.3 of base (25,000 params)' for fractions, 'budget 25,000 params' for absolute
    budgets; MAC budgets say MACs."""
    unit = "MACs" if kind == "macs" else "params"
    if budget <= 1:
        return f"budget {budget:g} of base ({param_budget:,} {unit})"
    return f"budget {param_budget:,} {unit}"


def signed_pct(x: float | None, digits: int = 2) -> str:
    return DASH if x is None or not math.isfinite(x) else f"{100 * x:+.{digits}f}"


def gap_cell(gap: float | None, ci) -> str:
    """'+1.20 [−0.10, +2.50]' (percentage points)."""
    if gap is None:
        return DASH
    text = f"{100 * gap:+.2f}"
    return text if ci is None else f"{text} [{100 * ci.low:+.2f}, {100 * ci.high:+.2f}]"


def seeds_note(n: int) -> str:
    """What n matched seeds can show at all."""
    if n < 2:
        return f"n = {n} matched seed: no test is possible; run more seeds"
    floor = min_exact_p(n)
    if floor >= 0.05:
        return (f"with n = {n} matched seeds the exact sign / Wilcoxon tests cannot go below p = {floor:.4g} (never "
                "below 0.05); read the t-test and the interval")
    return f"with n = {n} matched seeds the exact tests can reach p = {floor:.4g}"


def _pending(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != COMPLETE and n)


def acc_cell(mean_acc: float | None, std_acc: float | None, n_done: int, planned: int,
             failures: tuple = (), counts: dict[str, int] | None = None) -> str:
    """'71.20 ± 0.30', '71.20 ± 0.30 (2/3)' when partial, 'failed: reason' with no result."""
    if mean_acc is None:
        # the cause in a word or two (the failed-seeds table and the notes carry the full reasons)
        parts = ["failed: " + "; ".join(sorted({_short_reason(f.reason) for f in failures}))] if failures else []
        pending = _pending({k: v for k, v in (counts or {}).items() if k != FAILED})
        parts += [pending] if pending else []
        return f"{'; '.join(parts) or 'no result'} (0/{planned})"
    text = pct(mean_acc) + ("" if std_acc is None else f" ± {pct(std_acc)}")
    return text if n_done >= planned else f"{text} ({n_done}/{planned})"


def _short_reason(reason: str) -> str:
    head = reason.split(":", 1)[0].split(";", 1)[0].strip()
    return head if len(head) <= 40 else head[:39] + "…"


def seeds_cell(cell: Cell) -> str:
    if not cell.partial:
        return str(cell.n_complete)
    rest = _pending(cell.state_counts)
    return f"{cell.n_complete}/{cell.planned}" + (f" ({rest})" if rest else "")


def cells_table(report: Report, group_index: int) -> TextTable:
    group = report.budgets[group_index]
    base = report.baseline
    headers = ["Arm", "Seeds", "Test acc. (%)", "Val. acc. (%)", "Params", "MACs", "Δ budget",
               f"Gap vs {base} (pp) [95% CI]", "Wins", "p (t / Holm)", "Exact p (sign / Wilcoxon)",
               "Best-epoch test (%) †"]
    rows = []
    for c in group.cells:
        name = c.generator + (" (varies)" if c.params_vary else "")
        acc = acc_cell(c.mean_acc, c.std_acc, c.n_complete, c.planned, c.failures, c.state_counts)
        if c.is_baseline:
            cmp = ["baseline", DASH, DASH, DASH]
        elif c.n_matched == 0:
            cmp = [DASH, DASH, DASH, DASH] if any(x.generator == base for x in group.cells) else [f"no {base}"] + [DASH] * 3
        else:
            wins = f"{c.wins}/{c.n_matched}" + (f" ({c.ties} tie{'s' * (c.ties > 1)})" if c.ties else "")
            if c.n_matched < 2:
                tp = "too few seeds"
            else:
                tp = f"{pvalue(c.t_test.p_value if c.t_test else None)} / {pvalue(c.p_holm)}"
            if min_exact_p(c.n_matched) >= 0.05:  # the exact tests can never be small: say so, no p
                exact = f"n = {c.n_matched}: cannot reach 0.05"
            else:
                exact = (f"{pvalue(c.sign.p_value if c.sign else None)} / "
                         f"{pvalue(c.wilcoxon.p_value if c.wilcoxon else None)}")
            cmp = [gap_cell(c.gap, c.gap_ci), wins, tp, exact]
        err = DASH if c.budget_error is None else f"{100 * c.budget_error:.2f}%"
        rows.append([name, seeds_cell(c), acc, pct(c.val_mean), count(c.params), count(c.macs), err] + cmp
                    + [pct(c.best_test_mean)])
    notes = []
    if any(c.params_vary for c in group.cells):
        notes.append("(varies): seeds of this arm have different architectures (random, searched); sizes are means.")
    if any(c.generator == "searched" for c in group.cells):
        notes.append("searched: per seed, the candidate with the best validation accuracy (chosen before its test "
                     "accuracy is read).")
    ns = sorted({c.n_matched for c in group.cells if c.n_matched})
    if ns:
        notes.append(seeds_note(ns[0]).capitalize() + ".")
    for c in group.cells:
        for f in c.failures:
            trial = f" (trial {f.trial_number})" if f.trial_number is not None else ""
            notes.append(f"{c.generator} seed {f.seed}{trial} failed: {f.reason}")
    kind = group.cells[0].budget_kind if group.cells else "params"
    return TextTable(budget_label(group.budget, group.param_budget, kind), headers, rows, notes,
                     key=f"cells-{group.budget:g}")


def pooled_table(report: Report) -> TextTable:
    rows = []
    for p in report.pooled:
        ci = f" [{100 * p.ci.low:+.2f}, {100 * p.ci.high:+.2f}]" if p.ci is not None else ""
        rows.append([p.generator, f"{p.n_pairs} ({p.n_budgets})", signed_pct(p.mean_gap) + ci, f"{p.wins}/{p.losses}",
                     pvalue(p.sign_flip.p_value if p.sign_flip else None), pvalue(p.t_test.p_value if p.t_test else None)])
    notes = [f"Every matched (budget, seed) pair of an arm against {report.baseline}, pooled: mean paired difference "
             "with its 95 % t-interval, wins/losses, and the exact (or, above 16 pairs, Monte Carlo) sign-flip "
             "permutation test of the mean difference and the paired t-test, both two-sided."]
    return TextTable(f"Pooled across budgets: each arm vs {report.baseline}",
                     ["Arm", "Pairs (budgets)", "Mean gap (pp) [95% CI]", "Wins/losses", "p (sign-flip)", "p (t)"],
                     rows, notes, key="pooled")


def scores_table(report: Report) -> TextTable:
    rng = report.score_range
    rows = [[s.generator, (pct(s.score) + (" (partial)" if s.partial else "")) if s.score is not None
             else f"{DASH} (does not span the range)", str(s.n_budgets)] for s in report.scores]
    where = f"{rng[0]:,}–{rng[1]:,} params" if rng else "(no common range)"
    notes = [
        f"Score: area under the accuracy-vs-log10(params) curve (mean test acc. per budget, linear "
        f"between budgets) over the common range {where}, divided by the range width: the curve's "
        "mean accuracy there (%). The range is the intersection of the ranges of all generators with "
        "at least two budgets, so scores compare like with like; a generator that does not span it, "
        "and single reference points (unpruned), are not scored."
    ]
    return TextTable("Score per generator across budgets", ["Generator", "Score (%)", "Budgets"], rows, notes, key="scores")


def pareto_table(report: Report) -> TextTable:
    rows = [[p.generator, f"{p.budget:g}", count(p.params), pct(p.mean_acc) + (" (partial)" if p.partial else "")]
            for p in report.pareto]
    return TextTable("Pareto front (params vs mean test acc.)", ["Arm", "Budget", "Params", "Test acc. (%)"], rows,
                     ["Cells not beaten by any other cell with fewer or equal params and higher or equal "
                      "mean accuracy."], key="pareto")


def failed_table(report: Report) -> TextTable:
    rows = [[f"{r.budget:g}", r.generator, str(r.seed), DASH if r.trial_number is None else str(r.trial_number),
             r.fail_reason or ("no accuracy recorded" if r.state != FAILED else "unknown")] for r in report.failed]
    return TextTable("Failed trials", ["Budget", "Generator", "Seed", "Trial", "Reason"], rows,
                     ["Failed seeds never count as an accuracy; their cells show fewer complete seeds."], key="failed")


_ARM_TITLES = {"unpruned": "Unpruned", "finetune": "Fine-tuned", "scratch-e": "Scratch-E", "scratch-b": "Scratch-B"}


def _arm_title(arm: str) -> str:
    return _ARM_TITLES.get(arm, arm)


def _arm_acc(a: RethinkArm | None) -> str:
    if a is None:
        return DASH
    return acc_cell(a.mean_acc, a.std_acc, len(a.seeds), a.planned, a.failures)


def rethink_table(report: Report) -> TextTable:
    """The paper's layout: Dataset | Model | Method | Unpruned | Pruned params | arms..."""
    arms = [a for a in report.rethink_arms if a != "unpruned"]
    headers = ["Dataset", "Model", "Method", "Unpruned", "Pruned params"] + [_arm_title(a) for a in arms]
    rows = []
    for row in report.rethink_rows:
        rows.append([row.dataset, row.model, row.method, _arm_acc(row.arms.get("unpruned")), count(row.pruned_params)]
                    + [_arm_acc(row.arms.get(a)) for a in arms])
    notes = ["Fine-tuned: pruned and fine-tuned; Scratch-E: same architecture trained from scratch "
             "for the same epochs; Scratch-B: from scratch with the same compute (FLOPs) budget. Accuracies: "
             "test accuracy after the last epoch."]
    return TextTable("Fine-tune vs scratch (rethink)", headers, rows, notes, key="rethink")


def rethink_arms_table(report: Report) -> TextTable:
    headers = ["Dataset", "Model", "Method", "Arm", "Seeds", "Test acc. (%)", "Params", "MACs", "FLOPs (2×MACs)", "Epochs", "lr"]
    rows = []
    for row in report.rethink_rows:
        for arm, a in row.arms.items():
            seeds = str(len(a.seeds)) if not a.partial else f"{len(a.seeds)}/{a.planned}"
            rows.append([row.dataset, row.model, row.method, _arm_title(arm), seeds, _arm_acc(a), count(a.params),
                         count(a.macs), count(a.flops), "/".join(map(str, a.epochs)) or DASH,
                         DASH if a.lr is None else f"{a.lr:g}"])
    notes = []
    for row in report.rethink_rows:
        for arm, a in row.arms.items():
            notes += [f"{row.model} {arm} seed {f.seed} failed: {f.reason}" for f in a.failures]
    return TextTable("Rethink arms: sizes and epochs", headers, rows, notes, key="rethink-arms")


def summary_line(report: Report) -> str:
    n = sum(report.state_counts.values())
    states = ", ".join(f"{k} {v}" for k, v in sorted(report.state_counts.items()))
    unfinished = sum(v for k, v in report.state_counts.items() if k in ("running", "waiting", "interrupted"))
    if not report.partial:
        status = "complete"
    elif unfinished:
        status = f"partial ({unfinished} trial(s) still running, waiting or interrupted)"
    else:
        status = "finished, with failed trials (cells below their planned seeds)"
    rethink = sum(len(a.seeds) for r in report.rethink_rows for a in r.arms.values())
    more = f"; {rethink} complete rethink runs" if report.rethink_rows else ""
    return f"{n} trial records ({states or 'none'}){more}; status: {status}."


def general_notes(report: Report) -> list[str]:
    """Conventions that hold for every table, shown once per report."""
    notes = [ACC_NOTE, BEST_NOTE, COUNT_NOTE]
    if report.budgets:
        notes.append(TEST_NOTE.format(baseline=report.baseline))
    if report.min_seeds:
        notes.append(seeds_note(report.min_seeds).capitalize() + ".")
    legacy = sum(1 for r in report.records if r.extra.get("legacy_best_acc"))
    if legacy:
        notes.append(f"{legacy} record(s) come from a version of prunesearch that kept only the best test accuracy "
                     "over epochs; for them that optimistic number stands in for the final-epoch accuracy.")
    return notes


def all_tables(report: Report) -> list[TextTable]:
    """Every table of the report, in reading order."""
    tables = [cells_table(report, i) for i in range(len(report.budgets))]
    if report.pooled:
        tables.append(pooled_table(report))
    if report.scores:
        tables.append(scores_table(report))
    if report.pareto:
        tables.append(pareto_table(report))
    if report.failed:
        tables.append(failed_table(report))
    if report.rethink_rows:
        tables += [rethink_table(report), rethink_arms_table(report)]
    return tables
