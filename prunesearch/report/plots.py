"""Figures as PNG bytes. matplotlib is imported lazily and used through the object API with the
Agg canvas (no pyplot, no global backend switch), so it is headless and safe inside other programs."""

from __future__ import annotations

import io
import math
from typing import Any

from ..errors import ConfigError
from .tables import REFERENCE_GENERATORS, BudgetGroup, Report

_MARKERS = "osD^v<>pXh*"


def _figure(width: float, height: float, nrows: int = 1):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is in the test extras
        raise ConfigError(
            "matplotlib is not installed, so PNG figures cannot be drawn; install it with "
            "pip install 'prunesearch[plot]' or leave png out of --format"
        ) from None
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, squeeze=False)[:, 0]
    return fig, list(axes)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def efficiency_png(report: Report) -> bytes | None:
    """Accuracy vs params (log x), one line per generator with ±std error bars; hollow markers are
    partial cells; the grey dashed steps are the Pareto front. None when nothing is complete."""
    lines: dict[str, list[Any]] = {}
    for g in report.budgets:
        for c in g.cells:
            if c.mean_acc is not None and c.params:
                lines.setdefault(c.generator, []).append(c)
    if not lines:
        return None
    fig, (ax,) = _figure(7.0, 4.6)
    shown = [g for g in report.generators if g in lines]
    # arms of one budget have (almost) the same count: spread them a little along x so their error
    # bars do not hide each other (log x: a factor, +-3 % at the ends)
    counts = sorted({g.param_budget for g in report.budgets if g.param_budget})
    gaps = [math.log(b / a) for a, b in zip(counts, counts[1:]) if a > 0]
    half = min([0.03] + [0.2 * g for g in gaps])  # at most a fifth of the closest budgets' log spacing
    spread = {gen: math.exp(2 * half * ((i - (len(shown) - 1) / 2) / max(1, len(shown) - 1)))
              for i, gen in enumerate(shown)}
    for i, gen in enumerate(shown):
        cells = sorted(lines[gen], key=lambda c: c.params)
        xs = [c.params * spread[gen] for c in cells]
        ys = [100 * c.mean_acc for c in cells]
        es = [0.0 if c.std_acc is None else 100 * c.std_acc for c in cells]
        marker = "*" if gen in REFERENCE_GENERATORS else _MARKERS[i % len(_MARKERS)]
        bars = ax.errorbar(xs, ys, yerr=es, marker=marker, capsize=3, linestyle="-" if len(xs) > 1 else "none",
                           label=gen, markersize=9 if marker == "*" else 6)
        color = bars.lines[0].get_color()
        for x, y, c in zip(xs, ys, cells):
            if c.partial:  # hollow = not all planned seeds are in yet
                ax.plot([x], [y], marker=marker, markersize=9 if marker == "*" else 6,
                        markerfacecolor="white", markeredgecolor=color, linestyle="none", zorder=4)
    if len(report.pareto) > 1:
        ax.step([p.params for p in report.pareto], [100 * p.mean_acc for p in report.pareto], where="post",
                color="0.6", linestyle="--", linewidth=1, label="Pareto front", zorder=0)
    ax.set_xscale("log")
    # ticks at the budgets themselves (not at powers of ten), labelled with their counts
    groups = sorted((g for g in report.budgets if g.param_budget), key=lambda g: g.param_budget)
    targets = [g.param_budget for g in groups]
    if targets:
        from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter, NullLocator

        ax.xaxis.set_major_locator(FixedLocator(targets))
        def label(g) -> str:
            t = g.param_budget
            count = f"{t / 1e6:.3g}M" if t >= 1e6 else f"{t / 1e3:.3g}k" if t >= 1e3 else str(t)
            return f"{count}\n({g.budget:g})" if g.budget <= 1 else count  # the count and the fraction asked for

        # a label only where it does not collide with the previous one (every budget keeps its tick)
        span = math.log(targets[-1] / targets[0]) if targets[0] > 0 and len(targets) > 1 else 1.0
        labels, last = [], None
        for g in groups:
            if last is None or math.log(g.param_budget / last) >= 0.08 * max(span, 1e-9):
                labels.append(label(g))
                last = g.param_budget
            else:
                labels.append("")
        ax.xaxis.set_major_formatter(FixedFormatter(labels))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    n_seeds = sorted({c.n_complete for g in report.budgets for c in g.cells if c.mean_acc is not None})
    kinds = {c.budget_kind for g in report.budgets for c in g.cells}
    ax.set_xlabel("parameters (log scale)" + ("; budgets were MACs" if kinds == {"macs"} else ""))
    ax.set_ylabel("test accuracy after the last epoch (%)")
    n_text = f"n = {n_seeds[0]}" if len(n_seeds) == 1 else f"n = {n_seeds[0]}-{n_seeds[-1]}" if n_seeds else ""
    ax.set_title(f"Parameter efficiency: accuracy vs parameters (mean ± std over seeds, {n_text})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if report.partial:
        ax.text(0.99, 0.01, "hollow markers: partial cells", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, color="0.4")
    return _png(fig)


def _flat_widths(widths: Any) -> list[float]:
    """Architecture widths as one list per layer (nested per-block lists are flattened in order)."""
    out: list[float] = []
    if isinstance(widths, dict):
        widths = list(widths.values())
    for w in widths or []:
        if isinstance(w, (list, tuple, dict)):
            out += _flat_widths(w)
        elif isinstance(w, (int, float)) and not isinstance(w, bool):
            out.append(float(w))
    return out


def arch_widths(group: BudgetGroup, records: list) -> dict[str, tuple[int, list[float]]]:
    """generator -> (seed, kept channels per layer) at this budget, from the lowest complete seed
    (any seed when none is complete: the architecture is fixed before training)."""
    out: dict[str, tuple[int, list[float]]] = {}
    for c in group.cells:
        recs = [r for r in records if r.generator == c.generator and math.isclose(float(r.budget), group.budget)]
        # the architectures the table reports (searched: the validation-chosen trial of each seed)
        recs.sort(key=lambda r: (r.trial_number not in c.chosen, r.seed not in c.seeds, r.seed))
        for r in recs:
            widths = _flat_widths((r.arch or {}).get("widths"))
            if widths:
                out[c.generator] = (r.seed, widths)
                break
    return out


def architecture_png(report: Report, budget: float | None = None) -> bytes | None:
    """Kept channels per layer for each generator at ``budget`` (default: the smallest budget), and
    the rule's keep-ratio profile along relative depth when the report has one."""
    group = report.group(budget) if budget is not None else (report.budgets[0] if report.budgets else None)
    widths = arch_widths(group, report.records) if group is not None else {}
    profile = report.rule_profile or {}
    if not widths and not profile:
        return None
    nrows = int(bool(widths)) + int(bool(profile))
    fig, axes = _figure(7.0, 3.6 * nrows, nrows)
    ax_iter = iter(axes)
    if widths:
        ax = next(ax_iter)
        for i, gen in enumerate(g for g in report.generators if g in widths):
            seed, ws = widths[gen]
            varies = any(c.generator == gen and c.params_vary for c in group.cells)  # type: ignore[union-attr]
            label = gen + (f" (seed {seed})" if varies else "")
            ax.plot(range(1, len(ws) + 1), ws, marker=_MARKERS[i % len(_MARKERS)], markersize=4, label=label)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (slot index, input to output)")
        ax.set_ylabel("kept channels")
        from .render import budget_label

        kind = group.cells[0].budget_kind if group.cells else "params"  # type: ignore[union-attr]
        ax.set_title(f"Architectures at {budget_label(group.budget, group.param_budget, kind)}", fontsize=10)  # type: ignore[union-attr]
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if profile:
        ax = next(ax_iter)
        for i, (level, pts) in enumerate(profile.items()):
            ax.plot([d for d, _ in pts], [k for _, k in pts], marker=_MARKERS[i % len(_MARKERS)], markersize=4,
                    label=f"level {level}")
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("relative depth (0 = input, 1 = output)")
        ax.set_ylabel("keep ratio")
        ax.set_title("Design rule: keep ratio along relative depth", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)
