"""Cheap checks of the benchmark scripts (they are measured elsewhere): argument parsing, the GPU
script's dry mode writing its JSON without Optuna, the quality tally. The whole dry GPU run and the
quality smoke run are ``slow``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# Makes `import optuna` (and its submodules) fail, as on the GPU machine where it is not installed.
NO_OPTUNA = """
import sys
class _NoOptuna:
    def find_spec(self, name, path=None, target=None):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("optuna is blocked in this test (the GPU machine has none)")
        return None
sys.meta_path.insert(0, _NoOptuna())
for m in [m for m in sys.modules if m == "optuna" or m.startswith("optuna.")]:
    del sys.modules[m]
"""


def _run(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env or ENV, capture_output=True, text=True, **kw)


def test_torch_parts_and_gpu_bench_import_without_optuna():
    code = NO_OPTUNA + (
        "import prunesearch.arch, prunesearch.models, prunesearch.data, prunesearch.train\n"
        "import benchmarks.gpu_bench, benchmarks.train_throughput\n"
        "try:\n    import optuna\nexcept ImportError:\n    print('blocked')\n"
        "print(sorted(m for m in sys.modules if m.startswith('optuna')))\n"
    )
    r = _run([sys.executable, "-c", code], timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["blocked", "[]"]


def test_gpu_bench_dry_part_writes_json_without_optuna(tmp_path):
    # The 'epoch' part: two tiny epochs of resnet56 on the CPU, through the real trainer.
    code = NO_OPTUNA + (
        "import runpy\n"
        f"sys.argv = ['gpu_bench.py', '--dry', '--parts', 'epoch', '--out', {str(tmp_path)!r}]\n"
        "runpy.run_path('benchmarks/gpu_bench.py', run_name='__main__')\n"
    )
    r = _run([sys.executable, "-c", code], timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert doc["dry"] is True and doc["device"] == "cpu" and doc["parts_requested"] == ["epoch"]
    assert doc["optuna_importable"] is False and doc["optuna_imported"] is False
    e = doc["epoch"]
    assert e["model"] == "resnet56" and len(e["epoch_seconds"]) == 2
    assert e["projected_160_epoch_seconds"] > 0 and e["epoch2_train_img_s"] > 0
    assert doc["verdict"]["resnet56_160_epoch_run_seconds"] == e["projected_160_epoch_seconds"]
    assert doc["verdict"]["speedup_vs_reference"] == {}  # throughput did not run
    last = json.loads(r.stdout.strip().splitlines()[-1])  # one JSON line at the end
    assert last["benchmark"] == "gpu" and last["result"] == str(tmp_path / "gpu_bench.json")


def test_gpu_bench_and_gpu_sh_refuse_bad_arguments():
    r = _run([sys.executable, "benchmarks/gpu_bench.py", "--dry", "--parts", "epoch,speed"], timeout=60)
    assert r.returncode == 2 and "unknown part(s) speed" in r.stderr
    r = _run(["bash", "benchmarks/gpu.sh", "--fast"], timeout=60)
    assert r.returncode == 2 and "unknown argument '--fast'" in r.stderr


def test_concurrency_waiter_stops_the_others_when_one_worker_fails():
    from benchmarks.gpu_bench import _wait_all

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    failing = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert _wait_all([sleeper, failing], timeout=50) == [-9, 3]
    ok = [subprocess.Popen([sys.executable, "-c", "pass"]) for _ in range(2)]
    assert _wait_all(ok, timeout=50) == [0, 0]


def test_suite_selection_and_listing():
    r = _run([sys.executable, "-m", "benchmarks", "--list", "--only", "train_throughput", "--skip", "train_throughput_vgg16"],
             timeout=60)
    assert r.returncode == 0, r.stderr
    names = [line.split(":")[0] for line in r.stdout.splitlines()]
    assert names == ["train_throughput_resnet20", "train_throughput_resnet56"]
    assert "--out" in r.stdout and "--model resnet56" in r.stdout
    r = _run([sys.executable, "-m", "benchmarks", "--only", "nosuch"], timeout=60)
    assert r.returncode == 2 and "unknown benchmark 'nosuch'" in r.stderr


def test_quality_summary_primary_test_and_pilot_rule():
    from benchmarks.quality import choose_budgets, parse_args, summarise, verdict
    from prunesearch.records import TrialRecord

    def rec(g, b, s, acc, state="complete"):
        return TrialRecord(generator=g, budget=b, param_budget=100, seed=s, arch={}, arch_id=f"{g}{b}", params=100,
                           macs=1, dataset="d", recipe={}, state=state, final_acc=acc, best_acc=acc, val_acc=acc)

    records = [rec("uniform", b, s, 0.90 + 0.01 * s) for b in (0.1, 0.2) for s in range(4)]
    records += [rec("pruned", b, s, 0.92 + 0.01 * s) for b in (0.1, 0.2) for s in range(4)]  # +2 pp every pair
    records += [rec("random", 0.1, 0, None, "failed")]
    out = summarise(records, 4)
    p = out["primary"]
    assert p["generator"] == "pruned" and p["n_pairs"] == 8 and p["wins"] == 8
    assert p["mean_gap"] == pytest.approx(0.02) and p["sign_flip"]["p_value"] == pytest.approx(2 / 256)
    assert out["failed"] == 1 and verdict(p).startswith("pruned beats uniform")
    # the pilot keeps the two largest budgets where uniform loses >= 1 point of validation accuracy
    assert choose_budgets(0.98, {0.01: [0.90], 0.02: [0.95], 0.05: [0.965], 0.1: [0.978]}) == [0.02, 0.05]
    args = parse_args(["--smoke"])
    assert args.name == "quality_smoke" and args.seeds == 2
    args = parse_args([])
    assert args.seeds >= 8 and args.model == "vgg11" and args.name == "quality"


@pytest.mark.slow
def test_gpu_sh_dry_runs_every_part(tmp_path):
    r = _run(["bash", "benchmarks/gpu.sh", "--dry"], timeout=600, env={**ENV, "OUT": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_bench.json").read_text())
    for part in ("throughput", "epoch", "concurrency", "accuracy"):
        assert "error" not in doc[part] and "skipped" not in doc[part], (part, doc[part])
    assert set(doc["throughput"]) == {"resnet56", "vgg19"}
    assert set(doc["concurrency"]["k"]) == {"1", "2"}
    assert "skipped" in doc["compiled"]
    assert (tmp_path / "gpu_log.txt").read_text().count("[concurrency]") == 2


@pytest.mark.slow
def test_quality_smoke_writes_result(tmp_path):
    r = _run([sys.executable, "benchmarks/quality.py", "--smoke"], timeout=900,
             env={**ENV, "PRUNESEARCH_BENCH_RESULTS": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((tmp_path / "quality_smoke.json").read_text())
    assert {row["generator"] for row in doc["table"]} == {"uniform", "pruned", "guided", "transferred", "random"}
    assert doc["failed"] == 0 and (tmp_path / "quality_smoke.md").is_file() and doc["primary"]["n_pairs"] == 4
