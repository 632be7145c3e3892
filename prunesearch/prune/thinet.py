"""ThiNet (Luo et al. 2017; REFERENCE §4): greedy channel selection by the next layer's reconstruction.

For every slot, the channels are chosen by what their *consumers* (the next conv or linear) need:
sample positions of the consumer's output on a few training images, compute each input channel's
contribution ``X[:, c]`` there, and greedily remove, one at a time, the channel whose removal keeps
``||sum_{removed} X[:, c]||^2`` (the change of the consumer's output) smallest, until the slot is at
its target width. The kept channels' consumer weights are then rescaled by least squares (ThiNet's
"minimise the reconstruction error" step). Tied slots (residual adds) pool the samples of all their
consumers and keep one channel set.

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

from ..arch import Architecture, Budget, get_family
from ..errors import ConfigError
from ._reconstruct import channel_scaling, group_samples, target_widths, write_consumer
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
        slots = get_family(arch.family).slots(arch)
        groups, samples = group_samples(model, arch, data, n_images=n_images, n_samples=n_samples, seed=seed)
        keep: list[tuple[int, ...]] = [()] * len(slots)
        for members, group in zip(groups, samples):
            base_w, w = slots[members[0]].base_width, widths[members[0]]
            if w >= base_w or not group:
                idx = tuple(range(base_w))
            else:
                x = torch.cat([s.contributions() for s in group])
                gone = set(greedy_removal(x, base_w - w))
                idx = tuple(c for c in range(base_w) if c not in gone)
            for i in members:
                keep[i] = idx
        info.update(criterion="greedy reconstruction of the next layer's output", n_images=n_images, n_samples=n_samples)
        result = result_from_keep(self, model, arch, keep, ratio=ratio, info=info)
        if rescale:
            for members, group in zip(groups, samples):
                kept = torch.tensor(keep[members[0]], dtype=torch.long)
                if len(kept) == slots[members[0]].base_width:
                    continue
                for s in group:
                    gamma = channel_scaling(s, kept)
                    write_consumer(result.state_dict, arch, keep, s.name, s.weight[:, kept] * gamma[None, :, None])
        if budget is not None:
            b = Budget.of(budget)
            target_p = b.resolve(arch)
            result.info.update(target_params=target_p, budget_kind=b.kind,
                               budget_rel_error=abs(b.measure(result.arch) - target_p) / target_p)
        return result


__all__ = ["ThiNet", "greedy_removal"]
