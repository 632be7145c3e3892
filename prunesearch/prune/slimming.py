"""Network Slimming (Liu et al. 2017), as the reference code runs it (REFERENCE §4).

Training: an L1 penalty on every BN scaling factor, applied as ``grad += s * sign(gamma)`` after each
backward pass (the reference's ``s`` = 1e-4 for VGG, 1e-5 for ResNet/PreResNet/DenseNet).

How strong is strong enough? The penalty's total pull on a gamma is about ``s x sum(lr over all
steps)`` (more with momentum). The reference's 160-epoch CIFAR run (782 steps/epoch, lr
0.1/0.01/0.001 for 80/40/40 epochs: sum of lr ~ 6,600) has long enough for the loss to hold the
important gammas up while the penalty drives the rest to zero. A 6-epoch demo of ~700 steps at lr
0.05 (sum ~ 18) with the same ``s`` pulls ~1e-4: nothing, and the "pattern" is then the noise of a
few unregularised steps; with the reference's *relative* pull (1.32 x the gamma init) it collapses
every gamma and the base to chance (measured: resnet8 on mnist5k, test 10 %). So ``s="auto"`` (the
default when the caller gives the run's ``lr_sum``) is ``s = 0.15 * gamma_init / lr_sum``, a
calibration measured on that demo (``s`` = 0.001 / 0.005 / 0.0085 / 0.02: 0 % / 0.4 % / 22 % / 67 %
of the gammas below 1 % of the largest, test accuracy 97.0 / 97.0 / 95.9 / 93.7 %), not a law: the
discover diagnostic reports what it did on each run. The paper specs in ``search_spaces/paper`` give
the reference's ``s`` explicitly. :func:`sparsity_diagnostic` says whether training did sparsify.
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
#: BN gamma at initialisation (Network Slimming's VGG starts at 0.5; the others at 1)
GAMMA_INIT = {"vgg": 0.5, "resnet": 1.0, "preresnet": 1.0, "densenet": 1.0}
#: total pull / gamma init of the reference VGG run (1e-4 x ~6,600 / 0.5)
RELATIVE_PULL = 0.15  # calibrated on the resnet8/mnist5k demo (see the module docstring)


def auto_sparsity(family: str, lr_sum: float) -> float:
    """``s`` whose total pull over a run with ``lr_sum`` (the sum of the learning rate over every
    optimiser step) is RELATIVE_PULL x the gamma init (see the module docstring)."""
    if not lr_sum > 0:
        raise ConfigError(f"lr_sum must be positive (the sum of the learning rate over all steps), got {lr_sum!r}")
    return RELATIVE_PULL * GAMMA_INIT.get(family, 1.0) / float(lr_sum)


def sparsity_diagnostic(scores: list, thresholds: dict[str, float] | None = None, gamma_init: float = 1.0) -> dict:
    """Did sparsity training sparsify? From the pooled |gamma| of every slot:

    - ``near_zero``: share of channels with |gamma| below 1 % of the largest;
    - ``median_ratio``: median |gamma| / its initial value (1.0 = nothing moved);
    - per budget (``thresholds``: label -> the threshold that budget used): ``gap``, the share of
      the pooled range between the largest pruned and the smallest kept |gamma| relative to the
      threshold (0 = pruned and kept channels are indistinguishable at the cut).

    ``distinguishable`` is False when the pattern could be the unregularised start (fewer than 5 %
    of channels near zero and the median still within 20 % of its initial value) or when the penalty
    ``collapsed`` every factor (the largest below 10 % of the initial value)."""
    import torch

    pool = torch.cat([t.double().flatten() for t in scores if t is not None])
    top = float(pool.max()) if pool.numel() else 0.0
    near_zero = float((pool < 0.01 * top).double().mean()) if top > 0 else 1.0
    median = float(pool.median()) if pool.numel() else 0.0
    out: dict[str, Any] = {"channels": int(pool.numel()), "max": top, "median": median,
                           "near_zero": near_zero, "median_ratio": median / gamma_init if gamma_init else None}
    gaps = {}
    for label, thr in (thresholds or {}).items():
        below, above = pool[pool <= thr], pool[pool > thr]
        if below.numel() and above.numel() and top > 0:
            gaps[label] = (float(above.min()) - float(below.max())) / top
    out["gaps"] = gaps
    out["collapsed"] = top < 0.1 * gamma_init  # every factor driven (near) zero: the pattern is noise
    out["distinguishable"] = not out["collapsed"] and not (
        near_zero < 0.05 and out["median_ratio"] is not None and abs(out["median_ratio"] - 1.0) < 0.2)
    return out


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
                    s: float | str | None = None, lr_sum: float | None = None, **options: Any) -> TrainHook:
        """The BN L1 penalty. ``s``: a strength, ``"auto"`` (the default when ``lr_sum`` is given:
        see :func:`auto_sparsity`), or None without ``lr_sum``: the reference's per-family value."""
        # budget/ratio: slimming's penalty does not depend on the target (one base serves all budgets)
        if options:
            raise ConfigError(f"slimming's regulariser takes s= (sparsity strength, or auto) and lr_sum=, got "
                              f"{', '.join(sorted(options))}")
        if s is None:
            s = "auto" if lr_sum is not None else DEFAULT_SPARSITY[arch.family]
        if s == "auto":
            if lr_sum is None:
                raise ConfigError("slimming s=auto needs the run's lr_sum (the sum of the learning rate over every step)")
            s = auto_sparsity(arch.family, lr_sum)
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise ConfigError(f"slimming sparsity s must be a number >= 0 or 'auto', got {s!r}")
        return BNL1Penalty(float(s))

    def diagnose(self, model: nn.Module, arch: Architecture, thresholds: dict[str, float] | None = None) -> dict:
        """:func:`sparsity_diagnostic` of a (sparsity-trained) base model."""
        from .channels import bn_scores

        return sparsity_diagnostic(bn_scores(model, arch), thresholds, GAMMA_INIT.get(arch.family, 1.0))

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
