"""The one evaluator: build an architecture, train it from scratch, return its metrics.

Everything a trial trains goes through :func:`evaluate`; it knows nothing about Optuna. Tests use it
for real with a tiny dataset (``synthetic``/``digits``) and a 1-epoch recipe: no fake metrics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def evaluate(
    arch: Any,
    seed: int,
    dataset: Any,
    recipe: Any,
    device: Any = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    on_progress: Any = None,
) -> dict[str, Any]:
    """Train ``arch`` (Architecture or its dict) from scratch on ``dataset`` (Dataset or name) with
    ``recipe`` (Recipe, dict or name) and ``seed``; returns ``{best_acc, final_acc, train_seconds,
    epochs, images_per_second, precision, device, threads, resumed_from}`` (accuracies are fractions).

    ``seed`` seeds the initial weights (torch's RNG before the model is built) and the trainer's
    batch order/augmentation. With ``checkpoint_dir`` an interrupted run resumes from ``last.pt``.
    A checkpoint that cannot be resumed (corrupt, truncated, foreign) is discarded and the run starts
    from scratch (``checkpoint_discarded`` says why). Raises ``TrainingDiverged`` on a NaN/inf loss."""
    import torch

    from ..arch import Architecture
    from ..data import load_dataset
    from ..models import build_model
    from ..train import Recipe, get_recipe, train

    if not isinstance(arch, Architecture):
        arch = Architecture.from_dict(arch)
    if isinstance(dataset, str):
        dataset = load_dataset(dataset)
    if isinstance(recipe, dict):
        recipe = Recipe.from_dict(recipe)
    elif isinstance(recipe, str):
        recipe = get_recipe(recipe)
    from ..errors import CheckpointError

    def run():
        torch.manual_seed(int(seed))  # the initial weights: the trainer seeds only its own randomness
        hooks: tuple = ()
        if arch.densities is None:
            model = build_model(arch)
        else:
            # Unstructured sparsity: an Architecture holds per-conv densities, not mask positions, so a
            # scratch trial draws its masks at exactly those densities (seeded), re-initialises the kept
            # weights as the reference does, and keeps the masks fixed while training.
            from ..prune.sparse import MaskHook, init_sparse_

            model = build_model(arch, mask_seed=int(seed))
            init_sparse_(model, torch.Generator().manual_seed(int(seed)))
            hooks = (MaskHook(),)
        return train(model, dataset, recipe, seed=int(seed), device=device, on_progress=on_progress,
                     checkpoint_dir=checkpoint_dir, hooks=hooks)

    discarded = None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        result = run()
    except CheckpointError as e:
        if checkpoint_dir is None:
            raise
        # a checkpoint left by a killed run that cannot be resumed: discard it, train from scratch
        import shutil

        discarded = str(e)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        result = run()
    return {
        "checkpoint_discarded": discarded,
        "best_acc": float(result.best_acc),
        "final_acc": float(result.final_acc),
        "train_seconds": float(result.train_seconds),
        "epochs": int(result.epochs),
        "images_per_second": float(result.images_per_second),
        "precision": str(getattr(result, "precision", "")),
        "device": str(getattr(result, "device", "")),
        "threads": getattr(result, "threads", None),
        "resumed_from": getattr(result, "resumed_from", None),
    }
