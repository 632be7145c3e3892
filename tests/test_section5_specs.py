"""The paper's Section 5 experiments as study specs (search_spaces/section5/): every full spec
validates without CIFAR or its discover runs present, every smoke variant runs end to end through
`prunesearch study SPEC --smoke --out TMP --json` with every planned trial complete and every arm
within 0.5 % of its budget; relative file options resolve against the spec file's folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from prunesearch.cli import main
from prunesearch.errors import ConfigError
from prunesearch.rules import load_rule
from prunesearch.study import load_spec, plan_from_dict

ROOT = Path(__file__).resolve().parents[1]
SECTION5 = ROOT / "search_spaces" / "section5"
SPECS = sorted(SECTION5.glob("*.yaml"))
EXPECTED = {
    "guided-vgg19-cifar100", "transfer-vgg16-to-vgg19", "transfer-vgg19-to-vgg16", "transfer-cifar10-to-cifar100",
    "transfer-cifar100-to-cifar10", "resnet-l1norm-rule-to-resnet56", "resnet-slimming-rule-to-resnet56",
}
FILE_OPTIONS = ("rule", "run")


def _ids(paths):
    return [p.stem for p in paths]


def test_every_section5_experiment_has_a_spec():
    assert {p.stem for p in SPECS} == EXPECTED


@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
def test_full_spec_is_the_paper_protocol_and_validates_without_data(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # validation needs neither CIFAR nor the discover runs, from any folder
    monkeypatch.setenv("PRUNESEARCH_DATA_DIR", str(tmp_path / "no-data-here"))
    plan = load_spec(spec)
    assert plan.dataset in ("cifar10", "cifar100")
    assert plan.recipe_name == "paper" and plan.recipe_overrides == {}
    assert plan.seeds == (0, 1, 2) and len(plan.budgets) >= 3
    assert "uniform" in plan.generators and plan.generators["uniform"] == {}
    assert set(plan.generators) & {"guided", "transferred"}
    runs = (ROOT / "runs" / "section5").resolve()
    for gen, opts in plan.generators.items():
        for k in FILE_OPTIONS:
            if k in opts:  # resolved against the spec's folder: the repo's runs/section5, never the smoke files
                p = Path(opts[k])
                assert p.is_absolute() and runs in p.parents, (gen, opts[k])
        if gen in ("guided", "transferred", "pruned"):
            assert opts.get("method") in ("slimming", "l1norm")
        if gen == "guided":  # guided = the target's own model and dataset
            assert opts.get("dataset") == plan.dataset
            assert f"{plan.model}-{plan.dataset}-" in opts["rule"]
        if gen == "transferred":  # transferred = another model or another dataset
            assert f"{plan.model}-{plan.dataset}-" not in opts["rule"]
        if gen == "pruned":
            assert Path(opts["run"]).name.startswith(f"{plan.model}-{plan.dataset}-")


@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
def test_smoke_variant_is_tiny_and_its_files_are_shipped_smoke_artifacts(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = load_spec(spec, smoke=True)
    assert plan.name.endswith("-smoke") and plan.smoke
    assert plan.dataset in ("synthetic", "digits")
    assert plan.recipe_overrides["epochs"] == 1 and len(plan.budgets) == 1 and plan.seeds == (0,)
    full = load_spec(spec)
    assert set(plan.generators) == set(full.generators)  # the same arms as the full experiment
    smoke_dir = (SECTION5 / "smoke").resolve()
    for gen, opts in plan.generators.items():
        for k in FILE_OPTIONS:
            if k in opts:
                p = Path(opts[k])
                assert smoke_dir in p.parents and p.exists(), (gen, opts[k])
        if "rule" in opts:  # fitted by a real discover run on tiny data, labelled as such
            rule = load_rule(opts["rule"])
            assert set(rule.datasets) <= {"synthetic", "digits"} and rule.datasets
            assert set(rule.methods) == {opts["method"]}
            if gen == "guided":
                assert tuple(rule.models) == (plan.model,)
            else:
                assert plan.model not in rule.models or plan.dataset not in rule.datasets


def test_smoke_discover_runs_record_their_provenance():
    runs = sorted(p for p in (SECTION5 / "smoke").iterdir() if p.is_dir())
    assert runs
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        model, dataset, method = run.name.split("-")
        assert (s["model"], s["dataset"], s["method"]) == (model, dataset, method)
        assert s["recipe"]["name"] == "smoke" and s["recipe"]["epochs"] == 1
        for b in s["budgets"]:
            assert (run / "architectures" / f"pruned-b{b:g}.yaml").is_file()
        assert not (run / "base").exists()  # no checkpoints shipped


@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
def test_smoke_variant_runs_end_to_end(spec, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the spec's relative paths must not depend on the current folder
    plan = load_spec(spec, smoke=True)
    out = tmp_path / "run"
    assert main(["study", str(spec), "--smoke", "--out", str(out), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    n = len(plan.generators) * len(plan.budgets) * len(plan.seeds)
    assert summary["planned"] == n and summary["complete"] == n and summary["failed"] == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]
    assert len(records) == n
    assert {r["generator"] for r in records} == set(plan.generators)
    for r in records:
        assert r["state"] == "complete" and 0.0 <= r["best_acc"] <= 1.0
        assert abs(r["params"] - r["param_budget"]) <= 0.005 * r["param_budget"], (r["generator"], r["params"])


# -- relative file options resolve against the spec file's folder ----------------------------------
def _spec(folder: Path, generators: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "s.yaml"
    p.write_text(yaml.safe_dump({"model": "resnet8", "dataset": "synthetic", "budgets": [0.3],
                                 "generators": generators}))
    return p


def test_relative_file_options_resolve_against_the_spec_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    home = str(Path("~").expanduser())
    p = _spec(tmp_path / "specs" / "deep", {
        "guided": {"rule": "../rules/r.yaml", "kind": "stage"},
        "transferred": {"rule": "/abs/rule.yaml"},
        "pruned": {"architectures": {0.3: "a.yaml"}},
        "uniform": {},
    })
    plan = load_spec(p)
    assert plan.generators["guided"] == {"rule": str(tmp_path / "specs" / "rules" / "r.yaml"), "kind": "stage"}
    assert plan.generators["transferred"]["rule"] == "/abs/rule.yaml"
    assert plan.generators["pruned"]["architectures"] == {0.3: str(tmp_path / "specs" / "deep" / "a.yaml")}
    p2 = _spec(tmp_path / "t", {"pruned": {"run": "~/runs/x"}, "guided": {"rule": {"kind": "stage"}}})
    plan2 = load_spec(p2)
    assert plan2.generators["pruned"]["run"] == os.path.join(home, "runs", "x")
    assert plan2.generators["guided"]["rule"] == {"kind": "stage"}  # an inline rule is not a path


def test_specs_built_in_code_keep_their_paths(tmp_path):
    plan = plan_from_dict({"model": "resnet8", "dataset": "synthetic", "budgets": [0.3],
                           "generators": {"guided": {"rule": "runs/x/rule.yaml"}}})
    assert plan.generators["guided"]["rule"] == "runs/x/rule.yaml"
    plan = plan_from_dict({"model": "resnet8", "dataset": "synthetic", "budgets": [0.3],
                           "generators": {"guided": {"rule": "runs/x/rule.yaml"}}}, base_dir=tmp_path)
    assert plan.generators["guided"]["rule"] == str(tmp_path / "runs" / "x" / "rule.yaml")


def test_a_missing_discover_run_fails_at_planning_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _spec(tmp_path / "specs", {"guided": {"rule": "../runs/section5/none/rule.yaml"}, "uniform": {}})
    from prunesearch.resolve import plan_base as resolve_base
    from prunesearch.study import plan_trials

    plan = load_spec(p)
    with pytest.raises(ConfigError) as e:
        plan_trials(plan, resolve_base(plan))
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "runs" / "section5" / "none" / "rule.yaml") in msg
    assert "discover" in msg


# -- the full specs plan once their discover runs exist (stand-in runs: no CIFAR, no training) -----
def _stand_in_discover_run(run: Path, budgets) -> None:
    """What `prunesearch discover RUN --no-scratch` leaves for a study: pruned architectures at each
    budget and the stage rule fitted on them (here a made-up depth-decreasing pattern)."""
    from prunesearch.arch import get_family, resolve_model, save_architecture, scale_to_budget
    from prunesearch.rules import Provenance, extract_pattern, fit_rule, save_rule

    model, dataset, method = run.name.split("-")
    base = resolve_model(model, num_classes=100 if dataset == "cifar100" else 10)
    ratios = [1.0 - 0.6 * s.rel_depth for s in get_family(base.family).slots(base)]
    patterns = []
    for budget in budgets:
        b = float(getattr(budget, "value", budget))
        arch = scale_to_budget(base, b, ratios)
        save_architecture(arch, run / "architectures" / f"pruned-b{b:g}.yaml", generator="pruned", budget=b,
                          method=method, model=model, dataset=dataset)
        patterns.append(extract_pattern(arch, Provenance(model=model, dataset=dataset, method=method, budget=b)))
    save_rule(fit_rule(patterns, "stage"), run / "rule.yaml")


@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
def test_full_spec_plans_every_arm_on_budget_once_its_discover_runs_exist(spec, tmp_path):
    from prunesearch.arch import resolve_model, unpruned
    from prunesearch.study import plan_trials

    copy = tmp_path / "search_spaces" / "section5" / spec.name  # the same layout: ../../runs = tmp/runs
    copy.parent.mkdir(parents=True)
    copy.write_text(spec.read_text())
    plan = load_spec(copy)
    for opts in plan.generators.values():
        run = Path(opts["run"]) if "run" in opts else Path(opts["rule"]).parent if "rule" in opts else None
        if run is not None and not run.exists():
            assert run.parent == tmp_path / "runs" / "section5"
            _stand_in_discover_run(run, plan.budgets)
    base = unpruned(resolve_model(plan.model, num_classes=100 if plan.dataset == "cifar100" else 10))
    trials = plan_trials(plan, base.replace(name=plan.model))
    assert len(trials) == len(plan.generators) * len(plan.budgets) * len(plan.seeds)
    for t in trials:
        a = t.user_attrs
        assert abs(a["params"] - a["param_budget"]) <= 0.005 * a["param_budget"], (t.slot, a["params"])
    by = {(t.generator, t.budget): t.user_attrs["arch_id"] for t in trials if t.seed == 0}
    for b in (b.value for b in plan.budgets):  # the rule-designed arms are real designs, not uniform copies
        for g in ("guided", "transferred"):
            if g in plan.generators:
                assert by[(g, b)] != by[("uniform", b)]
