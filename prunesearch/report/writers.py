"""Report -> files: Markdown, CSV, PNG, HTML. Every file is written atomically (temp + rename) so a
report being rewritten while a study runs is never seen half-written."""

from __future__ import annotations

import base64
import csv
import html
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_write_bytes, make_private_dir
from ..records import RethinkRecord, TrialRecord
from .plots import architecture_png, efficiency_png
from .render import TextTable, all_tables, general_notes, summary_line
from .tables import BASELINE, Report, RuleProfile, build_report

FORMATS = ("md", "csv", "png", "html")
EFFICIENCY_PNG = "efficiency.png"
ARCHITECTURE_PNG = "architectures.png"


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """'md,csv' or ['md', 'csv'] -> ('md', 'csv'); unknown names raise ConfigError."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = []
    for f in (x.strip().lower() for x in items):
        if not f:
            continue
        f = {"markdown": "md"}.get(f, f)
        if f not in FORMATS:
            from ..errors import suggest

            raise ConfigError(f"unknown report format '{f}'{suggest(f, FORMATS)}; choose from {','.join(FORMATS)}")
        if f not in out:
            out.append(f)
    if not out:
        raise ConfigError(f"no report formats given; choose from {','.join(FORMATS)}")
    return tuple(out)


# ---------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table_markdown(t: TextTable) -> str:
    lines = [f"### {_md_escape(t.title)}", "", "| " + " | ".join(_md_escape(h) for h in t.headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(t.headers))) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in t.rows]
    if t.notes:
        lines += [""] + [f"- {_md_escape(n)}" for n in t.notes]
    return "\n".join(lines) + "\n"


def report_markdown(report: Report, images: dict[str, str] | None = None) -> str:
    """The whole report as Markdown; ``images`` maps a caption to a path relative to the .md file."""
    parts = [f"# {_md_escape(report.title)}", "", summary_line(report), ""]
    parts += [f"- {_md_escape(n)}" for n in general_notes(report)] + [""]
    for caption, rel in (images or {}).items():
        parts += [f"![{_md_escape(caption)}]({rel})", ""]
    parts += [table_markdown(t) for t in all_tables(report)]
    return "\n".join(parts)


# ---------------------------------------------------------------- CSV (numbers, not strings)


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode()


def csv_tables(report: Report) -> dict[str, bytes]:
    """File name -> CSV bytes. Accuracies and gaps in percent (column names say so), raw counts.
    ``test_acc`` is the final-epoch test accuracy (what the report leads with); ``best_epoch_test``
    the reference's optimistic best-over-epochs number."""
    pc = lambda x: None if x is None else round(100 * x, 6)  # noqa: E731
    cells = []
    for g in report.budgets:
        for c in g.cells:
            cells.append([
                g.budget, c.budget_kind, g.param_budget, c.generator, c.n_complete, c.planned, int(c.partial),
                pc(c.mean_acc), pc(c.std_acc), pc(c.val_mean), pc(c.best_test_mean), c.params, c.macs, c.flops,
                None if c.budget_error is None else round(c.budget_error, 8), int(c.params_vary),
                int(c.is_baseline), c.n_matched, pc(c.gap), pc(c.gap_ci.low) if c.gap_ci else None,
                pc(c.gap_ci.high) if c.gap_ci else None, c.wins, c.ties, c.losses,
                None if c.win_rate is None else round(c.win_rate, 6),
                c.t_test.p_value if c.t_test else None, c.p_holm,
                c.sign.statistic if c.sign else None, c.sign.p_value if c.sign else None,
                c.wilcoxon.statistic if c.wilcoxon else None, c.wilcoxon.p_value if c.wilcoxon else None,
                " ".join(map(str, c.seeds)), " ".join(map(str, c.chosen)),
                "; ".join(f"seed {f.seed}: {f.reason}" for f in c.failures),
            ])
    out = {"cells.csv": _csv_bytes(
        ["budget", "budget_kind", "target", "arm", "seeds_complete", "seeds_planned", "partial",
         "test_acc_mean_pct", "test_acc_std_pct", "val_acc_mean_pct", "best_epoch_test_mean_pct_optimistic", "params",
         "macs", "flops_2x_macs", "max_abs_budget_error", "params_vary", "is_baseline",
         f"matched_seeds_vs_{report.baseline}", "gap_pp", "gap_ci95_low_pp", "gap_ci95_high_pp", "wins", "ties",
         "losses", "win_rate", "t_test_p_two_sided", "t_test_p_holm", "sign_test_positive", "sign_test_p_two_sided",
         "wilcoxon_w_min", "wilcoxon_p_two_sided_exact", "complete_seeds", "reported_trials", "failures"], cells)}
    out["trials.csv"] = _csv_bytes(
        ["task", "arm", "budget", "budget_kind", "target", "generator", "seed", "state", "test_acc_pct", "val_acc_pct",
         "best_val_acc_pct", "best_val_epoch", "test_at_best_val_pct", "best_epoch_test_pct_optimistic", "params",
         "macs", "flops_2x_macs", "budget_error", "epochs", "train_seconds", "trial_number", "arch_id", "fail_reason"],
        ([r.task, r.arm, r.budget, r.budget_kind, r.param_budget, r.generator, r.seed, r.state, pc(r.final_acc),
          pc(r.val_acc), pc(r.best_val_acc), r.best_val_epoch, pc(r.test_at_best_val), pc(r.best_acc), r.params,
          r.macs, r.flops, r.budget_error, r.epochs, r.train_seconds, r.trial_number, r.arch_id, r.fail_reason]
         for r in report.records))
    if report.pooled:
        out["pooled.csv"] = _csv_bytes(
            ["arm", "pairs", "budgets", "mean_gap_pp", "ci95_low_pp", "ci95_high_pp", "wins", "losses",
             "sign_flip_p_two_sided", "t_test_p_two_sided"],
            ([p.generator, p.n_pairs, p.n_budgets, pc(p.mean_gap), pc(p.ci.low) if p.ci else None,
              pc(p.ci.high) if p.ci else None, p.wins, p.losses, p.sign_flip.p_value if p.sign_flip else None,
              p.t_test.p_value if p.t_test else None] for p in report.pooled))
    if report.scores:
        lo, hi = report.score_range or (None, None)
        out["scores.csv"] = _csv_bytes(
            ["arm", "score_mean_test_acc_pct", "budgets", "partial", "range_params_min", "range_params_max"],
            ([s.generator, None if s.score is None else round(100 * s.score, 6), s.n_budgets, int(s.partial), lo, hi]
             for s in report.scores))
    if report.pareto:
        out["pareto.csv"] = _csv_bytes(["arm", "budget", "params", "test_acc_mean_pct", "partial"],
                                       ([p.generator, p.budget, p.params, round(100 * p.mean_acc, 6), int(p.partial)]
                                        for p in report.pareto))
    if report.rethink_rows:
        rows = []
        for row in report.rethink_rows:
            for arm, a in row.arms.items():
                rows.append([row.dataset, row.model, row.method, row.pruned_params, arm, a.lr, len(a.seeds), a.planned,
                             pc(a.mean_acc), pc(a.std_acc), a.params, a.macs, a.flops,
                             "/".join(map(str, a.epochs)), "; ".join(f"seed {f.seed}: {f.reason}" for f in a.failures)])
        out["rethink.csv"] = _csv_bytes(
            ["dataset", "model", "method", "pruned_params", "arm", "lr", "seeds_complete", "seeds_planned",
             "test_acc_mean_pct", "test_acc_std_pct", "params", "macs", "flops_2x_macs", "epochs", "failures"], rows)
    return out


# ---------------------------------------------------------------- HTML (self-contained)

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:75em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
td{text-align:right}td:first-child{text-align:left}th{background:#f3f3f3}ul.notes{font-size:.85em;color:#555}
img{max-width:100%}"""


def table_html(t: TextTable) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    notes = "".join(f"<li>{e(n)}</li>" for n in t.notes)
    return (f'<h3 id="{e(t.key)}">{e(t.title)}</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n'
            + (f'<ul class="notes">{notes}</ul>\n' if notes else ""))


def report_html(report: Report, images: dict[str, bytes] | None = None) -> str:
    """A self-contained page: tables plus the PNGs embedded as data URIs (no external files)."""
    e = html.escape
    imgs = "".join(
        f'<figure><img alt="{e(cap)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{e(cap)}</figcaption></figure>\n" for cap, png in (images or {}).items())
    tables = "".join(table_html(t) for t in all_tables(report))
    notes = "".join(f"<li>{e(n)}</li>" for n in general_notes(report))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(report.title)}</title>'
            f"<style>{_CSS}</style></head>\n<body><h1>{e(report.title)}</h1>\n<p>{e(summary_line(report))}</p>\n"
            f'<ul class="notes">{notes}</ul>\n{imgs}{tables}</body></html>\n')


# ---------------------------------------------------------------- all together


def save_report(report: Report, out_dir: str | os.PathLike, formats: str | Iterable[str] = FORMATS,
                arch_budget: float | None = None) -> dict[str, Path]:
    """Write ``report`` into ``out_dir``; returns {name: path} for every file written.

    Keys: 'md', 'html', 'efficiency_png', 'architecture_png', and one per CSV ('cells_csv',
    'trials_csv', 'scores_csv', 'pareto_csv', 'rethink_csv'). Markdown links only PNGs that exist.
    """
    fmts = parse_formats(formats)
    out = Path(out_dir)
    if arch_budget is not None and report.budgets and report.group(arch_budget) is None:
        known = ", ".join(f"{g.budget:g}" for g in report.budgets)
        raise ConfigError(f"budget {arch_budget:g} is not in this study; choose one of {known}")
    try:
        make_private_dir(out)
    except OSError as err:
        raise ConfigError(f"cannot create report directory {out}: {err.strerror}; pass a writable --out DIR") from None
    written: dict[str, Path] = {}
    figures: dict[str, tuple[str, bytes]] = {}  # key -> (caption, png)
    if "png" in fmts or "html" in fmts:
        eff = efficiency_png(report)
        if eff:
            figures["efficiency_png"] = ("Parameter efficiency: accuracy vs parameters", eff)
        arch = architecture_png(report, arch_budget)
        if arch:
            figures["architecture_png"] = ("Kept channels per layer" + (" and design-rule profile" if report.rule_profile else ""), arch)
    names = {"efficiency_png": EFFICIENCY_PNG, "architecture_png": ARCHITECTURE_PNG}
    if "png" in fmts:
        for key, (_, png) in figures.items():
            written[key] = atomic_write_bytes(out / names[key], png)
    if "csv" in fmts:
        for name, data in csv_tables(report).items():
            written[name.replace(".", "_")] = atomic_write_bytes(out / name, data)
    if "md" in fmts:
        # Relative links, and only to figures written in this call so that every link resolves.
        images = {figures[k][0]: names[k] for k in figures if k in written}
        written["md"] = atomic_write_bytes(out / "report.md", report_markdown(report, images).encode())
    if "html" in fmts:
        written["html"] = atomic_write_bytes(out / "report.html", report_html(report, dict(figures.values())).encode())
    return written


def write_report(
    records: Iterable[TrialRecord],
    out_dir: str | os.PathLike,
    formats: str | Iterable[str] = FORMATS,
    rule_profile: RuleProfile | None = None,
    rethink: Iterable[RethinkRecord] | None = None,
    title: str = "prunesearch report",
    *,
    arch_budget: float | None = None,
    planned_seeds: int | None = None,
    baseline: str = BASELINE,
) -> dict[str, Path]:
    """Build the report from records and write it; returns {name: path} of the files written."""
    report = build_report(records, rethink=rethink, rule_profile=rule_profile, title=title,
                          baseline=baseline, planned_seeds=planned_seeds)
    return save_report(report, out_dir, formats, arch_budget=arch_budget)
