"""`prunesearch rethink`: fine-tune vs Scratch-E vs Scratch-B end to end on tiny data, the paper specs'
smoke variants, spec validation, resume, failures and the pre-training check. Every arm is a trial
of one Optuna study in the run dir (records.jsonl is its snapshot)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import yaml

from prunesearch.arch import count_macs, resolve_model
from prunesearch.cli import main
from prunesearch.errors import BudgetError, ConfigError
from prunesearch.pipelines import run_rethink
from prunesearch.records import RethinkRecord, TrialRecord
from prunesearch.report import build_report, load_records_jsonl
from prunesearch.report.render import all_tables
from prunesearch.study import load_spec, rethink_plan_from_dict

PAPER_SPECS = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "search_spaces" / "paper" / "*.yaml")))
TINY = {"dataset": "synthetic", "dataset_options": {"num_classes": 4, "n_train": 32, "n_test": 16, "image_size": 8},
        "recipe": {"name": "smoke", "overrides": {"batch_size": 16}}, "seeds": 1}


def write_spec(path: Path, **keys) -> Path:
    path.write_text(yaml.safe_dump({"kind": "rethink", **TINY, **keys}, sort_keys=False))
    return path


def plan(**keys):
    return rethink_plan_from_dict({**TINY, **keys}, require_kind=False)


def records_of(out: Path) -> list[TrialRecord]:
    return load_records_jsonl(out / "records.jsonl")


def by_arm(records: list[TrialRecord]) -> dict[str, TrialRecord]:
    return {r.arm: r for r in records}


def test_rethink_end_to_end_every_arm_and_scratch_b_gets_the_compute_ratio(tmp_path, capsys):
    spec = write_spec(tmp_path / "exp.yaml", name="tiny", model="resnet14", method="slimming", budget=0.4)
    out = tmp_path / "run"
    argv = ["rethink", str(spec), "--epochs", "2", "--threads", "1", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    recs = by_arm(records_of(out))
    assert set(recs) == {"unpruned", "finetune", "scratch-e", "scratch-b"}
    assert all(r.task == "rethink" and r.state == "complete" and 0 <= r.final_acc <= 1 for r in recs.values())
    assert all(r.val_acc is not None and r.split["val"] > 0 for r in recs.values())  # validation everywhere
    base = resolve_model("resnet14", num_classes=4, input_size=8)
    assert recs["unpruned"].params > recs["scratch-e"].params == recs["scratch-b"].params == recs["finetune"].params
    assert recs["unpruned"].macs == count_macs(base)
    E = 2
    ratio = recs["unpruned"].macs / recs["scratch-b"].macs
    assert recs["scratch-e"].epochs == recs["unpruned"].epochs == E
    assert recs["scratch-b"].epochs == int(E * ratio) > E  # Scratch-B: same compute as the base
    assert recs["finetune"].epochs == 1 and recs["finetune"].lr == 0.001  # a quarter of E (at least 1), lr 1e-3
    # each record alone can retrain its arm: the full recipe and the versions
    from prunesearch.train import Recipe

    assert Recipe.from_dict(recs["scratch-b"].recipe).epochs == recs["scratch-b"].epochs
    assert Recipe.from_dict(recs["finetune"].recipe).schedule == "constant"
    assert all("torch" in r.versions for r in recs.values())
    md = (out / "report" / "report.md").read_text()
    for text in ("Fine-tuned", "Scratch-E", "Scratch-B", "Unpruned"):
        assert text in md
    assert "Scratch-B" in shown and "report.md" in shown
    # Re-running into the same folder resumes: nothing is retrained or recorded twice.
    assert main(argv + ["--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(records_of(out)) == 4 and len(again["records"]) == 4
    assert [r.trial_number for r in records_of(out)] == [0, 1, 2, 3]
    # A different experiment in the same folder is refused.
    other = load_spec(spec, kind="rethink").replace(budget=0.5)
    with pytest.raises(ConfigError, match="different rethink experiment"):
        run_rethink(other, out, device="cpu", threads=1)


def test_rethink_removes_blocks_with_sss_and_trains_the_shallower_net(tmp_path):
    # ratio: the fraction of blocks removed, weakest factor first
    run = run_rethink(plan(model="resnet14", method="sss", ratio=0.7,
                           recipe={"name": "smoke", "overrides": {"epochs": 1, "batch_size": 16}}),
                      tmp_path, device="cpu", threads=1)
    recs = by_arm(run.records)
    assert sum(recs["scratch-e"].arch["blocks"]) < 6 and "blocks" not in recs["unpruned"].arch
    assert recs["finetune"].params == recs["scratch-e"].params < recs["unpruned"].params
    assert recs["scratch-b"].epochs == int(1 * recs["unpruned"].macs / recs["scratch-b"].macs)


# VGG-11's 9 M conv weights make the weight-level smokes (magnitude sorts, dense masks, checkpoints)
# take ~15 s each on a shared 2-core CPU: slow tier; lottery-resnet56 and magnitude-preresnet110
# cover the same paths by default.
_SLOW_SPECS = {"lottery-vgg16", "magnitude-vgg19"}
SPEC_PARAMS = [pytest.param(p, id=Path(p).stem, marks=[pytest.mark.slow] if Path(p).stem in _SLOW_SPECS else [])
               for p in PAPER_SPECS]


def test_every_paper_run_has_a_spec():
    names = {Path(p).stem for p in PAPER_SPECS}
    assert {"l1norm-vgg16-a", "l1norm-resnet56-a", "l1norm-resnet56-b", "l1norm-resnet110-a",
            "l1norm-resnet110-b", "slimming-vgg19", "slimming-preresnet164", "slimming-densenet40",
            "magnitude-vgg19", "magnitude-preresnet110", "lottery-vgg16", "lottery-resnet56", "lottery-resnet56-iterative",
            "soft_filter-resnet56", "thinet-vgg16", "regression-vgg16", "sss-resnet56"} <= names


@pytest.mark.parametrize("path", SPEC_PARAMS)
def test_paper_spec_smoke_variant_runs(path, tmp_path):
    full = load_spec(path, kind="rethink")  # the full protocol validates too (names, recipe, methods)
    want_recipe = "sfp" if full.method == "soft_filter" else "paper"  # SFP's own schedule (REFERENCE §4)
    assert full.dataset == "cifar10" and full.recipe == want_recipe and len(full.seeds) == 5
    spec = load_spec(path, smoke=True, kind="rethink")
    assert spec.name.endswith("-smoke")
    run = run_rethink(spec, tmp_path, device="cpu", threads=1)
    arms = by_arm(run.records)
    expected = {"unpruned", "finetune", "scratch-e", "scratch-b"}
    if spec.method in ("magnitude", "lottery"):
        lr0 = 0.05  # the smoke recipe's rate
        for lr in spec.lottery_lrs:
            expected |= {f"winning-ticket-lr{lr:g}", f"random-init-lr{lr:g}"}
            if lr != lr0:
                expected.add(f"unpruned-lr{lr:g}")
    assert set(arms) == expected
    assert all(r.state == "complete" for r in arms.values()), [r.fail_reason for r in arms.values()]
    assert arms["scratch-b"].epochs == int(arms["unpruned"].epochs * arms["unpruned"].macs / arms["scratch-b"].macs)
    if full.variant:
        assert arms["scratch-e"].arch["widths"] == list(resolve_model(full.variant, input_size=spec.dataset_options["image_size"]).widths)


@pytest.mark.parametrize("keys,match", [
    ({"ratoi": 0.5}, r"unknown key 'ratoi' \(did you mean 'ratio'\?\)"),
    ({"kind": "study"}, r"this is a study spec \(kind: study\); run it with 'prunesearch study'"),
    ({"variant": "resnet56-b", "method": "slimming", "model": None, "ratio": None}, r"'variant': method slimming has no predefined"),
    ({"method": "slimmming"}, r"'method': unknown pruning method 'slimmming' \(did you mean 'slimming'\?\)"),
    ({"budget": 0.5, "ratio": 0.4}, r"at most one of 'budget', 'ratio'"),
    ({"smoke": {"epochs": 1}}, r"unknown key 'smoke.epochs'"),
    ({"recipe": {"name": "paper", "overrides": {"epoch": 3}}}, r"'recipe'.*unknown key 'epoch'"),
])
def test_spec_errors_name_the_file_and_the_key(tmp_path, keys, match):
    base = {"model": "resnet14", "method": "slimming", "ratio": 0.4, "smoke": {"seeds": 1}}
    merged = {k: v for k, v in {**base, **keys}.items() if v is not None}
    path = write_spec(tmp_path / "bad.yaml", **merged)
    with pytest.raises(ConfigError, match=match) as err:
        load_spec(path, smoke=True, kind="rethink")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_smoke_needs_a_smoke_block_and_cli_errors_are_one_line(tmp_path, capsys):
    path = write_spec(tmp_path / "nosmoke.yaml", model="resnet14", method="slimming", ratio=0.4)
    with pytest.raises(ConfigError, match="needs a 'smoke:' block"):
        load_spec(path, smoke=True, kind="rethink")
    assert main(["rethink", "--model", "resnet14", "--method", "sss", "--variant", "resnet56-b"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no predefined variants" in err and err.count("\n") == 1


def test_an_unreachable_budget_fails_before_any_training(tmp_path):
    with pytest.raises(BudgetError, match="outside|below"):
        run_rethink(plan(model="resnet14", method="l1norm", budget=50), tmp_path, device="cpu", threads=1,
                    preflight_check=True)
    assert not (tmp_path / "journal.log").exists() and not (tmp_path / "checkpoints").exists()


def test_a_diverging_base_fails_and_its_arms_are_not_run(tmp_path):
    # an infinite learning rate: the first step makes the weights non-finite, the second loss is NaN
    run = run_rethink(plan(model="resnet14", method="l1norm", budget=0.5,
                           recipe={"name": "smoke", "overrides": {"epochs": 2, "batch_size": 16, "lr": float("inf"),
                                                                  "precision": "fp32"}}),
                      tmp_path, device="cpu", threads=1)
    recs = by_arm(run.records)
    assert recs["unpruned"].state == "failed" and "diverged" in recs["unpruned"].fail_reason
    assert all(recs[a].state == "failed" and "depends on failed" in recs[a].fail_reason
               for a in ("finetune", "scratch-e", "scratch-b"))
    assert run.study.result.incomplete and "failed" in (tmp_path / "report" / "report.md").read_text().lower()


def test_seeds_a_channel_apart_and_lottery_bases_share_one_table_row():
    def rec(arm, seed, params, acc, lr=0.1):
        return RethinkRecord(arm=arm, seed=seed, model="resnet56", dataset="cifar10", method="lottery",
                             params=params, macs=params * 50, epochs=160, best_acc=acc, final_acc=acc, lr=lr)

    recs = [rec("unpruned", s, 850_000, 0.93) for s in (0, 1)]
    recs += [rec("unpruned-lr0.01", s, 850_000, 0.92, 0.01) for s in (0, 1)]
    recs += [rec(a, s, 170_000 + 7 * s, 0.90 + 0.01 * s) for a in ("finetune", "scratch-e", "scratch-b") for s in (0, 1)]
    tables = {t.key: t for t in all_tables(build_report([], rethink=recs))}
    (row,) = tables["rethink"].rows  # one row: mean ± std over both seeds
    assert row[4] == "170,004" and row[5] == "90.50 ± 0.71"


def test_iterative_lottery_retrains_the_rewound_ticket_each_round_and_reaches_the_rounds_density(tmp_path, monkeypatch):
    import prunesearch.train as ptrain
    from prunesearch.arch import conv_weight_counts
    from prunesearch.jobs.rethink import load_artifact

    rate, rounds = 0.3, 2
    real_train, retrains = ptrain.train, []

    def spy(model, data, recipe, *a, hooks=(), **kw):
        masks = [b for n, b in model.named_buffers() if n.endswith("weight_mask")]
        if masks:  # a round's retraining: the masked ticket, with the mask hook
            kept = sum(float(m.sum()) for m in masks) / sum(m.numel() for m in masks)
            retrains.append((kept, [type(h).__name__ for h in hooks], recipe.epochs))
        return real_train(model, data, recipe, *a, hooks=hooks, **kw)

    monkeypatch.setattr(ptrain, "train", spy)
    run = run_rethink(plan(model="resnet8", method="lottery", method_options={"rounds": rounds, "rate": rate},
                           recipe={"name": "smoke", "overrides": {"epochs": 1, "batch_size": 16}}, finetune_epochs=1,
                           lottery_lrs=[0.05]), tmp_path, device="cpu", threads=1, preflight_check=True)
    recs = by_arm(run.records)
    assert set(recs) == {"unpruned", "finetune", "scratch-e", "scratch-b", "winning-ticket-lr0.05", "random-init-lr0.05"}
    assert all(r.state == "complete" for r in recs.values()), [r.fail_reason for r in recs.values()]
    # one retraining between the two rounds, of the ticket pruned to the first round's density
    # (the later masked trainings are the arms, all at the final density)
    kept1, hooks, epochs = retrains[0]
    assert abs(kept1 - (1 - rate)) < 2e-3 and hooks == ["MaskHook"] and epochs == 1
    assert all(abs(k - (1 - rate) ** rounds) < 2e-3 for k, _, _ in retrains[1:]) and len(retrains) >= 2
    ticket = recs["winning-ticket-lr0.05"].arch
    sizes = conv_weight_counts(resolve_model("resnet8", num_classes=4, input_size=8))
    density = sum(d * n for d, n in zip(ticket["densities"], sizes)) / sum(sizes)
    assert abs(density - (1 - rate) ** rounds) < 2e-3  # 0.49 of the conv weights survive two rounds of 30 %
    (path,) = (tmp_path / "artifacts").glob("*.pt")
    result, _ = load_artifact(path)
    assert result.info["rounds"] == rounds and len(result.info["round_ratios"]) == rounds
    assert abs(result.info["round_ratios"][0] - rate) < 1e-9


def test_structured_lottery_rethink_trains_narrow_tickets(tmp_path):
    run = run_rethink(plan(model="resnet8", method="lottery", ratio=0.5, method_options={"structured": True},
                           recipe={"name": "smoke", "overrides": {"epochs": 1, "batch_size": 16}}, finetune_epochs=1,
                           lottery_lrs=[0.05]), tmp_path, device="cpu", threads=1, preflight_check=True)
    recs = by_arm(run.records)
    assert set(recs) == {"unpruned", "finetune", "scratch-e", "scratch-b", "winning-ticket-lr0.05", "random-init-lr0.05"}
    assert all(r.state == "complete" for r in recs.values()), [r.fail_reason for r in recs.values()]
    ticket = recs["winning-ticket-lr0.05"]
    assert "densities" not in ticket.arch and sum(ticket.arch["widths"]) < sum(recs["unpruned"].arch["widths"])
    assert ticket.params == recs["random-init-lr0.05"].params < recs["unpruned"].params
