"""Reliability II: secrets in every URL form, journals that survive a cut-off write, results keyed by
what was trained, private files."""

from __future__ import annotations

import json
import stat
import textwrap
from pathlib import Path

import pytest

from prunesearch.cli import main
from prunesearch.urls import mask_url, scrub, url_secrets

SPEC = """
name: {name}
model: resnet8
dataset: synthetic
dataset_options: {{image_size: 8, n_train: 64, n_test: 32}}
recipe: {{name: smoke, overrides: {{epochs: 1, batch_size: 32}}}}
budgets: [0.5]
seeds: {seeds}
generators: {generators}
"""


def write_spec(tmp: Path, name: str = "r", seeds: str = "[0]", generators: str = "{uniform: {}}") -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(textwrap.dedent(SPEC.format(name=name, seeds=seeds, generators=generators)))
    return p


@pytest.mark.parametrize("url, secret, shown", [
    ("postgresql://alice:hunter2@db:5432/x", "hunter2", "postgresql://alice@db:5432/x"),
    ("postgresql://alice:p@ss@db/x", "p@ss", "postgresql://alice@db/x"),  # a raw '@' in the password
    ("postgresql+psycopg://alice@db/x?sslmode=require&password=hunter2", "hunter2",
     "postgresql+psycopg://alice@db/x?sslmode=require&password=***"),
    ("postgresql+psycopg:///x?host=/run/pg&password=s3cr%40t", "s3cr@t", "postgresql+psycopg:///x?host=/run/pg&password=***"),
    ("postgresql+psycopg://alice:pa%2Fss@db/x", "pa/ss", "postgresql+psycopg://alice@db/x"),
    ("host=db user=alice password=hunter2 dbname=x", "hunter2", "host=db user=alice password=*** dbname=x"),
])
def test_every_url_form_is_masked_and_scrubbed(url, secret, shown):
    assert mask_url(url) == shown and secret not in mask_url(url)
    assert secret in url_secrets(url)
    text = f"connection to {url} failed: FATAL password authentication failed (password={secret})"
    assert secret not in scrub(text, url)
    assert mask_url("runs/x/journal.log") == "runs/x/journal.log" and url_secrets("runs/x/journal.log") == []


def test_a_journal_cut_mid_line_is_refused_then_repaired_losing_nothing(tmp_path, capsys):
    spec = write_spec(tmp_path, "cut", seeds="[0, 1]")
    out = tmp_path / "run"
    argv = ["study", str(spec), "--out", str(out), "--device", "cpu", "--json", "--no-report"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["complete"] == 2
    journal = out / "journal.log"
    good = journal.read_bytes()
    with open(journal, "ab") as f:  # a crash inside an append
        f.write(b'{"op_code": 5, "worker_id": "dead", "trial_id": 0, "par')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ends with a damaged entry" in err and f"prunesearch repair {journal}" in err and err.count("\n") == 1
    assert journal.read_bytes().startswith(good)  # nothing was appended onto the broken line
    assert main(["repair", str(journal), "--json"]) == 0
    fixed = json.loads(capsys.readouterr().out)
    assert fixed["repaired"] and journal.read_bytes() == good and Path(fixed["backup"]).is_file()
    assert stat.S_IMODE(Path(fixed["backup"]).stat().st_mode) == 0o600
    assert main(argv) == 0  # resumes: every completed trial kept, nothing retrained
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["complete"] == 2 and again["trained"] == 0 and again["enqueued"] == 0
    assert main(["repair", str(journal)]) == 0 and "nothing to repair" in capsys.readouterr().out


def test_an_edited_rule_file_plans_a_new_trial_not_the_old_result(tmp_path, capsys):
    from prunesearch.arch import resolve_model
    from prunesearch.rules import extract_pattern, fit_rule, save_rule

    rule = tmp_path / "rule.yaml"

    def write_rule(variant: str) -> None:
        save_rule(fit_rule(extract_pattern(resolve_model(variant)), "depth"), rule)

    write_rule("resnet56-b")
    spec = write_spec(tmp_path, "edit", generators="{transferred: {rule: %s}}" % rule)
    out = tmp_path / "run"
    argv = ["study", str(spec), "--out", str(out), "--device", "cpu", "--json", "--no-report"]
    assert main(argv) == 0
    a = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    write_rule("resnet110-a")  # same path, other content
    assert main(argv) == 0
    b = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert a["trained"] == 1 and b["enqueued"] == 1 and b["trained"] == 1  # keyed by the planned arch_id


def test_files_are_private_even_in_an_existing_world_readable_dir(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    spec = write_spec(tmp_path, "priv")
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--json"]) == 0
    capsys.readouterr()
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for p in [out / "run.json", out / "records.jsonl", out / "journal.log"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in (p for p in out.rglob("*") if p.is_dir()):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_dashboard_sees_named_objective_learning_curves_and_importing_changes_nothing(tmp_path, capsys):
    import subprocess
    import sys

    import optuna

    spec = write_spec(tmp_path, "dash")
    spec.write_text(spec.read_text().replace("epochs: 1", "epochs: 2"))
    out = tmp_path / "run"
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--json", "--no-report"]) == 0
    capsys.readouterr()
    # exactly as the README says to load a run from Python
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="dash", storage=JournalStorage(JournalFileBackend(str(out / "journal.log"))))
    assert study.metric_names == ["val_acc"]
    (t,) = study.get_trials()
    assert sorted(t.intermediate_values) == [1, 2] and t.value == t.intermediate_values[2] == t.user_attrs["val_acc"]
    code = ("import logging, warnings, optuna; before = (optuna.logging.get_verbosity(), list(warnings.filters)); "
            "import prunesearch.study.storage; "
            "print(before == (optuna.logging.get_verbosity(), list(warnings.filters)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


def test_a_disk_error_requeues_the_trial_and_a_rerun_finishes_it(tmp_path, capsys):
    spec = write_spec(tmp_path, "disk")
    out = tmp_path / "run"
    out.mkdir(mode=0o700)
    (out / "checkpoints").write_text("a file where the checkpoint folder goes")  # root ignores chmod
    argv = ["study", str(spec), "--out", str(out), "--device", "cpu", "--json", "--no-report"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "re-queued" in err and "run the same command again" in err
    (out / "checkpoints").unlink()
    assert main(argv) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["complete"] == 1 and done["failed"] == 0 and done["trained"] == 1


def test_a_file_system_refusal_at_the_end_of_a_study_is_one_line_and_keeps_the_results(tmp_path, capsys):
    spec = write_spec(tmp_path, "fs")
    out = tmp_path / "run"
    (out / "records.jsonl").mkdir(parents=True)  # the snapshot cannot be written (as on a read-only dir)
    out.chmod(0o700)
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "records.jsonl" in err and "run the same command again" in err
    (out / "records.jsonl").rmdir()
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--no-report", "--json"]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["complete"] == 1 and done["trained"] == 0  # the trial finished the first time: kept, not retrained


def test_optuna_dashboard_reads_a_finished_study(tmp_path, capsys):
    """optuna-dashboard's own API (its WSGI app, in-process, offline) on a finished smoke study: the
    objective name, the learning curve and the user attributes led by arm, budget, seed and size."""
    import io
    import sys

    dashboard = pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (pip install optuna-dashboard)")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    spec = write_spec(tmp_path, "dboard")
    out = tmp_path / "run"
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--json", "--no-report"]) == 0
    capsys.readouterr()
    app = dashboard.wsgi(JournalStorage(JournalFileBackend(str(out / "journal.log"))))

    def get(path: str) -> dict:
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http",
               "SERVER_PROTOCOL": "HTTP/1.1"}
        status = {}
        body = b"".join(app(env, lambda s, h, exc_info=None: status.setdefault("s", s)))
        assert status["s"].startswith("200"), status
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    study = get(f"/api/studies/{summary['study_id']}")
    assert study["objective_names"] == ["val_acc"] and study["has_intermediate_values"]
    (trial,) = study["trials"]
    keys = [u["key"] for u in trial["user_attrs"]]
    assert keys[:6] == ["generator", "budget", "budget_kind", "seed", "params", "macs"], keys[:8]
    assert trial["intermediate_values"] and trial["values"] == [trial["intermediate_values"][-1]["value"]]


def test_failed_trials_exit_1_from_worker_and_from_study_with_worker_processes(tmp_path, capsys):
    spec = write_spec(tmp_path, "nanw", seeds="[0, 1]")
    spec.write_text(spec.read_text().replace("batch_size: 32", "batch_size: 32, lr: .inf, precision: fp32"))
    out = tmp_path / "run"
    # two worker processes: each exits 1 with its summary, the study says which trials failed and exits 1
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--workers", "2", "--json",
                 "--no-report"]) == 1
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["failed"] == 2 and s["complete"] == 0
    assert main(["study", str(spec), "--out", str(out), "--device", "cpu", "--retry-failed", "--no-report"]) == 1
    capsys.readouterr()
