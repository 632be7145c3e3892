"""The trainer: recipes, a loss that goes down, determinism, checkpoints and resume, hooks, errors."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
import torch.nn as nn

from prunesearch.data import load_dataset
from prunesearch.errors import CheckpointError, ConfigError, DeviceError, TrainingDiverged
from prunesearch.train import (
    Recipe,
    TrainHook,
    default_threads,
    get_recipe,
    load_checkpoint,
    resolve_device,
    resolve_precision,
    save_recipe,
    scratch_b_epochs,
    train,
)


def tiny_net(in_ch: int = 3, classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_ch, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
    )


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", n_train=192, n_test=64, image_size=16)


SMOKE = dict(epochs=3, batch_size=32, lr=0.1, schedule="constant")


def smoke(**changes) -> Recipe:
    return get_recipe("smoke", **{**SMOKE, **changes})


# --------------------------------------------------------------------------------------- recipes
def test_paper_recipe_is_the_reference():
    r = get_recipe("paper")
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.weight_decay) == (160, 64, 0.1, 0.9, 1e-4)
    assert r.milestone_epochs() == [80, 120]
    assert r.lr_at(79) == pytest.approx(0.1) and r.lr_at(80) == pytest.approx(0.01) and r.lr_at(159) == pytest.approx(0.001)
    ft = get_recipe("finetune")
    assert (ft.epochs, ft.lr, ft.schedule, ft.mode) == (40, 0.001, "constant", "finetune")
    assert ft.lr_at(39) == 0.001 and ft.milestone_epochs() == []
    assert get_recipe("paper", epochs=20, lr=None).epochs == 20  # None overrides are ignored


def test_sfp_warm_up_epoch_then_the_schedule_and_other_recipes_dicts_unchanged(data):
    sfp = get_recipe("sfp")
    assert (sfp.warmup_epochs, sfp.lr_at(0), sfp.lr_at(1), sfp.lr_at(59), sfp.lr_at(60)) == (1, 0.01, 0.1, 0.1,
                                                                                               pytest.approx(0.02))
    assert Recipe.from_dict(sfp.to_dict()) == sfp and sfp.to_dict()["warmup_epochs"] == 1
    no_warmup = {f.name for f in dataclasses.fields(Recipe)} - {"extra", "warmup_epochs", "warmup_lr"}
    for name in ("paper", "finetune", "scratch-b", "imagenet", "fast", "demo", "smoke"):
        assert set(get_recipe(name).to_dict()) == no_warmup  # cache keys and checkpoint run keys as before
    # a tiny run under the SFP-like schedule: the trainer's per-epoch lr (10 epochs: milestones 3, 6, 8)
    h = Counter()
    rec = smoke(epochs=10, schedule="step", lr_milestones=(0.3, 0.6, 0.8), lr_gamma=0.2, warmup_epochs=1)
    train(tiny_net(), data, rec, seed=0, device="cpu", hooks=[h])
    lrs = [lr for _, lr in h.calls["on_epoch_start"]]
    assert lrs == pytest.approx([0.01, 0.1, 0.1, 0.02, 0.02, 0.02, 0.004, 0.004, 0.0008, 0.0008])
    assert smoke(warmup_epochs=2, warmup_lr=0.003).lr_at(1) == 0.003 and smoke(warmup_epochs=2).lr_at(2) == 0.1
    with pytest.raises(ConfigError, match="warmup_lr"):
        smoke(warmup_epochs=1, warmup_lr=0)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        smoke(warmup_epochs=-1)
    # rethink: fine-tuning from an SFP base does not warm up (lr 0.001 from the first epoch)
    from prunesearch.study import rethink_plan_from_dict
    from prunesearch.study.plan import rethink_recipes

    base, ft = rethink_recipes(rethink_plan_from_dict({"dataset": "synthetic", "model": "resnet8", "method": "soft_filter",
                                                       "ratio": 0.4, "recipe": "sfp"}, require_kind=False))
    assert base.warmup_epochs == 1 and ft.warmup_epochs == 0 and ft.lr_at(0) == 0.001


def test_recipe_errors_suggest():
    with pytest.raises(ConfigError, match="did you mean 'paper'"):
        get_recipe("papr")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        get_recipe("paper", epoch=3)
    with pytest.raises(ConfigError, match="precision"):
        get_recipe("paper", precision="fp16")
    with pytest.raises(ConfigError, match="lr_milestones"):
        Recipe(lr_milestones=(0.75, 0.5))


def test_recipe_yaml_round_trip_and_base(tmp_path):
    r = get_recipe("fast", epochs=7)
    save_recipe(r, tmp_path / "r.yaml")
    assert get_recipe(str(tmp_path / "r.yaml")) == r
    (tmp_path / "mine.yaml").write_text("base: paper\nepochs: 30\nlr: 0.05\n")
    m = get_recipe(str(tmp_path / "mine.yaml"), batch_size=128)
    assert (m.name, m.epochs, m.lr, m.batch_size, m.weight_decay) == ("mine", 30, 0.05, 128, 1e-4)
    (tmp_path / "bad.yaml").write_text("base: paper\nepocs: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        get_recipe(str(tmp_path / "bad.yaml"))


def test_scratch_b_epochs():
    assert scratch_b_epochs(160, 4e8, 1e8) == 640  # reference: no cap on CIFAR
    assert scratch_b_epochs(160, 3e8, 2e8) == 240
    assert scratch_b_epochs(90, 4e8, 1e8, convention="capped") == 180
    assert scratch_b_epochs(90, 3e8, 2e8, convention="capped") == 135
    with pytest.raises(ConfigError):
        scratch_b_epochs(160, 1e8, 0)
    with pytest.raises(ConfigError, match="convention"):
        scratch_b_epochs(160, 2, 1, convention="paper")


# ------------------------------------------------------------------------------- devices/threads
def test_resolve_device_and_threads():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(DeviceError, match="not known"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--device cpu"):
            resolve_device("cuda:0")
    n = default_threads()
    assert 1 <= n <= (os.cpu_count() or 1)
    assert resolve_precision("fp32", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16


# --------------------------------------------------------------------------------------- training
def test_loss_goes_down_and_result_shape(data, capsys):
    events = []
    r = train(tiny_net(), data, smoke(), seed=0, device="cpu",
              on_progress=events.append, progress_every=2)
    losses = [h.train_loss for h in r.history]
    assert losses[-1] < 0.7 * losses[0]
    assert r.best_acc > 0.4 and 0 <= r.final_acc <= r.best_acc <= 1  # chance is 0.1
    assert r.epochs == 3 and len(r.history) == 3 and r.train_seconds > 0 and r.images_per_second > 0
    assert r.synthetic and r.dataset == "synthetic"
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("epoch") == 3 and "step" in kinds
    assert capsys.readouterr().out == ""  # never prints


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_deterministic_on_cpu(data, precision):
    rec = smoke(epochs=2, precision=precision)
    a, b = tiny_net(), tiny_net()
    ra = train(a, data, rec, seed=5, device="cpu")
    rb = train(b, data, rec, seed=5, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert ra.best_acc == rb.best_acc


class Kill(TrainHook):
    """Simulates a crash: raises after ``at`` optimiser steps."""

    def __init__(self, at: int) -> None:
        self.at, self.n = at, 0

    def after_step(self, model):
        self.n += 1
        if self.n == self.at:
            raise KeyboardInterrupt("killed")


def test_resume_after_kill_is_bit_identical(data, tmp_path):
    rec = smoke(schedule="step", epochs=4, checkpoint_every=1)  # lr steps at 2, 3
    full = tiny_net()
    r_full = train(full, data, rec, seed=3, device="cpu")

    killed = tiny_net()
    steps = 192 // 32
    with pytest.raises(KeyboardInterrupt):  # dies mid-epoch 3, after the epoch-2 checkpoint
        train(killed, data, rec, seed=3, device="cpu", checkpoint_dir=tmp_path, hooks=[Kill(2 * steps + 3)])
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    resumed = tiny_net(seed=99)  # a fresh process would build a differently initialised model
    r_res = train(resumed, data, rec, seed=3, device="cpu", checkpoint_dir=tmp_path)
    assert r_res.resumed_from == 2
    for (k, x), y in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(x, y), k
    assert [h.test_acc for h in r_res.history] == [h.test_acc for h in r_full.history]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # atomic writes leave no temp files
    # A finished run resumes to its result without training again.
    again = train(tiny_net(), data, rec, seed=3, device="cpu", checkpoint_dir=tmp_path)
    assert again.resumed_from == 4 and again.best_acc == r_res.best_acc


def test_checkpoint_errors(data, tmp_path):
    rec = smoke(epochs=1)
    train(tiny_net(), data, rec, seed=0, device="cpu", checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # plain tensors and values only
    assert state["epoch"] == 1 and "aug" in state["rng"] and "optimizer" in state
    # another seed / recipe: refused
    with pytest.raises(CheckpointError, match="different run"):
        train(tiny_net(), data, rec, seed=1, device="cpu", checkpoint_dir=tmp_path)
    # another model: refused
    with pytest.raises(CheckpointError, match="does not fit this model"):
        train(tiny_net(classes=10)[:-1].append(nn.Linear(32, 10, bias=False)), data, rec, seed=0,
              device="cpu", checkpoint_dir=tmp_path)
    # truncated
    blob = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as e:
        train(tiny_net(), data, rec, seed=0, device="cpu", checkpoint_dir=tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "last.pt")
    # resume=False ignores it
    assert train(tiny_net(), data, rec, seed=0, device="cpu", checkpoint_dir=tmp_path, resume=False).resumed_from is None


class Counter(TrainHook):
    def __init__(self):
        self.calls = {"after_backward": 0, "after_step": 0, "on_epoch_end": [], "on_epoch_start": []}

    def on_epoch_start(self, model, epoch, lr):
        self.calls["on_epoch_start"].append((epoch, lr))

    def after_backward(self, model):
        assert all(p.grad is not None for p in model.parameters())
        self.calls["after_backward"] += 1

    def after_step(self, model):
        self.calls["after_step"] += 1

    def on_epoch_end(self, model, epoch):
        self.calls["on_epoch_end"].append(epoch)


def test_hooks_are_called(data):
    h = Counter()
    rec = smoke(epochs=2)
    train(tiny_net(), data, rec, seed=0, device="cpu", hooks=[h])
    assert h.calls == {"after_backward": 12, "after_step": 12, "on_epoch_end": [0, 1],
                       "on_epoch_start": [(0, rec.lr_at(0)), (1, rec.lr_at(1))]}


class Poison(TrainHook):
    def __init__(self, at):
        self.at, self.n = at, 0

    def after_step(self, model):
        self.n += 1
        if self.n == self.at:
            model[0].weight.fill_(float("nan"))


def test_nan_loss_raises_training_diverged(data):
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 2") as e:
        train(tiny_net(), data, smoke(), seed=0, device="cpu", hooks=[Poison(7)])
    assert "\n" not in str(e.value) and "lower the recipe's learning rate" in str(e.value)


def test_streamed_imagefolder_trains(tmp_path):
    from _cifar_fixture import write_image_folder

    write_image_folder(tmp_path, n=4)
    d = load_dataset(f"imagefolder:{tmp_path}", image_size=16, workers=0, max_resident_bytes=0)
    assert not d.resident
    r = train(tiny_net(classes=2), d, get_recipe("smoke", epochs=1, batch_size=4), seed=0, device="cpu")
    assert len(r.history) == 1 and r.history[0].images_per_second > 0 and 0 <= r.final_acc <= 1


def test_threads_restored(data):
    before = torch.get_num_threads()
    r = train(tiny_net(), data, smoke(epochs=1), seed=0, device="cpu", threads=1)
    assert r.threads == 1 and torch.get_num_threads() == before


# ------------------------------------------------------------------------------- opt-in tiers
@pytest.mark.slow
def test_resnet20_learns_mnist5k():
    """Real digits, ResNet-20, the paper recipe squeezed into 3 epochs: ~95 % (the reference loop
    reaches the same; see benchmarks/train_throughput.py --parity)."""
    from prunesearch.arch import resolve_model
    from prunesearch.models import build_model

    d = load_dataset("mnist5k")
    torch.manual_seed(0)
    net = build_model(resolve_model("resnet20", num_classes=10, in_channels=1, input_size=32))
    r = train(net, d, get_recipe("paper", epochs=3), seed=0, device="cpu")
    assert r.best_acc > 0.9


@pytest.mark.gpu
def test_trains_on_cuda(data, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    rec = smoke(epochs=4, checkpoint_every=1)
    r = train(tiny_net(), data, rec, seed=0, device="cuda", checkpoint_dir=tmp_path)
    assert r.device.startswith("cuda") and r.precision in ("bf16", "fp32")
    assert r.history[-1].train_loss < r.history[0].train_loss
    again = train(tiny_net(), data, rec, seed=0, device="cuda", checkpoint_dir=tmp_path)
    assert again.resumed_from == 4
