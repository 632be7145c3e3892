"""Study specs: validation on load (one-line errors naming file, key and fix) and smoke merging."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from prunesearch.cli import main
from prunesearch.arch import Budget
from prunesearch.errors import BudgetError, ConfigError
from prunesearch.resolve import plan_base as resolve_base
from prunesearch.study import load_spec, plan_trials

GOOD = """
name: t
model: resnet8
dataset: synthetic
recipe: {name: smoke, overrides: {epochs: 3}}
budgets: [0.5, 0.25]
seeds: 2
generators: {uniform: {}, searched: {trials: 2}}
smoke:
  recipe: {overrides: {epochs: 1}}
  budgets: [0.5]
  seeds: [0]
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_spec_and_smoke_merge(tmp_path):
    p = write(tmp_path, GOOD)
    plan = load_spec(p)
    assert plan.name == "t" and plan.budgets == (Budget(0.5), Budget(0.25)) and plan.seeds == (0, 1)
    assert plan.recipe_name == "smoke" and plan.recipe_overrides == {"epochs": 3}
    assert plan.generators["searched"]["trials"] == 2 and plan.settings["grace_period"] == 60
    smoke = load_spec(p, smoke=True)
    assert smoke.name == "t-smoke" and smoke.budgets == (Budget(0.5),) and smoke.seeds == (0,)
    assert smoke.recipe_name == "smoke" and smoke.recipe_overrides == {"epochs": 1}  # merged, not replaced
    # a changed recipe changes the arms' identity (new slots), more searched trials do not
    assert plan.arm_hash("uniform") != smoke.arm_hash("uniform")


def test_shipped_specs_load(tmp_path):
    specs = sorted(Path(__file__).resolve().parents[1].joinpath("search_spaces").glob("*.yaml"))
    assert specs, "search_spaces/ has no specs"
    for spec in specs:
        load_spec(spec)
        load_spec(spec, smoke=True)  # every shipped spec has a smoke variant


@pytest.mark.parametrize(
    "change, key, hint",
    [
        ({"budget": [0.5]}, "budget", "did you mean 'budgets'"),
        ({"generators": {"uniform": {}, "serched": {}}}, "serched", "did you mean 'searched'"),
        ({"generators": {"searched": {"trails": 3}}}, "trails", "did you mean 'trials'"),
        ({"settings": {"heartbeat": 3}}, "heartbeat", "did you mean 'heartbeat_interval'"),
        ({"smoke": {"datset": "digits"}}, "smoke.datset", "did you mean 'dataset'"),
        ({"recipe": {"name": "smoke", "overides": {}}}, "overides", "did you mean 'overrides'"),
        ({"recipe": {"name": "smoke", "overrides": {"epoch": 1}}}, "epoch", "did you mean 'epochs'"),
        ({"budgets": ["lots"]}, "budgets", "not a number"),
        ({"budgets": [-0.5]}, "budgets", "must be a positive"),
        ({"budgets": [0.5, 0.5]}, "budgets", "twice"),
        ({"budgets": [1500.5]}, "budgets", "whole number"),
        ({"seeds": "three"}, "seeds", "count"),
        ({"seeds": [0, -1]}, "seeds", "[0, 2**31)"),
        ({"model": 56}, "model", "non-empty text"),
        ({"generators": {"searched": {"trials": 0}}}, "trials", "[1, 10000]"),
        ({"generators": {"searched": {"min_multiplier": 2}}}, "min_multiplier", "(0, 1]"),
        ({"settings": {"heartbeat_interval": 5, "grace_period": 5}}, "grace_period", "must exceed"),
        ({"settings": {"max_retries": "x"}}, "max_retries", "integer"),
        ({"name": "../escape"}, "name", "letters, digits"),
    ],
)
def test_bad_spec_one_line_naming_file_and_key(tmp_path, change, key, hint):
    import yaml

    d = yaml.safe_load(GOOD)
    d.update(change)
    p = write(tmp_path, yaml.safe_dump(d))
    with pytest.raises(ConfigError) as e:
        load_spec(p, smoke="smoke" in change)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and key in msg and hint in msg, msg


@pytest.mark.parametrize(
    "text, hint",
    [
        ("model: [unclosed\n", "malformed YAML at line"),
        ("- just\n- a list\n", "must be a mapping"),
        ("model: resnet8\ndataset: synthetic\nbudgets: [0.5]\n", "missing required key 'generators'"),
        ("model: resnet8\ndataset: synthetic\nbudgets: [0.5]\ngenerators: {uniform: {}}\nsmoke: 3\n", "'smoke' must be a mapping"),
    ],
)
def test_malformed_specs(tmp_path, text, hint):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match="malformed|mapping|missing") as e:
        load_spec(p)
    assert hint in str(e.value) and str(p) in str(e.value)


def test_missing_smoke_block_and_missing_file(tmp_path):
    p = write(tmp_path, "model: resnet8\ndataset: synthetic\nbudgets: [0.5]\ngenerators: [uniform]\n")
    with pytest.raises(ConfigError, match="needs a 'smoke:' block"):
        load_spec(p, smoke=True)
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_budget_above_base_names_the_file(tmp_path):
    p = write(tmp_path, GOOD.replace("budgets: [0.5, 0.25]", "budgets: [0.5, 10000000]"))
    plan = load_spec(p)
    with pytest.raises(BudgetError) as e:
        plan_trials(plan, resolve_base(plan))
    assert str(p) in str(e.value) and "above the unpruned" in str(e.value)


def test_cli_bad_spec_exit_2_one_line(tmp_path, capsys):
    p = write(tmp_path, GOOD.replace("budgets:", "budgetz:"))
    assert main(["study", str(p), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "budgetz" in err and "did you mean 'budgets'" in err
    assert not (tmp_path / "run").exists()  # nothing partial written
