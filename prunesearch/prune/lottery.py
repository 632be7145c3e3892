"""Lottery-ticket rewind (Frankle & Carbin 2019; REFERENCE §1.6, §4).

Save the base model's initialisation, train it, prune it by weight magnitude (one global threshold,
exactly :mod:`prunesearch.prune.magnitude`), then *rewind* the surviving weights to their initial
values: the "winning ticket". The paper's check compares the winning ticket with a fresh random
initialisation of the same sparse structure, each trained at a large (0.1) and a small (0.01)
learning rate; ``prunesearch rethink --method lottery`` runs exactly that comparison.

- ``prune(model, arch, budget=|ratio=, init_state=...)``: ``init_state`` is the base model's
  ``state_dict()`` before training (``prunesearch rethink`` saves it for you). The result is a
  :class:`TicketResult`: the magnitude result plus the initial weights.
- ``build_pruned(result, init="rewind")``: the winning ticket (initial weights x masks);
  ``init="scratch"`` the random-init control; ``init="inherit"`` fine-tuning from trained weights.
- :func:`rewind` does the same for any pruning result (structured keep sets, depth-pruned blocks
  or weight masks), given the initial state of the base model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError
from .base import PruneResult, register
from .magnitude import Magnitude


@dataclass(frozen=True)
class TicketResult(PruneResult):
    """A magnitude-pruning result that also carries the base model's initial weights."""

    init_state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)


def rewind(result: PruneResult, init_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The winning ticket of ``result``: the pruned structure with the weights the base model had
    at initialisation (``init_state``), loadable strictly into ``build_model(result.arch, masks)``."""
    from ..models import build_model

    init_model = build_model(result.base)
    try:
        init_model.load_state_dict(init_state, strict=False)
    except RuntimeError as e:
        raise ConfigError(f"init_state does not fit {result.base.label} ({str(e).splitlines()[0][:120]}); "
                          "pass the state_dict() of the base model before training") from None
    if result.masks is not None:
        state = {k: v.detach().clone() for k, v in init_model.state_dict().items()}
        names = [n for n, m in init_model.named_modules() if isinstance(m, nn.Conv2d)]
        for name, mask in zip(names, result.masks):
            mask = mask.to(state[f"{name}.weight"].dtype).reshape(state[f"{name}.weight"].shape)
            state[f"{name}.weight"] = state[f"{name}.weight"] * mask
            state[f"{name}.weight_mask"] = mask.clone()
        return state
    if result.keep is not None:
        from .channels import inherit_state_dict

        return inherit_state_dict(init_model, result.base, result.keep)
    if "kept_blocks" in result.info:
        from .sss import inherit_blocks

        return inherit_blocks(init_model, result.base, result.info["kept_blocks"])
    raise ConfigError(f"cannot rewind a {result.method} result: it has no keep sets, masks or kept blocks")


@register
class Lottery(Magnitude):
    """Magnitude pruning whose survivors can be rewound to the initialisation (winning ticket)."""

    name = "lottery"
    structured = False
    #: ``prunesearch rethink`` passes the base model's initial ``state_dict()`` as ``init_state``.
    needs_init = True

    def prune(self, model: nn.Module, arch: Architecture, *, budget: float | None = None,
              ratio: float | None = None, data: Any = None, init_state: dict[str, torch.Tensor] | None = None,
              **options: Any) -> TicketResult:
        base = super().prune(model, arch, budget=budget, ratio=ratio, data=data, **options)
        values = {f.name: getattr(base, f.name) for f in fields(PruneResult)}
        values["method"] = self.name
        values["info"] = {**base.info, "rewind": init_state is not None}
        init = None if init_state is None else {k: v.detach().clone() for k, v in init_state.items()}
        return TicketResult(**values, init_state_dict=init)

    def build_pruned(self, result: PruneResult, *, init: str = "inherit", seed: int = 0) -> nn.Module:
        if init != "rewind":
            return super().build_pruned(result, init=init, seed=seed)
        init_state = getattr(result, "init_state_dict", None)
        if init_state is None:
            raise ConfigError("lottery: the winning ticket needs the initial weights; pass init_state=model.state_dict() "
                              "(saved before training) to prune")
        from ..models import build_model

        model = build_model(result.arch, masks=result.masks)
        model.load_state_dict(rewind(result, init_state), strict=True)
        return model


__all__ = ["Lottery", "TicketResult", "rewind"]
