"""Width patterns, design rules and the rule-based generators (torch-free, fast)."""

from __future__ import annotations

import pytest
import yaml

from prunesearch.arch import (
    Architecture,
    count_params,
    get_family,
    resolve_budget,
    resolve_model,
    save_architecture,
    scale_densities_to_budget,
    unpruned,
)
from prunesearch.errors import ConfigError
from prunesearch.generators import GENERATORS, get_generator
from prunesearch.rules import (
    RULE_FORMAT,
    DesignRule,
    PatternEntry,
    Provenance,
    WidthPattern,
    apply_rule,
    extract_pattern,
    fit_rule,
    load_pattern,
    load_rule,
    remap_stages,
    rule_keep_ratios,
    save_pattern,
    save_rule,
)

TOL = 0.005
FAMILIES = ["vgg16", "vgg19", "resnet20", "resnet56", "preresnet164", "densenet40"]


def within(arch: Architecture, budget: float) -> bool:
    target = resolve_budget(unpruned(arch), budget)
    return abs(count_params(arch) - target) <= TOL * target


def ratios(arch: Architecture) -> list[float]:
    return [w / s.base_width for w, s in zip(arch.widths, get_family(arch.family).slots(unpruned(arch)))]


def vgg_rule() -> DesignRule:
    """Stage rule from the published VGG-16-A (L1-norm): stage 1 at 75 %, stages 2-3 full, 4-5 at 50 %."""
    p = extract_pattern(resolve_model("vgg16-a"), {"model": "vgg16", "dataset": "cifar10", "method": "l1norm"})
    return fit_rule(p, "stage")


def resnet_rule(kind: str = "stage") -> DesignRule:
    """A slimming-like ResNet-56 pattern: stage 1 kept at 30 %, stage 2 at 60 %, stage 3 at 90 %."""
    base = resolve_model("resnet56")
    keep = (0.3, 0.6, 0.9)
    widths = [max(1, round(s.base_width * keep[s.stage])) for s in get_family("resnet").slots(base)]
    p = extract_pattern(base.replace(widths=tuple(widths)), {"model": "resnet56", "dataset": "cifar10", "method": "slimming"})
    return fit_rule(p, kind)


# ------------------------------------------------------------------------------------------------ patterns
def test_extract_vgg16_a_gives_the_published_ratios():
    p = extract_pattern(resolve_model("vgg16-a"), {"model": "vgg16", "method": "l1norm"})
    assert p.quantity == "width" and p.num_stages == 5
    assert p.keep_ratios == (0.5,) + (1.0,) * 6 + (0.5,) * 6  # conv 1 and convs 8-13 pruned by 50 %
    assert [e.stage for e in p.entries] == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert p.provenance.params == count_params(resolve_model("vgg16-a"))
    assert p.param_fraction == pytest.approx(count_params(resolve_model("vgg16-a")) / count_params(unpruned(resolve_model("vgg16-a"))))


def test_extract_resnet56_b_conv1_ratios():
    p = extract_pattern(resolve_model("resnet56-b"))
    conv1 = {e.name: e.keep_ratio for e in p.entries if e.name.endswith("conv1")}
    # stage ratios 60/30/10 %, kept = int(width * (1 - p)); skipped blocks (layers 16, 18, 20, 34, 38, 54) stay full
    assert conv1["stage1.block1.conv1"] == pytest.approx(int(16 * 0.4) / 16)
    assert conv1["stage1.block8.conv1"] == 1.0  # first conv = layer 2 + 2*7 = 16: skipped
    assert conv1["stage2.block1.conv1"] == 1.0  # layer 20: skipped
    assert conv1["stage2.block2.conv1"] == pytest.approx(int(32 * 0.7) / 32)
    assert conv1["stage3.block9.conv1"] == 1.0  # layer 54: skipped
    assert all(e.keep_ratio == 1.0 for e in p.entries if e.tie)


def test_extract_density_pattern():
    base = resolve_model("resnet20")
    sparse = scale_densities_to_budget(base, 0.5, [1.0] + [0.5] * 18 + [0.25] * 0)
    p = extract_pattern(sparse, {"model": "resnet20", "method": "magnitude"})
    assert p.quantity == "density" and len(p.entries) == 19
    assert {e.kind for e in p.entries} == {"conv3x3"}
    assert [e.stage for e in p.entries] == [0] * 7 + [1] * 6 + [2] * 6
    assert p.entries[0].keep_ratio == pytest.approx(sparse.densities[0], abs=1e-3)


def test_pattern_round_trip(tmp_path):
    p = extract_pattern(resolve_model("resnet56-b"), Provenance("resnet56", "cifar10", "l1norm", budget=0.5, seed=3))
    for suffix in ("yaml", "json"):
        q = load_pattern(save_pattern(p, tmp_path / f"p.{suffix}"))
        assert q.to_dict() == p.to_dict()
        assert q.keep_ratios == pytest.approx(p.keep_ratios)
        assert q.provenance.method == "l1norm" and q.provenance.seed == 3


# ------------------------------------------------------------------------------------------------ fitting
def test_stage_remap_by_relative_position():
    assert remap_stages([0.1, 0.2, 0.3], 3) == pytest.approx([0.1, 0.2, 0.3])
    # 5 -> 3: stage 0 of 3 covers [0, 1/3): VGG stage 0 fully (0.2) and stage 1 for 1/3 - 1/5
    five = [1.0, 0.0, 0.5, 0.0, 1.0]
    got = remap_stages(five, 3)
    assert got[0] == pytest.approx((0.2 * 1.0 + (1 / 3 - 0.2) * 0.0) / (1 / 3))
    assert got[1] == pytest.approx(((0.4 - 1 / 3) * 0.0 + 0.2 * 0.5 + (2 / 3 - 0.6) * 0.0) / (1 / 3))
    # 3 -> 5: VGG stage 1 ([0.2, 0.4)) overlaps ResNet stage 0 for 2/15 and stage 1 for 1/15
    got = remap_stages([0.9, 0.6, 0.3], 5)
    assert got[1] == pytest.approx((2 / 15 * 0.9 + 1 / 15 * 0.6) / 0.2)
    assert got[0] == pytest.approx(0.9) and got[4] == pytest.approx(0.3)


def test_stage_rule_is_the_channel_weighted_stage_average():
    r = vgg_rule()
    assert r.kind == "stage" and r.resolution == 5 and len(r.levels) == 1
    assert r.levels[0].values["all"] == pytest.approx((0.75, 1.0, 1.0, 0.5, 0.5))
    p56 = extract_pattern(resolve_model("resnet56-b"))
    r56 = fit_rule(p56, "stage")
    for s in range(3):
        entries = [e for e in p56.entries if e.stage == s]
        assert r56.levels[0].values["all"][s] == pytest.approx(sum(e.kept for e in entries) / sum(e.base for e in entries))


def _toy(fraction: float, early: tuple[int, int], late: tuple[int, int]) -> WidthPattern:
    entries = (PatternEntry("a", 0, 0.1, "conv", early[1], early[0]), PatternEntry("b", 2, 0.9, "conv", late[1], late[0]))
    return WidthPattern("resnet", 20, "width", 3, entries, fraction, Provenance("toy", "toyset", "hand"))


def test_depth_rule_interpolates_between_budget_levels_by_hand():
    # Level 0.2: 20 % kept early, 80 % late; level 0.6: 60 % early, 100 % late (2 bins, whose values sit at
    # rule.positions along relative depth and are interpolated linearly in between).
    rule = fit_rule([_toy(0.2, (2, 10), (8, 10)), _toy(0.6, (6, 10), (10, 10))], "depth", bins=2)
    assert [lv.param_fraction for lv in rule.levels] == [0.2, 0.6]
    assert rule.profile(0.4)["all"] == pytest.approx((0.4, 0.9))  # halfway between the two levels
    assert rule.profile(0.1)["all"] == pytest.approx((0.2, 0.8))  # below the range: nearest level
    assert rule.profile(0.9)["all"] == pytest.approx((0.6, 1.0))
    target = resolve_model("resnet20")  # 19 slots at rel_depth i/18
    budget = 0.4
    f = resolve_budget(target, budget) / count_params(target)  # 0.4 up to rounding of one parameter
    early, late = 0.2 + (f - 0.2) / 0.4 * 0.4, 0.8 + (f - 0.2) / 0.4 * 0.2
    got = rule_keep_ratios(rule, target, budget)
    p0, p1 = rule.positions
    for s, v in zip(get_family("resnet").slots(target), got):
        r = s.rel_depth
        want = early if r <= p0 else late if r >= p1 else early + (r - p0) / (p1 - p0) * (late - early)
        assert v == pytest.approx(want, abs=1e-9), s.name
    assert got[9] == pytest.approx(0.65, abs=1e-4)  # slot 9 sits at depth 0.5
    arch = apply_rule(rule, target, budget)
    assert within(arch, budget)
    r = ratios(arch)
    assert r[1] < r[-1]  # keeps the shape: early layers thinner than late ones


def test_same_level_patterns_are_averaged():
    rule = fit_rule([_toy(0.3, (2, 10), (8, 10)), _toy(0.3, (4, 10), (6, 10))], "stage")
    assert len(rule.levels) == 1 and rule.levels[0].patterns == 2
    assert rule.levels[0].values["all"][0] == pytest.approx(0.3)


def test_fit_refuses_the_wrong_pattern_quantity():
    sparse = scale_densities_to_budget(resolve_model("resnet20"), 0.5)
    with pytest.raises(ConfigError, match="sparsity rule"):
        fit_rule(extract_pattern(sparse), "stage")
    with pytest.raises(ConfigError, match="stage or depth"):
        fit_rule(extract_pattern(resolve_model("vgg16-a")), "sparsity")
    with pytest.raises(ConfigError, match="unknown rule kind"):
        fit_rule(extract_pattern(resolve_model("vgg16-a")), "stages")


# ------------------------------------------------------------------------------------------------ applying
@pytest.mark.parametrize("kind", ["stage", "depth"])
@pytest.mark.parametrize("target", FAMILIES + ["resnet110"])
@pytest.mark.parametrize("source", ["vgg", "resnet"])
def test_rules_transfer_across_families_on_budget_and_non_uniform(source, target, kind):
    rule = vgg_rule() if source == "vgg" and kind == "stage" else resnet_rule(kind) if source == "resnet" else fit_rule(
        extract_pattern(resolve_model("vgg16-a")), "depth")
    base = resolve_model(target)
    for budget in (0.25, 0.5):
        arch = apply_rule(rule, base, budget)
        uni = get_generator("uniform").generate(base, budget)
        assert within(arch, budget), (target, budget, count_params(arch))
        assert arch.widths != uni.widths
        # a pattern, not one multiplier: the slots the rule keeps most are wider than those it keeps least
        r, want = ratios(arch), rule_keep_ratios(rule, base, budget)
        hi = [x for x, v in zip(r, want) if v >= max(want) - 1e-9]
        lo = [x for x, v in zip(r, want) if v <= min(want) + 1e-9]
        assert sum(hi) / len(hi) > sum(lo) / len(lo) + 0.05


def test_preresnet_rule_keeps_select_and_conv_profiles_apart():
    base = resolve_model("preresnet164")
    slots = get_family("preresnet").slots(base)
    widths = [max(1, int(s.base_width * (0.9 if s.kind == "select" else 0.3))) for s in slots]
    rule = fit_rule(extract_pattern(base.replace(widths=tuple(widths))), "stage")
    # one profile per slot role (the select layers and the convs are different roles), plus the pooled one
    roles = {s.role for s in slots}
    assert len(roles) >= 2 and set(rule.levels[0].values) == {"all"} | roles
    arch = apply_rule(rule, resolve_model("preresnet110"), 0.5)
    r = ratios(arch)
    sel = [x for x, s in zip(r, get_family("preresnet").slots(unpruned(arch))) if s.kind == "select"]
    conv = [x for x, s in zip(r, get_family("preresnet").slots(unpruned(arch))) if s.kind == "conv"]
    assert min(sel) > max(conv)
    assert within(arch, 0.5)


@pytest.mark.parametrize("target", FAMILIES)
def test_sparsity_rule_lands_on_budget(target):
    src = resolve_model("resnet56")
    n = len(src.densities or []) or 55
    dens = [1.0] + [0.9] * 18 + [0.5] * 18 + [0.1] * 18
    assert len(dens) == n
    rule = fit_rule(extract_pattern(scale_densities_to_budget(src, 0.3, dens)), "sparsity")
    assert rule.domain == "density"
    base = resolve_model(target)
    arch = apply_rule(rule, base, 0.3)
    assert arch.widths == base.widths and arch.densities is not None
    assert within(arch, 0.3)
    assert max(arch.densities) - min(arch.densities) > 0.1  # stage-dependent, not uniform


# ------------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("kind", ["stage", "depth"])
def test_rule_yaml_round_trip(tmp_path, kind):
    rule = fit_rule([extract_pattern(resolve_model("resnet56-b"), {"model": "resnet56", "dataset": "cifar10",
                                                                    "method": "l1norm", "budget": 0.8}),
                     extract_pattern(resolve_model("resnet56-a"), {"model": "resnet56", "dataset": "cifar10"})], kind)
    path = save_rule(rule, tmp_path / "rule.yaml")
    doc = yaml.safe_load(path.read_text())
    assert doc["prunesearch_rule"] == RULE_FORMAT and doc["kind"] == kind and doc["sources"][0]["method"] == "l1norm"
    back = load_rule(path)
    assert back.to_dict() == rule.to_dict()
    assert apply_rule(back, resolve_model("vgg16"), 0.4) == apply_rule(rule, resolve_model("vgg16"), 0.4)
    assert load_rule(save_rule(rule, tmp_path / "rule.json")).to_dict() == rule.to_dict()


def _write(tmp_path, doc, name="bad.yaml"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return p


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(kind="stages"), "unknown rule kind 'stages' (did you mean 'stage'?)"),
    (lambda d: d.update(prunesearch_rule=RULE_FORMAT + 1), f"rule format version {RULE_FORMAT + 1} is not supported"),
    (lambda d: d.pop("prunesearch_rule"), "not a design rule"),
    (lambda d: d["levels"][0]["values"].update(all=[0.5]), "must be 5 keep fractions in [0, 1]"),
    (lambda d: d["levels"][0]["values"].update(all=[1e308] * 5), "must be 5 keep fractions in [0, 1]"),
    (lambda d: d.update(levels=[]), "'levels' must be a non-empty list"),
])
def test_bad_rule_files_are_one_line_config_errors(tmp_path, mutate, message):
    d = vgg_rule().to_dict()
    mutate(d)
    with pytest.raises(ConfigError) as e:
        load_rule(_write(tmp_path, d))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_other_files_are_not_rules(tmp_path):
    arch_file = save_architecture(resolve_model("vgg16-a"), tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="is an architecture file, not a design rule"):
        load_rule(arch_file)
    pat = save_pattern(extract_pattern(resolve_model("vgg16-a")), tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match="is a width pattern, not a design rule"):
        load_rule(pat)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rule(_write(tmp_path, "kind: [stage\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_rule(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="has no rule.yaml"):
        load_rule(tmp_path)
    stage_file = save_rule(vgg_rule(), tmp_path / "stage.yaml")
    with pytest.raises(ConfigError, match="holds a stage rule, not a depth rule"):
        load_rule(stage_file, kind="depth")


def test_sparsity_rule_applied_as_width_rule_is_refused():
    rule = fit_rule(extract_pattern(scale_densities_to_budget(resolve_model("resnet20"), 0.5)), "sparsity")
    with pytest.raises(ConfigError, match="cannot be applied as a width rule"):
        apply_rule(rule, resolve_model("vgg16"), 0.5, domain="width")


# ------------------------------------------------------------------------------------------------ generators
def test_generators_are_registered():
    assert {"pruned", "guided", "transferred", "uniform", "random"} <= set(GENERATORS.names())


@pytest.mark.parametrize("target", FAMILIES)
@pytest.mark.parametrize("budget", [0.2, 0.45, 0.7])
def test_every_rule_generator_lands_within_half_a_percent(tmp_path, target, budget):
    rule_file = save_rule(vgg_rule(), tmp_path / "rule.yaml")
    base = resolve_model(target)
    t = get_generator("transferred").generate(base, budget, 0, rule=str(rule_file))
    assert within(t, budget) and t.name == f"transferred@{budget:g}"
    own = fit_rule(extract_pattern(_pruned_like(base)), "depth")
    g = get_generator("guided").generate(base, budget, 0, rule=own)
    assert within(g, budget)
    p = get_generator("pruned").generate(base, budget, 0, architecture=str(save_architecture(_pruned_like(base), tmp_path / "p.yaml")))
    assert within(p, budget)


def _pruned_like(base: Architecture) -> Architecture:
    """A deterministic non-uniform 'pruned' architecture of base's model (tied groups kept equal)."""
    slots = get_family(base.family).slots(base)
    groups: dict[str, int] = {}
    widths = []
    for i, s in enumerate(slots):
        w = max(1, int(s.base_width * (0.35 + 0.5 * ((i * 7) % 10) / 10)))
        if s.tie:
            w = groups.setdefault(s.tie, w)
        widths.append(w)
    return base.replace(widths=tuple(widths))


def test_pruned_keeps_a_method_architecture_already_on_budget(tmp_path):
    variant = resolve_model("resnet56-b")
    budget = count_params(variant)  # absolute count: exactly the variant's size
    f = save_architecture(variant, tmp_path / "b.yaml")
    got = get_generator("pruned").generate(resolve_model("resnet56"), budget, 0, architectures={budget: str(f)})
    assert got.widths == variant.widths
    with pytest.raises(ConfigError, match="no architecture file for budget 0.3"):
        get_generator("pruned").generate(resolve_model("resnet56"), 0.3, 0, architectures={budget: str(f)})
    with pytest.raises(ConfigError, match="target is vgg16"):
        get_generator("pruned").generate(resolve_model("vgg16"), 0.3, 0, architecture=str(f))
    with pytest.raises(ConfigError, match="needs 'run'"):
        get_generator("pruned").generate(resolve_model("resnet56"), 0.3, 0)


def test_guided_refuses_a_rule_from_another_model(tmp_path):
    f = save_rule(vgg_rule(), tmp_path / "rule.yaml")
    with pytest.raises(ConfigError, match="use the 'transferred' generator"):
        get_generator("guided").generate(resolve_model("resnet56"), 0.4, 0, rule=str(f))
    with pytest.raises(ConfigError, match="fitted on cifar10, not cifar100"):
        get_generator("guided").generate(resolve_model("vgg16"), 0.4, 0, rule=str(f), dataset="cifar100")
    with pytest.raises(ConfigError, match="has no option 'rules'"):
        get_generator("guided").generate(resolve_model("vgg16"), 0.4, 0, rules=str(f))
    assert within(get_generator("guided").generate(resolve_model("vgg16"), 0.4, 0, rule=str(f), dataset="cifar10"), 0.4)


def test_rule_generators_refuse_a_sparsity_rule_unless_asked_for_sparse(tmp_path):
    rule = fit_rule(extract_pattern(scale_densities_to_budget(resolve_model("resnet20"), 0.5)), "sparsity")
    f = save_rule(rule, tmp_path / "s.yaml")
    with pytest.raises(ConfigError, match="add 'sparse: true'"):
        get_generator("transferred").generate(resolve_model("vgg16"), 0.3, 0, rule=str(f))
    arch = get_generator("transferred").generate(resolve_model("vgg16"), 0.3, 0, rule=str(f), sparse=True)
    assert arch.densities is not None and within(arch, 0.3)
    with pytest.raises(ConfigError, match="cannot be applied as a density rule"):
        get_generator("transferred").generate(resolve_model("vgg16"), 0.3, 0, rule=vgg_rule(), sparse=True)


def test_rules_and_generators_import_without_torch_or_optuna():
    import subprocess
    import sys

    code = ("import sys, prunesearch.rules, prunesearch.generators; "
            "bad = [m for m in ('torch', 'optuna') if m in sys.modules]; assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
