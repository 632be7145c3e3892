"""Shared machinery of the structured methods: scores -> keep sets -> Architecture + inherited weights.

Written once, used by every channel-pruning method:

- :func:`module_plan`: for each family, which module of ``build_model(arch)`` holds each slot's BN
  (the BN over that slot's channels, for Network Slimming), its filters (the conv that produces the
  slot's channels, for filter-norm criteria), and how every conv/BN/linear/selection tensor is sliced
  by the kept channels (weight inheritance).
- :class:`ChannelPool`: per-slot channel scores pooled under ONE global threshold with the reference
  code's semantics (``thr = sorted(pool)[int(total * ratio)]``, keep iff score > thr); tied slots
  (residual adds) are combined into one group with one shared keep set; the family's minimum width is
  guarded (a group whose channels all fall below the threshold keeps its top-scored ones); and a
  parameter budget is reached by bisection on the index into the sorted pool (equal scores are
  ordered by slot and channel, so a budget is reachable even when many scores tie).
- :func:`result_from_keep`: keep sets -> :class:`PruneResult` (widths, selections, state dict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..arch import TOLERANCE, Architecture, Budget, count, get_family
from ..errors import BudgetError, ConfigError
from .base import PruneResult, PruningMethod

if TYPE_CHECKING:
    from ..arch import Slot


# ------------------------------------------------------------------------------------------------
# Where each slot lives in the built model
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModulePlan:
    """Module names (as in ``build_model(arch).named_modules()``) per slot, and slicing specs.

    ``bn[i]``: the BatchNorm2d over slot i's channels (every slot has one in all four families).
    ``filters[i]``: the conv whose output channels are slot i (``None`` for selection slots).
    ``slicing[module]``: ``(kind, out_slot, in_slot)`` with kind ``conv``/``bn``/``linear``/``select``/
    ``route`` (a ResNet stride-2 block's option-A shortcut map from in_slot's to out_slot's channels);
    ``out_slot`` slices dim 0 (for ``select``: the slot whose kept indices the buffer records),
    ``in_slot`` slices dim 1; ``None`` keeps the dimension whole.
    """

    bn: tuple[str, ...]
    filters: tuple[str | None, ...]
    slicing: dict[str, tuple[str, int | None, int | None]]


def module_plan(arch: Architecture) -> ModulePlan:
    fam = get_family(arch.family)
    n = len(fam.slots(arch))
    bn: list[str] = [""] * n
    filters: list[str | None] = [None] * n
    sl: dict[str, tuple[str, int | None, int | None]] = {}

    if arch.family == "vgg":
        idx, prev = 0, None
        slot = 0
        for item in fam.cfg(arch):  # type: ignore[attr-defined]
            if item == "M":
                idx += 1
                continue
            conv, norm = f"features.{idx}", f"features.{idx + 1}"
            sl[conv] = ("conv", slot, prev)
            sl[norm] = ("bn", slot, None)
            bn[slot], filters[slot] = norm, conv
            prev, slot, idx = slot, slot + 1, idx + 3
        if arch.head == "l1":
            sl["classifier.0"] = ("linear", None, prev)
        else:
            sl["classifier"] = ("linear", None, prev)
    elif arch.family == "resnet":
        sl["conv1"], sl["bn1"] = ("conv", 0, None), ("bn", 0, None)
        bn[0], filters[0] = "bn1", "conv1"
        prev, slot = 0, 1
        for s, blocks in enumerate(fam.block_widths(arch)):  # type: ignore[attr-defined]
            for b in range(len(blocks)):
                p = f"layer{s + 1}.{b}"
                c1, c2 = slot, slot + 1
                sl[f"{p}.conv1"], sl[f"{p}.bn1"] = ("conv", c1, prev), ("bn", c1, None)
                sl[f"{p}.conv2"], sl[f"{p}.bn2"] = ("conv", c2, c1), ("bn", c2, None)
                bn[c1], filters[c1] = f"{p}.bn1", f"{p}.conv1"
                bn[c2], filters[c2] = f"{p}.bn2", f"{p}.conv2"
                if s > 0 and b == 0:  # stride 2: the option-A shortcut's route buffer
                    sl[p] = ("route", c2, prev)
                prev, slot = c2, slot + 2
        sl["fc"] = ("linear", None, prev)
    elif arch.family == "preresnet":
        slot = 0
        for s, blocks in enumerate(fam.block_widths(arch)):  # type: ignore[attr-defined]
            for b in range(len(blocks)):
                p = f"layer{s + 1}.{b}"
                k, c1, c2 = slot, slot + 1, slot + 2
                sl[f"{p}.select"] = ("select", k, None)
                sl[f"{p}.bn1"] = ("bn", k, None)
                sl[f"{p}.conv1"], sl[f"{p}.bn2"] = ("conv", c1, k), ("bn", c1, None)
                sl[f"{p}.conv2"], sl[f"{p}.bn3"] = ("conv", c2, c1), ("bn", c2, None)
                sl[f"{p}.conv3"] = ("conv", None, c2)
                bn[k], bn[c1], bn[c2] = f"{p}.bn1", f"{p}.bn2", f"{p}.bn3"
                filters[c1], filters[c2] = f"{p}.conv1", f"{p}.conv2"
                slot += 3
        sl["select"], sl["bn"], sl["fc"] = ("select", slot, None), ("bn", slot, None), ("linear", None, slot)
        bn[slot] = "bn"
    elif arch.family == "densenet":
        for j in range(n - 1):
            sl[f"features.{j}.select"] = ("select", j, None)
            sl[f"features.{j}.bn"] = ("bn", j, None)
            sl[f"features.{j}.conv"] = ("conv", None, j)
            bn[j] = f"features.{j}.bn"
        h = n - 1
        sl["select"], sl["bn"], sl["fc"] = ("select", h, None), ("bn", h, None), ("linear", None, h)
        bn[h] = "bn"
    else:  # pragma: no cover - a new family must add its plan here
        raise ConfigError(f"no channel plan for family '{arch.family}'; add one to prunesearch/prune/channels.py")
    return ModulePlan(tuple(bn), tuple(filters), sl)


def bn_scores(model: nn.Module, arch: Architecture) -> list[torch.Tensor]:
    """|gamma| of the BN over each slot's channels (Network Slimming's criterion), float64, CPU."""
    mods = dict(model.named_modules())
    return [mods[name].weight.detach().abs().double().cpu() for name in module_plan(arch).bn]


def filter_norms(model: nn.Module, arch: Architecture, p: int = 1) -> list[torch.Tensor | None]:
    """Lp norm of every output filter of the conv that produces each slot (``None`` for selection
    slots, which have no filters of their own). float64, CPU."""
    mods = dict(model.named_modules())
    out: list[torch.Tensor | None] = []
    for name in module_plan(arch).filters:
        if name is None:
            out.append(None)
        else:
            w = mods[name].weight.detach().flatten(1)
            v = w.abs().sum(1, dtype=torch.float64) if p == 1 else w.double().norm(p=p, dim=1)
            out.append(v.cpu())
    return out


# ------------------------------------------------------------------------------------------------
# Tie groups and the global threshold
# ------------------------------------------------------------------------------------------------
def tie_groups(slots: Sequence["Slot"]) -> list[list[int]]:
    """Slot indices grouped by tie key (untied slots are groups of one), in first-slot order."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(slots):
        groups.setdefault(s.tie or f"#{i}", []).append(i)
    return list(groups.values())


def top_channels(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores (ties broken by lower index), sorted ascending."""
    order = sorted(range(scores.numel()), key=lambda j: (-float(scores[j]), j))[:k]
    return torch.tensor(sorted(order), dtype=torch.long)



def keep_top(base: Architecture, scores: Sequence[torch.Tensor | None], widths: Sequence[int],
             combine: str = "mean") -> list[tuple[int, ...]]:
    """Predefined widths: per slot the ``widths[i]`` highest-scored channels. Tied slots are scored
    together (``combine``) and share one keep set; unscored slots (``None``) must stay whole."""
    fam = get_family(base.family)
    slots = fam.slots(base)
    if len(widths) != len(slots) or len(scores) != len(slots):
        raise ConfigError(f"expected one width and one score vector per slot ({len(slots)}), got {len(widths)} and {len(scores)}")
    keep: list[tuple[int, ...]] = [()] * len(slots)
    for members in tie_groups(slots):
        width, base_width = int(widths[members[0]]), slots[members[0]].base_width
        if any(int(widths[i]) != width for i in members):
            raise ConfigError(f"tied slots ({slots[members[0]].tie}) must get one width; got {[widths[i] for i in members]}")
        if not fam.min_width <= width <= base_width:
            raise ConfigError(f"slot {slots[members[0]].name} width {width} is outside [{fam.min_width}, {base_width}]")
        if width == base_width:
            idx = tuple(range(base_width))
        else:
            vecs = [scores[i] for i in members]
            if any(v is None for v in vecs):
                raise ConfigError(
                    f"slot {slots[members[0]].name} is narrowed to {width} but this method does not score it "
                    f"(a selection without filters); only scored slots can be narrowed"
                )
            g = torch.stack([v.double().cpu() for v in vecs])  # type: ignore[union-attr]
            g = {"mean": g.mean(0), "max": g.max(0).values, "sum": g.sum(0)}[combine]
            idx = tuple(int(j) for j in top_channels(g, width))
        for i in members:
            keep[i] = idx
    return keep


class ChannelPool:
    """Per-slot channel scores under one global threshold.

    ``scores[i]`` is a 1-D tensor over slot i's base channels, or ``None`` if the slot is not pruned
    by this method (it then keeps every channel). Tied slots are combined with ``combine`` (``mean``
    by default, so a group's scores stay on the scale of single slots) into one entry per channel;
    a group is scored only if all its members are.
    """

    def __init__(self, base: Architecture, scores: Sequence[torch.Tensor | None], combine: str = "mean") -> None:
        fam = get_family(base.family)
        self.base = base
        self.slots = fam.slots(base)
        self.min_width = fam.min_width
        if len(scores) != len(self.slots):
            raise ConfigError(f"expected one score vector per slot ({len(self.slots)}), got {len(scores)}")
        self.groups = tie_groups(self.slots)
        self.group_scores: list[torch.Tensor | None] = []
        for members in self.groups:
            vecs = [scores[i] for i in members]
            if any(v is None for v in vecs):
                self.group_scores.append(None)
                continue
            for i, v in zip(members, vecs):
                if v.dim() != 1 or v.numel() != self.slots[i].base_width:  # type: ignore[union-attr]
                    raise ConfigError(f"slot {self.slots[i].name} needs {self.slots[i].base_width} scores, got shape {tuple(v.shape)}")  # type: ignore[union-attr]
            stack = torch.stack([v.double().cpu() for v in vecs])  # type: ignore[union-attr]
            if combine == "mean":
                g = stack.mean(0)
            elif combine == "max":
                g = stack.max(0).values
            elif combine == "sum":
                g = stack.sum(0)
            else:
                raise ConfigError(f"unknown combine '{combine}' for tied slots; use mean, max or sum")
            self.group_scores.append(g)
        scored = [g for g in self.group_scores if g is not None]
        if not scored:
            raise ConfigError(f"no slot of {base.model_name} is scored by this method; nothing to prune")
        cat = torch.cat(scored)
        self.values, order = torch.sort(cat, stable=True)  # the pool, ascending
        self.total = int(self.values.numel())
        # Rank of every pooled channel in that order (ties: pool order, i.e. slot then channel
        # index). Budget mode prunes ranks 0..k, which equals "score > pool[k]" whenever the scores
        # are distinct and can still split a run of equal scores (e.g. an untrained model's gammas).
        rank = torch.empty(self.total, dtype=torch.long)
        rank[order] = torch.arange(self.total)
        self.ranks: list[torch.Tensor | None] = []
        at = 0
        for g in self.group_scores:
            if g is None:
                self.ranks.append(None)
            else:
                self.ranks.append(rank[at:at + g.numel()])
                at += g.numel()

    # -- threshold semantics -------------------------------------------------------------------
    def threshold_at(self, k: int) -> float:
        """Threshold for index ``k`` into the sorted pool; ``k = -1`` keeps everything."""
        return -math.inf if k < 0 else float(self.values[k])

    def index_for_ratio(self, ratio: float) -> int:
        """The reference code's ``int(total * percent)`` (clamped to the last index)."""
        return min(int(self.total * ratio), self.total - 1)

    def keep_at(self, threshold: float) -> tuple[list[tuple[int, ...]], list[str]]:
        """Keep sets per slot (score > threshold: the reference rule), with the minimum-width guard.
        Returns the keep sets and the names of the slots whose width the guard had to restore."""
        return self._keep(lambda j, g: g > threshold)

    def keep_at_rank(self, k: int) -> tuple[list[tuple[int, ...]], list[str]]:
        """Keep sets with the pooled channels of rank 0..k pruned (``k = -1``: none), guarded."""
        return self._keep(lambda j, g: self.ranks[j] > k)  # type: ignore[operator]

    def _keep(self, keep_mask) -> tuple[list[tuple[int, ...]], list[str]]:
        keep: list[tuple[int, ...]] = [()] * len(self.slots)
        guarded: list[str] = []
        for j, (members, g) in enumerate(zip(self.groups, self.group_scores)):
            width = self.slots[members[0]].base_width
            if g is None:
                idx = tuple(range(width))
            else:
                kept = torch.nonzero(keep_mask(j, g)).flatten()
                need = min(self.min_width, width)
                if kept.numel() < need:
                    kept = top_channels(g, need)
                    guarded += [self.slots[i].name for i in members]
                idx = tuple(int(c) for c in kept)
            for i in members:
                keep[i] = idx
        return keep, guarded

    def widths_at(self, k: int) -> tuple[int, ...]:
        """Widths with the pooled channels of rank 0..k pruned (budget mode)."""
        return tuple(len(s) for s in self.keep_at_rank(k)[0])

    def ties_split(self, k: int) -> bool:
        """Whether rank ``k`` cuts through a run of equal scores (the reference rule could not)."""
        return 0 <= k < self.total - 1 and bool(self.values[k] == self.values[k + 1])

    # -- budget ----------------------------------------------------------------------------------
    def index_for_budget(self, target: int, kind: str = "params") -> int:
        """The pool index whose keep sets' count (params or MACs) is closest to ``target``
        (bisection: counts are non-increasing in the index). BudgetError outside the reachable range."""

        def params(k: int) -> int:
            return count(self.base.replace(widths=self.widths_at(k), selections=None), kind)

        lo, hi = -1, self.total - 1
        p_lo, p_hi = params(lo), params(hi)
        unit = "MACs" if kind == "macs" else "params"
        if not p_hi <= target <= p_lo:
            raise BudgetError(
                f"budget {target:,} {unit} is outside what pruning {self.base.model_name} with this method can reach "
                f"({p_hi:,} to {p_lo:,} {unit}, the minimum keeping {self.min_width} channel(s) per slot); "
                f"choose a budget in that range"
            )
        return closest_pool_index(params, lo, hi, target)


def closest_pool_index(params, lo: int, hi: int, target: int) -> int:
    """Bisection over a sorted score pool: ``params(k)`` (parameters left when the ``k`` lowest
    scores are pruned, -1 = none) is non-increasing in ``k``, and ``params(lo) >= target >=
    params(hi)``. Returns the index whose count is closest to ``target``."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if params(mid) >= target:
            lo = mid
        else:
            hi = mid
    return lo if (params(lo) - target) < (target - params(hi)) else hi


def ratio_for_index(k: int, total: int) -> float:
    """A ratio r with ``int(total * r) == k`` (the inverse of the reference's index rule)."""
    if k <= 0:
        return 0.0
    r = k / total
    while int(total * r) < k:
        r = math.nextafter(r, 1.0)
    return r


# ------------------------------------------------------------------------------------------------
# Keep sets -> result
# ------------------------------------------------------------------------------------------------
def arch_from_keep(base: Architecture, keep: Sequence[Sequence[int]]) -> Architecture:
    """The narrow architecture implied by per-slot keep sets (selections for selection slots;
    a selection equal to the first ``width`` channels is stored as ``None``)."""
    slots = get_family(base.family).slots(base)
    widths = tuple(len(k) for k in keep)
    sels = []
    for s, k in zip(slots, keep):
        if s.kind == "select":
            sels.append(None if tuple(k) == tuple(range(len(k))) else tuple(int(i) for i in k))
    return base.replace(widths=widths, selections=tuple(sels) if sels else None, name=None)


def check_keep(base: Architecture, keep: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Validate keep sets: one per slot, sorted unique in-range indices, >= min width, ties equal."""
    fam = get_family(base.family)
    slots = fam.slots(base)
    if len(keep) != len(slots):
        raise ConfigError(f"expected one keep set per slot ({len(slots)}), got {len(keep)}")
    out = []
    tied: dict[str, tuple[int, ...]] = {}
    for s, k in zip(slots, keep):
        k = tuple(int(i) for i in k)
        if list(k) != sorted(set(k)) or (k and not 0 <= k[0] <= k[-1] < s.base_width):
            raise ConfigError(f"keep set of slot {s.name} must be sorted unique indices in [0, {s.base_width}), got {list(k)[:8]}")
        if len(k) < fam.min_width:
            raise ConfigError(f"slot {s.name} keeps {len(k)} channels, below the minimum {fam.min_width}")
        if s.tie is not None and tied.setdefault(s.tie, k) != k:
            raise ConfigError(f"tied slots ({s.tie}) must keep the same channels; {s.name} differs")
        out.append(k)
    return out


def inherit_state_dict(model: nn.Module, base: Architecture, keep: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """The base model's tensors sliced to the kept channels: loads strictly into
    ``build_model(arch_from_keep(base, keep))``.

    Each conv keeps its kept output filters and, of those, the input channels the previous layer
    kept; BN keeps its kept channels; linears keep the input features of the last slot. Selection
    buffers (PreResNet/DenseNet ``ChannelSelect.indices``) record the kept indices, since those convs
    read a selected subset of channels that are themselves never pruned.

    Exactness: the pruned model computes exactly what the base model computes with every pruned
    channel zeroed (each slot's BN output masked; for ResNet also the residual stream after every
    block), for all four families (tests/test_prune_methods.py checks it). CIFAR ResNet's identity
    shortcuts are exact inside a stage (one keep set per stage); between stages the option-A shortcut
    of the pruned model gets a ``route`` (see ``prunesearch.models.BasicBlock``) that sends each kept
    input channel to the position of the same base channel among the kept outputs, and drops it
    (zero) when that output channel is pruned, so stage outputs can be pruned independently.
    """
    plan = module_plan(base).slicing
    idx = [torch.tensor(list(k), dtype=torch.long) for k in keep]
    out: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        mod, _, pname = key.rpartition(".")
        spec = plan.get(mod)
        t = t.detach()
        if spec is None or pname == "num_batches_tracked":
            out[key] = t.clone()
            continue
        kind, o, i = spec
        if kind == "route":
            out[key] = _route(t, idx[o], idx[i]).to(t.device)  # type: ignore[index]
            continue
        if kind == "select":
            out[key] = idx[o].clone().to(t.device)  # type: ignore[index]
            continue
        if o is not None:
            t = t.index_select(0, idx[o].to(t.device))
        if i is not None and t.dim() >= 2:
            t = t.index_select(1, idx[i].to(t.device))
        out[key] = t.clone()
    return out


def _route(route: torch.Tensor, keep_out: torch.Tensor, keep_in: torch.Tensor) -> torch.Tensor:
    """The pruned option-A route: output position j (base channel ``keep_out[j]``) copies the pruned
    input position of the base input channel ``route[keep_out[j]]`` if that channel is kept, else
    zero (index ``len(keep_in)``). ``route`` is in base numbering (base input width = zero)."""
    pos = {int(c): p for p, c in enumerate(keep_in.tolist())}
    src = route.detach().cpu()[keep_out.cpu()].tolist()
    return torch.tensor([pos.get(int(c), len(pos)) for c in src], dtype=route.dtype)


def result_from_keep(
    method: PruningMethod | str,
    model: nn.Module,
    base: Architecture,
    keep: Sequence[Sequence[int]],
    *,
    ratio: float | None = None,
    threshold: float | None = None,
    info: dict[str, Any] | None = None,
) -> PruneResult:
    """Validate keep sets and turn them into a PruneResult (architecture + inherited weights)."""
    keep = check_keep(base, keep)
    arch = arch_from_keep(base, keep)
    name = method if isinstance(method, str) else method.name
    return PruneResult(
        arch=arch, base=base, method=name, state_dict=inherit_state_dict(model, base, keep), keep=tuple(keep),
        ratio=ratio, threshold=threshold, info=dict(info or {}),
    )


def prune_by_scores(
    method: PruningMethod | str,
    model: nn.Module,
    base: Architecture,
    scores: Sequence[torch.Tensor | None],
    *,
    budget: float | None = None,
    ratio: float | None = None,
    combine: str = "mean",
    info: dict[str, Any] | None = None,
) -> PruneResult:
    """One global threshold over per-slot channel scores, at a ``ratio`` (reference semantics:
    keep iff score > sorted[int(total * ratio)]) or at a parameter ``budget`` (bisection on the index
    k into the sorted pool, pruning ranks 0..k: the same keep sets as the threshold ``sorted[k]``
    when scores are distinct, and able to split a run of equal scores, noted in
    ``info["ties_split"]``), with tied slots and the width guard."""
    pool = ChannelPool(base, scores, combine=combine)
    info = dict(info or {})
    info["pool_size"] = pool.total
    if budget is not None:
        b = Budget.of(budget)
        target = b.resolve(base)
        k = pool.index_for_budget(target, b.kind)
        info["budget"] = b.value
        info["budget_kind"] = b.kind
        info["target_params"] = target
    elif ratio is not None:
        k = pool.index_for_ratio(float(ratio))
    else:
        raise ConfigError("give budget= (fraction or parameter count) or ratio= (global prune ratio)")
    thr = pool.threshold_at(k)
    if budget is not None:
        keep, guarded = pool.keep_at_rank(k)
        if pool.ties_split(k):
            info["ties_split"] = (
                f"{thr:g} is shared by kept and pruned channels; ties were broken by slot and channel order "
                f"(the reference rule keeps or drops all of them)"
            )
    else:
        keep, guarded = pool.keep_at(thr)
    if k < 0:
        info["note"] = "the budget is the unpruned model: nothing was pruned (threshold -inf)"
    info["guarded_slots"] = guarded
    pruned = sum(
        g.numel() - len(keep[m[0]]) for m, g in zip(pool.groups, pool.group_scores) if g is not None
    )
    info["pruned_fraction"] = pruned / pool.total
    out_ratio = float(ratio) if ratio is not None else ratio_for_index(k, pool.total)
    result = result_from_keep(method, model, base, keep, ratio=out_ratio,
                              threshold=None if k < 0 else thr, info=info)
    if budget is not None:
        achieved = count(result.arch, info["budget_kind"])
        err = abs(achieved - info["target_params"]) / info["target_params"]
        result.info["budget_rel_error"] = err
        if err > TOLERANCE:
            result.info["budget_note"] = (
                f"{achieved:,} is the closest a single threshold gets to {info['target_params']:,} "
                f"({100 * err:.2f} % off): one channel (group) is a bigger step than {100 * TOLERANCE:.1f} % here; "
                "the budget solver re-centres it before any comparison"
            )
    return result
