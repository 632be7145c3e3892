"""L1-norm filter pruning (Li et al. 2017), predefined and automatic (REFERENCE §2, §4).

- Predefined target (the paper's setting): ``variant="resnet56-b"`` (any name in
  ``prunesearch.arch.NAMED_VARIANTS``) or ``target=<Architecture>`` fixes every slot's width; in each
  pruned slot the filters with the largest sum of |W| are kept. Tied slots (residual adds) are ranked
  by the mean of their filters' norms; the published variants never touch them.
- Automatic (``budget=`` or ``ratio=``): every layer's filter norms are normalised (``normalize``:
  ``max`` (default) divides by the layer's largest norm, ``mean`` by its mean, ``none`` keeps raw
  norms, which are not comparable across layers), pooled, and cut with one global threshold with the
  same semantics and guard as slimming; a budget is reached by bisection.

Selection slots (PreResNet's block inputs, all of DenseNet's slots) have no filters of their own:
on PreResNet they stay whole (only each block's conv1/conv2 are ranked); DenseNet is refused with a
pointer to slimming.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..arch import Architecture, resolve_model
from ..arch.io import NAMED_VARIANTS
from ..errors import ConfigError
from .base import PruneResult, PruningMethod, check_model, check_request, register
from .channels import filter_norms, keep_top, prune_by_scores, result_from_keep

NORMALIZERS = ("max", "mean", "none")


def _normalise(v: torch.Tensor | None, how: str) -> torch.Tensor | None:
    if v is None or how == "none":
        return v
    d = v.max() if how == "max" else v.mean()
    return v / d if float(d) > 0 else v


@register
class L1Norm(PruningMethod):
    """Keep the filters with the largest L1 norm, per layer (predefined widths) or globally
    (normalised norms, one threshold: ``budget=`` / ``ratio=``)."""

    name = "l1norm"
    structured = True
    families = ("vgg", "resnet", "preresnet")

    def prune(
        self,
        model: nn.Module,
        arch: Architecture,
        *,
        budget: float | None = None,
        ratio: float | None = None,
        data: Any = None,
        variant: str | None = None,
        target: Architecture | None = None,
        normalize: str = "max",
        **options: Any,
    ) -> PruneResult:
        if options:
            raise ConfigError(
                f"l1norm takes budget=, ratio=, variant=, target= or normalize=, got {', '.join(sorted(options))}"
            )
        if arch.family == "densenet":
            raise ConfigError(
                "l1norm ranks conv filters, but densenet's prunable slots are input selections (no filters to rank); "
                "use slimming (or magnitude) for densenet"
            )
        predefined = variant is not None or target is not None
        if predefined and (budget is not None or ratio is not None):
            raise ConfigError("l1norm: give a predefined variant=/target= or an automatic budget=/ratio=, not both")
        if variant is not None and target is not None:
            raise ConfigError("l1norm: give variant= (a name) or target= (an Architecture), not both")
        check_request(self, arch, budget, ratio, allow_neither=predefined)
        check_model(model, arch)
        norms = filter_norms(model, arch, p=1)
        if predefined:
            return self._predefined(model, arch, norms, variant, target)
        if normalize not in NORMALIZERS:
            raise ConfigError(f"unknown normalize '{normalize}'; choose one of {', '.join(NORMALIZERS)}")
        scores = [_normalise(v, normalize) for v in norms]
        return prune_by_scores(self, model, arch, scores, budget=budget, ratio=ratio,
                               info={"normalize": normalize, "variant": "global"})

    def _predefined(self, model: nn.Module, arch: Architecture, norms: list[torch.Tensor | None],
                    variant: str | None, target: Architecture | None) -> PruneResult:
        if variant is not None:
            key = variant.strip().lower()
            if key not in NAMED_VARIANTS:
                raise ConfigError(f"unknown l1norm variant '{variant}'; known: {', '.join(sorted(NAMED_VARIANTS))}")
            target = resolve_model(key, num_classes=arch.num_classes, in_channels=arch.in_channels,
                                   input_size=arch.input_size)
        assert target is not None
        if (target.family, target.depth, target.blocks) != (arch.family, arch.depth, arch.blocks):
            raise ConfigError(
                f"l1norm target {target.label} is not a pruned form of {arch.model_name}; "
                f"prune a {target.model_name} base model"
            )
        keep = keep_top(arch, norms, target.widths)
        label = variant.strip().lower() if variant is not None else (target.name or "target")
        return result_from_keep(self, model, arch, keep, info={"variant": label})


__all__ = ["L1Norm"]
