"""Every run kind (study, discover, transfer, rethink) re-renders through `prunesearch report RUN`
with what the run itself drew: the cells, the rule panel of a discover run, the rethink table."""

from __future__ import annotations

import json
import textwrap

import yaml

from prunesearch.cli import main

TINY = ["--dataset", "synthetic", "--recipe", "smoke", "--epochs", "1", "--device", "cpu"]


def tiny_study(name: str) -> str:
    """A study spec of two arms x two seeds on tiny synthetic data."""
    return textwrap.dedent(f"""
        name: {name}
        model: resnet8
        dataset: synthetic
        dataset_options: {{image_size: 8, n_train: 64, n_test: 32}}
        recipe: {{name: smoke, overrides: {{epochs: 1, batch_size: 32}}}}
        budgets: [0.5]
        seeds: 2
        generators: {{uniform: {{}}, random: {{}}}}
    """)


def report_json(run, capsys) -> dict:
    capsys.readouterr()
    assert main(["report", str(run), "--format", "md,csv,png", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_study_run_reports(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(tiny_study("rt"))
    assert main(["study", str(spec), "--out", str(tmp_path / "run"), "--device", "cpu", "--json"]) == 0
    d = report_json(tmp_path / "run", capsys)
    (group,) = d["report"]["budgets"]
    assert {c["generator"] for c in group["cells"]} == {"uniform", "random"}
    assert "efficiency_png" in d["written"] and not d["warnings"]


def test_discover_run_reports_with_its_rule_panel(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["discover", "--model", "resnet8", *TINY, "--budgets", "0.5", "--seeds", "2", "--out", str(out),
                 "--json"]) == 0
    d = report_json(out, capsys)
    assert {c["generator"] for c in d["report"]["budgets"][0]["cells"]} == {"pruned", "guided", "uniform"}
    assert "architecture_png" in d["written"] and not d["warnings"]  # the rule.yaml profile was understood


def test_transfer_run_reports(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["transfer", "--rule", "vgg16-a", "--to", "resnet8", *TINY, "--budgets", "0.5", "--seeds", "2",
                 "--out", str(out), "--json"]) == 0
    d = report_json(out, capsys)
    assert {c["generator"] for c in d["report"]["budgets"][0]["cells"]} == {"transferred", "uniform"}


def test_rethink_run_reports_its_table(tmp_path, capsys):
    spec = tmp_path / "r.yaml"
    spec.write_text(yaml.safe_dump({
        "kind": "rethink", "name": "rt", "model": "resnet14", "method": "l1norm", "budget": 0.5,
        "dataset": "synthetic", "dataset_options": {"num_classes": 4, "n_train": 32, "n_test": 16, "image_size": 8},
        "recipe": {"name": "smoke", "overrides": {"epochs": 1, "batch_size": 16}}, "seeds": 1}))
    out = tmp_path / "run"
    assert main(["rethink", str(spec), "--device", "cpu", "--threads", "1", "--out", str(out), "--json"]) == 0
    d = report_json(out, capsys)
    (row,) = d["report"]["rethink"]
    assert {"unpruned", "finetune", "scratch-e", "scratch-b"} <= set(row["arms"])


def test_report_html_renders_in_a_headless_browser(tmp_path, capsys):
    """The HTML report as a browser renders it (Chromium headless, offline): skipped with the reason
    where no Chromium is installed."""
    import shutil
    import subprocess

    import pytest

    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium on this machine (install chromium to render report.html headless)")
    spec = tmp_path / "s.yaml"
    spec.write_text(tiny_study("html"))
    assert main(["study", str(spec), "--out", str(tmp_path / "run"), "--device", "cpu", "--json"]) == 0
    html = tmp_path / "run" / "report" / "report.html"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<table" in dom and "uniform" in dom and "random" in dom and "<img" in dom
