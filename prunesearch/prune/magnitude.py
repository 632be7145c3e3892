"""Unstructured magnitude pruning (Han et al. 2015) as the reference code runs it (REFERENCE §4).

Pool |w| of every conv weight, sort ascending, threshold = ``sorted[int(total * percent)]``, keep the
weights with |w| > threshold. The architecture keeps the dense widths and records each conv's
density (kept / total weights); ``result.masks`` holds the 0/1 mask of every conv. Guard: every conv
keeps at least ``min_keep`` weights (its largest ones), so no layer is cut off. A parameter budget
is reached by bisection on the threshold index (granularity: one weight, up to ties in |w|).

``scope="layer"`` (Han et al.'s per-layer variant; the default ``"global"`` is the reference's rule):
every conv loses the same fraction ``ratio`` of its own weights, the ``int(n * ratio)`` smallest |w|
of that layer (ties broken by index, so exactly that many per layer), ``min_keep`` guard as above;
``result.threshold`` is None (one threshold per layer) and ``result.ratio`` is the common fraction. A
budget is met by bisection on that common fraction.

Fine-tuning and scratch runs: ``build_model(result.arch, masks=result.masks)``, then
``load_state_dict(result.state_dict)`` (fine-tune) or ``init_sparse_`` (scratch), and train with
``MaskHook()``; ``Magnitude.build_pruned`` / ``train_hooks`` do exactly that.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..arch import TOLERANCE, Architecture, Budget, conv_weight_counts, count_params
from ..errors import BudgetError, ConfigError
from ..models import conv_layers
from .base import PruneResult, PruningMethod, check_model, check_request, register
from .channels import closest_pool_index, ratio_for_index

SCOPES = ("global", "layer")


@register
class Magnitude(PruningMethod):
    """One global |w| threshold over all conv weights (unstructured; ``min_keep`` guard per conv);
    ``scope="layer"``: the same fraction pruned in every conv instead."""

    name = "magnitude"
    structured = False
    prunes = "weights"

    def prune(
        self,
        model: nn.Module,
        arch: Architecture,
        *,
        budget: float | None = None,
        ratio: float | None = None,
        data: Any = None,
        min_keep: int = 1,
        scope: str = "global",
        **options: Any,
    ) -> PruneResult:
        if options:
            raise ConfigError(f"{self.name} takes budget=, ratio=, min_keep= or scope=, got {', '.join(sorted(options))}")
        check_request(self, arch, budget, ratio)
        check_model(model, arch)
        if isinstance(min_keep, bool) or not isinstance(min_keep, int) or min_keep < 1:
            raise ConfigError(f"min_keep (weights kept per conv at least) must be an integer >= 1, got {min_keep!r}")
        if scope not in SCOPES:
            raise ConfigError(f"magnitude scope must be one of {', '.join(SCOPES)} (global: one |w| threshold over all "
                              f"convs; layer: the same fraction in every conv), got {scope!r}")
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        convs = conv_layers(model)
        sizes = conv_weight_counts(arch)
        assert [c.weight.numel() for c in convs] == sizes, "conv order differs from the layer plan"
        mags = [c.weight.detach().abs().flatten().float().cpu() for c in convs]
        if scope == "layer":
            return self._prune_layerwise(model, arch, names, convs, mags, sizes, budget, ratio, min_keep)
        per_layer = [torch.sort(m).values for m in mags]
        pool = torch.sort(torch.cat(mags)).values
        total = int(pool.numel())
        dense_params = count_params(arch)
        other = dense_params - sum(sizes)  # BN + linear parameters (never pruned)
        b = Budget.of(budget) if budget is not None else None

        def thr_at(k: int) -> float:
            return float("-inf") if k < 0 else float(pool[k])

        def kept_counts(thr: float) -> list[int]:
            out = []
            for s in per_layer:
                n = s.numel() - int(torch.searchsorted(s, torch.tensor([thr]), right=True)[0]) if thr != float("-inf") else s.numel()
                out.append(max(n, min(min_keep, s.numel())))
            return out

        info: dict[str, Any] = {"pool_size": total, "min_keep": min_keep}
        if budget is not None:
            target = b.resolve(arch)
            info.update(budget=b.value, budget_kind=b.kind, target_params=target)

            def params(k: int) -> int:
                if b.kind == "params":
                    return other + sum(kept_counts(thr_at(k)))
                dens = tuple(n / s for n, s in zip(kept_counts(thr_at(k)), sizes))
                return b.measure(arch.replace(densities=dens, name=None))

            lo, hi = -1, total - 1
            if not params(hi) <= target <= params(lo):
                raise BudgetError(
                    f"budget {target:,} {b.unit} is outside what magnitude pruning of {arch.model_name} can reach "
                    f"({params(hi):,} to {params(lo):,} {b.unit}; BN and linear layers are never pruned); choose a budget in that range"
                )
            k = closest_pool_index(params, lo, hi, target)
            out_ratio = ratio_for_index(k, total)
        else:
            k = min(int(total * float(ratio)), total - 1)  # type: ignore[arg-type]
            out_ratio = float(ratio)  # type: ignore[arg-type]
        thr = thr_at(k)

        masks, guarded = [], []
        for name, c, m in zip(names, convs, mags):
            keep = m > thr
            need = min(min_keep, m.numel())
            if int(keep.sum()) < need:
                keep = torch.zeros_like(keep)
                keep[torch.argsort(m, descending=True, stable=True)[:need]] = True
                guarded.append(name)
            masks.append(keep.reshape(c.weight.shape).to(c.weight.dtype))
        info["guarded_layers"] = guarded
        return self._result(model, arch, names, masks, sizes, info, out_ratio, None if k < 0 else thr, b,
                            "one |w| threshold gets ({:.2f} % off; ties in |w|)")

    def _result(self, model: nn.Module, arch: Architecture, names: list[str], masks: list[torch.Tensor],
                sizes: list[int], info: dict[str, Any], out_ratio: float, thr: float | None, b: Budget | None,
                note: str) -> PruneResult:
        kept = [int(mk.sum()) for mk in masks]
        new = arch.replace(densities=tuple(n / s for n, s in zip(kept, sizes)), name=None)
        state = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
        for name, mk in zip(names, masks):
            w = state[f"{name}.weight"]
            state[f"{name}.weight"] = w * mk.to(w.device)
            state[f"{name}.weight_mask"] = mk.clone().to(w.device)
        info["pruned_fraction"] = 1 - sum(kept) / sum(sizes)
        result = PruneResult(arch=new, base=arch, method=self.name, state_dict=state, masks=tuple(masks),
                             ratio=out_ratio, threshold=thr, info=info)
        if b is not None:
            achieved = b.measure(result.arch)
            err = abs(achieved - info["target_params"]) / info["target_params"]
            result.info["budget_rel_error"] = err
            if err > TOLERANCE:
                result.info["budget_note"] = f"{achieved:,} is the closest " + note.format(100 * err)
        return result

    def _prune_layerwise(self, model: nn.Module, arch: Architecture, names: list[str], convs: list[nn.Conv2d],
                         mags: list[torch.Tensor], sizes: list[int], budget: Any, ratio: float | None,
                         min_keep: int) -> PruneResult:
        """``scope="layer"``: in every conv prune the ``int(n * ratio)`` smallest |w| (ties: lower index
        first), keeping at least ``min_keep``; a budget is met by bisection on the common ratio."""
        order = [torch.argsort(m, stable=True) for m in mags]  # ascending |w|

        def kept_counts(r: float) -> list[int]:
            return [max(n - int(n * r), min(min_keep, n)) for n in sizes]

        b = Budget.of(budget) if budget is not None else None
        info: dict[str, Any] = {"scope": "layer", "min_keep": min_keep}
        if b is not None:
            target = b.resolve(arch)
            info.update(budget=b.value, budget_kind=b.kind, target_params=target)

            def measure(r: float) -> int:
                dens = tuple(n / s for n, s in zip(kept_counts(r), sizes))
                return b.measure(arch.replace(densities=dens, name=None))

            lo, hi = 0.0, 1.0 - 1e-12  # measure falls as r grows
            if not measure(hi) <= target <= measure(lo):
                raise BudgetError(
                    f"budget {target:,} {b.unit} is outside what layer-wise magnitude pruning of {arch.model_name} can "
                    f"reach ({measure(hi):,} to {measure(lo):,} {b.unit}; BN and linear layers are never pruned); "
                    "choose a budget in that range"
                )
            for _ in range(60):
                mid = (lo + hi) / 2
                if measure(mid) >= target:
                    lo = mid
                else:
                    hi = mid
            r = min((lo, hi), key=lambda x: (abs(measure(x) - target), x))
        else:
            r = float(ratio)  # type: ignore[arg-type]
        masks, guarded = [], []
        for name, c, o, n, keep_n in zip(names, convs, order, sizes, kept_counts(r)):
            keep = torch.zeros(n, dtype=torch.bool)
            keep[o[n - keep_n:]] = True
            if keep_n > n - int(n * r):
                guarded.append(name)
            masks.append(keep.reshape(c.weight.shape).to(c.weight.dtype))
        info["guarded_layers"] = guarded
        return self._result(model, arch, names, masks, sizes, info, r, None, b,
                            "one common per-layer fraction gets ({:.2f} % off; one weight per layer)")
