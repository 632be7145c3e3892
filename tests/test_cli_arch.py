"""The `prunesearch arch` CLI contract, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prunesearch.arch import count_macs, count_params, resolve_model, save_architecture
from prunesearch.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_families_and_variants(capsys):
    code, out, _ = run_cli(capsys, "arch", "list", "--json")
    assert code == 0
    names = {r["model"] for r in json.loads(out)}
    assert {"vgg16", "vgg19", "resnet56", "resnet110", "preresnet164", "densenet40", "vgg16-a",
            "resnet56-a", "resnet56-b", "resnet110-a", "resnet110-b"} <= names


@pytest.mark.parametrize("model", ["vgg16", "vgg19", "resnet56", "resnet110", "preresnet164", "densenet40", "resnet56-b"])
def test_count_json_is_exact(capsys, model):
    code, out, _ = run_cli(capsys, "arch", "count", model, "--json")
    d = json.loads(out)
    arch = resolve_model(model)
    assert code == 0
    assert (d["params"], d["macs"], d["flops"]) == (count_params(arch), count_macs(arch), 2 * count_macs(arch))
    assert d["widths"] == list(arch.widths)


def test_count_cfg_head_and_classes(capsys):
    code, out, _ = run_cli(capsys, "arch", "count", "vgg16", "--cfg",
                           "32,64,M,128,128,M,256,256,256,M,256,256,256,M,256,256,256", "--head", "l1",
                           "--num-classes", "100", "--json")
    d = json.loads(out)
    assert code == 0 and d["head"] == "l1"
    assert d["params"] == count_params(resolve_model("vgg16-a", num_classes=100))


def test_scale_lands_on_budget(capsys):
    code, out, _ = run_cli(capsys, "arch", "scale", "resnet56", "--budget", "0.4", "--json")
    d = json.loads(out)
    assert code == 0
    assert d["budget"] == round(0.4 * 853_018)
    assert abs(d["params"] - d["budget"]) <= 0.005 * d["budget"]
    code, out, _ = run_cli(capsys, "arch", "scale", "vgg19", "--budget", "2000000", "--json")
    assert abs(json.loads(out)["params"] - 2_000_000) <= 10_000


def test_show_reads_a_file(capsys, tmp_path):
    arch = resolve_model("densenet40")
    path = save_architecture(arch, tmp_path / "a.yaml")
    code, out, _ = run_cli(capsys, "arch", "show", str(path), "--json")
    assert code == 0 and json.loads(out)["params"] == count_params(arch)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["arch", "count", "resnt56"], "did you mean 'resnet56'"),
        (["arch", "count", "vgg16", "--cfg", "32,64"], "needs 17 entries"),
        (["arch", "count", "vgg16", "--cfg", "32,64,M,128,x,M,256,256,256,M,256,256,256,M,256,256,256"], "not an integer"),
        (["arch", "count", "vgg16", "--cfg", "32,-4,M,128,128,M,256,256,256,M,256,256,256,M,256,256,256"], ">= 1"),
        (["arch", "count", "vgg16", "--cfg", "32,M,64,128,128,M,256,256,256,M,256,256,256,M,256,256,256"], "position 2"),
        (["arch", "scale", "resnet56", "--budget", "5"], "below the smallest"),
        (["arch", "scale", "resnet56", "--budget", "9e9"], "above the unpruned"),
        (["arch", "show", "/nonexistent/a.yaml"], "does not exist"),
        (["arch", "scale", "resnet20", "--budget", "inf"], "positive"),
        (["arch", "count", "[/red]"], "unknown model '[/red]'"),  # user text is never read as markup
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert needle in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_malformed_yaml_file(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: resnet\nwidths: [1, 2\n")
    code, _, err = run_cli(capsys, "arch", "show", str(bad))
    assert code == 2 and "not valid YAML" in err


def test_console_script_and_module_entry_points():
    r = subprocess.run([sys.executable, "-m", "prunesearch", "arch", "count", "resnet20", "--json"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and json.loads(r.stdout)["params"] == 269_722
    r = subprocess.run([sys.executable, "-m", "prunesearch", "arch", "count", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "unknown model 'nope'" in r.stderr
