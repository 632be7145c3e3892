"""The contract every registered generator keeps (like the pruning-method contract): a valid
architecture of the base's family, on budget (params and MACs), deterministic per seed, and a
one-line error for what it cannot do. A new generator is picked up from the registry."""

from __future__ import annotations

import pytest

from prunesearch.arch import (
    TOLERANCE,
    Architecture,
    Budget,
    get_family,
    resolve_model,
    save_architecture,
    scale_to_budget,
)
from prunesearch.errors import PrunesearchError
from prunesearch.generators import GENERATORS, get_generator
from prunesearch.rules import Provenance, extract_pattern, fit_rule, save_rule

BUDGETS = (Budget(0.3), Budget(0.6), Budget(0.4, "macs"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, dict]:
    """Options each generator needs on resnet20: a discover-style run dir (pruned), a rule fitted on
    resnet20 itself (guided) and one from another model (transferred)."""
    tmp = tmp_path_factory.mktemp("sources")
    base = resolve_model("resnet20")
    ratios = [1.0 - 0.7 * s.rel_depth if s.role == "inner" else 1.0 for s in get_family("resnet").slots(base)]
    run = tmp / "run"
    patterns = []
    for b in BUDGETS:
        arch = scale_to_budget(base, b, ratios)
        save_architecture(arch, run / "architectures" / f"pruned-{b.tag()}.yaml", generator="pruned", budget=b.value,
                          budget_kind=b.kind, method="slimming", model="resnet20", dataset="cifar10")
        if b.kind == "params":
            patterns.append(extract_pattern(arch, Provenance(model="resnet20", dataset="cifar10", method="slimming",
                                                             budget=b.value)))
    guided = save_rule(fit_rule(patterns, "stage"), tmp / "guided.yaml")
    other = save_rule(fit_rule(extract_pattern(resolve_model("vgg16-a")), "depth"), tmp / "transferred.yaml")
    return {"uniform": {}, "random": {}, "pruned": {"run": str(run)}, "guided": {"rule": str(guided)},
            "transferred": {"rule": str(other)}}


def test_every_registered_generator_is_covered(sources):
    assert set(GENERATORS.names()) <= set(sources), "add the options a new generator needs to the fixture"


@pytest.mark.parametrize("name", sorted(GENERATORS.names()))
@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: b.label() + b.kind)
def test_generator_contract(name, budget, sources):
    base = resolve_model("resnet20")
    gen = get_generator(name)
    a = gen.generate(base, budget, 3, **sources[name])
    assert isinstance(a, Architecture) and a.family == base.family and a.depth == base.depth
    assert len(a.widths) == len(base.widths) and all(1 <= w <= bw for w, bw in zip(a.widths, base.widths))
    target = budget.resolve(base)
    assert abs(budget.measure(a) - target) <= TOLERANCE * target, (name, budget, budget.measure(a), target)
    again = gen.generate(base, budget, 3, **sources[name])
    assert again.arch_id == a.arch_id  # deterministic per seed
    if name == "random":
        assert gen.generate(base, budget, 4, **sources[name]).arch_id != a.arch_id  # and the seed matters


@pytest.mark.parametrize("name", sorted(GENERATORS.names()))
def test_generator_refuses_an_unreachable_budget_in_one_line(name, sources):
    base = resolve_model("resnet20")
    with pytest.raises(PrunesearchError) as e:
        get_generator(name).generate(base, Budget(1e12), 0, **sources[name])
    assert "\n" not in str(e.value)


def test_generator_refuses_unknown_options_in_one_line(sources):
    base = resolve_model("resnet20")
    for name in GENERATORS.names():
        with pytest.raises(PrunesearchError) as e:
            get_generator(name).generate(base, Budget(0.5), 0, **sources[name], bogus_option=1)
        assert "bogus_option" in str(e.value) and "\n" not in str(e.value), name
