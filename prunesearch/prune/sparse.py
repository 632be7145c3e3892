"""Shared helpers for unstructured (weight-mask) pruning: mask-aware training and sparse scratch init.

Masks live in the model as ``weight_mask`` buffers on every conv (``build_model(arch, masks=...)``
attaches them), so they travel with the state dict and the checkpoint; the hook itself is stateless.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..train import TrainHook


def masked_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if getattr(m, "weight_mask", None) is not None]


class MaskHook(TrainHook):
    """Keeps pruned weights at zero during fine-tuning and scratch training: zeroes their gradients
    after backward (so momentum never moves them) and re-applies the masks after every optimiser step
    (weight decay and any optimiser quirk included)."""

    def after_backward(self, model: nn.Module) -> None:
        with torch.no_grad():
            for m in masked_modules(model):
                if m.weight.grad is not None:
                    m.weight.grad.mul_(m.weight_mask)

    def after_step(self, model: nn.Module) -> None:
        with torch.no_grad():
            for m in masked_modules(model):
                m.weight.mul_(m.weight_mask)

    def __repr__(self) -> str:
        return "MaskHook()"


def init_sparse_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Scratch init of sparse convs as the reference code does it (REFERENCE §4): redraw every masked
    weight from N(0, sqrt(2 / n)) with n = (non-zero weights of the layer) / in_channels (Kaiming's
    fan for the layer's actual density), then apply the mask. Layers without masks are untouched."""
    with torch.no_grad():
        for m in masked_modules(model):
            mask = m.weight_mask
            n = float(mask.sum()) / m.weight.shape[1]
            std = math.sqrt(2.0 / max(n, 1e-12))
            w = torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype) * std
            m.weight.copy_(w.to(m.weight.device) * mask)
    return model
