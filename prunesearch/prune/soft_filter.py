"""Soft Filter Pruning (He et al. 2018; REFERENCE §4).

While the base model trains, once before the first epoch and at the end of every epoch the
lowest-L2-norm filters of every conv are set to zero but keep being updated (they may grow back: the
pruning is "soft"). As in the SFP CIFAR scripts (``--layer_begin 0 --layer_inter 3``), every conv is
masked on its own, block outputs included: a masked full-width network is trained (train it with the
``sfp`` recipe for the scripts' schedule). After the last epoch the architecture is read off: every
untied slot keeps exactly its live (non-zeroed) filters; a residual stream, whose convs were masked
independently, must keep one channel set in a narrow network, so it keeps the channels with the
largest mean L2 norm over its convs (``info["tied_read_off"]`` says when that differs from the
per-conv masks: the narrow network is then not exactly the masked one there).

How much: SFP's ``rate`` is the fraction of filters each layer *keeps* (0.7 keeps 70 %); here
``ratio`` is the fraction pruned per layer (``ratio = 1 - rate``, kept = ``w - int(w * ratio)`` as
in the SFP code), or ``budget`` gives every slot the uniform widths of the one budget solver. The
regulariser and ``prune`` must get the same ``budget``/``ratio`` (``prunesearch rethink`` does that).
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
from .channels import filter_norms, keep_top, module_plan, result_from_keep, top_channels


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


def per_conv_keep(base: Architecture, norms: Sequence[torch.Tensor | None], widths: Sequence[int]) -> list[tuple[int, ...]]:
    """Per slot with filters, its own ``widths[i]`` largest-norm filters (ties: lower index), each
    conv on its own: tied slots are *not* combined (SFP masks every conv independently)."""
    out: list[tuple[int, ...]] = []
    for v, w, b in zip(norms, widths, base.widths):
        if v is None or int(w) >= b:
            out.append(tuple(range(b)))
        else:
            out.append(tuple(int(c) for c in top_channels(v, int(w))))
    return out


class SoftFilterHook(TrainHook):
    """SFP's masking, as its CIFAR scripts do it: once before the first epoch and at the end of every
    epoch, every conv's lowest-L2 filters are zeroed, each conv on its own (block outputs included,
    not one mask per residual stream): a masked full-width network is trained and the zeroed filters
    keep being updated between maskings."""

    def __init__(self, base: Architecture, widths: Sequence[int]) -> None:
        self.base = base
        self.widths = tuple(int(w) for w in widths)
        self.filters = module_plan(base).filters
        self.zeroed_epochs = 0
        self.masked_at_start = False

    def mask(self, model: nn.Module) -> None:
        keep = per_conv_keep(self.base, filter_norms(model, self.base, p=2), self.widths)
        mods = dict(model.named_modules())
        for name, k, w in zip(self.filters, keep, self.base.widths):
            if name is None or len(k) == w:
                continue
            weight = mods[name].weight
            drop = torch.ones(w, dtype=torch.bool)
            drop[list(k)] = False
            weight[drop.to(weight.device)] = 0.0

    def on_epoch_start(self, model: nn.Module, epoch: int, lr: float) -> None:
        if epoch == 0 and not self.masked_at_start:  # the scripts mask the fresh network once
            self.mask(model)
            self.masked_at_start = True

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        self.mask(model)
        self.zeroed_epochs += 1

    def state_dict(self) -> dict[str, Any]:
        return {"zeroed_epochs": self.zeroed_epochs, "masked_at_start": self.masked_at_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.zeroed_epochs = int(state.get("zeroed_epochs", 0))
        self.masked_at_start = bool(state.get("masked_at_start", self.zeroed_epochs > 0))


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
        norms = filter_norms(model, arch, p=2)
        per_conv = per_conv_keep(arch, norms, widths)  # what the masked network ended with
        keep = keep_top(arch, norms, widths)  # tie groups: one channel set (mean L2 norm)
        slots = get_family(arch.family).slots(arch)
        differ = sorted({s.tie for s, k, c in zip(slots, keep, per_conv) if s.tie is not None and k != c})
        info: dict[str, Any] = {"criterion": "L2 norm of filters, per conv (masked full-width training)"}
        if differ:
            info["tied_read_off"] = (
                f"{', '.join(differ)}: the masked network zeroed different filters in each conv writing the "
                f"residual stream; the narrow network keeps one set per stream (largest mean L2 norm)"
            )
        if budget is not None:
            b = Budget.of(budget)
            target = b.resolve(arch)
            info.update(budget=b.value, budget_kind=b.kind, target_params=target)
        result = result_from_keep(self, model, arch, keep, ratio=ratio, info=info)
        if budget is not None:
            result.info["budget_rel_error"] = abs(b.measure(result.arch) - target) / target
        return result
