"""What makes a comparison trustworthy: nothing is chosen on test data, budgets are a contract,
rules can say what their source said, and the layers import one way."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunesearch.arch import (
    CELL_TOLERANCE,
    TOLERANCE,
    Budget,
    count_macs,
    count_params,
    get_family,
    resolve_model,
    scale_to_budget,
    unpruned,
)
from prunesearch.errors import BudgetError

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ no selection on test data
def _register_canary() -> None:
    """``canary``: tiny synthetic images whose *test* labels are permuted by ``perm`` (a different
    test set per perm; training and validation data identical)."""
    from prunesearch.data.dataset import DATASETS, register_dataset
    from prunesearch.data.sources import load_synthetic

    if "canary" in DATASETS.names():
        return

    @register_dataset("canary", shape=(4, 3, 8), synthetic=True)
    def load_canary(root=None, download=False, seed=0, perm=0, **options):
        import dataclasses

        d = load_synthetic(root, download, seed, num_classes=4, n_train=96, n_test=64, image_size=8)
        if perm:
            g = torch.Generator().manual_seed(perm)
            d = dataclasses.replace(d, test_y=d.test_y[torch.randperm(len(d.test_y), generator=g)])
        return d


def _canary_study(tmp_path: Path, perm: int) -> list:
    from prunesearch.pipelines import run_study_pipeline
    from prunesearch.study import plan_from_dict

    spec = {"name": f"canary-{perm}", "model": "resnet8", "dataset": "canary", "dataset_options": {"perm": perm},
            "recipe": {"name": "smoke", "overrides": {"epochs": 2, "batch_size": 32, "precision": "fp32"}},
            "budgets": [0.5], "seeds": [0, 1],
            "generators": {"uniform": {}, "searched": {"trials": 3, "n_startup_trials": 2}}}
    run = run_study_pipeline(plan_from_dict(spec, where="canary"), out=tmp_path / f"run{perm}", device="cpu",
                             threads=1, report=False)
    return run.result.records


def test_changing_only_the_test_labels_changes_no_choice(tmp_path):
    """The canary: two studies whose test sets differ only in their labels must make every choice
    the same (the searched arm's proposals, Optuna's objective, the candidate the report shows)."""
    from prunesearch.report import build_report

    _register_canary()
    a, b = _canary_study(tmp_path, 0), _canary_study(tmp_path, 7)
    key = lambda r: (r.generator, r.seed, r.extra.get("index", 0))  # noqa: E731
    ra, rb = {key(r): r for r in a}, {key(r): r for r in b}
    assert set(ra) == set(rb) and all(r.state == "complete" for r in a + b)
    for k in ra:  # same proposals, same validation numbers: Optuna never saw a test number
        assert ra[k].arch_id == rb[k].arch_id and ra[k].val_acc == rb[k].val_acc, k
    assert [r.final_acc for r in a] != [r.final_acc for r in b]  # the canary is alive: test numbers moved
    cells = lambda recs: {c.generator: c.chosen for c in build_report(recs).budgets[0].cells}  # noqa: E731
    chosen_a, chosen_b = cells(a), cells(b)
    arch = lambda recs, n: next(r.arch_id for r in recs if r.trial_number == n)  # noqa: E731
    assert [arch(a, n) for n in chosen_a["searched"]] == [arch(b, n) for n in chosen_b["searched"]]


def test_worker_objective_is_validation_accuracy():
    from prunesearch.study.queue import _objective

    assert _objective({"val_acc": 0.7, "final_acc": 0.9, "best_acc": 0.95, "test_at_best_val": 0.91}) == 0.7


def test_report_chooses_searched_candidates_by_validation_never_test():
    from prunesearch.records import TrialRecord
    from prunesearch.report import build_report

    def rec(i, val, test):
        return TrialRecord(generator="searched", budget=0.5, param_budget=100, seed=0, arch={}, arch_id=f"a{i}",
                           params=100, macs=1, dataset="d", recipe={}, state="complete", final_acc=test,
                           best_acc=test, val_acc=val, trial_number=i, extra={"index": i})

    recs = [rec(0, 0.80, 0.99), rec(1, 0.90, 0.50), rec(2, 0.85, 0.70)]
    (cell,) = build_report(recs).budgets[0].cells
    assert cell.chosen == (1,) and cell.mean_acc == 0.50  # the best validation, with its (bad) test number


# --------------------------------------------------------------------------- budgets are a contract
FAMILY_MODELS = ["resnet8", "resnet20", "vgg11", "densenet40", "preresnet20"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(FAMILY_MODELS), budget=st.floats(0.01, 1.0), kind=st.sampled_from(["params", "macs"]),
       data=st.data())
def test_every_solved_architecture_is_within_tolerance_or_refused(model, budget, kind, data):
    base = resolve_model(model)
    n = len(get_family(base.family).slots(base))
    ratios = data.draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 1.0)), min_size=n, max_size=n))
    b = Budget(budget, kind)
    try:
        arch = scale_to_budget(base, b, ratios if any(r > 0 for r in ratios) else None)
    except BudgetError as e:
        msg = str(e)
        assert "\n" not in msg and any(w in msg for w in ("below", "above", "reach", "outside")), msg
        return
    target = b.resolve(base)
    got = count_params(arch) if kind == "params" else count_macs(arch)
    assert abs(got - target) <= TOLERANCE * target, (model, budget, kind, got, target)


@pytest.mark.parametrize("model", ["resnet20", "vgg11", "densenet40"])
@pytest.mark.parametrize("budget", [0.1, 0.3, 0.7])
def test_arms_of_one_cell_are_within_the_cell_tolerance(model, budget):
    from prunesearch.generators import get_generator

    base = resolve_model(model)
    b = Budget(budget)
    sizes = [count_params(get_generator("uniform").generate(base, b, 0))]
    sizes += [count_params(get_generator("random").generate(base, b, s)) for s in range(4)]
    assert (max(sizes) - min(sizes)) / min(sizes) <= CELL_TOLERANCE, sizes


def test_macs_budget_is_met_in_macs():
    from prunesearch.generators import get_generator

    base = resolve_model("vgg16")
    b = Budget(0.3, "macs")
    arch = get_generator("uniform").generate(base, b, 0)
    assert abs(count_macs(arch) - 0.3 * count_macs(base)) <= TOLERANCE * 0.3 * count_macs(base)


# ------------------------------------------------------------------------------ rules keep the pattern
@pytest.mark.parametrize("variant", ["resnet56-b", "resnet56-a", "vgg16-a", "resnet110-b"])
def test_full_resolution_depth_rule_reproduces_its_source(variant):
    from prunesearch.rules import apply_rule, extract_pattern, fit_rule

    src = resolve_model(variant)
    base = unpruned(src)
    rule = fit_rule(extract_pattern(src), "depth", bins="full")
    got = apply_rule(rule, base, count_params(src))
    assert max(abs(a - b) for a, b in zip(got.widths, src.widths)) <= 1, (got.widths, src.widths)


def test_stage_rule_keeps_the_residual_stream_apart_from_block_internal_widths():
    from prunesearch.rules import apply_rule, extract_pattern, fit_rule

    src = resolve_model("resnet56-b")  # keeps the stream at 16/32/64, prunes block-internal convs
    rule = fit_rule(extract_pattern(src), "stage")
    assert {"stream", "inner"} <= set(rule.levels[0].values)
    assert rule.levels[0].values["stream"] == pytest.approx((1.0, 1.0, 1.0))
    got = apply_rule(rule, unpruned(src), count_params(src))
    slots = get_family("resnet").slots(unpruned(src))
    stream = {s.stage: w for s, w in zip(slots, got.widths) if s.role == "stream"}
    assert all(abs(stream[i] - w) <= 1 for i, w in enumerate((16, 32, 64)))
    for stage in range(3):
        inner_src = [w for s, w in zip(slots, src.widths) if s.role == "inner" and s.stage == stage]
        inner_got = [w for s, w in zip(slots, got.widths) if s.role == "inner" and s.stage == stage]
        assert abs(sum(inner_got) / len(inner_got) - sum(inner_src) / len(inner_src)) <= 1.0


def test_published_variant_is_a_rule_source_for_transfer(capsys):
    from prunesearch.cli import main

    assert main(["transfer", "--rule", "resnet56-b", "--kind", "depth", "--to", "resnet110", "--budgets", "0.5",
                 "--dry-run", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    row = d["budgets"][0]
    assert abs(row["transferred"]["budget_error"]) <= TOLERANCE
    assert row["transferred"]["widths"] != row["uniform"]["widths"]


def test_transfer_into_a_run_dir_of_another_model_is_refused(tmp_path, capsys):
    from prunesearch.cli import main

    out = tmp_path / "run"
    common = ["--rule", "vgg16-a", "--dataset", "synthetic", "--budgets", "0.5", "--seeds", "1", "--recipe", "smoke",
              "--epochs", "1", "--device", "cpu", "--out", str(out), "--json"]
    assert main(["transfer", "--to", "resnet8", *common]) == 0
    capsys.readouterr()
    assert main(["transfer", "--to", "resnet14", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the plan line: the one error line
    assert err.startswith("error:") and "holds" in err and "resnet8" in err


# ------------------------------------------------------------------------------- statistics by hand
def test_t_interval_holm_and_sign_flip_against_closed_forms():
    from prunesearch.report.stats import holm, mean_ci, min_exact_p, paired_t_test, sign_flip_test

    d = [0.01, 0.02, -0.005, 0.015, 0.03]
    t = paired_t_test(d)
    assert t.statistic == pytest.approx(2.418831591627808) and t.p_value == pytest.approx(0.07285505961, rel=1e-8)
    ci = mean_ci(d)  # scipy.stats.t.interval(0.95, 4, loc=mean, scale=sem)
    assert (ci.low, ci.high) == pytest.approx((-0.002069837853659953, 0.03006983785365995), rel=1e-9)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # all 2^5 sign flips: |sum| >= 0.07 happens for the observed signs and their mirror, plus flips of
    # the -0.005 alone (sum 0.08) and its mirror: 4 of 32
    assert sign_flip_test(d).p_value == pytest.approx(4 / 32)
    assert min_exact_p(3) == 0.25 and min_exact_p(5) == 0.0625 and min_exact_p(8) == pytest.approx(2 / 256)


# ---------------------------------------------------------------------------- one-way layering
# A module may import only from its own layer or lower ones (DESIGN.md's one-way data flow).
LAYERS = [
    {"errors", "registry", "records", "fileio", "faults", "urls", "machine"},
    {"arch", "report"},
    {"data", "models", "rules"},
    {"train", "prune"},
    {"generators", "resolve"},
    {"jobs"},
    {"study"},
    {"pipelines"},
    {"commands", "cli", "__main__"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(ROOT / "prunesearch").parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            here = list(pkg[:-1])
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            target = base + (node.module.split(".") if node.module else [])
            if target:
                out.add(target[0])
            elif node.names:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prunesearch."):
            out.add(node.module.split(".")[1])
    return out


def test_no_module_imports_a_higher_layer():
    bad = []
    for path in (ROOT / "prunesearch").rglob("*.py"):
        top = path.relative_to(ROOT / "prunesearch").parts[0].removesuffix(".py")
        if top == "__init__":
            continue
        for dep in _imports(path):
            if dep in RANK and RANK[dep] > RANK[top]:
                bad.append(f"{path.relative_to(ROOT)} imports {dep}")
    assert not bad, bad


def test_report_imports_no_torch_optuna_or_rich():
    code = textwrap.dedent("""
        import sys, prunesearch.report, prunesearch.report.writers
        print(sorted(m for m in ("torch", "optuna", "rich", "matplotlib") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
