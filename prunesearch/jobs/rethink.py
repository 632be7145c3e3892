"""The paper's fine-tune vs scratch comparison as two jobs (REFERENCE §1, §3).

``rethink-base`` (arm ``unpruned``, or ``unpruned-lrX`` for the lottery check at another learning
rate): build the base (the method's ``prepare``), keep its initialisation, train it with the
method's regulariser, prune it (``method.prune``) and save the result as an artifact
(``RUN/artifacts/<slot>.pt``: pruned architecture, inherited weights, masks, initialisation;
read back with ``torch.load(weights_only=True)``).

``rethink-train`` (arms ``finetune``, ``scratch-e``, ``scratch-b``, ``winning-ticket-lrX``,
``random-init-lrX``): the pruned architecture of the base it depends on, trained

- ``init: inherit``: from the inherited weights (fine-tuning; the ``finetune`` recipe: lr 0.001,
  a quarter of the base epochs);
- ``init: scratch``: from a fresh random initialisation drawn with the seed (Scratch-E: the base's
  epochs; Scratch-B: ``scratch_b_epochs(E, MACs_base, MACs_pruned)``, the same compute as the base);
- ``init: ticket``: from the base's own initialisation, rewound onto the pruned structure.

A random-init arm at the base recipe's learning rate is by construction the Scratch-E run (same
architecture, masks, init and recipe): it gets the same cache key and reuses that result.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Job, JobContext, JobResult, register, train_metrics

ARTIFACT_FORMAT = 1


def _json_safe(d: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(d), default=str))


def artifact_path(ctx_artifacts: Path, name: str) -> Path:
    return ctx_artifacts / f"{name}.pt"


def save_artifact(path: Path, result: Any, init_state: dict[str, Any]) -> None:
    """A PruneResult and the base's initialisation, as tensors and plain values (weights_only)."""
    import io

    import torch

    from ..fileio import atomic_write_bytes

    blob = {
        "format": ARTIFACT_FORMAT, "arch": result.arch.to_dict(), "base": result.base.to_dict(), "method": result.method,
        "state_dict": result.state_dict, "keep": None if result.keep is None else [list(k) for k in result.keep],
        "masks": None if result.masks is None else list(result.masks), "ratio": result.ratio,
        "threshold": result.threshold, "info": json.dumps(_json_safe(result.info)), "init_state": init_state,
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_artifact(path: Path) -> tuple[Any, dict[str, Any]]:
    """(PruneResult, init_state) saved by a ``rethink-base`` trial."""
    import torch

    from ..arch import Architecture
    from ..errors import CheckpointError
    from ..prune import PruneResult

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"the pruned base {path} does not exist; its base trial must run first (on a machine that "
                              "shares this run dir)") from None
    except Exception as e:  # noqa: BLE001  truncated/corrupt files
        raise CheckpointError(f"the pruned base {path} is unreadable ({type(e).__name__}); delete it and re-run "
                              "its base trial (prunesearch rethink --retry-failed)") from None
    if not isinstance(blob, dict) or blob.get("format") != ARTIFACT_FORMAT:
        raise CheckpointError(f"{path} is not a prunesearch pruned-base artifact; delete it and re-run its base trial")
    keep = None if blob["keep"] is None else tuple(tuple(int(i) for i in k) for k in blob["keep"])
    masks = None if blob["masks"] is None else tuple(blob["masks"])
    result = PruneResult(arch=Architecture.from_dict(blob["arch"]), base=Architecture.from_dict(blob["base"]),
                         method=str(blob["method"]), state_dict=blob["state_dict"], keep=keep, masks=masks,
                         ratio=blob["ratio"], threshold=blob["threshold"], info=json.loads(blob["info"]))
    return result, blob["init_state"]


def regularizer_options(method: Any, attrs: Mapping[str, Any], recipe: Any, num_train: int) -> dict[str, Any]:
    """The options ``method.regularizer`` gets: the spec's, the prune target for methods that prune
    while training (soft filter pruning), and the run's lr sum for strengths that scale with the
    run (slimming's ``s="auto"``)."""
    from ..arch import Budget
    from ..prune.base import regularizer_options as options_for

    prune_kw = attrs.get("prune_kw") or {}
    budget = prune_kw.get("budget")
    return options_for(method, attrs.get("reg_kw"), ratio=prune_kw.get("ratio"), lr_sum=recipe.lr_sum(num_train),
                       budget=None if budget is None else Budget(budget, prune_kw.get("budget_kind", "params")))


def prune_options(attrs: Mapping[str, Any]) -> dict[str, Any]:
    from ..arch import Budget

    kw = dict(attrs.get("prune_kw") or {})
    kind = kw.pop("budget_kind", "params")
    if kw.get("budget") is not None:
        kw["budget"] = Budget(kw["budget"], kind)
    return {k: v for k, v in kw.items() if v is not None}


def retrains_between_rounds(method: Any, kw: Mapping[str, Any]) -> bool:
    """True if ``method.prune`` takes ``retrain=`` and ``kw`` asks for more than one round (lottery's
    iterative prune-rewind-retrain): the caller must supply the trainer."""
    rounds = kw.get("rounds", 1)
    return ("retrain" in inspect.signature(method.prune).parameters and isinstance(rounds, int)
            and not isinstance(rounds, bool) and rounds > 1)


def round_trainer(data: Any, recipe: Any, seed: int, device: Any, threads: int | None,
                  checkpoint_dir: Path | None):
    """``retrain(model, hooks)`` for iterative pruning: trains the masked, rewound ticket in place with
    the base recipe (same data, device, threads and seed), round ``r`` checkpointing under
    ``checkpoint_dir/round<r>`` so a killed base trial resumes mid-round; the model ends on the CPU."""
    from ..train import train

    done = [0]

    def retrain(model: Any, hooks: list) -> None:
        done[0] += 1
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"round{done[0]}"
        train(model, data, recipe, seed=seed, device=device, hooks=hooks, checkpoint_dir=ckpt, threads=threads)
        model.to("cpu")

    return retrain


@register
class RethinkBase(Job):
    name = "rethink-base"

    def run(self, attrs: Mapping[str, Any], ctx: JobContext) -> JobResult:
        import torch

        from ..arch import Architecture, count_macs, count_params
        from ..models import build_model
        from ..prune import get_method
        from ..train import Recipe, train

        method = get_method(str(attrs["method"]))
        base = Architecture.from_dict(attrs["base_arch"])
        recipe = Recipe.from_dict(dict(attrs["recipe"]))
        seed = int(attrs["seed"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = method.prepare(build_model(base), base)
        init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        reg_kw = regularizer_options(method, attrs, recipe, ctx.data.num_train)
        hook = method.regularizer(base, **reg_kw)
        result = train(model, ctx.data, recipe, seed=seed, device=ctx.device, hooks=[hook] if hook else [],
                       checkpoint_dir=ctx.checkpoint_dir, on_progress=ctx.on_progress, threads=ctx.threads)
        model.to("cpu")
        kw = prune_options(attrs)
        if getattr(method, "needs_init", False):
            kw["init_state"] = init_state
        if retrains_between_rounds(method, kw):  # iterative lottery: each round retrains the rewound ticket
            kw["retrain"] = round_trainer(ctx.data, recipe, seed, ctx.device, ctx.threads, ctx.checkpoint_dir)
        pruned = method.prune(model, base, data=ctx.data if method.needs_data else None, **kw)
        thresholds = {"pruned": pruned.threshold} if pruned.threshold is not None else None
        diagnostic = method.diagnose(model, base, thresholds)
        path = artifact_path(ctx.artifacts, str(attrs["artifact"]))
        save_artifact(path, pruned, init_state)
        info = {k: v for k, v in _json_safe(pruned.info).items() if isinstance(v, (int, float, str, bool)) or v is None}
        out = {"pruned_arch": pruned.arch.to_dict(), "pruned_arch_id": pruned.arch.arch_id,
               "pruned_params": count_params(pruned.arch), "pruned_macs": count_macs(pruned.arch),
               "prune_info": info, "prune_ratio": pruned.ratio,
               "regularizer": {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in reg_kw.items()}
               | ({"s": getattr(hook, "s")} if hasattr(hook, "s") else {})}
        if diagnostic is not None:
            out["sparsity_diagnostic"] = _json_safe(diagnostic)
        return JobResult(train_metrics(result), out)


@register
class RethinkTrain(Job):
    name = "rethink-train"
    cacheable = True  # only scratch inits share a key (see cache_identity)

    def resolve(self, attrs: Mapping[str, Any], deps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        from ..arch import Architecture, count_macs, count_params
        from ..train import Recipe, scratch_b_epochs

        src = deps[str(attrs["source"])]
        arch = Architecture.from_dict(src["pruned_arch"])
        recipe = Recipe.from_dict(dict(attrs["recipe"]))
        if attrs.get("epochs_rule") == "scratch-b":
            base_macs = count_macs(Architecture.from_dict(src["base_arch"]))
            epochs = scratch_b_epochs(recipe.epochs, base_macs, count_macs(arch),
                                      convention=str(attrs.get("scratch_b", "reference")))
            recipe = recipe.replace(epochs=epochs, mode="scratch-b")
        return {"arch": arch.to_dict(), "arch_id": arch.arch_id, "params": count_params(arch),
                "macs": count_macs(arch), "recipe": recipe.to_dict(), "artifact": src["artifact"]}

    def run(self, attrs: Mapping[str, Any], ctx: JobContext) -> JobResult:
        from ..models import build_model
        from ..prune import get_method
        from ..prune.lottery import rewind
        from ..train import Recipe, train

        method = get_method(str(attrs["method"]))
        result, init_state = load_artifact(artifact_path(ctx.artifacts, str(attrs["artifact"])))
        seed = int(attrs["seed"])
        init = str(attrs["init"])
        if init == "inherit":
            model = method.build_pruned(result, init="inherit")
        elif init == "scratch":
            model = method.build_pruned(result, init="scratch", seed=seed)
        elif init == "ticket":
            model = build_model(result.arch, masks=result.masks)
            model.load_state_dict(rewind(result, init_state), strict=True)
        else:  # pragma: no cover - planned by prunesearch only
            raise ValueError(f"unknown init {init!r}")
        recipe = Recipe.from_dict(dict(attrs["recipe"]))
        out = train(model, ctx.data, recipe, seed=seed, device=ctx.device, hooks=method.train_hooks(result),
                    checkpoint_dir=ctx.checkpoint_dir, on_progress=ctx.on_progress, threads=ctx.threads)
        return JobResult(train_metrics(out))
