"""``prunesearch train``: the CLI on top of the trainer (plain output when not a terminal, --json)."""

from __future__ import annotations

import json

import pytest

from prunesearch.cli import main


@pytest.fixture(scope="module")
def small_arch_file(tmp_path_factory):
    from prunesearch.arch import resolve_model, save_architecture, scale_to_budget

    arch = scale_to_budget(resolve_model("resnet20", num_classes=3), 0.1)  # a fast, narrow net
    return save_architecture(arch, tmp_path_factory.mktemp("arch") / "small.yaml")


def test_train_json_from_architecture_file(small_arch_file, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", str(small_arch_file), "--dataset", "synthetic", "--recipe", "smoke", "--epochs", "1",
               "--device", "cpu", "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    for key in ("best_acc", "final_acc", "epochs", "train_seconds", "params", "macs"):
        assert key in res
    assert res["epochs"] == 1 and res["synthetic"] is True and 0 <= res["best_acc"] <= 1
    assert (out / "result.json").exists() and (out / "model.pt").exists()
    assert (out / "checkpoints" / "last.pt").exists() and (out / "architecture.yaml").exists()
    # the architecture was rebuilt for the dataset's 10 classes (the file said 3)
    import yaml

    assert yaml.safe_load((out / "architecture.yaml").read_text())["architecture"]["num_classes"] == 10


def test_train_plain_lines_and_errors(small_arch_file, capsys, tmp_path):
    rc = main(["train", str(small_arch_file), "--dataset", "synthetic", "--recipe", "smoke", "--epochs", "1",
               "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "epoch 1/1" in out and "validation" in out and "SYNTHETIC" in out
    assert main(["train", "resnet20", "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err
    assert main(["train", "resnet20", "--dataset", "synthetic", "--recipe", "papr"]) == 2
    assert "did you mean 'paper'" in capsys.readouterr().err
