"""ThiNet (Luo et al. 2017; REFERENCE §4): greedy channel selection by the next layer's reconstruction.

Layer by layer, as in the paper's framework (Sec. 3): the slots (tie groups) are visited in network
order and every step reads the activations of the network pruned so far (earlier slots already
narrowed and their consumers rescaled; :func:`prunesearch.prune._reconstruct.sequential_pass`). The
paper fine-tunes a little after each layer; here the fine-tuned arm trains once at the end, starting
from the weights this pass rescaled.

For every slot, the channels are chosen by what their *consumers* (the next conv or linear) need:
sample positions of the consumer's output on a few training images, compute each input channel's
contribution ``X[:, c]`` there, and greedily remove, one at a time, the channel whose removal keeps
``||sum_{removed} X[:, c]||^2`` (the change of the consumer's output) smallest, until the slot is at
its target width. The kept channels' consumer weights are then rescaled by least squares (ThiNet's
"minimise the reconstruction error" step: one factor per kept channel, fitted to the consumer's full
output on the same pruned-so-far input; ``rescale=False`` keeps the sliced weights). Tied slots
(residual adds) pool the samples of all their consumers and keep one channel set.

The target widths are predefined, as in the paper: ``variant=`` (a named variant such as
``resnet56-b``) or ``target=`` (an Architecture), ``budget=`` (the uniform widths of the one budget
solver at that parameter budget) or ``ratio=`` (fraction of channels pruned in every slot).
Options: ``n_images`` (default 64) images and ``n_samples`` (default 2048) sampled outputs per
consumer; ``seed`` for the sampling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..arch import Architecture, Budget
from ..errors import ConfigError
from ._reconstruct import Step, channel_scaling, sequential_pass, target_widths
from .base import PruneResult, PruningMethod, check_model, check_request, register
from .channels import result_from_keep


def greedy_removal(x: torch.Tensor, n_remove: int) -> list[int]:
    """ThiNet's greedy step: columns of ``x`` (samples x channels) removed one by one, each time the
    one that keeps the squared norm of the removed columns' sum smallest."""
    n_ch = x.shape[1]
    removed: list[int] = []
    running = torch.zeros(x.shape[0], dtype=x.dtype)
    col_sq = (x * x).sum(0)
    alive = torch.ones(n_ch, dtype=torch.bool)
    for _ in range(n_remove):
        # ||running + x_j||^2 = ||running||^2 + 2 running.x_j + ||x_j||^2
        crit = 2 * (running @ x) + col_sq
        crit[~alive] = float("inf")
        j = int(torch.argmin(crit))
        removed.append(j)
        alive[j] = False
        running += x[:, j]
    return removed


@register
class ThiNet(PruningMethod):
    """Greedy channel selection minimising the next layer's output change (predefined widths)."""

    name = "thinet"
    structured = True
    needs_data = True

    def prune(self, model: nn.Module, arch: Architecture, *, budget: float | None = None,
              ratio: float | None = None, data: Any = None, variant: str | None = None,
              target: Architecture | None = None, n_images: int = 64, n_samples: int = 2048, seed: int = 0,
              rescale: bool = True, **options: Any) -> PruneResult:
        if options:
            raise ConfigError(f"thinet takes budget=, ratio=, variant=, target=, n_images=, n_samples=, seed=, rescale=; "
                              f"got {', '.join(sorted(options))}")
        check_request(self, arch, budget, ratio, allow_neither=variant is not None or target is not None, data=data)
        check_model(model, arch)
        widths, info = target_widths(self.name, arch, budget=budget, ratio=ratio, variant=variant, target=target)

        def select(group: int, steps: list[Step], width: int) -> list[int]:
            x = torch.cat([st.samples.contributions() for st in steps])
            gone = set(greedy_removal(x, x.shape[1] - width))
            return [c for c in range(x.shape[1]) if c not in gone]

        def refit(step: Step, kept: torch.Tensor) -> torch.Tensor | None:
            if not rescale:
                return None
            s = step.samples
            return s.weight[:, kept] * channel_scaling(s, kept)[None, :, None]

        keep, work = sequential_pass(model, arch, data, widths, select=select, refit=refit,
                                     n_images=n_images, n_samples=n_samples, seed=seed)
        info.update(criterion="greedy reconstruction of the next layer's output", n_images=n_images,
                    n_samples=n_samples, procedure="layer by layer on the network pruned so far")
        result = result_from_keep(self, work, arch, keep, ratio=ratio, info=info)
        if budget is not None:
            b = Budget.of(budget)
            target_p = b.resolve(arch)
            result.info.update(target_params=target_p, budget_kind=b.kind,
                               budget_rel_error=abs(b.measure(result.arch) - target_p) / target_p)
        return result


__all__ = ["ThiNet", "greedy_removal"]
