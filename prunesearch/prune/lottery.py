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
  ``init="scratch"`` the random-init control, drawn from the dense network's own init distribution
  (so init scale is not confounded with the ticket effect); ``init="inherit"`` fine-tuning.
- Iterative pruning (``rounds``, ``rate``, ``retrain``): see :class:`Lottery`.
- :func:`rewind` does the same for any pruning result (structured keep sets, depth-pruned blocks
  or weight masks), given the initial state of the base model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError
from .base import PruneResult, check_model, check_request, register
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


def _dense_copy(model: nn.Module, arch: Architecture) -> nn.Module:
    """A mask-free ``build_model(arch)`` holding ``model``'s weights with the masks applied (the
    layout magnitude pruning expects), whether or not ``model`` carries ``weight_mask`` buffers."""
    from ..models import build_model

    state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith(".weight_mask")}
    for name, m in model.named_modules():
        mask = getattr(m, "weight_mask", None)
        if mask is not None:
            state[f"{name}.weight"] = state[f"{name}.weight"] * mask.to(state[f"{name}.weight"].dtype)
    dense = build_model(arch)
    dense.load_state_dict(state, strict=True)
    return dense


#: Salt of the random-init control's seed (see :func:`control_seed`).
CONTROL_SALT = 1_000_003


def control_seed(seed: int, attempt: int = 0) -> int:
    """The torch seed of lottery's random-init control for run seed ``seed`` (a draw distinct from
    ``torch.manual_seed(seed); build_model(base)``, which is how runs draw the base model)."""
    return int(seed) + CONTROL_SALT * (attempt + 1)


def _same_convs(model: nn.Module, init_state: dict[str, torch.Tensor]) -> bool:
    """True if ``model``'s conv weights equal ``init_state``'s under the model's masks (the ticket)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and f"{name}.weight" in init_state:
            w0 = init_state[f"{name}.weight"].to(m.weight.dtype)
            mask = getattr(m, "weight_mask", None)
            if not torch.equal(m.weight.detach(), w0 * mask if mask is not None else w0):
                return False
    return True


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"lottery {name} must be an integer >= {low}, got {value!r}")
    return value


@register
class Lottery(Magnitude):
    """Magnitude pruning whose survivors can be rewound to the initialisation (winning ticket),
    one-shot or iterative (``rounds`` of prune-rewind-retrain, Frankle & Carbin 2019 §2 and §4).

    - ``prune(..., rounds=1)``: one-shot, exactly magnitude pruning (the result also carries
      ``init_state``).
    - ``prune(..., rounds=n, retrain=f, init_state=...)``: iterative pruning. Round ``r`` (1-based)
      prunes, by one global |w| threshold, to the cumulative fraction ``1 - (1 - p) ** (r / n)`` of the
      conv weights, i.e. the same fraction ``1 - (1 - p) ** (1 / n)`` of the weights still alive each
      round (the paper's ``p^(1/n) %`` per round), where ``p`` is the final fraction: ``ratio``, the
      one-shot ratio that meets ``budget`` (the last round meets the budget itself, by bisection), or
      ``1 - (1 - rate) ** n`` for ``rate=`` (the per-round fraction, instead of ratio/budget). After
      every round but the last, the survivors are rewound to ``init_state`` and ``retrain(model,
      hooks)`` trains the ticket in place (``model``: ``build_model(arch, masks)`` with the rewound
      weights; ``hooks``: ``[MaskHook()]``, which keep the pruned weights at zero), e.g.
      ``retrain=lambda m, hooks: train(m, data, recipe, seed=0, hooks=hooks)`` with
      :func:`prunesearch.train.train`; the next round prunes the retrained weights. Pruned weights
      stay pruned (they are exactly zero, the bottom of the pool). ``info["round_ratios"]`` lists the
      cumulative fraction of every round.
    - ``prune(..., structured=True)``: the structured ticket: whole filters ranked by the L1 norm of
      their trained weights (``normalize``: per-layer ``max`` (default), ``mean`` or ``none``; one
      global threshold, budget bisection, tie groups and width guard: the shared channel machinery,
      exactly l1norm's automatic mode); the result is a physically narrow architecture with
      ``keep`` sets (no masks). One-shot only (``rounds=1``; ``min_keep``/``scope`` are weight-level).
      ``init="rewind"`` gives the kept channels their *initial* weights; ``init="scratch"`` slices a
      fresh dense initialisation (seeded by :func:`control_seed`) to the same channels.
    - ``build_pruned(result, init="rewind")``: the winning ticket (initial weights x masks);
      ``init="scratch"``: the random-init control, drawn from the *same* distribution as the dense
      network's initialisation (``build_model``'s Kaiming init of the dense layer shapes, seeded by
      :func:`control_seed`, then masked; not the density-aware init other sparse scratch runs use),
      so the comparison with the ticket changes the initial values only, not their scale; the seed is
      salted so that the control never redraws the ticket when the base used the same run seed;
      ``init="inherit"``: fine-tuning.
    """

    name = "lottery"
    structured = False
    #: ``prunesearch rethink`` passes the base model's initial ``state_dict()`` as ``init_state``.
    needs_init = True

    def prune(self, model: nn.Module, arch: Architecture, *, budget: float | None = None,
              ratio: float | None = None, data: Any = None, init_state: dict[str, torch.Tensor] | None = None,
              rounds: int = 1, rate: float | None = None,
              retrain: Callable[[nn.Module, list], Any] | None = None, structured: bool = False,
              **options: Any) -> TicketResult:
        unknown = sorted(set(options) - {"min_keep", "scope", "normalize"})
        if unknown:
            raise ConfigError(f"lottery takes budget=, ratio= or rate=, rounds=, retrain=, init_state=, min_keep=, scope=, "
                              f"structured=, normalize=; got {', '.join(unknown)}")
        if not isinstance(structured, bool):
            raise ConfigError(f"lottery structured must be true (prune whole filters) or false (single weights), "
                              f"got {structured!r}")
        if structured:
            bad = sorted(set(options) - {"normalize"}) + (["rounds"] if rounds != 1 else []) + (["retrain"] if retrain else [])
            if bad:
                raise ConfigError(f"lottery structured=true prunes whole filters once: it takes budget=, ratio= or rate=, "
                                  f"init_state=, normalize=, not {', '.join(bad)} (weight-level options)")
        elif "normalize" in options:
            raise ConfigError("lottery normalize= ranks filters: it needs structured=true")
        rounds = _check_int("rounds", rounds, 1)
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
                raise ConfigError(f"lottery rate (fraction of the surviving weights pruned per round) must be in (0, 1), "
                                  f"got {rate!r}; e.g. rate=0.2")
            if budget is not None or ratio is not None:
                raise ConfigError("lottery: give rate= (per round) or budget=/ratio= (final target), not both")
            ratio = 1 - (1 - float(rate)) ** rounds
        check_request(self, arch, budget, ratio)
        if structured:
            return self._prune_filters(model, arch, budget, ratio, rate, init_state, options.get("normalize", "max"))
        if rounds > 1:
            if retrain is None or not callable(retrain):
                raise ConfigError(f"lottery rounds={rounds} retrains the ticket between rounds: pass retrain=f(model, hooks) "
                                  "(e.g. lambda m, h: prunesearch.train.train(m, data, recipe, hooks=h)), or rounds=1")
            if init_state is None:
                raise ConfigError(f"lottery rounds={rounds} rewinds between rounds: pass init_state=model.state_dict() "
                                  "saved before training")
        elif retrain is not None:
            raise ConfigError("lottery retrain= is only used between rounds: give rounds >= 2 or drop retrain")
        kw = dict(options)
        final_ratio = ratio
        if rounds > 1 and budget is not None:  # the one-shot ratio that meets the budget sets the schedule
            final_ratio = super().prune(model, arch, budget=budget, data=data, **kw).ratio
        round_ratios: list[float] = []
        current = model
        from .sparse import MaskHook

        for r in range(1, rounds):
            cum = 1 - (1 - float(final_ratio)) ** (r / rounds)  # type: ignore[arg-type]
            round_ratios.append(cum)
            step = super().prune(current, arch, ratio=cum, data=data, **kw)
            from ..models import build_model

            ticket = build_model(step.arch, masks=step.masks)
            ticket.load_state_dict(rewind(step, init_state), strict=True)  # type: ignore[arg-type]
            retrain(ticket, [MaskHook()])  # type: ignore[misc]
            current = _dense_copy(ticket, arch)
        base = super().prune(current, arch, budget=budget, ratio=None if budget is not None else final_ratio,
                             data=data, **kw)
        round_ratios.append(float(base.ratio) if base.ratio is not None else float(final_ratio))  # type: ignore[arg-type]
        values = {f.name: getattr(base, f.name) for f in fields(PruneResult)}
        values["method"] = self.name
        values["info"] = {**base.info, "rewind": init_state is not None, "rounds": rounds, "round_ratios": round_ratios}
        if rate is not None:
            values["info"]["rate"] = float(rate)
        init = None if init_state is None else {k: v.detach().clone() for k, v in init_state.items()}
        return TicketResult(**values, init_state_dict=init)

    def _prune_filters(self, model: nn.Module, arch: Architecture, budget: float | None, ratio: float | None,
                       rate: float | None, init_state: dict[str, torch.Tensor] | None, normalize: str) -> TicketResult:
        """Structured ticket: whole filters ranked by the L1 norm of their trained weights (normalised per
        layer, one global threshold: exactly l1norm's automatic mode), a physically narrow architecture."""
        from .channels import filter_norms, prune_by_scores
        from .l1norm import NORMALIZERS, _normalise

        if arch.family == "densenet":
            raise ConfigError("lottery structured=true ranks conv filters, but densenet's prunable slots are input "
                              "selections; use the weight-level lottery (structured=false) for densenet")
        if normalize not in NORMALIZERS:
            raise ConfigError(f"lottery normalize must be one of {', '.join(NORMALIZERS)}, got {normalize!r}")
        check_model(model, arch)
        scores = [_normalise(v, normalize) for v in filter_norms(model, arch, p=1)]
        base = prune_by_scores(self, model, arch, scores, budget=budget, ratio=ratio,
                               info={"normalize": normalize, "variant": "global"})
        values = {f.name: getattr(base, f.name) for f in fields(PruneResult)}
        values["info"] = {**base.info, "rewind": init_state is not None, "rounds": 1, "structured": True}
        if rate is not None:
            values["info"]["rate"] = float(rate)
        init = None if init_state is None else {k: v.detach().clone() for k, v in init_state.items()}
        return TicketResult(**values, init_state_dict=init)

    def build_pruned(self, result: PruneResult, *, init: str = "inherit", seed: int = 0) -> nn.Module:
        from ..models import build_model

        if init == "scratch" and result.keep is not None:
            # structured: the dense network's init (build_model of the base, control_seed), sliced to the
            # kept channels exactly as the ticket is: same distribution as the ticket, other values
            from .channels import inherit_state_dict

            ticket = getattr(result, "init_state_dict", None)
            ticket_state = None if ticket is None else rewind(result, ticket)
            for attempt in range(3):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(control_seed(seed, attempt))
                    dense = build_model(result.base)
                model = build_model(result.arch)
                model.load_state_dict(inherit_state_dict(dense, result.base, result.keep), strict=True)
                if ticket_state is None or not _same_convs(model, ticket_state):
                    return model
            raise ConfigError(f"lottery: the random-init control for seed {seed} keeps drawing the ticket's own "
                              "initial weights; use another seed")  # pragma: no cover - needs a seed collision

        if init == "scratch" and result.masks is not None:
            # the dense network's init distribution, masked: build_model initialises the dense-shaped
            # convs exactly as for the unpruned model, then multiplies by the masks. Seeded through
            # control_seed: the base model is usually drawn with the same run seed, and an unsalted draw
            # would reproduce the winning ticket itself.
            ticket = getattr(result, "init_state_dict", None)
            for attempt in range(3):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(control_seed(seed, attempt))
                    model = build_model(result.arch, masks=result.masks)
                if ticket is None or not _same_convs(model, ticket):
                    return model
            raise ConfigError(f"lottery: the random-init control for seed {seed} keeps drawing the ticket's own "
                              "initial weights; use another seed")  # pragma: no cover - needs a seed collision
        if init != "rewind":
            return super().build_pruned(result, init=init, seed=seed)
        init_state = getattr(result, "init_state_dict", None)
        if init_state is None:
            raise ConfigError("lottery: the winning ticket needs the initial weights; pass init_state=model.state_dict() "
                              "(saved before training) to prune")
        model = build_model(result.arch, masks=result.masks)
        model.load_state_dict(rewind(result, init_state), strict=True)
        return model


__all__ = ["CONTROL_SALT", "Lottery", "TicketResult", "control_seed", "rewind"]
