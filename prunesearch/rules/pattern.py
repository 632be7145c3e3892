"""Width patterns: what a pruning method decided, per slot, relative to the unpruned model.

A :class:`WidthPattern` is the data a design rule is fitted from. Each entry is one slot (or, for
unstructured results, one conv layer) with the coordinates rules map by:

- ``stage``: 0-based stage of the source family (feature-map size group), with ``num_stages`` so a
  rule can place it at a *relative* stage position ``stage / (num_stages - 1)``;
- ``rel_depth``: position in [0, 1] along the network;
- ``kind``: ``conv`` (output channels of a conv) or ``select`` (input channels a layer reads:
  PreResNet/DenseNet), or for density patterns ``conv3x3`` / ``conv1x1``;
- ``role``: what the width is for (``stream``, ``inner``, ``outer``, ``growth``, ``transition``,
  ``conv``; see ``prunesearch.arch.families.ROLES``): rules keep one profile per role.

``keep_ratio = kept / base`` where ``base`` is the unpruned width (channels) or, for densities, the
layer's dense weight count. Torch-free.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..arch import Architecture, atomic_write_text, count_params_macs, get_family, unpruned
from ..arch.counting import kept_weights
from ..errors import ConfigError, suggest
from ..fileio import read_document

PATTERN_FORMAT = 1
QUANTITIES = ("width", "density")


@dataclass(frozen=True)
class Provenance:
    """Where a pattern (and so a rule) came from. Every field but ``model`` is optional.

    ``budget``: the budget the method was asked for (fraction <= 1 or parameter count);
    ``global_ratio``: the method's own global pruning ratio/threshold percentile, if it has one;
    ``params`` / ``base_params`` / ``macs``: counts of the pruned and the unpruned architecture.
    """

    model: str
    dataset: str | None = None
    method: str | None = None
    budget: float | None = None
    global_ratio: float | None = None
    seed: int | None = None
    params: int | None = None
    base_params: int | None = None
    macs: int | None = None
    arch_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def param_fraction(self) -> float | None:
        if self.params is None or not self.base_params:
            return None
        return self.params / self.base_params

    def label(self) -> str:
        """``vgg19/cifar100/slimming@0.4`` (what generators print as a rule's origin)."""
        parts = [self.model]
        if self.dataset:
            parts.append(self.dataset)
        if self.method:
            parts.append(self.method)
        text = "/".join(parts)
        if self.budget is not None:
            text += f"@{self.budget:g}"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if not d["extra"]:
            d.pop("extra")
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Any, source: str = "provenance") -> "Provenance":
        if isinstance(d, Provenance):
            return d
        if not isinstance(d, Mapping) or "model" not in d:
            raise ConfigError(f"{source}: provenance must be a mapping with at least 'model', got {d!r}")
        known = {f.name for f in fields(cls)}
        core = {k: v for k, v in d.items() if k in known}
        extra = dict(core.pop("extra", None) or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        return cls(**core, extra=extra)


@dataclass(frozen=True)
class PatternEntry:
    """One slot (width patterns) or one conv layer (density patterns)."""

    name: str
    stage: int
    rel_depth: float
    kind: str
    base: int  # unpruned channels (width) or dense weight count (density)
    kept: int  # kept channels (width) or non-zero weights (density)
    tie: str | None = None
    role: str = "conv"

    @property
    def keep_ratio(self) -> float:
        return self.kept / self.base

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "stage": self.stage, "rel_depth": round(self.rel_depth, 6), "kind": self.kind,
             "base": self.base, "kept": self.kept, "keep_ratio": round(self.keep_ratio, 6)}
        if self.tie is not None:
            d["tie"] = self.tie
        d["role"] = self.role
        return d


@dataclass(frozen=True)
class WidthPattern:
    """Keep ratio per slot (or density per conv) of one pruned architecture, with provenance.

    ``quantity``: ``width`` (channels kept per slot) or ``density`` (non-zero weights per conv).
    ``num_stages``: the source family's stage count (VGG 5, the residual families 3).
    ``param_fraction``: params of the pruned architecture / params of the unpruned one: the budget
    level the pattern was found at (rules interpolate between levels).
    """

    family: str
    depth: int
    quantity: str
    num_stages: int
    entries: tuple[PatternEntry, ...]
    param_fraction: float
    provenance: Provenance

    @property
    def model(self) -> str:
        return f"{self.family}{self.depth}"

    @property
    def keep_ratios(self) -> tuple[float, ...]:
        return tuple(e.keep_ratio for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prunesearch_pattern": PATTERN_FORMAT,
            "family": self.family,
            "depth": self.depth,
            "quantity": self.quantity,
            "num_stages": self.num_stages,
            "param_fraction": round(self.param_fraction, 6),
            "provenance": self.provenance.to_dict(),
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "pattern") -> "WidthPattern":
        if not isinstance(d, Mapping) or "prunesearch_pattern" not in d:
            raise ConfigError(f"{source} is not a width pattern (no 'prunesearch_pattern' key); give a file "
                              "written by save_pattern or `prunesearch discover` (DIR/patterns/*.yaml)")
        if d["prunesearch_pattern"] != PATTERN_FORMAT:
            raise ConfigError(f"{source}: pattern format {d['prunesearch_pattern']!r} is not supported (this "
                              f"prunesearch reads {PATTERN_FORMAT}); re-extract it with this version")
        try:
            roles = _roles(str(d["family"]), int(d["depth"])) if str(d.get("quantity")) == "width" else {}
            entries = tuple(
                PatternEntry(str(e["name"]), int(e["stage"]), float(e["rel_depth"]), str(e["kind"]),
                             int(e["base"]), int(e["kept"]), e.get("tie"),
                             str(e.get("role") or roles.get(str(e["name"]), e["kind"])))
                for e in d["entries"]
            )
            q = str(d["quantity"])
            if q not in QUANTITIES:
                raise ConfigError(f"{source}: quantity '{q}' is not one of {', '.join(QUANTITIES)}")
            return cls(str(d["family"]), int(d["depth"]), q, int(d["num_stages"]), entries,
                       float(d["param_fraction"]), Provenance.from_dict(d["provenance"], source))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{source}: malformed pattern ({type(e).__name__}: {e}); re-extract it") from None


def _roles(family: str, depth: int) -> dict[str, str]:
    """Slot name -> role of a family's unpruned model (patterns written before roles existed)."""
    try:
        fam = get_family(family)
        return {sl.name: sl.role for sl in fam.slots(fam.base(depth))}
    except ConfigError:
        return {}


# ------------------------------------------------------------------------------------------------
def conv_plan(arch: Architecture) -> list[tuple[int, int, int, float, int]]:
    """Per conv layer, in ``conv_index`` order: ``(stage, k, dense weights, rel_depth, index)``.

    The stage of a conv is the rank of its output side among the plan's distinct sides (32 px ->
    0, 16 px -> 1, ...), so it works for any input size; capped at the family's last stage."""
    fam = get_family(arch.family)
    convs = [layer for layer in fam.layers(arch) if layer.kind == "conv"]
    convs.sort(key=lambda layer: layer.conv_index if layer.conv_index is not None else 0)
    sides = sorted({layer.hw for layer in convs}, reverse=True)  # distinct output sides, largest first
    n = len(convs)
    out = []
    for i, layer in enumerate(convs):
        stage = min(sides.index(layer.hw), fam.num_stages - 1)
        out.append((stage, layer.k, layer.cin * layer.cout * layer.k * layer.k, 0.0 if n <= 1 else i / (n - 1), i))
    return out


def extract_pattern(
    pruned_arch: Architecture,
    provenance: Provenance | Mapping[str, Any] | None = None,
    quantity: str | None = None,
) -> WidthPattern:
    """The keep ratio of every slot of ``pruned_arch`` relative to its unpruned model.

    ``quantity`` defaults to ``density`` when the architecture carries per-conv densities
    (unstructured pruning: the widths are the dense ones) and ``width`` otherwise. ``provenance``
    (a :class:`Provenance` or a mapping with model, dataset, method, budget, global_ratio, seed)
    is completed with the counts of the architecture."""
    if quantity is None:
        quantity = "density" if pruned_arch.densities is not None else "width"
    if quantity not in QUANTITIES:
        raise ConfigError(f"quantity '{quantity}' is not one of {', '.join(QUANTITIES)}{suggest(quantity, QUANTITIES)}")
    fam = get_family(pruned_arch.family)
    base = unpruned(pruned_arch)
    params, macs = count_params_macs(pruned_arch)
    base_params = count_params_macs(base)[0]

    if quantity == "width":
        slots = fam.slots(base)
        entries = tuple(
            PatternEntry(s.name, s.stage, s.rel_depth, s.kind, s.base_width, int(w), s.tie, s.role)
            for s, w in zip(slots, pruned_arch.widths)
        )
    else:
        if pruned_arch.densities is None:
            raise ConfigError(f"{pruned_arch.label} has no per-conv densities, so it has no density pattern; "
                              "extract its width pattern instead (quantity='width')")
        # Densities are relative to this architecture's own dense convs.
        entries = tuple(
            PatternEntry(f"conv{i}", st, rel, f"conv{k}x{k}", n, kept_weights(n, d), None, f"conv{k}x{k}")
            for (st, k, n, rel, i), d in zip(conv_plan(pruned_arch), pruned_arch.densities)
        )

    raw = {} if provenance is None else provenance.to_dict() if isinstance(provenance, Provenance) else dict(provenance)
    raw.setdefault("model", pruned_arch.model_name)
    prov = Provenance.from_dict(raw)
    prov = Provenance(
        model=prov.model or pruned_arch.model_name, dataset=prov.dataset, method=prov.method, budget=prov.budget,
        global_ratio=prov.global_ratio, seed=prov.seed, params=params, base_params=base_params, macs=macs,
        arch_id=pruned_arch.arch_id, extra=dict(prov.extra),
    )
    return WidthPattern(pruned_arch.family, pruned_arch.depth, quantity, fam.num_stages, entries,
                        params / base_params, prov)


# ------------------------------------------------------------------------------------------------
def save_pattern(pattern: WidthPattern, path: str | os.PathLike) -> Path:
    """Write a pattern as YAML (or JSON by suffix), atomically."""
    p = Path(path)
    d = pattern.to_dict()
    atomic_write_text(p, json.dumps(d, indent=2) if p.suffix == ".json" else yaml.safe_dump(d, sort_keys=False))
    return p


def load_pattern(path: str | os.PathLike) -> WidthPattern:
    p = Path(path)
    return WidthPattern.from_dict(read_document(p, "pattern"), source=str(p))


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
