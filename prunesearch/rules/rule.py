"""Design rules: model-independent width (or density) profiles fitted from width patterns.

A rule is a *profile* over a coordinate that every family has, fitted at one or more budget levels:

- ``stage`` (the paper's "guided pruning", §5): the fraction of each stage's channels the method
  kept. Stages are mapped by their relative position: stage ``s`` of ``S`` covers the interval
  ``[s/S, (s+1)/S)`` of the network, and a target stage takes the overlap-weighted average of the
  rule's stages (VGG's 5 stages onto a ResNet's 3 and back; identity when the counts agree).
- ``depth``: the kept fraction of channels in ``bins`` equal bins of relative depth (0 = first
  layer, 1 = last), read at bin centres and interpolated linearly along the depth of the target.
- ``sparsity`` (the paper's "guided sparsification"): the density of each stage's 3x3 convs,
  mapped by stage like ``stage``; applied to every conv of the target's stage (1x1 convs included,
  they sit in the same stage), then scaled to the budget with the densities solver.

Every level is the mean over the patterns found at that parameter fraction (seeds, runs). Applying a
rule at a budget between two fitted levels interpolates the two profiles linearly in the parameter
fraction (outside the fitted range the nearest level is used), and always finishes through the one
budget solver: ``scale_to_budget`` (widths) or ``scale_densities_to_budget`` (densities), so a rule
fixes only the *shape*, never the size.

Slot roles (``prunesearch.arch.families.ROLES``): a rule keeps one profile per role it saw, plus
``all`` (every slot pooled), because widths with different jobs are pruned differently: a ResNet's
residual stream (tied by the additions) vs its block-internal convs, a PreResNet's stream selections
vs its bottleneck convs, a DenseNet's dense layers vs its transitions. Pooling them would average
away the very pattern (ResNet-56-B keeps its stream at 16 and cuts conv1 to 6; a pooled rule says
12/12). A target slot uses the profile of its own role when the rule has it, then a related role
(``ROLE_FALLBACK``: a PreResNet "outer" selection reads the stream), then ``all``: a VGG rule (one
role) drives every slot of a ResNet through ``all``. Rule files of format 1 keyed profiles by slot
kind (``conv``/``select``); they still load and apply as before.

Depth profiles are read on a grid of ``resolution`` points from relative depth 0 to 1 (both ends
included); ``fit_rule(..., bins="full")`` uses one point per slot of the source, so a rule fitted
from one architecture, applied to the same model at the same budget, gives back that
architecture (a rule must be able to say what its source said).

Averages are channel-weighted (kept channels / base channels of the group; kept weights / dense
weights for densities): "the fraction of stage 2's channels that survive", as the paper states it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ..arch import (
    TOLERANCE,
    Architecture,
    Budget,
    atomic_write_text,
    get_family,
    scale_densities_to_budget,
    scale_to_budget,
    unpruned,
)
from ..arch.families import ROLE_FALLBACK
from ..errors import ConfigError, suggest
from ..registry import Registry
from ..fileio import read_document
from .pattern import Provenance, WidthPattern, conv_plan

RULE_FORMAT = 2  # 2: profiles keyed by slot role, depth profiles on an explicit grid
READ_FORMATS = (1, 2)
ALL = "all"
DEFAULT_BINS = 8
MIN_RATIO = 1e-3  # a profile value of 0 would pin a slot at the minimum width; keep it tiny but positive
LEVEL_DECIMALS = 3  # patterns whose parameter fractions agree to 3 decimals form one level


# ------------------------------------------------------------------------------------------------
# Profile helpers (pure functions on lists)
# ------------------------------------------------------------------------------------------------
def remap_stages(values: Sequence[float | None], n_to: int) -> list[float | None]:
    """Map per-stage values of ``len(values)`` stages onto ``n_to`` stages by relative position:
    stage s of S covers [s/S, (s+1)/S); each target stage is the overlap-weighted mean of the source
    stages it overlaps (stages with no value are skipped). Identity when the counts agree."""
    n_from = len(values)
    out: list[float | None] = []
    for t in range(n_to):
        lo, hi = t / n_to, (t + 1) / n_to
        num = den = 0.0
        for s, v in enumerate(values):
            if v is None:
                continue
            overlap = min(hi, (s + 1) / n_from) - max(lo, s / n_from)
            if overlap > 1e-12:
                num += overlap * v
                den += overlap
        out.append(num / den if den > 0 else None)
    return out


def fill_gaps(values: Sequence[float | None]) -> list[float] | None:
    """Fill ``None`` entries linearly between known neighbours (flat at the ends); None if all missing."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        return None
    out = []
    for i in range(len(values)):
        if values[i] is not None:
            out.append(float(values[i]))  # type: ignore[arg-type]
            continue
        left = [(j, v) for j, v in known if j < i]
        right = [(j, v) for j, v in known if j > i]
        if not left:
            out.append(right[0][1])
        elif not right:
            out.append(left[-1][1])
        else:
            (j0, v0), (j1, v1) = left[-1], right[0]
            out.append(v0 + (v1 - v0) * (i - j0) / (j1 - j0))
    return out


def interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear y(x) through (xs, ys) (xs increasing), flat outside."""
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    for i in range(1, len(xs)):
        if x <= xs[i]:
            t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return float(ys[i - 1] + t * (ys[i] - ys[i - 1]))
    return float(ys[-1])  # pragma: no cover


def _weighted(groups: dict[int, list[tuple[int, int]]], n: int) -> list[float | None]:
    """Per index 0..n-1: sum(kept) / sum(base) of its (kept, base) pairs, or None when empty."""
    out: list[float | None] = []
    for i in range(n):
        pairs = groups.get(i, [])
        base = sum(b for _, b in pairs)
        out.append(sum(k for k, _ in pairs) / base if base else None)
    return out


def _keys(pattern: WidthPattern) -> list[str]:
    """``all`` and every slot role of the pattern."""
    return [ALL] + sorted({e.role for e in pattern.entries})


def _matches(entry: Any, key: str) -> bool:
    return key == ALL or entry.role == key


def lookup(values: Mapping[str, Sequence[float]], slot: Any) -> Sequence[float]:
    """The profile a target slot follows: its role's, a related role's, its kind's (rule format 1),
    else the pooled one."""
    for key in (slot.role, *ROLE_FALLBACK.get(slot.role, ()), slot.kind):
        if key in values:
            return values[key]
    return values[ALL]


def grid(n: int) -> list[float]:
    """``n`` relative-depth points from 0 to 1, both ends included (one point: the middle)."""
    return [0.5] if n == 1 else [j / (n - 1) for j in range(n)]


# ------------------------------------------------------------------------------------------------
# Rule kinds (one registry; a new kind is a subclass + one register call)
# ------------------------------------------------------------------------------------------------
class RuleKind:
    """How a rule of one kind is fitted from patterns and read on a target.

    ``quantity``: what the patterns must hold (``width`` or ``density``); ``domain`` the same for the
    architectures it produces. ``resolution(patterns, **options)`` returns the profile length
    (stages or bins); ``pattern_profile(pattern, n)`` the pattern's values per key (``all``, and per
    slot kind); ``target_values(values, n, target)`` one value per target slot (or conv)."""

    name: ClassVar[str]
    quantity: ClassVar[str]
    description: ClassVar[str]

    def resolution(self, patterns: Sequence[WidthPattern], **options: Any) -> int:
        raise NotImplementedError

    def pattern_profile(self, pattern: WidthPattern, n: int) -> dict[str, list[float]]:
        raise NotImplementedError

    def target_values(self, values: Mapping[str, Sequence[float]], n: int, target: Architecture,
                      positions: Sequence[float] | None = None) -> list[float]:
        raise NotImplementedError


RULE_KINDS: Registry[RuleKind] = Registry("rule kind")


class StageRule(RuleKind):
    name = "stage"
    quantity = "width"
    description = "fraction of each stage's channels kept (stages mapped by relative position)"

    def resolution(self, patterns, **options):
        n = options.get("num_stages")
        return int(n) if n else max(p.num_stages for p in patterns)

    def pattern_profile(self, pattern, n):
        out = {}
        for key in _keys(pattern):
            groups: dict[int, list[tuple[int, int]]] = {}
            for e in pattern.entries:
                if _matches(e, key):
                    groups.setdefault(e.stage, []).append((e.kept, e.base))
            vals = fill_gaps(remap_stages(_weighted(groups, pattern.num_stages), n))
            if vals is not None:
                out[key] = vals
        return out

    def target_values(self, values, n, target, positions=None):
        fam = get_family(target.family)
        per_key = {k: remap_stages(list(v), fam.num_stages) for k, v in values.items()}
        return [float(lookup(per_key, s)[s.stage]) for s in fam.slots(target)]  # type: ignore[arg-type]


class DepthRule(RuleKind):
    name = "depth"
    quantity = "width"
    description = "fraction of channels kept in equal bins of relative depth, interpolated along the target"

    def resolution(self, patterns, **options):
        b = options.get("bins") or DEFAULT_BINS
        if b == "full":  # one grid point per slot of the largest source model
            return max(len(p.entries) for p in patterns)
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"depth rule bins must be an integer >= 1 or 'full', got {b!r}")
        return b

    def pattern_profile(self, pattern, n):
        # each slot goes to its nearest grid point; with n = the number of slots every slot has its own
        out = {}
        for key in _keys(pattern):
            groups: dict[int, list[tuple[int, int]]] = {}
            for e in pattern.entries:
                if _matches(e, key):
                    j = 0 if n == 1 else min(n - 1, int(round(e.rel_depth * (n - 1))))
                    groups.setdefault(j, []).append((e.kept, e.base))
            vals = fill_gaps(_weighted(groups, n))
            if vals is not None:
                out[key] = vals
        return out

    def target_values(self, values, n, target, positions=None):
        xs = list(positions) if positions is not None else grid(n)
        return [interp(xs, lookup(values, s), s.rel_depth) for s in get_family(target.family).slots(target)]


class SparsityRule(RuleKind):
    name = "sparsity"
    quantity = "density"
    description = "density of each stage's 3x3 convs (stages mapped by relative position)"

    def resolution(self, patterns, **options):
        n = options.get("num_stages")
        return int(n) if n else max(p.num_stages for p in patterns)

    def pattern_profile(self, pattern, n):
        entries = [e for e in pattern.entries if e.kind == "conv3x3"] or list(pattern.entries)
        groups: dict[int, list[tuple[int, int]]] = {}
        for e in entries:
            groups.setdefault(e.stage, []).append((e.kept, e.base))
        vals = fill_gaps(remap_stages(_weighted(groups, pattern.num_stages), n))
        return {ALL: vals} if vals is not None else {}

    def target_values(self, values, n, target, positions=None):
        fam = get_family(target.family)
        stage_vals = remap_stages(list(values[ALL]), fam.num_stages)
        return [float(stage_vals[st]) for st, *_ in conv_plan(target)]  # type: ignore[arg-type]


for _kind in (StageRule(), DepthRule(), SparsityRule()):
    RULE_KINDS.register(_kind.name, _kind)


# ------------------------------------------------------------------------------------------------
# The noun
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleLevel:
    """The profile found at one budget level (``param_fraction`` = pruned params / base params)."""

    param_fraction: float
    values: dict[str, tuple[float, ...]]  # "all" (+ per slot role) -> one value per stage or grid point
    patterns: int = 1  # how many patterns were averaged into it

    def to_dict(self) -> dict[str, Any]:
        return {"param_fraction": round(self.param_fraction, 6), "patterns": self.patterns,
                "values": {k: [round(x, 6) for x in v] for k, v in self.values.items()}}


@dataclass(frozen=True)
class DesignRule:
    """A fitted, model-independent design rule. ``resolution``: the profile length (stages for
    ``stage``/``sparsity``, bins for ``depth``). ``sources``: provenance of every pattern."""

    kind: str
    resolution: int
    levels: tuple[RuleLevel, ...]
    sources: tuple[Provenance, ...] = ()
    name: str | None = None
    positions: tuple[float, ...] | None = None  # depth rules: where the values sit (default: the grid)

    @property
    def domain(self) -> str:
        """``width`` (sets channel counts) or ``density`` (sets per-conv densities)."""
        return RULE_KINDS.get(self.kind).quantity

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(lv.param_fraction for lv in self.levels)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({p.model for p in self.sources}))

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(sorted({p.dataset for p in self.sources if p.dataset}))

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(sorted({p.method for p in self.sources if p.method}))

    def origin(self) -> str:
        """``vgg19/cifar100/slimming`` (several values joined with '+')."""
        parts = ["+".join(self.models) or "?"]
        if self.datasets:
            parts.append("+".join(self.datasets))
        if self.methods:
            parts.append("+".join(self.methods))
        return "/".join(parts)

    def describe(self) -> str:
        levels = ", ".join(f"{f:.3g}" for f in self.fractions)
        return f"{self.kind} rule from {self.origin()} (levels: params x {levels})"

    def profile(self, param_fraction: float) -> dict[str, tuple[float, ...]]:
        """The profile at ``param_fraction``: the nearest level outside the fitted range, the
        linear interpolation of the two bracketing levels inside it."""
        lv = self.levels
        if len(lv) == 1 or param_fraction <= lv[0].param_fraction:
            return dict(lv[0].values)
        if param_fraction >= lv[-1].param_fraction:
            return dict(lv[-1].values)
        for i in range(1, len(lv)):
            if param_fraction <= lv[i].param_fraction:
                a, b = lv[i - 1], lv[i]
                t = (param_fraction - a.param_fraction) / (b.param_fraction - a.param_fraction)
                out = {}
                for key in sorted(set(a.values) | set(b.values)):
                    va = a.values.get(key, a.values[ALL])
                    vb = b.values.get(key, b.values[ALL])
                    out[key] = tuple(x + t * (y - x) for x, y in zip(va, vb))
                return out
        return dict(lv[-1].values)  # pragma: no cover

    def apply(self, target: Architecture, budget: "Budget | float", tolerance: float = TOLERANCE) -> Architecture:
        return apply_rule(self, target, budget, tolerance=tolerance)

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        kind = RULE_KINDS.get(self.kind)
        d: dict[str, Any] = {
            "prunesearch_rule": RULE_FORMAT,
            "kind": self.kind,
            "description": kind.description,
            "resolution": self.resolution,
        }
        if self.kind == "depth":
            d["positions"] = [round(x, 6) for x in (self.positions or grid(self.resolution))]
        if self.name:
            d["name"] = self.name
        d["levels"] = [lv.to_dict() for lv in self.levels]
        d["sources"] = [p.to_dict() for p in self.sources]
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "rule") -> "DesignRule":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: a rule file must hold a mapping (prunesearch_rule, kind, levels, ...), "
                              f"got {type(d).__name__}; give a rule.yaml written by `prunesearch discover`")
        if "prunesearch_rule" not in d:
            if "prunesearch_pattern" in d:
                what = "a width pattern"
            elif "architecture" in d or "widths" in d:
                what = "an architecture file"
            else:
                what = "not a prunesearch rule (no 'prunesearch_rule' key)"
            raise ConfigError(f"{source} is {what}, not a design rule; give a rule.yaml written by "
                              "`prunesearch discover` (or fit one with prunesearch.rules.fit_rule)")
        version = d["prunesearch_rule"]
        if version not in READ_FORMATS:
            raise ConfigError(f"{source}: rule format version {version!r} is not supported (this prunesearch reads "
                              f"version {RULE_FORMAT}); refit the rule with this version (`prunesearch discover`)")
        kind = d.get("kind")
        if kind not in RULE_KINDS:
            raise ConfigError(f"{source}: unknown rule kind {kind!r}{suggest(str(kind), RULE_KINDS.names())}; "
                              f"known: {', '.join(RULE_KINDS.names())}")
        res = d.get("resolution")
        if isinstance(res, bool) or not isinstance(res, int) or res < 1:
            raise ConfigError(f"{source}: 'resolution' must be an integer >= 1 (stages or bins), got {res!r}")
        raw_levels = d.get("levels")
        if not isinstance(raw_levels, list) or not raw_levels:
            raise ConfigError(f"{source}: 'levels' must be a non-empty list of {{param_fraction, values}}; refit the rule")
        levels = []
        for i, lv in enumerate(raw_levels):
            where = f"{source}: levels[{i}]"
            if not isinstance(lv, Mapping):
                raise ConfigError(f"{where} must be a mapping with param_fraction and values, got {lv!r}")
            f = lv.get("param_fraction")
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
                raise ConfigError(f"{where}.param_fraction must be in (0, 1], got {f!r}")
            vals = lv.get("values")
            if not isinstance(vals, Mapping) or ALL not in vals:
                raise ConfigError(f"{where}.values must map '{ALL}' (and slot kinds) to {res} numbers, got {vals!r}")
            clean: dict[str, tuple[float, ...]] = {}
            for key, seq in vals.items():
                if (not isinstance(seq, list) or len(seq) != res or any(
                        isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not 0 <= x <= 1
                        for x in seq)):
                    shown = repr(seq) if len(repr(seq)) < 200 else repr(seq)[:200] + "..."
                    raise ConfigError(f"{where}.values.{key} must be {res} keep fractions in [0, 1], got {shown}")
                clean[str(key)] = tuple(float(x) for x in seq)
            n = lv.get("patterns", 1)
            levels.append(RuleLevel(float(f), clean, int(n) if isinstance(n, int) and not isinstance(n, bool) else 1))
        levels.sort(key=lambda lv: lv.param_fraction)
        sources_raw = d.get("sources") or []
        if not isinstance(sources_raw, list):
            raise ConfigError(f"{source}: 'sources' must be a list of provenance mappings, got {type(sources_raw).__name__}")
        sources = tuple(Provenance.from_dict(p, f"{source}: sources") for p in sources_raw)
        name = d.get("name")
        positions = None
        if kind == "depth":
            if version == 1:  # format 1 read depth profiles at bin centres
                positions = tuple((j + 0.5) / res for j in range(res))
            elif "positions" in d:
                pos = d["positions"]
                if (not isinstance(pos, list) or len(pos) != res or any(
                        isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1 for x in pos)
                        or list(pos) != sorted(pos)):
                    raise ConfigError(f"{source}: 'positions' must be {res} increasing relative depths in [0, 1], got {pos!r}")
                positions = tuple(float(x) for x in pos)
        if all(max(v) <= 0 for lv in levels for v in lv.values.values()):
            raise ConfigError(f"{source}: every value of the rule is 0, so it says nothing about which layers to keep; "
                              "refit it from a pruned architecture")
        return cls(str(kind), res, tuple(levels), sources, str(name) if name is not None else None, positions)


# ------------------------------------------------------------------------------------------------
# Fit, apply, files
# ------------------------------------------------------------------------------------------------
def fit_rule(
    patterns: WidthPattern | Sequence[WidthPattern],
    kind: str = "stage",
    *,
    bins: int | str | None = None,
    num_stages: int | None = None,
    name: str | None = None,
) -> DesignRule:
    """Fit a rule of ``kind`` (``stage``, ``depth``, ``sparsity``) from one or more patterns.

    Patterns at the same parameter fraction (to 3 decimals) are averaged into one level; levels are
    kept apart so the rule can interpolate between them. ``bins``: depth grid points (default 8;
    ``"full"``: one per slot of the largest source, so the rule reproduces its source);
    ``num_stages``: the stage resolution (default: the most stages among the patterns)."""
    pats = [patterns] if isinstance(patterns, WidthPattern) else list(patterns)
    if not pats:
        raise ConfigError("fit_rule needs at least one width pattern; extract one with extract_pattern(pruned_arch)")
    rk = RULE_KINDS.get(kind)
    for p in pats:
        if p.quantity != rk.quantity:
            other = "sparsity" if p.quantity == "density" else "stage or depth"
            raise ConfigError(f"a {kind} rule is fitted from {rk.quantity} patterns, but the pattern from "
                              f"{p.provenance.label()} holds {p.quantity}s; fit a {other} rule from it")
    n = rk.resolution(pats, bins=bins, num_stages=num_stages)
    by_level: dict[float, list[dict[str, list[float]]]] = {}
    exact: dict[float, list[float]] = {}
    for p in pats:
        key = round(p.param_fraction, LEVEL_DECIMALS)
        by_level.setdefault(key, []).append(rk.pattern_profile(p, n))
        exact.setdefault(key, []).append(p.param_fraction)
    levels = []
    for key in sorted(by_level):
        profs = by_level[key]
        keys = sorted({k for prof in profs for k in prof})
        values = {}
        for k in keys:
            rows = [prof[k] for prof in profs if k in prof]
            values[k] = tuple(sum(col) / len(col) for col in zip(*rows))
        levels.append(RuleLevel(sum(exact[key]) / len(exact[key]), values, len(profs)))
    positions = tuple(grid(n)) if kind == "depth" else None
    return DesignRule(kind, n, tuple(levels), tuple(p.provenance for p in pats), name, positions)


def apply_rule(
    rule: DesignRule,
    target: Architecture,
    budget: "Budget | float",
    tolerance: float = TOLERANCE,
    domain: str | None = None,
) -> Architecture:
    """The architecture ``rule`` gives ``target``'s model (any family, any depth) at ``budget``
    (a :class:`~prunesearch.arch.Budget`, or a number: a fraction of the unpruned target's params
    if <= 1, else a count).

    Widths: ``scale_to_budget(unpruned(target), budget, keep_ratios)``; densities:
    ``scale_densities_to_budget`` on the unpruned widths. The rule level is read at the budget's
    fraction of the target (of its own kind for MAC budgets). ``domain`` (``width``/``density``),
    when given, is what the caller expects: a rule of the other domain raises ConfigError."""
    if domain is not None and domain != rule.domain:
        if rule.domain == "density":
            hint = "it sets per-conv densities (unstructured sparsity), not widths; use a stage or depth rule"
        else:
            hint = "it sets widths, not per-conv densities; use a sparsity rule (fitted from an unstructured method)"
        raise ConfigError(f"rule {rule.describe()} cannot be applied as a {domain} rule: {hint}")
    b = Budget.of(budget)
    base = unpruned(target)
    ratios = [max(MIN_RATIO, v) for v in rule_keep_ratios(rule, base, b)]
    if rule.domain == "density":
        return scale_densities_to_budget(base, b, ratios, tolerance)
    return scale_to_budget(base, b, ratios, tolerance)


def rule_keep_ratios(rule: DesignRule, target: Architecture, budget: "Budget | float") -> list[float]:
    """The unscaled per-slot (or per-conv) values ``rule`` gives ``target`` at ``budget``."""
    b = Budget.of(budget)
    base = unpruned(target)
    values = rule.profile(b.fraction_of(base))
    if all(max(v) <= 0 for v in values.values()):
        raise ConfigError(f"{rule.describe()} keeps nothing at budget {b.label()} (every value is 0); refit it")
    return RULE_KINDS.get(rule.kind).target_values(values, rule.resolution, base, rule.positions)


def save_rule(rule: DesignRule, path: str | os.PathLike) -> Path:
    """Write a rule as YAML (JSON by suffix), atomically."""
    p = Path(path)
    d = rule.to_dict()
    atomic_write_text(p, json.dumps(d, indent=2) if p.suffix == ".json" else yaml.safe_dump(d, sort_keys=False))
    return p


RULE_FILE = "rule.yaml"


def rule_path(path: str | os.PathLike, kind: str | None = None) -> Path:
    """A rule file, or a discover run dir (-> ``DIR/rule.yaml``, or ``DIR/rules/<kind>.yaml``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        candidate = p / "rules" / f"{kind}.yaml" if kind else p / RULE_FILE
        if not candidate.is_file():
            have = sorted(q.stem for q in (p / "rules").glob("*.yaml")) if (p / "rules").is_dir() else []
            extra = f" (it has rules: {', '.join(have)})" if have else ""
            raise ConfigError(f"{p} has no {candidate.relative_to(p)}{extra}; give a `prunesearch discover` run "
                              "dir or a rule file")
        return candidate
    if not p.exists():
        from ..arch import NAMED_VARIANTS

        raise ConfigError(f"rule file {p} does not exist; give a rule.yaml, a `prunesearch discover` run dir or a "
                          f"published variant ({', '.join(sorted(NAMED_VARIANTS))})")
    return p


def variant_rule(name: str, kind: str = "stage") -> DesignRule:
    """The rule a published pruned variant (``resnet56-b``, ``vgg16-a``, ...) implies: its width
    pattern fitted at full resolution (depth rules: one grid point per slot), so applied to its own
    model at its own size it gives the variant back."""
    from ..arch import NAMED_VARIANTS, resolve_model
    from ..arch.io import VARIANT_METHOD
    from .pattern import extract_pattern

    key = name.strip().lower()
    if key not in NAMED_VARIANTS:
        raise ConfigError(f"unknown published variant '{name}'{suggest(key, NAMED_VARIANTS)}; known: "
                          f"{', '.join(sorted(NAMED_VARIANTS))}")
    if kind not in ("stage", "depth"):
        raise ConfigError(f"a published variant gives a width rule: choose kind stage or depth, not {kind}")
    arch = resolve_model(key)
    pattern = extract_pattern(arch, {"model": arch.model_name, "method": VARIANT_METHOD.get(key),
                                     "extra": {"variant": key}})
    return fit_rule(pattern, kind, bins="full" if kind == "depth" else None, name=key)


def is_variant(name: Any) -> bool:
    from ..arch import NAMED_VARIANTS

    return isinstance(name, str) and name.strip().lower() in NAMED_VARIANTS and not Path(name).expanduser().exists()


def load_rule(path: str | os.PathLike, kind: str | None = None) -> DesignRule:
    """Read a rule file (YAML/JSON), the rule of a discover run dir, or the rule of a published
    variant name (``resnet56-b``). ``kind``: in a run dir, pick ``rules/<kind>.yaml``; for a file,
    require that kind; for a variant, fit that kind (default stage)."""
    if is_variant(str(path)):
        return variant_rule(str(path), kind or "stage")
    p = rule_path(path, kind)
    rule = DesignRule.from_dict(read_document(p, "rule"), source=str(p))
    if kind is not None and rule.kind != kind:
        raise ConfigError(f"{p} holds a {rule.kind} rule, not a {kind} rule; give the {kind} rule's file "
                          f"(a discover run keeps every fitted rule in DIR/rules/)")
    return rule


def fit_rules(patterns: Sequence[WidthPattern], primary: str | None = None) -> tuple[dict[str, DesignRule], str]:
    """Every rule kind the patterns support (stage and depth for widths, sparsity for densities),
    and which one is primary (default: the first)."""
    density = patterns[0].quantity == "density"
    kinds = ["sparsity"] if density else ["stage", "depth"]
    if primary is not None and primary not in kinds:
        raise ConfigError(f"rule kind '{primary}' cannot be fitted from {'density' if density else 'width'} patterns; "
                          f"choose {' or '.join(kinds)}")
    return {k: fit_rule(patterns, k) for k in kinds}, primary or kinds[0]
