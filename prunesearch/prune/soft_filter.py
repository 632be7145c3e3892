"""Soft Filter Pruning (He et al. 2018; REFERENCE §4).

While the base model trains, at the end of every epoch the lowest-L2-norm filters of each layer are
set to zero but keep being updated (they may grow back: the pruning is "soft"). After the last
epoch the zeroed filters are removed for good.

How much: SFP's ``rate`` is the fraction of filters each layer *keeps* (0.7 keeps 70 %); here
``ratio`` is the fraction pruned per layer (``ratio = 1 - rate``, kept = ``w - int(w * ratio)`` as
in the SFP code), or ``budget`` gives every slot the uniform widths of the one budget solver. The
regulariser and ``prune`` must get the same ``budget``/``ratio`` (``prunesearch rethink`` does that).
Tied slots (residual adds) are scored by the mean L2 norm of their members and share one keep set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..arch import Architecture, Budget, get_family, scale_to_budget
from ..errors import ConfigError
from ..train import TrainHook
from .base import PruneResult, PruningMethod, check_request, register
from .channels import filter_norms, keep_top, module_plan, result_from_keep


def target_widths(base: Architecture, budget: float | None = None, ratio: float | None = None) -> tuple[int, ...]:
    """Per-slot widths SFP prunes to: uniform at a parameter ``budget`` (the one budget solver), or
    ``w - int(w * ratio)`` per slot (at least the family's minimum width)."""
    if budget is not None:
        return scale_to_budget(base, budget).widths
    if ratio is None:
        raise ConfigError("soft_filter needs budget= (fraction or parameter count) or ratio= (fraction of filters pruned per layer, 1 - rate)")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ConfigError(f"soft_filter ratio is the fraction of filters pruned per layer, in [0, 1); got {ratio!r}")
    m = get_family(base.family).min_width
    return tuple(max(m, w - int(w * float(ratio))) for w in base.widths)


class SoftFilterHook(TrainHook):
    """Zero every slot's lowest-L2 filters at the end of each epoch (the filters keep training)."""

    def __init__(self, base: Architecture, widths: Sequence[int]) -> None:
        self.base = base
        self.widths = tuple(int(w) for w in widths)
        self.filters = module_plan(base).filters
        self.zeroed_epochs = 0

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        keep = keep_top(self.base, filter_norms(model, self.base, p=2), self.widths)
        mods = dict(model.named_modules())
        for name, k, w in zip(self.filters, keep, self.base.widths):
            if name is None or len(k) == w:
                continue
            weight = mods[name].weight
            drop = torch.ones(w, dtype=torch.bool)
            drop[list(k)] = False
            weight[drop.to(weight.device)] = 0.0
        self.zeroed_epochs += 1

    def state_dict(self) -> dict[str, Any]:
        return {"zeroed_epochs": self.zeroed_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.zeroed_epochs = int(state.get("zeroed_epochs", 0))


@register
class SoftFilterPruning(PruningMethod):
    """SFP: per-layer L2-norm filter selection, applied softly every epoch, removed at the end."""

    name = "soft_filter"
    structured = True
    # SFP prunes filters; PreResNet/DenseNet slots are input selections without filters of their own.
    families = ("vgg", "resnet")

    def regularizer(self, arch: Architecture, *, budget: float | None = None, ratio: float | None = None,
                    **options: Any) -> SoftFilterHook:
        if options:
            raise ConfigError(f"soft_filter's regulariser takes budget= or ratio=, got {', '.join(sorted(options))}")
        check_request(self, arch, budget, ratio)
        return SoftFilterHook(arch, target_widths(arch, budget, ratio))

    def prune(self, model: nn.Module, arch: Architecture, *, budget: float | None = None,
              ratio: float | None = None, data: Any = None, **options: Any) -> PruneResult:
        if options:
            raise ConfigError(f"soft_filter takes budget= or ratio=, got options {', '.join(sorted(options))}")
        check_request(self, arch, budget, ratio)
        widths = target_widths(arch, budget, ratio)
        keep = keep_top(arch, filter_norms(model, arch, p=2), widths)
        info: dict[str, Any] = {"criterion": "L2 norm of filters, per layer"}
        if budget is not None:
            b = Budget.of(budget)
            target = b.resolve(arch)
            info.update(budget=b.value, budget_kind=b.kind, target_params=target)
        result = result_from_keep(self, model, arch, keep, ratio=ratio, info=info)
        if budget is not None:
            result.info["budget_rel_error"] = abs(b.measure(result.arch) - target) / target
        return result
