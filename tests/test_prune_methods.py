"""Per-method tests of the issue-4 methods: slimming, l1norm, magnitude (and the shared machinery).

Hand-made scores check the reference code's threshold semantics exactly; the collapse guard, tie
groups, budget bisection, weight inheritance (pruned model == masked base model where that identity
is exact), the sparsity regulariser and mask-aware training are each checked on tiny models.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunesearch.arch import count_params, get_family, resolve_budget, resolve_model, scale_to_budget
from prunesearch.errors import ConfigError
from prunesearch.models import build_model, conv_layers
from prunesearch.prune import get_method
from prunesearch.prune.channels import ChannelPool, bn_scores, filter_norms, module_plan
from prunesearch.prune.slimming import BNL1Penalty
from prunesearch.prune.sparse import MaskHook, init_sparse_

C = 4  # classes


def randomise_bn(model: nn.Module, seed: int = 0, lo: float = 0.05) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * (1 - lo) + lo)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def make(name: str, size: int = 8, seed: int = 0):
    arch = resolve_model(name, num_classes=C, input_size=size)
    torch.manual_seed(seed)
    return arch, randomise_bn(build_model(arch), seed)


def bns(model: nn.Module, arch) -> list[nn.BatchNorm2d]:
    mods = dict(model.named_modules())
    return [mods[n] for n in module_plan(arch).bn]


# ------------------------------------------------------------------------------------------------
# Network Slimming
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg11():
    return make("vgg11", size=16)


def test_slimming_threshold_on_a_hand_made_gamma_vector(vgg11):
    arch, base = vgg11
    model = copy.deepcopy(base)
    layers = bns(model, arch)
    with torch.no_grad():
        for m in layers:
            m.weight.fill_(1.0)
        layers[0].weight.copy_(torch.arange(1, 65) / 100)  # conv1: 0.01, 0.02, ..., 0.64
    total = sum(m.num_features for m in layers)
    assert total == 2752
    # int(total * percent) = 10 -> thr = sorted[10] = 0.11 -> keep |gamma| > 0.11: channels 11..63
    result = get_method("slimming").prune(model, arch, ratio=10.5 / total)
    assert result.threshold == pytest.approx(0.11)
    assert result.keep[0] == tuple(range(11, 64))
    assert result.arch.widths == (53,) + arch.widths[1:]
    assert result.info["guarded_slots"] == []


def test_slimming_matches_the_reference_rule_with_ties_and_signs(vgg11):
    arch, base = vgg11
    model = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in bns(model, arch):  # two-decimal values (many ties), random signs
            v = torch.round(torch.rand(m.num_features, generator=g) * 100) / 100 + 0.01
            m.weight.copy_(v * torch.where(torch.rand(m.num_features, generator=g) < 0.3, -1.0, 1.0))
    gammas = [m.weight.detach().abs().tolist() for m in bns(model, arch)]
    pool = sorted(x for layer in gammas for x in layer)
    for percent in (0.37, 0.8):
        thr = pool[int(len(pool) * percent)]  # the reference code, literally
        expected = [tuple(j for j, x in enumerate(layer) if x > thr) for layer in gammas]
        result = get_method("slimming").prune(model, arch, ratio=percent)
        assert result.threshold == thr
        assert list(result.keep) == expected


def test_slimming_guards_a_collapsing_layer(vgg11):
    arch, base = vgg11
    model = copy.deepcopy(base)
    layers = bns(model, arch)
    with torch.no_grad():
        layers[2].weight.copy_(torch.linspace(1e-5, 2e-5, layers[2].num_features))  # conv3: all tiny
        layers[2].weight[17] = 3e-5  # its best channel
    result = get_method("slimming").prune(model, arch, ratio=0.2)
    # the reference rule would leave conv3 with no channel (and crash); the guard keeps the best one
    assert result.info["guarded_slots"] == ["conv3"]
    assert result.keep[2] == (17,) and result.arch.widths[2] == get_family("vgg").min_width
    pruned = build_model(result.arch)
    pruned.load_state_dict(result.state_dict, strict=True)


def test_slimming_ties_resnet_residual_slots_with_one_keep_set():
    arch, model = make("resnet8")
    slots = get_family("resnet").slots(arch)
    result = get_method("slimming").prune(model, arch, ratio=0.5)
    gam = [s.abs().tolist() for s in bn_scores(model, arch)]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(slots):
        groups.setdefault(s.tie or f"#{i}", []).append(i)
    # the pool: one entry per free channel, one per tied channel (mean |gamma| of the tied BNs)
    group_scores = [[sum(gam[i][c] for i in m) / len(m) for c in range(len(gam[m[0]]))] for m in groups.values()]
    pool = sorted(x for g in group_scores for x in g)
    assert result.info["pool_size"] == len(pool) == 16 + 16 + 32 + 32 + 64 + 64
    thr = pool[int(len(pool) * 0.5)]
    assert result.threshold == pytest.approx(thr)
    for m, g in zip(groups.values(), group_scores):
        want = tuple(c for c, x in enumerate(g) if x > thr) or None
        for i in m:
            if want is not None:
                assert result.keep[i] == want
    assert result.keep[0] == result.keep[2]  # stem and stage-1 block output: one set


def test_slimming_budget_is_the_closest_threshold_and_round_trips_to_ratio():
    arch, model = make("resnet14")
    method = get_method("slimming")
    target = resolve_budget(arch, 0.5)
    result = method.prune(model, arch, budget=0.5)
    pool = ChannelPool(arch, bn_scores(model, arch))
    every = [count_params(arch.replace(widths=pool.widths_at(k))) for k in range(-1, pool.total)]
    assert abs(result.params - target) == min(abs(p - target) for p in every)
    assert result.info["budget_rel_error"] <= 0.005
    again = method.prune(model, arch, ratio=result.ratio)
    assert again.arch == result.arch and again.threshold == result.threshold


def test_slimming_budget_splits_runs_of_equal_gammas():
    """An untrained model's gammas are all equal: the reference rule can only keep or drop all of
    them, so budget mode breaks ties by slot/channel order and says so."""
    arch = resolve_model("resnet8", num_classes=C, input_size=8)
    model = build_model(arch)  # every gamma is 1.0
    result = get_method("slimming").prune(model, arch, budget=0.5)
    assert result.info["budget_rel_error"] <= 0.005 and "ties_split" in result.info
    by_ratio = get_method("slimming").prune(model, arch, ratio=0.5)  # reference rule: all or nothing
    assert by_ratio.arch.widths == (1,) * len(arch.widths) and by_ratio.info["guarded_slots"]


@pytest.mark.parametrize("name,size", [("vgg11", 16), ("preresnet11", 8), ("densenet7", 8)])
def test_pruned_model_equals_the_masked_base_model(name: str, size: int):
    """Zeroing a pruned channel's BN gamma and beta makes it exactly 0 after the ReLU, so the base
    model with those BNs zeroed computes what the physically narrow pruned model computes (VGG:
    conv-BN-ReLU; PreResNet/DenseNet: select-BN-ReLU-conv). Exact up to float summation order."""
    arch, model = make(name, size)
    for method, kw in (("slimming", {"ratio": 0.5}), ("l1norm", {"budget": 0.5})):
        if name.startswith("densenet") and method == "l1norm":
            continue
        result = get_method(method).prune(model, arch, **kw)
        assert result.params < count_params(arch)
        masked = copy.deepcopy(model)
        with torch.no_grad():
            for bn, kept in zip(bns(masked, arch), result.channel_masks()):
                bn.weight[~kept] = 0
                bn.bias[~kept] = 0
        pruned = build_model(result.arch)
        pruned.load_state_dict(result.state_dict, strict=True)
        x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            want, got, full = masked.eval()(x), pruned.eval()(x), model.eval()(x)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (method, (got - want).abs().max())
        assert not torch.allclose(full, want, atol=1e-3)  # the pruning did change the function


def masked_full_network(model: nn.Module, arch, result) -> nn.Module:
    """The base model with every pruned channel zeroed: each slot's BN output is multiplied by the
    slot's channel mask (conv-BN-ReLU and BN-ReLU-conv then see exact zeros), and for ResNet also
    the residual stream after every block (the stream is the block outputs' slot)."""
    masked = copy.deepcopy(model)
    masks = result.channel_masks()
    mods = dict(masked.named_modules())
    plan = module_plan(arch)

    def mul(m):
        return lambda mod, inp, out: out * m.view(1, -1, 1, 1).to(out.dtype)

    for name, m in zip(plan.bn, masks):
        mods[name].register_forward_hook(mul(m))
    if arch.family == "resnet":
        for name, (kind, out_slot, _) in plan.slicing.items():
            if kind == "bn" and name.endswith(".bn2"):
                mods[name.rsplit(".", 1)[0]].register_forward_hook(mul(masks[out_slot]))
    return masked.eval()


@pytest.mark.parametrize("name,size", [("vgg11", 16), ("resnet14", 8), ("preresnet11", 8), ("densenet7", 8)])
def test_inherited_model_equals_the_masked_full_network_for_every_family(name: str, size: int):
    """Fine-tuning starts from exactly the pruned function (issue 15): ``build_pruned(init="inherit")``
    computes what the full network computes with the pruned channels zeroed, for every family,
    including ResNet with pruned stage outputs (the option-A shortcut routes kept channels to their
    kept positions instead of padding by position)."""
    arch, model = make(name, size)
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    slots = get_family(arch.family).slots(arch)
    for method, kw in (("slimming", {"ratio": 0.5}), ("l1norm", {"budget": 0.5})):
        if name.startswith("densenet") and method == "l1norm":
            continue
        m = get_method(method)
        result = m.prune(model, arch, **kw)
        if arch.family == "resnet" and method == "slimming":
            streams = {}
            for s, k in zip(slots, result.keep):
                if s.tie is not None:
                    streams.setdefault(s.tie, k)
            k1, k2, _ = streams.values()
            w1 = slots[0].base_width
            assert k1 != tuple(c for c in k2 if c < w1)  # positional padding would be wrong here
        pruned = m.build_pruned(result, init="inherit").eval()
        with torch.no_grad():
            want, got, full = masked_full_network(model, arch, result)(x), pruned(x), model.eval()(x)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (method, (got - want).abs().max())
        assert not torch.allclose(full, want, atol=1e-3)  # the pruning did change the function
    # keeping everything inherits the same function (a fresh model's route is the positional padding)
    from prunesearch.prune.channels import result_from_keep

    same = result_from_keep("slimming", model, arch, [tuple(range(s.base_width)) for s in slots])
    with torch.no_grad():
        assert torch.allclose(get_method("slimming").build_pruned(same).eval()(x), model(x), atol=1e-6)


def test_resnet_loads_a_checkpoint_without_the_shortcut_route():
    arch, model = make("resnet14", 8)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(".route")}
    assert len(state) < len(model.state_dict())
    fresh = build_model(arch)
    fresh.load_state_dict(state, strict=True)  # older checkpoints: positional padding
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_slimming_regulariser_adds_s_sign_gamma():
    arch = resolve_model("vgg11", num_classes=C, input_size=16, head="l1")
    hook = get_method("slimming").regularizer(arch)
    assert isinstance(hook, BNL1Penalty) and hook.s == 1e-4
    assert get_method("slimming").regularizer(resolve_model("resnet20")).s == 1e-5
    assert get_method("slimming").regularizer(resolve_model("densenet40"), s=3e-5, budget=0.5).s == 3e-5
    model = randomise_bn(build_model(arch))
    with torch.no_grad():
        model.features[1].weight[:3] = torch.tensor([-0.5, 0.0, 0.5])
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    hook.after_backward(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight.grad, 1e-4 * torch.sign(m.weight.detach()))
        elif isinstance(m, nn.BatchNorm1d):  # the reference penalises BatchNorm2d only
            assert not m.weight.grad.any()
    assert model.features[1].weight.grad[:3].tolist() == pytest.approx([-1e-4, 0.0, 1e-4])
    with pytest.raises(ConfigError, match="s="):
        get_method("slimming").regularizer(arch, lam=1)


def test_one_epoch_of_sparsity_training_shrinks_the_gammas():
    from prunesearch.data import load_dataset
    from prunesearch.train import get_recipe, train

    arch = resolve_model("resnet8", num_classes=C, input_size=8)
    data = load_dataset("synthetic", num_classes=C, image_size=8, n_train=128, n_test=32)
    recipe = get_recipe("smoke", epochs=1, batch_size=32, lr=0.05)
    totals = {}
    for with_penalty in (False, True):
        torch.manual_seed(0)
        model = build_model(arch)
        hooks = [get_method("slimming").regularizer(arch, s=0.05)] if with_penalty else []
        train(model, data, recipe, seed=0, device="cpu", hooks=hooks, threads=1)
        totals[with_penalty] = sum(float(m.weight.detach().abs().sum()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    n_gammas = sum(s.base_width for s in get_family("resnet").slots(arch))  # every BN2d is one slot's BN
    # 4 steps x lr 0.05 x s 0.05 = 0.01 per gamma (momentum adds more); noise is far smaller
    assert totals[True] < totals[False] - 0.5 * 0.01 * n_gammas, totals


# ------------------------------------------------------------------------------------------------
# L1-norm filter pruning
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["resnet56-a", "resnet56-b", "resnet110-b", "vgg16-a"])
def test_l1norm_variants_have_the_published_widths_and_keep_the_largest_filters(variant: str):
    target = resolve_model(variant, num_classes=C)
    arch, model = make(target.model_name, 32)
    result = get_method("l1norm").prune(model, arch, variant=variant)
    assert result.arch.widths == target.widths == resolve_model(variant).widths
    assert result.info["variant"] == variant and result.ratio is None
    for k, norms, b in zip(result.keep, filter_norms(model, arch), arch.widths):
        if len(k) < b:
            kept = norms[list(k)]
            dropped = norms[[j for j in range(b) if j not in set(k)]]
            assert kept.min() >= dropped.max()
    build_model(result.arch).load_state_dict(result.state_dict, strict=True)


def test_l1norm_target_and_refusals():
    arch, model = make("resnet8")
    uniform = scale_to_budget(arch, 0.6)
    result = get_method("l1norm").prune(model, arch, target=uniform)
    assert result.arch.widths == uniform.widths
    with pytest.raises(ConfigError, match="not a pruned form"):
        get_method("l1norm").prune(model, arch, variant="resnet56-b")
    with pytest.raises(ConfigError, match="use slimming"):
        d_arch, d_model = make("densenet7")
        get_method("l1norm").prune(d_model, d_arch, budget=0.5)
    with pytest.raises(ConfigError, match="not both"):
        get_method("l1norm").prune(model, arch, variant="resnet56-b", budget=0.5)


def test_l1norm_global_normalises_norms_across_layers():
    arch, model = make("resnet8")
    with torch.no_grad():
        model.layer2[0].conv1.weight.mul_(1e-3)  # slot 3: tiny filters (e.g. a different init scale)
    raw = get_method("l1norm").prune(model, arch, ratio=0.3, normalize="none")
    norm = get_method("l1norm").prune(model, arch, ratio=0.3, normalize="max")
    assert raw.arch.widths[3] == 1 and "stage2.block1.conv1" in raw.info["guarded_slots"]
    assert norm.arch.widths[3] > 8 and norm.info["normalize"] == "max"
    with pytest.raises(ConfigError, match="normalize"):
        get_method("l1norm").prune(model, arch, ratio=0.3, normalize="l2")


def test_l1norm_on_preresnet_keeps_selections_whole():
    arch, model = make("preresnet11")
    result = get_method("l1norm").prune(model, arch, budget=0.6)
    slots = get_family("preresnet").slots(arch)
    assert all(w == s.base_width for w, s in zip(result.arch.widths, slots) if s.kind == "select")
    assert any(w < s.base_width for w, s in zip(result.arch.widths, slots) if s.kind == "conv")
    assert result.arch.selections is None


# ------------------------------------------------------------------------------------------------
# Unstructured magnitude pruning
# ------------------------------------------------------------------------------------------------
def test_magnitude_threshold_follows_the_reference_rule():
    arch, model = make("resnet8")
    with torch.no_grad():
        for c in conv_layers(model):  # ties: two-decimal magnitudes
            c.weight.copy_(torch.round(c.weight * 100) / 100)
    weights = [c.weight.detach().abs() for c in conv_layers(model)]
    pool = torch.sort(torch.cat([w.flatten() for w in weights])).values
    thr = float(pool[int(pool.numel() * 0.6)])
    result = get_method("magnitude").prune(model, arch, ratio=0.6)
    assert result.threshold == thr
    for m, w in zip(result.masks, weights):
        assert torch.equal(m.bool(), w > thr)
    assert result.arch.densities == tuple(float((w > thr).sum()) / w.numel() for w in weights)


def test_magnitude_layerwise_prunes_exactly_the_same_fraction_of_every_conv():
    arch, model = make("resnet8")
    method = get_method("magnitude")
    result = method.prune(model, arch, ratio=0.6, scope="layer")
    assert result.info["scope"] == "layer" and result.ratio == 0.6 and result.threshold is None
    for c, m in zip(conv_layers(model), result.masks):
        n = c.weight.numel()
        assert int((m == 0).sum()) == int(n * 0.6)  # e.g. 16x3x3x3 = 432 weights: exactly 259 zeros
        w = c.weight.detach().abs()
        assert float(w[m == 0].max()) <= float(w[m == 1].min())  # the layer's smallest |w| went
    assert int((result.masks[0] == 0).sum()) == 259
    assert result.arch.densities == tuple((n - int(n * 0.6)) / n for n in (c.weight.numel() for c in conv_layers(model)))
    # the global rule prunes the layers unevenly on the same model
    glob = method.prune(model, arch, ratio=0.6)
    assert len(set(round(d, 3) for d in glob.arch.densities)) > 1
    # a budget lands within one weight per layer, and min_keep guards a layer at a ratio near 1
    rb = method.prune(model, arch, budget=0.3, scope="layer")
    target = resolve_budget(arch, 0.3)
    assert abs(rb.params - target) <= len(rb.masks)
    rg = method.prune(model, arch, ratio=0.999, scope="layer", min_keep=5)
    assert [int(m.sum()) for m in rg.masks] == [max(c.weight.numel() - int(c.weight.numel() * 0.999), 5)
                                                for c in conv_layers(model)]
    assert rg.info["guarded_layers"]


def test_magnitude_budget_guard_and_outputs():
    arch, model = make("resnet8")
    with torch.no_grad():
        model.layer3[0].conv2.weight.mul_(1e-6)  # a layer of tiny weights
    method = get_method("magnitude")
    result = method.prune(model, arch, budget=0.3)
    assert result.params == resolve_budget(arch, 0.3)  # one weight of granularity: exact
    assert result.info["guarded_layers"] == ["layer3.0.conv2"]
    assert int(result.masks[6].sum()) == 1
    assert int(result.masks[6].flatten().argmax()) == int(model.layer3[0].conv2.weight.abs().flatten().argmax())
    # the fine-tune model computes exactly the base model with its weights masked
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for c, m in zip(conv_layers(masked), result.masks):
            c.weight.mul_(m)
    ft = method.build_pruned(result, init="inherit").eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(ft(x), masked.eval()(x))


def test_mask_hook_keeps_pruned_weights_at_zero_in_training():
    from prunesearch.data import load_dataset
    from prunesearch.train import get_recipe, train

    arch, model = make("resnet8")
    method = get_method("magnitude")
    result = method.prune(model, arch, ratio=0.8)
    data = load_dataset("synthetic", num_classes=C, image_size=8, n_train=64, n_test=32)
    recipe = get_recipe("smoke", epochs=1, batch_size=32, lr=0.05)
    zeros = {}
    for hooks in (method.train_hooks(result), []):
        net = method.build_pruned(result, init="scratch", seed=1)
        before = [c.weight.detach().clone() for c in conv_layers(net)]
        train(net, data, recipe, seed=0, device="cpu", hooks=hooks, threads=1)
        after = [c.weight.detach() for c in conv_layers(net)]
        zeros[bool(hooks)] = all(not a[m == 0].any() for a, m in zip(after, result.masks))
        assert any(not torch.equal(a[m == 1], b[m == 1]) for a, b, m in zip(after, before, result.masks))
    assert isinstance(method.train_hooks(result)[0], MaskHook)
    assert zeros[True] and not zeros[False]  # without the hook the pruned weights would regrow


def test_sparse_scratch_init_uses_the_layer_density():
    arch, model = make("resnet8")
    result = get_method("magnitude").prune(model, arch, ratio=0.9)
    net = build_model(result.arch, masks=result.masks)
    init_sparse_(net, generator=torch.Generator().manual_seed(0))
    conv, mask = conv_layers(net)[-1], result.masks[-1]  # 64 x 64 x 3 x 3 weights
    nz = conv.weight.detach()[mask == 1]
    assert not conv.weight[mask == 0].any()
    n = float(mask.sum()) / conv.weight.shape[1]
    assert float(nz.std()) == pytest.approx((2 / n) ** 0.5, rel=0.1)
