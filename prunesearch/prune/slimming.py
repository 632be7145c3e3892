"""Network Slimming (Liu et al. 2017), as the reference code runs it (REFERENCE §4).

Training: an L1 penalty on every BN scaling factor, applied as ``grad += s * sign(gamma)`` after each
backward pass (``s`` = 1e-4 for VGG, 1e-5 for ResNet/PreResNet/DenseNet).
Pruning: pool |gamma| of the BN over every slot's channels, sort ascending, threshold =
``sorted[int(total * percent)]``, keep the channels with |gamma| > threshold. prunesearch adds:
the minimum-width guard (the reference code crashes when a layer loses every channel), tied
slots (CIFAR ResNet's residual adds: stem + block outputs of a stage share one keep set, scored by
the mean |gamma| of the tied BNs), and a parameter ``budget`` reached by bisection on the threshold.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError
from ..train import TrainHook
from .base import PruneResult, PruningMethod, check_model, check_request, register
from .channels import bn_scores, prune_by_scores

#: the reference code's sparsity strength per family
DEFAULT_SPARSITY = {"vgg": 1e-4, "resnet": 1e-5, "preresnet": 1e-5, "densenet": 1e-5}


class BNL1Penalty(TrainHook):
    """Adds ``s * sign(gamma)`` to the gradient of every BatchNorm2d weight (the subgradient of
    ``s * sum |gamma|``), after backward and before the optimiser step."""

    def __init__(self, s: float) -> None:
        if not s >= 0:
            raise ConfigError(f"slimming sparsity s must be >= 0, got {s!r}")
        self.s = float(s)

    def after_backward(self, model: nn.Module) -> None:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d) and m.weight is not None and m.weight.grad is not None:
                    m.weight.grad.add_(torch.sign(m.weight), alpha=self.s)

    def state_dict(self) -> dict[str, Any]:
        return {"s": self.s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.s = float(state.get("s", self.s))

    def __repr__(self) -> str:
        return f"BNL1Penalty(s={self.s:g})"


@register
class Slimming(PruningMethod):
    """Network Slimming: prune channels whose BN scaling factor is small (one global threshold).

    ``regularizer(arch, s=None)``: the BN L1 penalty (default ``s`` per family, see DEFAULT_SPARSITY).
    ``prune(model, arch, budget=... | ratio=...)``: ``ratio`` is the reference code's ``--percent``.
    """

    name = "slimming"
    structured = True

    def regularizer(self, arch: Architecture, *, budget: float | None = None, ratio: float | None = None,
                    s: float | None = None, **options: Any) -> TrainHook:
        # budget/ratio: slimming's penalty does not depend on the target (one base serves all budgets)
        if options:
            raise ConfigError(f"slimming's regulariser takes s= (sparsity strength) only, got {', '.join(sorted(options))}")
        return BNL1Penalty(DEFAULT_SPARSITY[arch.family] if s is None else s)

    def prune(
        self,
        model: nn.Module,
        arch: Architecture,
        *,
        budget: float | None = None,
        ratio: float | None = None,
        data: Any = None,
        **options: Any,
    ) -> PruneResult:
        if options:
            raise ConfigError(f"slimming takes budget= or ratio= only, got {', '.join(sorted(options))}")
        check_request(self, arch, budget, ratio)
        check_model(model, arch)
        return prune_by_scores(self, model, arch, bn_scores(model, arch), budget=budget, ratio=ratio)
