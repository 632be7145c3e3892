"""Training: recipes, the train/evaluate loop, checkpoints, devices and precision.

Never prints and never imports optuna: progress goes to an ``on_progress`` callback.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .device import (
    cpu_has_native_bf16,
    default_threads,
    machine_info,
    resolve_device,
    resolve_precision,
)
from .loop import EpochStats, ProgressEvent, TrainHook, TrainResult, accuracy, train
from .recipe import (
    BUILTIN as BUILTIN_RECIPES,
    Recipe,
    get_recipe,
    load_recipe,
    recipe_names,
    save_recipe,
    scratch_b_epochs,
)

__all__ = [
    "BUILTIN_RECIPES",
    "EpochStats",
    "ProgressEvent",
    "Recipe",
    "TrainHook",
    "TrainResult",
    "cpu_has_native_bf16",
    "default_threads",
    "accuracy",
    "get_recipe",
    "load_checkpoint",
    "load_recipe",
    "machine_info",
    "recipe_names",
    "resolve_device",
    "resolve_precision",
    "save_checkpoint",
    "scratch_b_epochs",
    "train",
]
