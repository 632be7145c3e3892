"""Foundation: architectures as exact data. One contract suite runs over every registered family."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunesearch.arch import (
    FAMILIES,
    Architecture,
    count_macs,
    count_params,
    fit_budget,
    from_reference_cfg,
    get_family,
    load_architecture,
    min_params,
    resolve_budget,
    resolve_model,
    save_architecture,
    scale_densities_to_budget,
    scale_to_budget,
    unpruned,
)
from prunesearch.errors import BudgetError, ConfigError
from prunesearch.models import build_model

# Small members of each family keep the module-vs-analytic checks fast.
SMALL = {"vgg": [11, 13, 16, 19], "resnet": [8, 14, 20], "preresnet": [11, 20], "densenet": [10, 13]}


def random_arch(family: str, rng: random.Random) -> Architecture:
    """A random valid architecture: random depth, widths (ties respected), head, blocks, selections,
    classes, channels and input size."""
    depth = rng.choice(SMALL[family])
    fam = get_family(family)
    kw: dict = dict(num_classes=rng.choice([2, 10, 100]), in_channels=rng.choice([1, 3]),
                    input_size=rng.choice([16, 32]))
    if family == "vgg":
        kw["head"] = rng.choice(["slim", "l1"])
    blocks = None
    if family in ("resnet", "preresnet") and rng.random() < 0.4:
        n = (depth - 2) // (6 if family == "resnet" else 9)
        blocks = tuple(rng.randint(0, n) for _ in range(3))
        if sum(blocks) == 0:
            blocks = (1, 0, n)
    base = fam.base(depth, blocks=blocks, **kw)
    slots = fam.slots(base)
    tied: dict[str, int] = {}
    widths = []
    for s in slots:
        hi = s.base_width if s.kind == "select" else max(1, s.base_width // 4)
        w = rng.randint(1, hi)
        if s.tie is not None:
            w = tied.setdefault(s.tie, w)
        widths.append(w)
    selections = None
    sel_slots = [(s, w) for s, w in zip(slots, widths) if s.kind == "select"]
    if sel_slots and rng.random() < 0.5:
        selections = tuple(tuple(sorted(rng.sample(range(s.base_width), w))) for s, w in sel_slots)
    return base.replace(widths=tuple(widths), selections=selections)


def measured(arch: Architecture) -> tuple[int, int]:
    model = build_model(arch).eval()
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(torch.randn(1, arch.in_channels, arch.input_size, arch.input_size))
    assert out.shape == (1, arch.num_classes)
    return params, counter.get_total_flops()


@pytest.mark.parametrize("family", FAMILIES.names())
def test_counts_equal_the_built_module_for_random_widths(family):
    rng = random.Random(f"counts-{family}")
    for _ in range(20):
        arch = random_arch(family, rng)
        params, flops = measured(arch)
        assert count_params(arch) == params, arch
        assert 2 * count_macs(arch) == flops, arch


@pytest.mark.parametrize("name", ["vgg16", "vgg19", "resnet56", "resnet110", "preresnet164", "densenet40"])
def test_named_models_count_exactly(name):
    arch = resolve_model(name)
    params, flops = measured(arch)
    assert (count_params(arch), 2 * count_macs(arch)) == (params, flops)


def test_counts_match_the_published_numbers():
    # Li et al. 2017 (L1-norm filter pruning), Table 1/2: params of the pruned variants.
    assert count_params(resolve_model("resnet56")) == 853_018
    assert count_params(resolve_model("resnet56-a")) == 773_336  # 7.72e5
    assert count_params(resolve_model("resnet56-b")) == 735_712  # 7.36e5
    assert round(count_params(resolve_model("resnet110-b")), -4) == 1_170_000  # 1.16e6
    assert round(count_params(resolve_model("vgg16-a")), -5) == 5_400_000  # 5.4M
    assert count_macs(resolve_model("resnet56")) == 125_485_696  # 1.25e8 "FLOP" = MACs


@pytest.mark.parametrize("family", FAMILIES.names())
def test_family_contract(family):
    fam = get_family(family)
    for depth in fam.named_depths:
        base = fam.base(depth)
        slots = fam.slots(base)
        assert len(slots) == len(base.widths) == len(fam.base_widths(base))
        assert [s.base_width for s in slots] == list(base.widths)
        assert all(0.0 <= s.rel_depth <= 1.0 for s in slots)
        assert sorted({s.stage for s in slots}) == list(range(fam.num_stages))
        # tied slots share one width in the base
        ties: dict[str, set[int]] = {}
        for s, w in zip(slots, base.widths):
            if s.tie:
                ties.setdefault(s.tie, set()).add(w)
        assert all(len(v) == 1 for v in ties.values())
        assert fam.min_width >= 1


def test_resnet_ties_follow_the_residual_adds():
    arch = resolve_model("resnet20")
    slots = get_family("resnet").slots(arch)
    groups = {}
    for i, s in enumerate(slots):
        if s.tie:
            groups.setdefault(s.tie, []).append(i)
    assert sorted(groups) == ["stage1.out", "stage2.out", "stage3.out"]
    assert groups["stage1.out"][0] == 0  # the stem feeds stage 1's identity shortcuts
    widths = list(arch.widths)
    widths[2] = 15  # break the tie of stage 1
    with pytest.raises(ConfigError, match="tied"):
        arch.replace(widths=tuple(widths))


def test_architecture_round_trips_and_ids_are_stable(tmp_path):
    rng = random.Random(1)
    for family in FAMILIES.names():
        arch = random_arch(family, rng)
        assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
        for suffix in (".yaml", ".json"):
            path = save_architecture(arch, tmp_path / f"{family}{suffix}")
            assert load_architecture(path) == arch
        assert arch.replace(name="label").arch_id == arch.arch_id
    a, b = resolve_model("resnet20"), resolve_model("resnet20", num_classes=100)
    assert a.arch_id != b.arch_id
    assert a.arch_id == resolve_model("resnet20").arch_id == "%s" % a.arch_id


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"family": "vgg", "depth": 16, "widths": [64] * 12, "head": "slim"}, "needs 13 widths"),
        ({"family": "vgg", "depth": 16, "widths": [0] + [64] * 12, "head": "slim"}, ">= 1"),
        ({"family": "vgg", "depth": 16, "widths": ["a"] * 13, "head": "slim"}, "integer"),
        ({"family": "vgg", "depth": 17, "widths": [64] * 13, "head": "slim"}, "not a valid depth"),
        ({"family": "vgg", "depth": 16, "widths": [64] * 13, "head": "big"}, "head"),
        ({"family": "resnets", "depth": 20, "widths": [16]}, "did you mean 'resnet'"),
        ({"family": "resnet", "depth": 20, "widths": [16] * 19, "colour": 1}, "unknown key 'colour'"),
        ({"family": "densenet", "depth": 40, "widths": [999] * 39}, "only"),
        ({"family": "resnet", "depth": 20, "widths": [16] * 19, "blocks": [4, 3, 3]}, "blocks"),
        ({"depth": 20, "widths": [16] * 19}, "missing key 'family'"),
    ],
)
def test_invalid_architectures_say_what_is_wrong(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        Architecture.from_dict(bad)
    assert "\n" not in str(info.value)


def test_reference_cfg_import():
    vgg = from_reference_cfg(resolve_model("vgg16", head="l1"), "32,64,M,128,128,M,256,256,256,M,256,256,256,M,256,256,256")
    assert vgg.widths == resolve_model("vgg16-a").widths and vgg.head == "l1"
    assert count_params(vgg) == count_params(resolve_model("vgg16-a"))
    res = from_reference_cfg(resolve_model("resnet56"), [int(w) for w in resolve_model("resnet56-b").widths[1::2]])
    assert res.widths == resolve_model("resnet56-b").widths
    pre = resolve_model("preresnet164")
    ref_cfg = [16] + list(pre.widths)  # the reference list starts with the stem width
    assert from_reference_cfg(pre, ref_cfg).widths == pre.widths
    dense = resolve_model("densenet40")
    assert from_reference_cfg(dense, list(dense.widths)) == dense
    for cfg, match in [
        ("32,64,M", "needs 17 entries"),
        ("32,64,M,128,128,M,256,256,256,M,256,256,256,256,M,256,256", "position"),
        ("32,x,M,128,128,M,256,256,256,M,256,256,256,M,256,256,256", "not an integer"),
        ("32,0,M,128,128,M,256,256,256,M,256,256,256,M,256,256,256", ">= 1"),
    ]:
        with pytest.raises(ConfigError, match=match):
            from_reference_cfg(resolve_model("vgg16"), cfg)
    with pytest.raises(ConfigError, match="one width per block"):
        from_reference_cfg(resolve_model("resnet56"), [16] * 26)


def test_named_variants_follow_the_published_rules():
    b = resolve_model("resnet56-b")
    first_convs = b.widths[1::2]
    # stage 1 pruned 60 % except the blocks whose first conv is layer 16 or 18 (blocks 8, 9)
    assert first_convs[:9] == (6, 6, 6, 6, 6, 6, 6, 16, 16)
    assert first_convs[9] == 32 and first_convs[16] == 32  # layers 20 and 34 skipped
    assert set(first_convs[10:16]) == {22}
    assert resolve_model("vgg16-a").head == "l1"
    assert resolve_model("resnet110-a").widths[1::2][:18] == (8,) * 17 + (16,)


@pytest.mark.parametrize("name", ["vgg19", "resnet56", "preresnet164", "densenet40", "vgg16-a"])
@pytest.mark.parametrize("budget", [0.1, 0.3, 0.5, 0.9])
def test_uniform_budget_within_half_a_percent(name, budget):
    base = resolve_model(name)
    fit = fit_budget(base, budget)
    assert fit.rel_error <= 0.005
    assert count_params(fit.arch) == fit.params
    assert fit.target == round(budget * count_params(unpruned(base)))


def test_budget_solver_properties():
    rng = random.Random(7)
    for name in ("vgg16", "resnet56", "preresnet110", "densenet40"):
        base = resolve_model(name)
        fam = get_family(base.family)
        slots = fam.slots(base)
        ratios = [rng.uniform(0.05, 1.0) for _ in slots]
        prev = -1
        for budget in (0.15, 0.3, 0.45, 0.6, 0.75):
            arch = scale_to_budget(base, budget, ratios)
            p = count_params(arch)
            assert abs(p - resolve_budget(base, budget)) <= 0.005 * resolve_budget(base, budget)
            assert p > prev  # monotone in the budget
            prev = p
            assert all(fam.min_width <= w <= s.base_width for s, w in zip(slots, arch.widths))
            ties: dict[str, set[int]] = {}
            for s, w in zip(slots, arch.widths):
                if s.tie:
                    ties.setdefault(s.tie, set()).add(w)
            assert all(len(v) == 1 for v in ties.values())


def test_budget_solver_follows_the_pattern():
    base = resolve_model("vgg16")
    stages = [s.stage for s in get_family("vgg").slots(base)]
    ratios = [1.0 if st < 2 else 0.2 for st in stages]
    # at 5 % the late layers are far from their cap, so the 5:1 ratio survives the scaling
    arch = scale_to_budget(base, 0.05, ratios)
    early = [w / b for w, b, st in zip(arch.widths, base.widths, stages) if st < 2]
    late = [w / b for w, b, st in zip(arch.widths, base.widths, stages) if st >= 2]
    assert min(early) > 3 * max(late)


def test_budget_errors_name_the_reachable_range():
    base = resolve_model("resnet56")
    with pytest.raises(BudgetError, match=r"below the smallest resnet56 \(.* params at width 1 per slot\)"):
        scale_to_budget(base, 100)
    with pytest.raises(BudgetError, match="above the unpruned resnet56"):
        scale_to_budget(base, 2_000_000)
    with pytest.raises(BudgetError, match="positive"):
        scale_to_budget(base, -0.5)
    assert min_params(base) < resolve_budget(base, 0.01)
    assert resolve_budget(base, 300_000) == 300_000


def test_sparse_budget_and_masks():
    base = resolve_model("resnet20")
    arch = scale_densities_to_budget(base, 0.25)
    assert abs(count_params(arch) - 0.25 * count_params(base)) <= 0.005 * 0.25 * count_params(base)
    model = build_model(arch)
    nonzero = sum(int((m.weight != 0).sum()) for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    dense_other = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("weight") or p.dim() != 4)
    assert nonzero + dense_other == count_params(arch)


@pytest.mark.parametrize("name, budget", [("preresnet164", 0.4), ("resnet56", 0.4), ("vgg19", 0.3), ("densenet40", 0.25)])
def test_uniform_stays_uniform_within_one_channel(name, budget):
    # Landing on the budget may move single groups by one channel, never reshape the pattern
    # (an earlier solver cut one PreResNet-164 layer from 37 to 22 channels to hit 0.4).
    base = resolve_model(name)
    arch = scale_to_budget(base, budget)
    # one multiplier m explains every width to within one channel (plus rounding): the intervals
    # [(w - 1.5) / b, (w + 1.5) / b] of all slots intersect
    lo = max((w - 1.5) / b for w, b in zip(arch.widths, base.widths))
    hi = min((w + 1.5) / b for w, b in zip(arch.widths, base.widths))
    assert lo <= hi, (lo, hi, arch.widths)
