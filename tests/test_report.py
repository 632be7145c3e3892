"""Report from hand-written records (torch-free): every number is checked against a value computed
by hand here, never against the code's own output."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from io import StringIO
from pathlib import Path

import pytest

from prunesearch.errors import ConfigError
from prunesearch.records import RethinkRecord, TrialRecord
from prunesearch.report import (
    build_report,
    normalized_auc,
    pareto_front,
    rule_profile_from_dict,
    sign_test,
    wilcoxon_signed_rank,
    write_records_jsonl,
    write_report,
)
from prunesearch.commands._render import report_renderables
from prunesearch.report.render import all_tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rec(gen: str, budget: float, seed: int, acc: float | None, *, state: str = "complete", params: int | None = None,
        reason: str | None = None, widths: list[int] | None = None, trial: int | None = None) -> TrialRecord:
    params = params if params is not None else int(budget * 100_000)
    return TrialRecord(
        generator=gen, budget=budget, param_budget=int(budget * 100_000), seed=seed,
        arch={"family": "vgg", "depth": 16, "widths": widths or [8, 16, 32, 64]}, arch_id=f"{gen}-{budget}",
        params=params, macs=params * 40, dataset="cifar10", recipe={"name": "fast"}, state=state, final_acc=acc,
        best_acc=acc, val_acc=acc, fail_reason=reason, trial_number=trial,
    )


UNIFORM = [0.90, 0.91, 0.92, 0.93, 0.94]
PRUNED = [0.92, 0.925, 0.93, 0.95, 0.945]  # differences 0.02, 0.015, 0.01, 0.02, 0.005: all wins


def five_seed_study() -> list[TrialRecord]:
    out = [rec("uniform", 0.25, s, a, widths=[16, 32, 64, 64]) for s, a in enumerate(UNIFORM)]
    out += [rec("pruned", 0.25, s, a, widths=[30, 40, 20, 10]) for s, a in enumerate(PRUNED)]
    return out


def cell(report, budget: float, gen: str):
    return next(c for c in report.group(budget).cells if c.generator == gen)


# ---------------------------------------------------------------- statistics by hand


def test_sign_test_five_wins_is_two_times_half_to_the_fifth():
    t = sign_test([0.02, 0.015, 0.01, 0.02, 0.005])
    assert t.n == 5 and t.statistic == 5
    assert t.p_value == pytest.approx(2 * 0.5**5)  # 0.0625


def test_sign_test_four_of_five_and_ties_dropped():
    # P(X <= 1) for Binomial(5, 1/2) = (1 + 5) / 32; two-sided doubles it.
    assert sign_test([1, 1, 1, 1, -1]).p_value == pytest.approx(2 * 6 / 32)
    t = sign_test([0.0, 1.0, -1.0])  # the zero is dropped: n = 2, k = 1 -> p = min(1, 2 * 3/4)
    assert (t.n, t.p_value) == (2, 1.0)
    assert sign_test([0.0, 0.0]).p_value is None


def test_wilcoxon_exact_by_enumeration():
    # |d| ranks 1..5, the rank-2 difference negative: W+ = 13, W- = 2.
    # Subsets of {1..5} with sum <= 2: {}, {1}, {2} -> P(W+ >= 13) = 3/32, two-sided 6/32.
    t = wilcoxon_signed_rank([1.0, -2.0, 3.0, 4.0, 5.0])
    assert (t.n, t.statistic) == (5, 2)
    assert t.p_value == pytest.approx(6 / 32)
    # All positive: only one of 2^5 sign patterns reaches W+ = 15.
    assert wilcoxon_signed_rank([0.02, 0.015, 0.01, 0.02, 0.005]).p_value == pytest.approx(2 / 32)


def test_wilcoxon_matches_scipy_exact_when_available():
    stats = pytest.importorskip("scipy.stats")
    for d in ([1.0, -2.0, 3.0, 4.0, 5.0, -6.0, 7.0], [0.3, -0.1, 0.25, 0.7, -0.05, 0.9, 1.1, -0.4]):
        ref = stats.wilcoxon(d, method="exact")
        ours = wilcoxon_signed_rank(d)
        assert ours.statistic == pytest.approx(ref.statistic)
        assert ours.p_value == pytest.approx(ref.pvalue)


def test_normalized_auc_and_pareto_by_hand():
    # Area under (0,0)-(1,1)-(2,1) over [0, 2] is 0.5 + 1 = 1.5; divided by the width 2.
    assert normalized_auc([(0, 0), (1, 1), (2, 1)], 0, 2) == pytest.approx(0.75)
    assert normalized_auc([(0, 0), (2, 1)], 1, 1) == pytest.approx(0.5)  # zero width: the value there
    assert normalized_auc([(1, 0), (2, 1)], 0, 2) is None  # range not covered
    pts = [(10, 0.5), (20, 0.7), (15, 0.4), (30, 0.7), (40, 0.9)]
    assert pareto_front(pts) == [0, 1, 4]  # (15, .4) and (30, .7) are dominated


# ---------------------------------------------------------------- tables


def test_cell_table_values_against_hand_computation():
    report = build_report(five_seed_study())
    u, p = cell(report, 0.25, "uniform"), cell(report, 0.25, "pruned")
    assert u.is_baseline and u.n_complete == 5 and not u.partial
    assert u.mean_acc == pytest.approx(0.92)
    # sample std of 0.90..0.94: sqrt((4+1+0+1+4) * 1e-4 / 4)
    assert u.std_acc == pytest.approx(math.sqrt(0.001 / 4))
    assert p.mean_acc == pytest.approx(sum(PRUNED) / 5)
    assert p.gap == pytest.approx((0.02 + 0.015 + 0.01 + 0.02 + 0.005) / 5)  # 0.014
    assert (p.wins, p.ties, p.losses, p.win_rate) == (5, 0, 0, 1.0)
    assert p.sign.p_value == pytest.approx(0.0625)
    assert p.wilcoxon.statistic == 0 and p.wilcoxon.p_value == pytest.approx(0.0625)
    assert (p.params, p.macs, p.flops) == (25_000, 1_000_000, 2_000_000)  # FLOPs = 2 x MACs
    md = all_tables(report)[0]
    row = next(r for r in md.rows if r[0] == "pruned")
    # mean 4.67 / 5 = 93.40 %; deviations -1.4, -0.9, -0.4, 1.6, 1.1 (%) -> std sqrt(6.70 / 4) = 1.29 %
    assert row[2] == "93.40 ± 1.29"
    # gap with its 95 % t-interval: mean 1.4, sd of the differences 0.652 pp, t(0.975, 4) = 2.776
    # five pairs: the exact tests cannot go below 2/2^5 = 0.0625, so the cell says so instead of a p
    assert row[7] == "+1.40 [+0.59, +2.21]" and row[8] == "5/5" and row[10] == "n = 5: cannot reach 0.05"
    assert row[9].split(" / ")[0] == "0.009"  # paired t-test, two-sided (one cell: Holm changes nothing)
    assert p.gap_ci.low == pytest.approx(0.014 - 2.7764451 * 0.0065192 / math.sqrt(5), abs=1e-6)


def test_matched_seeds_win_rate_with_tie_and_loss():
    recs = [rec("uniform", 0.5, s, a) for s, a in [(0, 0.80), (1, 0.81), (2, 0.82)]]
    # guided has seeds 1, 2, 3: only 1 and 2 are matched. Seed 1 ties, seed 2 loses.
    recs += [rec("guided", 0.5, s, a) for s, a in [(1, 0.81), (2, 0.80), (3, 0.99)]]
    c = cell(build_report(recs), 0.5, "guided")
    assert c.n_matched == 2 and (c.wins, c.ties, c.losses) == (0, 1, 1)
    assert c.win_rate == 0.0
    assert c.gap == pytest.approx(((0.81 - 0.81) + (0.80 - 0.82)) / 2)
    assert c.sign.n == 1 and c.sign.p_value == pytest.approx(1.0)


def test_partial_and_failed_cells():
    recs = [rec("uniform", 0.1, s, 0.70 + 0.01 * s) for s in range(3)]
    recs += [rec("pruned", 0.1, 0, 0.712), rec("pruned", 0.1, 1, 0.715),
             rec("pruned", 0.1, 2, None, state="running")]
    recs += [rec("guided", 0.1, s, None, state="failed", reason="CUDA out of memory", trial=10 + s) for s in range(3)]
    # a failed attempt that was retried successfully counts as the complete result
    recs += [rec("random", 0.1, 0, None, state="failed", reason="diverged", trial=3), rec("random", 0.1, 0, 0.6, trial=7)]
    report = build_report(recs)
    pruned = cell(report, 0.1, "pruned")
    assert pruned.partial and (pruned.n_complete, pruned.planned) == (2, 3)
    guided = cell(report, 0.1, "guided")
    assert guided.mean_acc is None and guided.n_complete == 0 and len(guided.failures) == 3
    rnd = cell(report, 0.1, "random")
    assert rnd.n_complete == 1 and not rnd.failures
    rows = {r[0]: r for r in all_tables(report)[0].rows}
    assert rows["pruned"][2] == "71.35 ± 0.21 (2/3)"
    assert rows["pruned"][1] == "2/3 (1 running)"
    assert rows["guided"][2] == "failed: CUDA out of memory (0/3)"
    assert not re.search(r"\d\d\.\d\d", rows["guided"][2])  # never an accuracy
    assert [(r.generator, r.seed) for r in report.failed] == [("guided", 0), ("guided", 1), ("guided", 2)]
    assert report.partial


def test_planned_seeds_from_the_spec_marks_missing_seeds():
    recs = [rec("uniform", 0.1, s, 0.7) for s in range(3)]
    assert cell(build_report(recs, planned_seeds=5), 0.1, "uniform").planned == 5
    assert not build_report(recs).partial


def test_auc_score_on_two_budget_toy():
    recs = []
    for budget, params, accs in [(0.1, 10_000, {"uniform": 0.80, "pruned": 0.82}),
                                 (1.0, 100_000, {"uniform": 0.90, "pruned": 0.91})]:
        for gen, acc in accs.items():
            recs += [rec(gen, budget, s, acc, params=params) for s in range(2)]
    recs.append(rec("guided", 0.1, 0, 0.85, params=10_000))  # one budget only: does not span the range
    report = build_report(recs)
    scores = {s.generator: s.score for s in report.scores}
    # log10 params 4 -> 5, linear: the normalised area is the mean of the two end values.
    assert scores["uniform"] == pytest.approx((0.80 + 0.90) / 2)
    assert scores["pruned"] == pytest.approx((0.82 + 0.91) / 2)
    assert scores["guided"] is None
    assert report.score_range == (10_000, 100_000)
    # Pareto front over cells: pruned dominates uniform at both budgets; guided is best at 10k.
    assert [(p.generator, p.params) for p in report.pareto] == [("guided", 10_000), ("pruned", 100_000)]


def test_auc_uses_common_range_only():
    recs = []
    for params, acc in [(1_000, 0.5), (10_000, 0.7), (100_000, 0.9)]:
        recs.append(rec("pruned", params / 100_000, 0, acc, params=params))
    for params, acc in [(10_000, 0.6), (100_000, 0.8)]:
        recs.append(rec("uniform", params / 100_000, 0, acc, params=params))
    scores = {s.generator: s.score for s in build_report(recs).scores}
    assert scores["pruned"] == pytest.approx(0.8)  # only 10k..100k counts: (0.7 + 0.9) / 2
    assert scores["uniform"] == pytest.approx(0.7)


# ---------------------------------------------------------------- rethink


def rethink_records() -> list[RethinkRecord]:
    out = []
    for arm, params, epochs, accs in [("unpruned", 20_000_000, 160, [0.935, 0.937]),
                                      ("finetune", 2_000_000, 40, [0.930, 0.932]),
                                      ("scratch-e", 2_000_000, 160, [0.931, 0.935]),
                                      ("scratch-b", 2_000_000, 320, [0.936, 0.938])]:
        out += [RethinkRecord(arm=arm, seed=s, model="vgg16", dataset="cifar10", method="slimming", params=params,
                              macs=params * 10, epochs=epochs, best_acc=a) for s, a in enumerate(accs)]
    out.append(RethinkRecord(arm="scratch-b", seed=2, model="vgg16", dataset="cifar10", method="slimming",
                             params=2_000_000, macs=20_000_000, epochs=320, best_acc=None, state="failed",
                             fail_reason="diverged"))
    return out


def test_rethink_table_in_paper_format():
    report = build_report([], rethink=rethink_records())
    tables = {t.key: t for t in all_tables(report)}
    t = tables["rethink"]
    assert t.headers == ["Dataset", "Model", "Method", "Unpruned", "Pruned params", "Fine-tuned", "Scratch-E", "Scratch-B"]
    (row,) = t.rows
    # mean of 0.935, 0.937 = 93.60 %; std = |0.002| / sqrt(2) = 0.14 %
    assert row[:5] == ["cifar10", "vgg16", "slimming", "93.60 ± 0.14", "2,000,000"]
    assert row[5] == "93.10 ± 0.14" and row[6] == "93.30 ± 0.28"
    assert row[7] == "93.70 ± 0.14 (2/3)"  # the failed seed makes the cell partial, never an accuracy
    arms = {r[3]: r for r in tables["rethink-arms"].rows}
    assert arms["Scratch-B"][9] == "320" and arms["Fine-tuned"][9] == "40"
    assert arms["Unpruned"][8] == "400,000,000"  # FLOPs = 2 x MACs
    assert any("diverged" in n for n in tables["rethink-arms"].notes)


# ---------------------------------------------------------------- writers


def test_write_report_files_png_markdown_links_csv_html(tmp_path):
    recs = five_seed_study() + [rec("uniform", 0.5, s, 0.95) for s in range(2)] + [
        rec("pruned", 0.5, 0, 0.96), rec("pruned", 0.5, 1, None, state="waiting")]
    profile = {0.25: [(0.0, 0.9), (0.5, 0.6), (1.0, 0.2)]}
    written = write_report(recs, tmp_path / "out", rule_profile=profile, rethink=rethink_records(), title="Toy <study>")
    for key in ("efficiency_png", "architecture_png"):
        data = written[key].read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    md = written["md"].read_text()
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert set(links) == {"efficiency.png", "architectures.png"}
    assert all((written["md"].parent / link).is_file() for link in links)
    assert "(1/2)" in md  # the partial cell
    rows = list(csv.DictReader(written["cells_csv"].open()))
    pruned = next(r for r in rows if r["arm"] == "pruned" and r["budget"] == "0.25")
    assert float(pruned["gap_pp"]) == pytest.approx(1.4)
    assert float(pruned["sign_test_p_two_sided"]) == pytest.approx(0.0625)
    assert int(pruned["flops_2x_macs"]) == 2 * int(pruned["macs"])
    html = written["html"].read_text()
    assert "Toy &lt;study&gt;" in html and "<study>" not in html
    assert html.count("data:image/png;base64,") == 2  # self-contained


def test_markdown_only_has_no_dangling_links_and_escapes_pipes(tmp_path):
    recs = five_seed_study() + [rec("pruned", 0.5, 0, None, state="failed", reason="bad | reason")]
    written = write_report(recs, tmp_path, formats="md")
    assert set(written) == {"md"}
    md = written["md"].read_text()
    assert "](" not in md
    assert "bad \\| reason" in md


def test_html_escapes_failure_reasons(tmp_path):
    recs = five_seed_study() + [rec("pruned", 0.5, 0, None, state="failed", reason="<script>alert(1)</script> & co")]
    html = write_report(recs, tmp_path, formats=["html"])["html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html


def test_bad_format_and_bad_budget_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown report format 'pdf'"):
        write_report(five_seed_study(), tmp_path, formats="md,pdf")
    with pytest.raises(ConfigError, match="choose one of 0.25"):
        write_report(five_seed_study(), tmp_path, arch_budget=0.3)


def test_rich_renderables_show_partial_cells():
    from rich.console import Console

    recs = five_seed_study() + [rec("guided", 0.25, 0, 0.93), rec("guided", 0.25, 1, None, state="running")]
    buf = StringIO()
    con = Console(file=buf, width=200, color_system=None)
    for r in report_renderables(build_report(recs)):
        con.print(r)
    out = buf.getvalue()
    assert "93.00 (1/2)" in out and "93.40 ± 1.29" in out


def test_rule_profile_shapes():
    pts = [(0.0, 0.9), (1.0, 0.2)]
    assert rule_profile_from_dict({"profile": {0.3: [[0, 0.9], [1, 0.2]]}}) == {"0.3": pts}
    assert rule_profile_from_dict({"levels": {0.3: {"rel_depth": [0, 1], "keep_ratio": [0.9, 0.2]}}}) == {"0.3": pts}
    assert rule_profile_from_dict({"levels": [{"budget": 0.3, "points": [[0, 0.9], [1, 0.2]]}]}) == {"0.3": pts}
    assert rule_profile_from_dict({"something": 1}) is None


# ---------------------------------------------------------------- CLI


def make_run_dir(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    write_records_jsonl(five_seed_study(), d / "records.jsonl")
    write_records_jsonl(rethink_records(), d / "rethink.jsonl")
    (d / "rule.yaml").write_text("profile:\n  0.25: [[0.0, 0.9], [1.0, 0.2]]\n")
    return d


def test_cli_report_on_run_dir(tmp_path, capsys):
    from prunesearch.cli import main

    run = make_run_dir(tmp_path / "run")
    assert main(["report", str(run), "--budget", "0.25"]) == 0
    out = capsys.readouterr().out
    for name in ("report.md", "report.html", "cells.csv", "efficiency.png", "architectures.png", "rethink.csv"):
        assert (run / "report" / name).is_file(), name
        assert str(run / "report" / name) in out
    assert "93.40 ± 1.29" in out


def test_cli_json_and_out_dir(tmp_path, capsys):
    from prunesearch.cli import main

    run = make_run_dir(tmp_path / "run")
    assert main(["report", str(run), "--out", str(tmp_path / "elsewhere"), "--format", "csv", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["written"]) >= {"cells_csv", "trials_csv", "rethink_csv"}
    pruned = data["report"]["budgets"][0]["cells"][1]
    assert pruned["generator"] == "pruned" and pruned["sign"]["p_value"] == pytest.approx(0.0625)
    assert not (run / "report").exists()


@pytest.mark.parametrize("setup", ["missing", "empty", "bad-jsonl", "bad-run-json"])
def test_cli_bad_run_dir_exits_2_with_one_line(tmp_path, capsys, setup):
    from prunesearch.cli import main

    d = tmp_path / "run"
    if setup != "missing":
        d.mkdir()
    if setup == "bad-jsonl":
        (d / "records.jsonl").write_text('{"generator": "uniform"}\n')
    if setup == "bad-run-json":
        (d / "run.json").write_text("[1, 2]")
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert str(d) in err


def _study_layer():
    pytest.importorskip("optuna")
    try:
        from prunesearch.study import load_records  # noqa: F401
    except ImportError as err:  # the study layer is another engineer's package
        pytest.skip(f"study layer not importable: {err}")


def test_cli_storage_errors_mask_password(tmp_path, capsys):
    from prunesearch.cli import main

    _study_layer()
    d = tmp_path / "run"
    d.mkdir()
    # Port 1 on localhost refuses at once: the real study layer raises, nothing may show the password.
    (d / "run.json").write_text(json.dumps({"storage": "postgresql+psycopg://me:hunter2@127.0.0.1:1/x", "study": "s1"}))
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err and len(err.strip().splitlines()) == 1


def test_mask_url():
    from prunesearch.urls import mask_url

    assert mask_url("postgresql+psycopg://me:hunter2@db:5432/x") == "postgresql+psycopg://me@db:5432/x"
    assert mask_url("journal:/tmp/j.log") == "journal:/tmp/j.log"


def test_cli_falls_back_to_snapshot_when_storage_is_unreadable(tmp_path, capsys):
    from prunesearch.cli import main

    _study_layer()
    run = make_run_dir(tmp_path / "run")
    (run / "run.json").write_text(json.dumps({"storage": str(tmp_path / "gone.log"), "study": "s1"}))
    assert main(["report", str(run), "--format", "md"]) == 0
    cap = capsys.readouterr()
    assert "warning:" in cap.err and "records.jsonl" in cap.err
    assert (run / "report" / "report.md").is_file()


def test_cli_reads_a_real_journal_study_via_run_json(tmp_path, capsys):
    """run.json -> the study layer's load_records on a real Optuna journal file."""
    from prunesearch.cli import main

    _study_layer()
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "journal.log"
    study = optuna.create_study(study_name="s1", storage=JournalStorage(JournalFileBackend(str(journal))))
    for r in five_seed_study()[:3] + [rec("uniform", 0.25, 3, None, state="running")]:
        attrs = {k: v for k, v in r.to_dict().items() if k in (
            "generator", "budget", "param_budget", "seed", "arch", "arch_id", "params", "macs", "dataset", "recipe")}
        attrs.update(slot=f"{r.generator}/{r.budget}/{r.seed}", best_acc=r.best_acc)
        state = optuna.trial.TrialState.COMPLETE if r.state == "complete" else optuna.trial.TrialState.WAITING
        study.add_trial(optuna.trial.create_trial(state=state, value=r.best_acc if r.best_acc is not None else None,
                                                  user_attrs=attrs))
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"storage": str(journal), "study": "s1", "seeds": 5}))
    assert main(["report", str(d), "--format", "md,csv"]) == 0
    md = (d / "report" / "report.md").read_text()
    assert "(3/5)" in md  # 3 complete of the 5 seeds run.json plans
    rows = list(csv.DictReader((d / "report" / "cells.csv").open()))
    assert rows[0]["arm"] == "uniform" and float(rows[0]["test_acc_mean_pct"]) == pytest.approx(91.0)
    assert rows[0]["seeds_complete"] == "3" and rows[0]["seeds_planned"] == "5"


def test_waiting_searched_trials_without_architecture_have_no_size():
    recs = [rec("uniform", 0.1, 0, 0.7), rec("searched", 0.1, 0, None, state="waiting", params=0)]
    recs[-1] = TrialRecord(**{**recs[-1].__dict__, "arch": {}, "macs": 0})
    report = build_report(recs)
    c = cell(report, 0.1, "searched")
    assert c.params is None and c.macs is None and c.partial
    row = next(r for r in all_tables(report)[0].rows if r[0] == "searched")
    assert row[2] == "1 waiting (0/1)" and row[3] == "—"


def test_cli_rethink_only_run_dir_with_lottery_arms(tmp_path, capsys):
    from prunesearch.cli import main

    recs = rethink_records()
    for arm, lr, accs in [("winning-ticket-lr0.1", 0.1, [0.91, 0.93]), ("random-init-lr0.1", 0.1, [0.92, 0.92])]:
        recs += [RethinkRecord(arm=arm, seed=s, model="vgg16", dataset="cifar10", method="slimming", params=2_000_000,
                               macs=20_000_000, epochs=160, best_acc=a, lr=lr) for s, a in enumerate(accs)]
    d = tmp_path / "rethink-run"
    d.mkdir()
    write_records_jsonl(recs, d / "rethink.jsonl")
    assert main(["report", str(d)]) == 0
    md = (d / "report" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Dataset | Model | Method | Unpruned"))
    # paper order first, then the lottery arms alphabetically
    assert header.split(" | ")[5:] == ["Fine-tuned", "Scratch-E", "Scratch-B", "random-init-lr0.1", "winning-ticket-lr0.1 |"]
    assert "92.00 ± 1.41" in md  # winning ticket: mean 0.92, std 0.02 / sqrt(2)
    assert all((d / "report" / link).is_file() for link in re.findall(r"\]\(([^)]+)\)", md))
    assert "FLOPs" in capsys.readouterr().out


def test_report_package_is_torch_optuna_and_matplotlib_free_on_import():
    import subprocess

    code = ("import sys, prunesearch.report, prunesearch.commands.report; "
            "bad = [m for m in ('torch', 'optuna', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad")
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
