"""Regression-based channel pruning (He, Zhang & Sun 2017; REFERENCE §4).

Layer by layer, as in the paper's "whole model pruning" (Sec. 3.2): the slots (tie groups) are visited
in network order; each step's inputs ``X`` are sampled on the network pruned so far (earlier slots
narrowed, their consumers refitted) and its target ``Y`` is the *original* network's output at the
same positions, so the accumulated error of earlier layers is corrected instead of compounded
(:func:`prunesearch.prune._reconstruct.sequential_pass`). The fine-tuned arm starts from the refitted
weights. Two steps per slot, on sampled outputs of the slot's consumers (the next conv/linear):

1. **LASSO channel selection**: ``beta = argmin 1/(2M) ||y - X beta||^2 + alpha ||beta||_1`` where
   ``X[:, c]`` is input channel c's contribution to a sampled output and ``y`` the original
   network's output there;
   ``alpha`` is bisected (log scale) until at most the target number of channels has a non-zero
   ``beta``; the kept channels are the target number with the largest ``|beta|``.
2. **Least-squares reconstruction**: the consumer's weights over the kept channels are refitted to
   reproduce the original network's sampled output (ridge-regularised towards the current weights, so
   that small sample sizes stay well posed; the paper solves plain least squares on 5000 images x 10
   positions).

Targets are predefined (as in the paper): ``variant=``/``target=``, ``budget=`` (uniform widths of the
one budget solver) or ``ratio=`` (fraction pruned per slot). Tied slots pool their consumers'
samples. Options: ``n_images`` (64), ``n_samples`` (1024 per consumer), ``seed``, ``ridge`` (1e-3).
scikit-learn's ``Lasso`` does the selection.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..arch import Architecture, Budget, get_family
from ..errors import ConfigError
from ._reconstruct import Step, ridge_refit, sequential_pass, target_widths
from .base import PruneResult, PruningMethod, check_model, check_request, register
from .channels import result_from_keep, tie_groups


def lasso_select(x: torch.Tensor, k: int, iterations: int = 24,
                 y: torch.Tensor | None = None) -> tuple[list[int], float]:
    """The ``k`` channels (columns of ``x``) LASSO keeps: bisect ``alpha`` so that at most ``k``
    coefficients are non-zero (the smallest such alpha), then take the ``k`` largest ``|beta|``
    (ties and zeros broken by the column's norm). ``y``: the output to reproduce (default: the sum
    of the columns). Returns (sorted kept indices, alpha)."""
    from sklearn.linear_model import Lasso

    X = x.numpy()
    y = X.sum(1) if y is None else y.double().numpy()
    scale = float(np.abs(X).max()) or 1.0
    X, y = X / scale, y / scale  # conditioning only; the selection is scale-free
    m = X.shape[0]
    a_hi = float(np.abs(X.T @ y).max()) / m + 1e-12  # at or above this every beta is zero
    a_lo = a_hi * 1e-6
    norms = np.linalg.norm(X, axis=0)

    def fit(alpha: float) -> np.ndarray:
        model = Lasso(alpha=alpha, fit_intercept=False, max_iter=2000, tol=1e-4, selection="cyclic")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning on tiny samples is harmless here
            model.fit(X, y)
        return model.coef_

    best = fit(a_hi)
    best_alpha = a_hi
    lo, hi = math.log(a_lo), math.log(a_hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        beta = fit(math.exp(mid))
        if np.count_nonzero(beta) <= k:
            best, best_alpha, hi = beta, math.exp(mid), mid
        else:
            lo = mid
    order = sorted(range(X.shape[1]), key=lambda c: (-abs(best[c]), -norms[c], c))[:k]
    return sorted(order), best_alpha


@register
class RegressionPruning(PruningMethod):
    """LASSO channel selection + least-squares reconstruction of the next layer (predefined widths)."""

    name = "regression"
    structured = True
    needs_data = True

    def prune(self, model: nn.Module, arch: Architecture, *, budget: float | None = None,
              ratio: float | None = None, data: Any = None, variant: str | None = None,
              target: Architecture | None = None, n_images: int = 64, n_samples: int = 1024, seed: int = 0,
              ridge: float = 1e-3, **options: Any) -> PruneResult:
        if options:
            raise ConfigError(f"regression takes budget=, ratio=, variant=, target=, n_images=, n_samples=, seed=, ridge=; "
                              f"got {', '.join(sorted(options))}")
        check_request(self, arch, budget, ratio, allow_neither=variant is not None or target is not None, data=data)
        check_model(model, arch)
        widths, info = target_widths(self.name, arch, budget=budget, ratio=ratio, variant=variant, target=target)
        slots = get_family(arch.family).slots(arch)
        groups = tie_groups(slots)
        alphas: dict[str, float] = {}

        def select(group: int, steps: list[Step], width: int) -> list[int]:
            x = torch.cat([st.samples.contributions() for st in steps])
            y = torch.cat([st.y() for st in steps])
            kept, alpha = lasso_select(x, width, y=y)
            alphas[slots[groups[group][0]].name] = alpha
            return kept

        def refit(step: Step, kept: torch.Tensor) -> torch.Tensor:
            return ridge_refit(step.samples, kept, ridge, target=step.target)

        keep, work = sequential_pass(model, arch, data, widths, select=select, refit=refit, n_images=n_images,
                                     n_samples=n_samples, seed=seed, original_target=True)
        info.update(criterion="LASSO on the next layer's input channels + least-squares reconstruction",
                    n_images=n_images, n_samples=n_samples, lasso_alpha=alphas,
                    procedure="layer by layer: inputs from the network pruned so far, targets from the original")
        result = result_from_keep(self, work, arch, keep, ratio=ratio, info=info)
        if budget is not None:
            b = Budget.of(budget)
            target_p = b.resolve(arch)
            result.info.update(target_params=target_p, budget_kind=b.kind,
                               budget_rel_error=abs(b.measure(result.arch) - target_p) / target_p)
        return result


__all__ = ["RegressionPruning", "lasso_select"]
