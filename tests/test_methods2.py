"""Issue-5 methods beyond the shared contract (tests/test_prune_contract.py covers every registered
method): soft filter pruning's epoch hook, ThiNet's greedy step, regression's LASSO + refit, Sparse
Structure Selection's depth pruning (exact counts, exact function), lottery-ticket rewind."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from prunesearch.arch import Architecture, count_params, get_family, resolve_budget, resolve_model
from prunesearch.data import load_dataset
from prunesearch.errors import BudgetError, ConfigError
from prunesearch.models import build_model
from prunesearch.prune import get_method
from prunesearch.prune._reconstruct import Samples, ridge_refit
from prunesearch.prune.lottery import TicketResult, control_seed, rewind
from prunesearch.prune.regression import lasso_select
from prunesearch.prune.sss import SCALE, BlockSparsity, attach_block_scales, block_scale, blocks_of, soft_threshold
from prunesearch.prune.thinet import greedy_removal
from prunesearch.train import get_recipe, train


def tiny(name: str, size: int = 8) -> Architecture:
    return resolve_model(name, num_classes=4, input_size=size)


@pytest.fixture(scope="module")
def data8():
    return load_dataset("synthetic", num_classes=4, image_size=8, n_train=32, n_test=16)


def loads_and_counts(result) -> torch.nn.Module:
    model = build_model(result.arch, masks=result.masks)
    model.load_state_dict(result.state_dict, strict=True)
    if result.masks is None:
        assert sum(p.numel() for p in model.parameters()) == count_params(result.arch)
    return model


# ------------------------------------------------------------------------------------------------ SFP
def test_soft_filter_zeroes_the_weakest_filters_which_keep_training_and_are_removed_at_the_end(data8):
    method = get_method("soft_filter")
    arch = tiny("resnet14")
    hook = method.regularizer(arch, ratio=0.3)  # SFP rate 0.7: each layer keeps w - int(0.3 w)
    torch.manual_seed(0)
    model = build_model(arch)
    with torch.no_grad():  # trained-like BN shifts: a zeroed filter's channel is then not dead after ReLU
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.fill_(0.1)
    conv = model.layer2[0].conv1
    norms = conv.weight.detach().flatten(1).norm(dim=1)
    with torch.no_grad():
        hook.on_epoch_end(model, 0)
    zero = conv.weight.detach().flatten(1).norm(dim=1) == 0
    assert int(zero.sum()) == int(32 * 0.3)  # 9 of 32 filters zeroed ...
    assert set(torch.nonzero(zero).flatten().tolist()) == set(torch.argsort(norms)[:9].tolist())  # ... the weakest
    # They keep training (soft): one epoch later they have grown back before the next zeroing.
    before_end = {}

    class Spy(type(hook)):
        def on_epoch_end(self, m, epoch):
            before_end[epoch] = m.layer2[0].conv1.weight.detach().flatten(1).norm(dim=1).clone()
            super().on_epoch_end(m, epoch)

    spy = Spy(arch, hook.widths)
    result = train(model, data8, get_recipe("smoke", epochs=2, batch_size=16), seed=0, device="cpu",
                   hooks=[spy], threads=1)
    assert result.epochs == 2 and spy.zeroed_epochs == 2
    assert bool((before_end[0][zero] > 0).all()), "zeroed filters must keep being updated"
    after = model.layer2[0].conv1.weight.detach().flatten(1).norm(dim=1)
    assert int((after == 0).sum()) == 9  # zeroed again at the last epoch's end
    pruned = method.prune(model.cpu(), arch, ratio=0.3)
    kept = pruned.keep[get_family("resnet").slots(arch).index(
        next(s for s in get_family("resnet").slots(arch) if s.name == "stage2.block1.conv1"))]
    assert set(kept) == set(torch.nonzero(after > 0).flatten().tolist())  # exactly the live filters
    loads_and_counts(pruned)


def test_soft_filter_regulariser_needs_the_same_target_as_prune():
    method = get_method("soft_filter")
    arch = tiny("resnet14")
    with pytest.raises(ConfigError, match="budget= .*ratio="):
        method.regularizer(arch)
    hook = method.regularizer(arch, budget=0.5)
    result = method.prune(trained_like(build_model(arch)), arch, budget=0.5)
    assert tuple(hook.widths) == result.arch.widths


def trained_like(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.05)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


# ------------------------------------------------------------------------------------------------ ThiNet
def test_thinet_greedy_removes_the_channels_whose_sum_changes_the_output_least():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g, dtype=torch.float64)
    x[:, 1] *= 0.01  # nearly silent channel
    x[:, 4] = -x[:, 3] + 0.001 * x[:, 4]  # 3 and 4 cancel: removing both changes nothing
    x[:, 3] *= 1.0
    removed = greedy_removal(x, 3)
    assert removed[0] == 1
    assert set(removed) == {1, 3, 4}
    # the removed sum is (near) zero although channels 3 and 4 are individually large
    assert x[:, removed].sum(1).norm() < 0.1 * x[:, 3].norm()


@pytest.mark.parametrize("name,method_name", [("resnet14", "thinet"), ("densenet7", "regression")])
def test_data_methods_land_on_budget_and_variant_widths(name, method_name, data8):
    method = get_method(method_name)
    arch = tiny(name)
    model = trained_like(build_model(arch))
    r = method.prune(model, arch, budget=0.4, data=data8, n_images=16, n_samples=256)
    target = resolve_budget(arch, 0.4)
    assert abs(r.params - target) / target <= 0.005
    loads_and_counts(r)
    with pytest.raises(ConfigError, match="reads activations"):
        method.prune(model, arch, budget=0.4)


def test_thinet_takes_a_predefined_target(data8):
    method = get_method("thinet")
    arch = tiny("resnet14")
    model = trained_like(build_model(arch))
    widths = list(arch.widths)
    for i in (1, 3, 5, 7, 9, 11):  # every block's first conv halved, as the L1-norm variants do
        widths[i] //= 2
    target = arch.replace(widths=tuple(widths))
    r = method.prune(model, arch, target=target, data=data8, n_images=8, n_samples=128)
    assert r.arch.widths == target.widths
    loads_and_counts(r)
    with pytest.raises(ConfigError, match="not a pruned form"):
        method.prune(model, arch, variant="resnet56-b", data=data8)


# ------------------------------------------------------------------------------------------------ regression
def test_lasso_drops_a_duplicated_channel_and_least_squares_absorbs_it():
    g = torch.Generator().manual_seed(0)
    p, c, o = 300, 4, 3
    patches = torch.randn(p, c, 1, generator=g, dtype=torch.float64)
    patches[:, 1] = patches[:, 0]  # channel 1 duplicates channel 0
    weight = torch.randn(o, c, 1, generator=g, dtype=torch.float64) + 0.5
    s = Samples("conv", patches, torch.randint(0, o, (p,), generator=g), weight)
    kept, alpha = lasso_select(s.contributions(), 3)
    assert alpha > 0 and len(kept) == 3 and {2, 3} <= set(kept) and len({0, 1} & set(kept)) == 1
    w = ridge_refit(s, torch.tensor(kept), strength=1e-9)
    y_hat = patches[:, kept].flatten(1) @ w.flatten(1).T
    assert torch.allclose(y_hat, s.outputs(), atol=1e-6)  # the duplicate's weight moved to its twin
    both = weight[:, 0, 0] + weight[:, 1, 0]
    assert torch.allclose(w[:, kept.index(0) if 0 in kept else kept.index(1), 0], both, atol=1e-6)


def test_regression_reconstruction_beats_plain_slicing_on_the_next_layer(data8):
    """The refitted consumers reproduce the base model's output of a later conv better than the same
    keep sets with the original (sliced) weights."""
    from prunesearch.prune.channels import inherit_state_dict

    method = get_method("regression")
    arch = tiny("resnet14")
    torch.manual_seed(0)
    model = trained_like(build_model(arch))
    r = method.prune(model, arch, ratio=0.5, data=data8, n_images=16, n_samples=512)
    refit = loads_and_counts(r).eval()
    plain = build_model(r.arch)
    plain.load_state_dict(inherit_state_dict(model, arch, r.keep))
    plain.eval()
    x = (data8.test_x.float() - 128) / 64

    def conv2_out(m):
        got = {}
        h = m.layer1[0].conv2.register_forward_hook(lambda mod, i, o: got.setdefault("y", o))
        with torch.no_grad():
            m(x)
        h.remove()
        return got["y"]

    ref = conv2_out(model)[:, list(r.keep[2])]  # the base output on the channels conv2 keeps
    assert (conv2_out(refit) - ref).norm() < (conv2_out(plain) - ref).norm()


# ------------------------------------------------------------------------------------------------ SSS
@pytest.mark.parametrize("family,depth,n", [("resnet", 20, 3), ("preresnet", 29, 3)])
def test_depth_reduced_architectures_build_and_count_exactly(family, depth, n):
    fam = get_family(family)
    rng = random.Random(0)
    combos = [c for c in itertools.product(range(n + 1), repeat=3) if sum(c) >= 1]
    for blocks in rng.sample(combos, 12):
        arch = fam.base(depth, num_classes=4, input_size=8, blocks=blocks)
        model = build_model(arch)
        assert sum(p.numel() for p in model.parameters()) == count_params(arch), blocks
        assert len(model.layer1) + len(model.layer2) + len(model.layer3) == sum(blocks)
        assert Architecture.from_dict(arch.to_dict()) == arch
        out = model.eval()(torch.randn(2, 3, 8, 8))
        assert out.shape == (2, 4)


@pytest.mark.parametrize("name", ["resnet20", "preresnet20"])
def test_sss_removes_blocks_whose_factor_is_zero_and_keeps_the_function(name):
    # zero the factor of the last block of stage 1 and of stage 3 (never a stage's first block)
    method = get_method("sss")
    arch = tiny(name)
    torch.manual_seed(0)
    model = trained_like(method.prepare(build_model(arch), arch))
    n = (arch.depth - 2) // (6 if arch.family == "resnet" else 9)
    blocks = [b for stage in blocks_of(model) for b in stage]
    with torch.no_grad():
        for i, b in enumerate(blocks):
            block_scale(b, arch.family).fill_(0.0 if i in (n - 1, 3 * n - 1) else 0.3 + 0.2 * i)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        y = model(x)
    r = method.prune(model, arch)  # automatic: exactly-zero factors go
    assert r.arch.blocks == (n - 1, n, n - 1) and r.info["removed_blocks"] == [[n - 1], [], [n - 1]]
    pruned = loads_and_counts(r).eval()
    with torch.no_grad():
        assert torch.allclose(pruned(x), y, atol=1e-4, rtol=1e-4)  # factors folded, zero blocks gone
    assert count_params(r.arch) < count_params(arch)


def test_sss_budget_removes_blocks_in_ascending_factor_order_to_the_closest_count():
    method = get_method("sss")
    arch = tiny("resnet20")
    model = method.prepare(build_model(arch), arch)
    blocks = [b for stage in blocks_of(model) for b in stage]
    with torch.no_grad():
        for i, b in enumerate(blocks):
            block_scale(b, "resnet").fill_(float(10 - i))  # later blocks weaker
    fam = get_family("resnet")
    sizes = {k: count_params(fam.base(20, num_classes=4, input_size=8, blocks=k))
             for k in [(3, 3, 3), (3, 3, 2), (3, 3, 1), (3, 2, 1), (3, 1, 1), (2, 1, 1), (1, 1, 1), (0, 1, 1)]}
    for blocks_expected, p in sizes.items():
        r = method.prune(model, arch, budget=p)
        assert (r.arch.blocks or (3, 3, 3)) == blocks_expected
    # stage 1's first block has an identity shortcut and goes last (strongest factor); the first blocks
    # of stages 2 and 3 (stride 2) cannot go, so (0, 1, 1) is the floor
    assert len(loads_and_counts(r).layer1) == 0
    with pytest.raises(BudgetError, match="below"):
        method.prune(model, arch, budget=sizes[(0, 1, 1)] - 1000)


def test_sss_training_with_apg_sends_factors_to_exactly_zero_and_prune_removes_them(data8):
    method = get_method("sss")
    arch = tiny("resnet14")
    torch.manual_seed(0)
    model = method.prepare(build_model(arch), arch)
    assert f"layer1.1.bn2.{SCALE}" in model.state_dict()
    hook = method.regularizer(arch, s=100.0)  # lr 0.05 (smoke) x s = 5 per step: every factor hits 0 at once
    assert isinstance(hook, BlockSparsity) and hook.momentum == 0.9
    train(model, data8, get_recipe("smoke", epochs=1, batch_size=16, weight_decay=0.0), seed=0, device="cpu",
          hooks=[hook], threads=1)
    factors = [float(block_scale(b, "resnet").detach()) for st in blocks_of(model) for b in st]
    assert factors == [0.0] * 6  # exactly zero (2 steps: z = 0 twice, so the look-ahead is 0 too)
    r = method.prune(model, arch)  # automatic: exactly-zero factors go, where the architecture allows
    assert r.arch.blocks == (0, 1, 1)  # stage 1 empties; stages 2/3 keep their stride-2 first block
    assert r.info["kept_zero_blocks"] == [[], [0], [0]]
    assert r.threshold == 0.0
    state = hook.state_dict()
    assert set(state["buffers"]) == {k for k in model.state_dict() if k.endswith(SCALE)}
    attach_block_scales(model, "resnet")  # idempotent
    assert sum(1 for k in model.state_dict() if k.endswith(SCALE)) == 6


def test_sss_apg_step_matches_the_reference_update_exactly():
    """One factor, by hand: v <- mu v; z <- S(lam - lr g, lr s); v <- z - lam + v; lam <- z + mu v."""
    arch = tiny("resnet14")
    model = attach_block_scales(build_model(arch), "resnet")
    p = block_scale(model.layer1[1], "resnet")
    hook = BlockSparsity(s=1.0, momentum=0.5)

    def step(lam: float, grad: float) -> float:
        with torch.no_grad():
            p.fill_(lam)
        p.grad = torch.full_like(p, grad)
        hook.after_backward(model)
        assert p.grad is None  # taken out of SGD
        hook.after_step(model)
        return float(p.detach())

    with pytest.raises(ConfigError, match="learning rate"):
        step(1.0, 0.0)
    hook = BlockSparsity(s=1.0, momentum=0.5)
    hook.on_epoch_start(model, 0, 0.25)  # lr * s = 0.25
    # |1.0 - 0.25 * 0.5| = 0.875 > 0.25: z = 0.625, v = -0.375, stored 0.625 - 0.1875
    assert step(1.0, 0.5) == pytest.approx(0.4375, abs=1e-7)
    # |0.4375 - 0.25 * 0.5| = 0.3125 > 0.25: z = 0.0625; v = 0.0625 - 0.4375 - 0.1875 = -0.5625
    assert step(0.4375, 0.5) == pytest.approx(0.0625 - 0.28125, abs=1e-7)
    # below the threshold: z = 0 exactly; v = 0 - (-0.21875) - 0.28125 = -0.0625; stored -0.03125
    assert step(-0.21875, 0.0) == pytest.approx(-0.03125, abs=1e-7)
    # z = 0 again: v = 0 + 0.03125 - 0.03125 = 0, so the factor is exactly 0.0, not just small
    assert step(-0.03125, 0.0) == 0.0
    # momentum 0: a single proximal step lands exactly on zero
    plain = BlockSparsity(s=1.0, momentum=0.0)
    plain.on_epoch_start(model, 0, 0.1)
    with torch.no_grad():
        p.fill_(0.09)
    p.grad = torch.full_like(p, -0.05)  # 0.09 + 0.005 = 0.095 <= 0.1
    plain.after_backward(model)
    plain.after_step(model)
    assert float(p.detach()) == 0.0
    assert soft_threshold(torch.tensor([0.3, -0.3, 0.05]), 0.1).tolist() == pytest.approx([0.2, -0.2, 0.0])
    with pytest.raises(ConfigError, match="momentum"):
        get_method("sss").regularizer(arch, momentum=1.0)


@pytest.mark.parametrize("name", ["resnet20", "preresnet20"])
def test_sss_first_block_of_a_stage_goes_only_where_the_shortcut_allows(name):
    method = get_method("sss")
    arch = tiny(name)
    torch.manual_seed(0)
    model = trained_like(method.prepare(build_model(arch), arch))
    with torch.no_grad():
        for st in blocks_of(model):
            for i, b in enumerate(st):
                block_scale(b, arch.family).fill_(0.0 if i == 0 else 0.5)  # every stage's first block
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        y = model(x)
    r = method.prune(model, arch)
    if arch.family == "resnet":  # layer1.0: identity shortcut -> removed; layer2.0/3.0: stride 2 -> kept
        assert r.info["removed_blocks"] == [[0], [], []] and r.info["kept_zero_blocks"] == [[], [0], [0]]
    else:  # every first block has a projection shortcut
        assert r.info["removed_blocks"] == [[], [], []] and r.info["kept_zero_blocks"] == [[0], [0], [0]]
    with torch.no_grad():
        assert torch.allclose(loads_and_counts(r).eval()(x), y, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ lottery
def test_lottery_ticket_is_the_initialisation_under_the_mask():
    method = get_method("lottery")
    arch = tiny("resnet14")
    torch.manual_seed(0)
    model = build_model(arch)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # "training"
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    r = method.prune(model, arch, ratio=0.8, init_state=init)
    assert isinstance(r, TicketResult) and r.method == "lottery" and r.info["rewind"]
    ticket = method.build_pruned(r, init="rewind")
    names = [n for n, m in ticket.named_modules() if isinstance(m, torch.nn.Conv2d)]
    for name, mask in zip(names, r.masks):
        w = dict(ticket.named_modules())[name].weight
        assert torch.equal(w, init[f"{name}.weight"] * mask)
    fine = method.build_pruned(r, init="inherit")
    assert not torch.equal(fine.conv1.weight, ticket.conv1.weight)
    scratch = method.build_pruned(r, init="scratch", seed=0)  # seed 0 drew the base: the control must not
    assert not torch.equal(scratch.conv1.weight, ticket.conv1.weight)
    no_init = method.prune(model, arch, ratio=0.8)
    with pytest.raises(ConfigError, match="init_state"):
        method.build_pruned(no_init, init="rewind")


def test_lottery_random_init_control_is_the_dense_init_under_the_mask():
    method = get_method("lottery")
    arch = tiny("resnet14")
    torch.manual_seed(0)
    model = trained_like(build_model(arch))
    r = method.prune(model, arch, ratio=0.9, init_state=build_model(arch).state_dict())
    control = method.build_pruned(r, init="scratch", seed=5)
    torch.manual_seed(control_seed(5))
    dense = build_model(arch)  # what the unpruned network draws (with the control's salted seed)
    convs = [(n, m) for n, m in control.named_modules() if isinstance(m, torch.nn.Conv2d)]
    for (name, conv), mask in zip(convs, r.masks):
        assert torch.equal(conv.weight, dict(dense.named_modules())[name].weight * mask)
    # the scale is the dense layer's Kaiming fan-out std, sqrt(2 / (64 * 3 * 3)), whatever the density;
    # the density-aware init of sparse scratch runs would be sqrt(2 / (kept / in_channels)), ~3x larger here
    conv, mask = convs[-1][1], r.masks[-1]
    kept = conv.weight.detach()[mask == 1]
    assert float(kept.std()) == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    sparse_std = (2 / (float(mask.sum()) / 64)) ** 0.5
    assert sparse_std > 2 * float(kept.std())
    assert torch.equal(control.state_dict()["layer3.1.conv2.weight"],
                       method.build_pruned(r, init="scratch", seed=5).state_dict()["layer3.1.conv2.weight"])


def test_lottery_iterative_rounds_prune_rewind_retrain():
    method = get_method("lottery")
    arch = tiny("resnet8")
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in build_model(arch).state_dict().items()}
    model = trained_like(build_model(arch))
    calls = []
    gen = torch.Generator().manual_seed(1)

    def retrain(m, hooks):  # a stand-in for prunesearch.train.train(m, data, recipe, hooks=hooks)
        assert [type(h).__name__ for h in hooks] == ["MaskHook"]
        convs = [(n, c) for n, c in m.named_modules() if isinstance(c, torch.nn.Conv2d)]
        masks = [c.weight_mask.clone() for _, c in convs]
        for (n, c), mk in zip(convs, masks):  # the ticket: initial weights under the round's mask
            assert torch.equal(c.weight, init[f"{n}.weight"] * mk)
        calls.append(masks)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=gen))
            hooks[0].after_step(m)

    r = method.prune(model, arch, rounds=3, rate=0.2, retrain=retrain, init_state=init)
    assert len(calls) == 2  # retrained after rounds 1 and 2, not after the last
    assert r.info["rounds"] == 3 and r.info["round_ratios"] == pytest.approx([0.2, 0.36, 0.488], abs=1e-12)
    total = sum(m.numel() for m in r.masks)
    for cum, masks in zip((0.2, 0.36), calls):
        assert 1 - sum(float(m.sum()) for m in masks) / total == pytest.approx(cum, abs=2e-3)
    for earlier, later in ((calls[0], calls[1]), (calls[1], list(r.masks))):  # pruned weights stay pruned
        assert all(not (l.bool() & ~e.bool()).any() for e, l in zip(earlier, later))
    assert r.info["pruned_fraction"] == pytest.approx(0.488, abs=2e-3)
    one_shot = method.prune(model, arch, ratio=0.488)
    assert any(not torch.equal(a, b) for a, b in zip(one_shot.masks, r.masks))  # rounds prune the retrained weights
    ticket = method.build_pruned(r, init="rewind")
    assert torch.equal(ticket.conv1.weight, init["conv1.weight"] * r.masks[0])
    # with a budget the last round lands on it
    rb = method.prune(model, arch, rounds=2, budget=0.5, retrain=retrain, init_state=init)
    assert rb.params == resolve_budget(arch, 0.5)
    with pytest.raises(ConfigError, match="init_state"):
        method.prune(model, arch, rounds=2, ratio=0.5, retrain=retrain)
    with pytest.raises(ConfigError, match="rounds >= 2"):
        method.prune(model, arch, ratio=0.5, retrain=retrain)


def test_structured_lottery_keeps_the_top_l1_filters_and_rewinds_them_to_their_init():
    method = get_method("lottery")
    arch = tiny("vgg11", 16)  # filter counts 64, 128, 256, 256, 512 x 4
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in build_model(arch).state_dict().items()}
    model = build_model(arch)
    with torch.no_grad():  # "trained": filter j of a C-filter conv has L1 norm proportional to (j + 1) / C
        for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
            c = conv.weight.shape[0]
            per = torch.arange(1, c + 1, dtype=torch.float32) / c / conv.weight[0].numel()
            conv.weight.copy_(per.view(-1, 1, 1, 1).expand_as(conv.weight))
    r = method.prune(model, arch, ratio=0.5, structured=True, init_state=init)
    # normalised scores (j + 1) / C: exactly half of the pool is <= 0.5, so the threshold is the next score,
    # 0.5 + 1/512: the 512-filter layers keep 255 (not 256), the others exactly half
    assert r.arch.widths == (32, 64, 128, 128, 255, 255, 255, 255) and r.masks is None and r.arch.densities is None
    assert r.threshold == pytest.approx(0.5 + 1 / 512) and r.info["structured"] and r.info["rewind"]
    assert [k == tuple(range(b - w, b)) for k, b, w in zip(r.keep, arch.widths, r.arch.widths)] == [True] * 8
    ticket = method.build_pruned(r, init="rewind")  # the kept filters' *initial* weights
    k0, k1 = list(r.keep[0]), list(r.keep[1])
    assert torch.equal(ticket.features[4].weight, init["features.4.weight"][k1][:, k0])
    fine = method.build_pruned(r, init="inherit")  # the trained ones
    assert torch.equal(fine.features[4].weight, model.features[4].weight.detach()[k1][:, k0])
    control = method.build_pruned(r, init="scratch", seed=0)  # a fresh dense init, sliced the same way
    torch.manual_seed(control_seed(0))
    dense = build_model(arch)
    assert torch.equal(control.features[4].weight, dense.features[4].weight.detach()[k1][:, k0])
    assert not torch.equal(control.features[4].weight, ticket.features[4].weight)
    # the dense layer's Kaiming fan-out scale sqrt(2 / (512 * 9)), not the narrow layer's sqrt(2 / (255 * 9))
    assert float(control.features[25].weight.detach().std()) == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.05)
    assert method.prune(model, arch, budget=0.5, structured=True).info["budget_rel_error"] < 0.02
    with pytest.raises(ConfigError, match="densenet"):
        method.prune(build_model(tiny("densenet7")), tiny("densenet7"), ratio=0.5, structured=True)


def test_rewind_works_for_channel_and_block_results():
    arch = tiny("resnet14")
    torch.manual_seed(0)
    model = trained_like(build_model(arch))
    init = {k: v.clone() for k, v in build_model(arch).state_dict().items()}
    r = get_method("l1norm").prune(model, arch, budget=0.5)
    ticket = build_model(r.arch)
    ticket.load_state_dict(rewind(r, init), strict=True)
    k0 = r.keep[1]
    assert torch.equal(ticket.layer1[0].conv1.weight, init["layer1.0.conv1.weight"][list(k0)][:, list(r.keep[0])])
    r2 = get_method("sss").prune(model, arch, budget=0.8)
    build_model(r2.arch).load_state_dict(rewind(r2, init), strict=True)


# ------------------------------------------------------------------------------------------------ layer by layer
@pytest.mark.parametrize("method_name", ["thinet", "regression"])
def test_data_methods_go_layer_by_layer_on_the_network_pruned_so_far(method_name):
    """Step 1 (slot 1's channels, read by conv 2) is computed by hand on the network whose slot 0 is
    already pruned and whose conv 1 is already refitted: the method must pick exactly those channels,
    and the fine-tune weights must be the refits of that pass."""
    from prunesearch.prune._reconstruct import (Step, capture_inputs, channel_scaling, sample_consumer,
                                                slot_consumers, step_generator)
    from prunesearch.prune.channels import arch_from_keep, inherit_state_dict

    data = load_dataset("synthetic", num_classes=4, image_size=16, n_train=32, n_test=8)
    arch = tiny("vgg11", 16)
    torch.manual_seed(0)
    model = trained_like(build_model(arch))
    n_img, n_smp, seed = 8, 256, 3
    r = get_method(method_name).prune(model, arch, ratio=0.5, data=data, n_images=n_img, n_samples=n_smp, seed=seed)
    (c1,), (c2,) = slot_consumers(arch)[0], slot_consumers(arch)[1]
    full = [tuple(range(w)) for w in arch.widths]

    def step(net, name, group, orig_net=None, rows=None):
        s = sample_consumer(name, dict(net.named_modules())[name], capture_inputs(net, data, [name], n_img, seed)[name],
                            n_smp, step_generator(seed, group, 0))
        if orig_net is None:
            return Step(s)
        o = sample_consumer(name, dict(orig_net.named_modules())[name],
                            capture_inputs(orig_net, data, [name], n_img, seed)[name], n_smp, step_generator(seed, group, 0))
        return Step(s, o.outputs()[:, list(rows)])

    def choose(st, width):
        x = st.samples.contributions()
        if method_name == "thinet":
            gone = set(greedy_removal(x, x.shape[1] - width))
            kept = [c for c in range(x.shape[1]) if c not in gone]
        else:
            kept, _ = lasso_select(x, width, y=st.y())
        kept_t = torch.tensor(kept)
        if method_name == "thinet":
            w = st.samples.weight[:, kept_t] * channel_scaling(st.samples, kept_t)[None, :, None]
        else:
            w = ridge_refit(st.samples, kept_t, 1e-3, target=st.target)
        return tuple(kept), w

    orig = model if method_name == "regression" else None
    k0, w1 = choose(step(model, c1, 0, orig, full[1]), r.arch.widths[0])
    assert r.keep[0] == k0
    keep = [k0] + full[1:]
    state = inherit_state_dict(model, arch, keep)
    state[f"{c1}.weight"] = w1.reshape(state[f"{c1}.weight"].shape).float()
    net = build_model(arch_from_keep(arch, keep))
    net.load_state_dict(state)
    net.eval()
    k1, w2 = choose(step(net, c2, 1, orig, full[2]), r.arch.widths[1])
    assert r.keep[1] == k1  # chosen on the pruned-so-far network
    # the fine-tune weights are the refits of that pass (sliced to the later keep sets)
    want1 = w1.reshape(state[f"{c1}.weight"].shape)[list(r.keep[1])].float()
    assert torch.allclose(r.state_dict[f"{c1}.weight"], want1, atol=1e-6)
    want2 = w2.reshape(w2.shape[0], len(k1), 3, 3)[list(r.keep[2])].float()
    assert torch.allclose(r.state_dict[f"{c2}.weight"], want2, atol=1e-6)
    # ... and step 1 really saw other activations than the unpruned network's
    unpruned_x = capture_inputs(model, data, [c2], n_img, seed)[c2]
    assert not torch.allclose(capture_inputs(net, data, [c2], n_img, seed)[c2], unpruned_x, atol=1e-3)


def test_soft_filter_masks_before_training_and_every_conv_on_its_own():
    """The SFP scripts zero the fresh network once before training, and mask each conv independently
    (the convs writing one residual stream get their own masks); the sfp recipe is the scripts'."""
    method = get_method("soft_filter")
    arch = tiny("resnet14")
    hook = method.regularizer(arch, ratio=0.5)
    torch.manual_seed(0)
    model = build_model(arch)
    stream = ["conv1", "layer1.0.conv2", "layer1.1.conv2"]  # the convs writing stage 1's stream
    mods = dict(model.named_modules())
    norms = {n: mods[n].weight.detach().flatten(1).norm(dim=1) for n in stream}
    with torch.no_grad():
        hook.on_epoch_start(model, 0, 0.1)
    zeroed = {n: set(torch.nonzero(mods[n].weight.detach().flatten(1).norm(dim=1) == 0).flatten().tolist())
              for n in stream}
    for n in stream:  # each conv loses its own 8 weakest of 16 filters ...
        assert zeroed[n] == set(torch.argsort(norms[n])[:8].tolist())
    assert len({frozenset(z) for z in zeroed.values()}) > 1  # ... not one set for the stream
    assert hook.masked_at_start and hook.zeroed_epochs == 0
    w = mods["conv1"].weight.detach().clone()
    with torch.no_grad():
        mods["conv1"].weight.add_(1.0)  # a second epoch start (resume) does not mask again
        hook.on_epoch_start(model, 1, 0.1)
    assert not (mods["conv1"].weight == 0).any() and torch.allclose(mods["conv1"].weight - 1.0, w, atol=1e-6)
    result = method.prune(model, arch, ratio=0.5)
    assert "tied_read_off" in result.info  # the narrow network cannot hold per-conv stream masks
    mid = [i for i, s in enumerate(get_family("resnet").slots(arch)) if s.name == "stage1.block1.conv1"][0]
    live = torch.nonzero(model.layer1[0].conv1.weight.detach().flatten(1).norm(dim=1) > 0).flatten().tolist()
    assert list(result.keep[mid]) == live  # untied slots keep exactly their live filters
    r = get_recipe("sfp")
    assert (r.epochs, r.batch_size, r.weight_decay, r.lr, r.lr_gamma) == (200, 128, 5e-4, 0.1, 0.2)
    assert r.milestone_epochs() == [60, 120, 160] and r.lr_at(199) == pytest.approx(0.1 * 0.2 ** 3)
