"""Bad input through the real CLI: every case gives ONE line on stderr (what was wrong, where, what to
do), exit code 2, no traceback, and leaves the file system exactly as it was (nothing partial: the
whole test folder, the working directory included, is compared before and after)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from prunesearch.cli import main

SPEC = """
name: bad
model: resnet8
dataset: synthetic
dataset_options: {image_size: 8, n_train: 64, n_test: 32}
recipe: {name: smoke, overrides: {epochs: 1, batch_size: 32}}
budgets: [0.5]
generators: {uniform: {}}
"""
PG_DOWN = "postgresql+psycopg://alice:s3cret-pw@127.0.0.1:1/db"  # nothing listens on port 1


def spec(tmp: Path, text: str = SPEC, name: str = "spec.yaml", **replace: str) -> str:
    for old, new in replace.items():
        text = text.replace(old, new)
    p = tmp / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def arch_file(tmp: Path, name: str = "arch.yaml", **changes) -> str:
    from prunesearch.arch import resolve_model

    d = resolve_model("resnet8").to_dict()
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v(d) if callable(v) else v
    p = tmp / name
    p.write_text(yaml.safe_dump(d))
    return str(p)


def text_file(tmp: Path, name: str, text: str) -> str:
    p = tmp / name
    p.write_text(text)
    return str(p)


def vgg_rule(tmp: Path) -> str:
    from prunesearch.arch import resolve_model
    from prunesearch.rules import extract_pattern, fit_rule, save_rule

    pattern = extract_pattern(resolve_model("vgg16-a"), {"model": "vgg16", "dataset": "cifar10", "method": "l1norm"})
    return str(save_rule(fit_rule(pattern, "stage"), tmp / "vgg-rule.yaml"))


def truncated_cifar(tmp: Path) -> str:
    from _cifar_fixture import write_cifar

    write_cifar(tmp / "cifar")
    batch = tmp / "cifar" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    return str(tmp / "cifar")


def truncated_checkpoint(tmp: Path) -> str:
    """A run folder whose checkpoints/last.pt was cut in half (a disk filled up, a copy interrupted)."""
    import torch

    out = tmp / "trainrun"
    (out / "checkpoints").mkdir(parents=True)
    out.chmod(0o700)  # as prunesearch made it (run dirs are private)
    last = out / "checkpoints" / "last.pt"
    torch.save({"format": 1, "epoch": 1, "model": {"w": torch.zeros(1000)}}, last)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    return str(out)


def journal_with_study(tmp: Path) -> str:
    from prunesearch.study import load_spec, prepare

    journal = str(tmp / "j" / "journal.log")
    prepare(load_spec(spec(tmp, name="present.yaml", **{"name: bad": "name: present"})), journal)
    return journal


def read_only_parent(tmp: Path) -> str:
    """A regular file where a folder is needed: unwritable even for root (tests run as root, where
    chmod 0o500 would not stop a write)."""
    (tmp / "a-file").write_text("not a folder")
    return str(tmp / "a-file" / "run")


ALIAS_BOMB = """name: bomb
model: resnet8
dataset: synthetic
budgets: [0.5]
generators: {uniform: {}}
dataset_options: {n_train: 64}
x0: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
x1: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
x2: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
x3: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
x4: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
x5: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
x6: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def damaged_journal(tmp: Path) -> str:
    """A journal whose last entry was cut off mid-line (a crash inside an append)."""
    journal = Path(journal_with_study(tmp))
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 4, "worker_id": "x", "study_id": 0, "datetime_st')
    return str(journal)


def symlink_loop(tmp: Path) -> str:
    (tmp / "loop.yaml").symlink_to(tmp / "loop.yaml")
    return str(tmp / "loop.yaml")


TRAIN = ["train", "resnet8", "--dataset", "synthetic", "--recipe", "smoke", "--epochs", "1", "--device", "cpu"]

# id -> (argv from the test folder, substrings the one line must contain)
CASES: dict[str, tuple[Callable[[Path], list[str]], list[str]]] = {
    "spec malformed YAML": (
        lambda t: ["study", spec(t, "name: x\nmodel: [resnet8\n"), "--out", str(t / "run")],
        ["spec.yaml", "malformed YAML", "line", "fix the syntax"]),
    "spec unknown key": (
        lambda t: ["study", spec(t, **{"budgets:": "budget:"}), "--out", str(t / "run")],
        ["spec.yaml", "unknown key 'budget'", "did you mean 'budgets'"]),
    "spec wrong type": (
        lambda t: ["study", spec(t, **{"budgets: [0.5]": "budgets: [0.5]\nseeds: three"}), "--out", str(t / "run")],
        ["spec.yaml", "'seeds'", "three"]),
    "spec name escapes the run dir": (
        lambda t: ["study", spec(t, **{"name: bad": "name: ../../escape"})],
        ["spec.yaml", "'name'", "../../escape"]),
    "spec budget above the base": (
        lambda t: ["study", spec(t, **{"[0.5]": "[1.0e9]"}), "--out", str(t / "run")],
        ["spec.yaml", "'budgets'", "above the unpruned resnet8", "give a fraction <= 1"]),
    "spec budget below the minimum": (
        lambda t: ["study", spec(t, **{"[0.5]": "[20]"}), "--out", str(t / "run")],
        ["spec.yaml", "below the smallest resnet8", "raise the budget"]),
    "rule malformed YAML": (
        lambda t: ["transfer", "--rule", text_file(t, "rule.yaml", "prunesearch_rule: 1\nkind: [stage\n"),
                   "--to", "resnet20", "--dry-run", "--out", str(t / "run")],
        ["rule.yaml", "not valid YAML", "fix the syntax"]),
    "rule file is an architecture": (
        lambda t: ["transfer", "--rule", arch_file(t), "--to", "resnet20", "--dry-run", "--out", str(t / "run")],
        ["arch.yaml", "is an architecture file, not a design rule", "give a rule.yaml"]),
    "rule from an incompatible source": (
        lambda t: ["study", spec(t, **{"{uniform: {}}": "{guided: {rule: %s}}" % vgg_rule(t)}), "--out", str(t / "run")],
        ["spec.yaml", "guided", "not fitted on resnet8", "use the 'transferred' generator"]),
    "architecture malformed YAML": (
        lambda t: [*TRAIN[:1], text_file(t, "arch.yaml", "family: resnet\ndepth: [8\n"), *TRAIN[2:], "--out", str(t / "run")],
        ["arch.yaml", "not valid YAML", "fix the syntax"]),
    "architecture unknown key": (
        lambda t: [*TRAIN[:1], arch_file(t, widht=lambda d: d["widths"], widths=None), *TRAIN[2:], "--out", str(t / "run")],
        ["arch.yaml", "unknown key 'widht'", "did you mean 'widths'"]),
    "architecture wrong type": (
        lambda t: ["arch", "show", arch_file(t, widths="wide")],
        ["arch.yaml", "widths must be a list of integers", "wide"]),
    "architecture zero width": (
        lambda t: [*TRAIN[:1], arch_file(t, widths=lambda d: [0] + d["widths"][1:]), *TRAIN[2:], "--out", str(t / "run")],
        ["arch.yaml", "widths must be >= 1, got 0", "cannot have zero channels"]),
    "architecture negative width": (
        lambda t: ["arch", "show", arch_file(t, widths=lambda d: [-4] + d["widths"][1:])],
        ["arch.yaml", "got -4"]),
    "architecture widths of the wrong length": (
        lambda t: [*TRAIN[:1], arch_file(t, widths=lambda d: d["widths"][:-1]), *TRAIN[2:], "--out", str(t / "run")],
        ["arch.yaml", "resnet8 needs 7 widths", "got 6", "prunesearch arch count resnet8"]),
    "cfg of the wrong length": (
        lambda t: ["arch", "count", "vgg16", "--cfg", "64,64,M,128"],
        ["vgg16 cfg needs 17 entries", "got 4"]),
    "cfg with a zero width": (
        lambda t: ["arch", "count", "vgg16", "--cfg", "64,0,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512"],
        ["cfg width 0", "cannot have zero channels"]),
    "scale budget above the base": (
        lambda t: ["arch", "scale", "resnet20", "--budget", "1e9"],
        ["above the unpruned resnet20", "give a fraction <= 1"]),
    "scale budget below the minimum": (
        lambda t: ["arch", "scale", "resnet20", "--budget", "10"],
        ["below the smallest resnet20", "raise the budget to at least"]),
    "dataset files missing": (
        lambda t: [*TRAIN[:3], "cifar10", "--data-dir", str(t), *TRAIN[4:], "--out", str(t / "run")],
        ["CIFAR-10 not found", "missing", "--download"]),
    "dataset batch file truncated": (
        lambda t: [*TRAIN[:3], "cifar10", "--data-dir", truncated_cifar(t), *TRAIN[4:], "--out", str(t / "run")],
        ["CIFAR-10", "cifar-10-batches-py", "missing or corrupt", "md5-checked"]),
    "checkpoint truncated (train resumes --out)": (
        lambda t: [*TRAIN, "--out", truncated_checkpoint(t)],
        ["checkpoints/last.pt", "corrupt or truncated", "delete it to start the run over"]),
    "train --out under a regular file": (
        lambda t: [*TRAIN, "--out", read_only_parent(t)],
        ["a-file/run", "not writable", "give --out a writable directory"]),
    "study --out under a regular file": (
        lambda t: ["study", spec(t), "--device", "cpu", "--out", read_only_parent(t)],
        ["a-file/run", "not writable", "give --out a writable directory"]),
    "rethink --out under a regular file": (
        lambda t: ["rethink", str(Path(__file__).resolve().parents[1] / "search_spaces" / "paper" / "l1norm-resnet110-a.yaml"),
                   "--smoke", "--device", "cpu", "--out", read_only_parent(t)],
        ["a-file/run", "not writable", "give --out a writable directory"]),
    "study storage unreachable": (
        lambda t: ["study", spec(t), "--device", "cpu", "--storage", PG_DOWN, "--out", str(t / "run")],
        ["cannot reach storage", "alice@127.0.0.1:1", "check the URL"]),
    "worker storage unreachable": (
        lambda t: ["worker", "--storage", PG_DOWN, "--study", "x", "--out", str(t / "run")],
        ["cannot reach storage", "alice@127.0.0.1:1", "check the URL"]),
    "report storage unreachable": (
        lambda t: ["report", "--storage", PG_DOWN, "--study", "x", "--out", str(t / "rep")],
        ["cannot reach storage", "alice@127.0.0.1:1"]),
    "worker journal that does not exist": (
        lambda t: ["worker", "--storage", str(t / "none.log"), "--study", "x", "--out", str(t / "run")],
        ["none.log", "does not exist", "run 'prunesearch study SPEC' first"]),
    "worker study that does not exist": (
        lambda t: ["worker", "--storage", journal_with_study(t), "--study", "nope", "--out", str(t / "run")],
        ["study 'nope' does not exist", "journal.log", "studies there: present"]),
    "report study that does not exist": (
        lambda t: ["report", "--storage", journal_with_study(t), "--study", "presnt", "--out", str(t / "rep")],
        ["study 'presnt' does not exist", "did you mean 'present'"]),
    "report run dir with a corrupt run.json": (
        lambda t: ["report", str(Path(text_file(t, "run.json", '{"storage": ')).parent)],
        ["run.json", "cannot read", "fix or remove the file"]),
    "train --device cuda without a GPU": (
        lambda t: [*TRAIN[:-2], "--device", "cuda", "--out", str(t / "run")],
        ["device 'cuda'", "not available", "use --device cpu"]),
    "study --device cuda without a GPU": (
        lambda t: ["study", spec(t), "--device", "cuda", "--out", str(t / "run")],
        ["device 'cuda'", "not available", "use --device cpu"]),
    # --- reliability II: inputs that used to hang, grow memory or trace back
    "spec YAML alias bomb": (
        lambda t: ["study", spec(t, ALIAS_BOMB), "--dry-run"],
        ["spec.yaml", "aliases are expanded", "alias bomb"]),
    "spec nested 100,000 deep": (
        lambda t: ["study", spec(t, "x: " + "[" * 100_000 + "]" * 100_000 + "\n"), "--dry-run"],
        ["spec.yaml", "nesting deeper than"]),
    "spec duplicate keys": (
        lambda t: ["study", spec(t, SPEC + "budgets: [0.3]\n"), "--dry-run"],
        ["spec.yaml", "key 'budgets' appears twice"]),
    "spec as a symlink loop": (
        lambda t: ["study", symlink_loop(t), "--dry-run"],
        ["loop.yaml", "cannot be read"]),
    "spec a billion seeds": (
        lambda t: ["study", spec(t, SPEC + "seeds: 1000000000\n"), "--dry-run"],
        ["'seeds'", "[1, 1000]"]),
    "spec a seed of 2**64": (
        lambda t: ["study", spec(t, SPEC + "seeds: [18446744073709551616]\n"), "--dry-run"],
        ["'seeds'", "2**31"]),
    "spec a hundred million searched trials": (
        lambda t: ["study", spec(t, **{"{uniform: {}}": "{searched: {trials: 100000000}}"}), "--dry-run"],
        ["'generators.searched.trials'", "[1, 10000]"]),
    "spec a six-billion-layer model": (
        lambda t: ["study", spec(t, **{"model: resnet8": "model: resnet6000000002"}), "--dry-run"],
        ["resnet6000000002", "larger than 2,000"]),
    "spec image_size nan": (
        lambda t: ["study", spec(t, **{"image_size: 8": "image_size: .nan"}), "--dry-run"],
        ["image_size", "nan"]),
    "spec n_train negative": (
        lambda t: ["study", spec(t, **{"n_train: 64": "n_train: -5"}), "--dry-run"],
        ["n_train", "-5"]),
    "recipe is a directory": (
        lambda t: [*TRAIN[:4], "--recipe", str(t), *TRAIN[6:]],
        ["recipe file", "IsADirectoryError"]),
    "train --threads -1": (
        lambda t: [*TRAIN, "--threads", "-1"],
        ["--threads", "-1"]),
    "train --seed 2**64": (
        lambda t: [*TRAIN, "--seed", str(2**64)],
        ["--seed", "2**63"]),
    "journal storage is a directory": (
        lambda t: ["study", spec(t), "--device", "cpu", "--storage", str(t), "--out", str(t / "run")],
        ["is a directory", "journal file"]),
    "journal cut mid-line": (
        lambda t: ["worker", "--storage", damaged_journal(t), "--study", "present", "--out", str(t / "run")],
        ["ends with a damaged entry", "prunesearch repair"]),
    "arch scale --budget not a number": (
        lambda t: ["arch", "scale", "resnet20", "--budget", "lots"],
        ["not a number"]),
}
NEEDS_NO_GPU = {"train --device cuda without a GPU", "study --device cuda without a GPU"}


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size if p.is_file() else None, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys, monkeypatch):
    if case in NEEDS_NO_GPU:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    make_argv, expected = CASES[case]
    monkeypatch.chdir(tmp_path)  # default output folders (runs/, report-STUDY/) land in the snapshot
    argv = make_argv(tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path)
    rc = main(argv)  # a traceback would raise here instead of returning
    out, err = capsys.readouterr()
    err = err.strip()
    assert rc == 2, (rc, err)
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for s in expected:
        assert s in err, (s, err)
    assert "s3cret-pw" not in err + out
    assert snapshot(tmp_path) == before  # nothing created, nothing partial, nothing touched


def test_at_least_fifteen_kinds():
    assert len(CASES) >= 15
