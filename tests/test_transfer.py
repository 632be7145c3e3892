"""`prunesearch transfer`: dry runs across families, the default rule, bad rule files, and a tiny real run."""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from prunesearch.arch import count_params, get_family, resolve_model
from prunesearch.cli import main
from prunesearch.rules import extract_pattern, fit_rule, save_rule

TOL = 0.005


def vgg_rule():
    p = extract_pattern(resolve_model("vgg16-a"), {"model": "vgg16", "dataset": "cifar10", "method": "l1norm"})
    return fit_rule(p, "stage")


def resnet_rule(kind: str = "stage"):
    base = resolve_model("resnet56")
    keep = (0.3, 0.6, 0.9)
    widths = [max(1, round(s.base_width * keep[s.stage])) for s in get_family("resnet").slots(base)]
    p = extract_pattern(base.replace(widths=tuple(widths)), {"model": "resnet56", "dataset": "cifar10", "method": "slimming"})
    return fit_rule(p, kind)


def _write(tmp_path, doc, name="bad.yaml"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return p


@pytest.mark.parametrize("source, targets", [("vgg", ["resnet56", "resnet20"]),
                                             ("resnet", ["vgg16", "densenet40", "preresnet164"])])
def test_transfer_dry_run_json_is_on_budget_across_families(tmp_path, capsys, source, targets):
    rule = vgg_rule() if source == "vgg" else resnet_rule()
    f = save_rule(rule, tmp_path / "rule.yaml")
    for target in targets:
        code = main(["transfer", "--rule", str(f), "--to", target, "--dataset", "cifar10", "--budgets", "0.2,0.4,0.6",
                     "--dry-run", "--json"])
        out, _ = capsys.readouterr()
        assert code == 0
        d = json.loads(out)
        assert d["target"] == target and d["rule_kind"] == "stage" and len(d["budgets"]) == 3
        base_params = count_params(resolve_model(target))
        assert d["base_params"] == base_params
        for row, b in zip(d["budgets"], (0.2, 0.4, 0.6)):
            assert row["target"] == round(b * base_params) and row["budget_kind"] == "params"
            for arm in ("transferred", "uniform"):
                a = row[arm]
                assert abs(a["params"] - row["target"]) <= TOL * row["target"]
                assert a["budget_error"] == pytest.approx((a["params"] - row["target"]) / row["target"])
                assert set(a) >= {"widths", "params", "macs", "budget"}
                arch = resolve_model(target).replace(widths=tuple(a["widths"]))
                assert count_params(arch) == a["params"]
            assert row["transferred"]["widths"] != row["uniform"]["widths"]


def test_transfer_defaults_to_the_newest_discover_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["transfer", "--to", "vgg16", "--dry-run", "--json"])
    _, err = capsys.readouterr()
    assert code == 2 and "run `prunesearch discover` first" in err and err.count("\n") == 1
    save_rule(vgg_rule(), tmp_path / "runs" / "discover-a" / "rule.yaml")
    newer = save_rule(resnet_rule(), tmp_path / "runs" / "discover-b" / "rule.yaml")
    os.utime(newer, (time.time() + 5, time.time() + 5))
    code = main(["transfer", "--to", "vgg16", "--dry-run", "--json", "--budgets", "0.5"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["origin"] == "resnet56/cifar10/slimming"
    assert json.loads(out)["dataset"] == "cifar10"  # the rule's dataset


@pytest.mark.parametrize("content", ["kind: stage\nprunesearch_rule: 7\n", "{not: a rule}\n", "- [\n"])
def test_transfer_bad_rule_file_exits_2_with_one_line(tmp_path, capsys, content):
    f = _write(tmp_path, content, "r.yaml")
    code = main(["transfer", "--rule", str(f), "--to", "resnet56", "--dry-run", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith("error:") and err.count("\n") == 1


def test_transfer_trains_both_arms_as_a_study(tmp_path, capsys):
    f = save_rule(resnet_rule(), tmp_path / "rule.yaml")
    out = tmp_path / "run"
    code = main(["transfer", "--rule", str(f), "--to", "resnet8", "--dataset", "synthetic", "--budgets", "0.4",
                 "--seeds", "1", "--recipe", "smoke", "--epochs", "1", "--out", str(out), "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    d = json.loads(stdout)
    assert sorted(r["generator"] for r in d["table"]) == ["transferred", "uniform"]
    for r in d["table"]:
        assert abs(r["params"] - r["target"]) <= TOL * r["target"] and 0 <= r["mean_acc"] <= 1
    assert json.loads((out / "run.json").read_text())["study"] == d["study"]
    assert d["report"] and (out / "report").is_dir()


def test_transfer_trains_a_sparsity_rule_against_uniform_sparsity(tmp_path, capsys):
    from prunesearch.arch import scale_densities_to_budget
    from prunesearch.study import load_records

    rule = fit_rule(extract_pattern(scale_densities_to_budget(resolve_model("resnet20"), 0.5)), "sparsity")
    f = save_rule(rule, tmp_path / "s.yaml")
    code = main(["transfer", "--rule", str(f), "--to", "vgg11", "--budgets", "0.3", "--dry-run", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    row = json.loads(out)["budgets"][0]
    for arm in ("transferred", "uniform"):  # the baseline of a sparsity rule is uniform sparsity
        assert "densities" in row[arm] and abs(row[arm]["params"] - row[arm]["target"]) <= TOL * row[arm]["target"]
        assert row[arm]["widths"] == list(resolve_model("vgg11").widths)
    run = tmp_path / "r"
    code = main(["transfer", "--rule", str(f), "--to", "resnet8", "--dataset", "synthetic", "--budgets", "0.3",
                 "--seeds", "1", "--recipe", "smoke", "--epochs", "1", "--out", str(run), "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    d = json.loads(stdout)
    records = load_records(json.loads((run / "run.json").read_text())["storage"], d["study"])
    assert sorted(r.generator for r in records) == ["transferred", "uniform"]
    for r in records:
        assert r.state == "complete" and r.arch.get("densities") is not None
        assert abs(r.params - r.param_budget) <= TOL * r.param_budget
