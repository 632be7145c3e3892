"""`prunesearch discover` end to end (tiny synthetic data by default; mnist5k behind the slow marker)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from prunesearch.arch import count_params, load_architecture, resolve_budget, unpruned
from prunesearch.cli import main
from prunesearch.generators import get_generator
from prunesearch.rules import load_pattern, load_rule

TOL = 0.005


def test_discover_end_to_end_on_synthetic(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["discover", "--model", "resnet8", "--dataset", "synthetic", "--recipe", "smoke", "--epochs", "1",
                 "--budgets", "0.35,0.6", "--seeds", "2", "--out", str(out), "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    s = json.loads(stdout)
    assert s["model"] == "resnet8" and s["method"] == "slimming" and s["synthetic"] is True
    assert (out / "summary.json").is_file() and json.loads((out / "summary.json").read_text())["table"] == s["table"]

    # The rule, the patterns and the architectures are on disk and consistent.
    rule = load_rule(out)
    assert rule.kind == "stage" and rule.sources[0].method == "slimming" and rule.sources[0].dataset == "synthetic"
    assert len(rule.levels) == 2 and load_rule(out, kind="depth").kind == "depth"
    base = unpruned(load_architecture(out / "architectures" / "pruned-b0.35.yaml"))
    for b in (0.35, 0.6):
        pruned = load_architecture(out / "architectures" / f"pruned-b{b:g}.yaml")
        pat = load_pattern(out / "patterns" / f"pruned-b{b:g}.yaml")
        assert pat.keep_ratios == pytest.approx([w / bw for w, bw in zip(pruned.widths, base.widths)])
        assert yaml.safe_load((out / "architectures" / f"pruned-b{b:g}.yaml").read_text())["generator"] == "pruned"
        for gen in ("guided", "uniform"):
            assert (out / "architectures" / f"{gen}-b{b:g}.yaml").is_file()

    # Three arms per budget, trained from scratch at the same parameter count, as study records.
    rows = s["table"]
    assert sorted((r["budget"], r["generator"]) for r in rows) == sorted(
        (b, g) for b in (0.35, 0.6) for g in ("pruned", "guided", "uniform"))
    for r in rows:
        target = resolve_budget(base, r["budget"])
        assert abs(r["params"] - target) <= TOL * target
        assert 0.0 <= r["mean_acc"] <= 1.0 and r["seeds"] == 2 and r["val_mean"] is not None
        assert r["max_abs_budget_error"] <= TOL
        if r["generator"] != "uniform":  # paired over the two seeds, with an interval
            assert r["gap"] is not None and r["gap_ci95"] is not None
    # the arms of a cell are within 0.2 % of each other
    for b in (0.35, 0.6):
        sizes = [r["params"] for r in rows if r["budget"] == b]
        assert (max(sizes) - min(sizes)) / min(sizes) <= 0.002, sizes
    assert s["sparsity_diagnostic"]["regularizer"]["s"] > 0 and "near_zero" in s["sparsity_diagnostic"]
    run = json.loads((out / "run.json").read_text())
    from prunesearch.study import load_records

    records = load_records(run["storage"] if "://" in run["storage"] else str(out / "journal.log"), run["study"])
    assert {rec.generator for rec in records} == {"pruned", "guided", "uniform"}
    assert all(rec.state == "complete" for rec in records)
    assert s["report"] and (out / "report").is_dir() and any((out / "report").iterdir())

    # The pruned generator reads the run dir at its budgets, and says which budgets it has.
    arch = get_generator("pruned").generate(base, 0.6, 0, run=str(out))
    assert abs(count_params(arch) - resolve_budget(base, 0.6)) <= TOL * resolve_budget(base, 0.6)
    from prunesearch.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no pruned architecture at budget 0.5 \(it has: 0.35, 0.6\)"):
        get_generator("pruned").generate(base, 0.5, 0, run=str(out))


def test_discover_missing_dataset_is_one_line_data_error(tmp_path, capsys):
    code = main(["discover", "--dataset", "cifar10", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1
    assert "cifar" in err.lower()
    assert not (tmp_path / "r").exists()  # nothing written before the data is there


def test_discover_bad_options_fail_before_training(tmp_path, capsys):
    for argv, msg in ((["--method", "slimmming"], "did you mean 'slimming'"),
                      (["--budgets", "0.2,x"], "budget 'x' is not a number"),
                      (["--budgets", "0.00001", "--model", "resnet8", "--dataset", "synthetic"], "raise the budget to at least")):
        code = main(["discover", *argv, "--out", str(tmp_path / "r")])
        _, err = capsys.readouterr()
        assert code == 2 and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_discover_refuses_an_out_dir_of_another_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"model": "vgg16", "method": "slimming"}))
    code = main(["discover", "--model", "resnet8", "--dataset", "synthetic", "--out", str(out), "--no-scratch"])
    _, err = capsys.readouterr()
    assert code == 2 and "runs are never overwritten" in err


@pytest.mark.slow
def test_discover_default_on_mnist5k(tmp_path, capsys, monkeypatch):
    """The embedded default (no arguments), as a user runs it: must stay within 5 minutes on 2 cores."""
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    code = main(["discover", "--json"])
    seconds = time.perf_counter() - t0
    out, _ = capsys.readouterr()
    assert code == 0 and seconds < 300, seconds
    s = json.loads(out)
    assert s["dataset"] == "mnist5k" and s["synthetic"] is False
    runs = list((tmp_path / "runs").glob("discover-resnet8-mnist5k-slimming-*"))
    assert len(runs) == 1 and (runs[0] / "rule.yaml").is_file()
    assert len(s["table"]) == 3 * len(s["budgets"])
    assert all(r["mean_acc"] > 0.9 and r["seeds"] >= 3 for r in s["table"])  # real digits: every arm learns


def test_discover_unstructured_fits_a_sparsity_rule(tmp_path, capsys):
    out = tmp_path / "mag"
    code = main(["discover", "--model", "resnet8", "--dataset", "synthetic", "--method", "magnitude", "--recipe",
                 "smoke", "--epochs", "1", "--budgets", "0.5", "--out", str(out), "--no-scratch", "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0 and json.loads(stdout)["rule"]["kind"] == "sparsity"
    rule = load_rule(out)
    assert rule.kind == "sparsity" and rule.domain == "density"
    pruned = load_architecture(out / "architectures" / "pruned-b0.5.yaml")
    guided = load_architecture(out / "architectures" / "guided-b0.5.yaml")
    for arch in (pruned, guided):
        assert arch.densities is not None
        target = resolve_budget(unpruned(arch), 0.5)
        assert abs(count_params(arch) - target) <= TOL * target
    # the sparse arms train from scratch with fixed masks, against uniform sparsity at the same budget
    code = main(["discover", "--model", "resnet8", "--dataset", "synthetic", "--method", "magnitude", "--recipe",
                 "smoke", "--epochs", "1", "--budgets", "0.5", "--out", str(tmp_path / "m2"), "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    table = json.loads(stdout)["table"]
    assert sorted(r["generator"] for r in table) == ["guided", "pruned", "uniform"]
    for r in table:
        assert abs(r["params"] - resolve_budget(unpruned(pruned), 0.5)) <= TOL * resolve_budget(unpruned(pruned), 0.5)


def test_pruned_generator_only_reads_a_discover_run():
    from prunesearch.arch import resolve_model
    from prunesearch.errors import ConfigError

    base = resolve_model("resnet8")
    with pytest.raises(ConfigError, match="run"):
        get_generator("pruned").generate(base, 0.4, 0, method="slimming")
