"""Training recipes as data: the paper's CIFAR recipe (REFERENCE §3), fine-tuning, CPU demos.

A recipe is a frozen dataclass, loadable from YAML (``base: paper`` inherits a built-in), overridable
from the CLI with ``get_recipe('paper', epochs=40)``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, suggest

MODES = ("scratch-e", "scratch-b", "finetune")
SCHEDULES = ("step", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Recipe:
    name: str = "custom"
    epochs: int = 160
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4  # applied to every parameter, BN included, as the reference code
    nesterov: bool = False
    schedule: str = "step"  # step: lr *= lr_gamma at each milestone; constant: lr throughout
    lr_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of epochs; epoch int(f * epochs)
    lr_gamma: float = 0.1
    warmup_epochs: int = 0  # epochs (from 0) at warmup_lr before the schedule; the milestones do not move
    warmup_lr: float | None = None  # the warm-up rate; None: lr / 10 (SFP's scripts: 0.01 for lr 0.1)
    augment: bool = True  # pad + random crop (+ flip where the dataset allows it)
    flip: bool | None = None  # None: the dataset decides (digits are never flipped)
    precision: str = "auto"  # auto: bf16 where native (CUDA, AVX512-BF16/AMX CPUs), else fp32
    channels_last: bool | None = None  # None: on (measured faster or equal on CPU and CUDA)
    compile: bool | str = False  # torch.compile: True, or a mode ('reduce-overhead' = CUDA graphs)
    mode: str = "scratch-e"  # scratch-e | scratch-b | finetune (the caller scales epochs for scratch-b)
    checkpoint_every: int = 1  # epochs between checkpoints when a checkpoint_dir is given
    eval_every: int = 1  # epochs between test evaluations (the last epoch is always evaluated)
    eval_batch_size: int = 1000
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        def bad(what: str) -> None:
            raise ConfigError(f"recipe '{self.name}': {what}")

        for key in ("epochs", "batch_size", "checkpoint_every", "eval_every", "eval_batch_size", "warmup_epochs"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
                bad(f"{key} must be a whole number, saw {v!r}")
        if int(self.epochs) < 1:
            bad(f"epochs must be >= 1, saw {self.epochs}")
        if int(self.batch_size) < 2:
            bad(f"batch_size must be >= 2 (BatchNorm needs two images), saw {self.batch_size}")
        if not float(self.lr) > 0:
            bad(f"lr must be > 0, saw {self.lr}")
        if int(self.warmup_epochs) < 0:
            bad(f"warmup_epochs must be >= 0, saw {self.warmup_epochs}")
        if self.warmup_lr is not None and (isinstance(self.warmup_lr, bool) or not isinstance(self.warmup_lr, (int, float))
                                           or not float(self.warmup_lr) > 0):
            bad(f"warmup_lr must be > 0 (or left out: lr / 10), saw {self.warmup_lr!r}")
        if self.schedule not in SCHEDULES:
            bad(f"schedule '{self.schedule}' is not one of {', '.join(SCHEDULES)}{suggest(self.schedule, SCHEDULES)}")
        if self.precision not in PRECISIONS:
            bad(f"precision '{self.precision}' is not one of {', '.join(PRECISIONS)}{suggest(self.precision, PRECISIONS)}")
        if self.mode not in MODES:
            bad(f"mode '{self.mode}' is not one of {', '.join(MODES)}{suggest(self.mode, MODES)}")
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            bad(f"compile must be true/false or one of {', '.join(COMPILE_MODES)}, saw {self.compile!r}")
        ms = tuple(float(m) for m in self.lr_milestones)
        if any(not 0 < m < 1 for m in ms) or list(ms) != sorted(ms):
            bad(f"lr_milestones must be increasing fractions of the epochs in (0, 1), saw {list(self.lr_milestones)}")
        if int(self.checkpoint_every) < 1 or int(self.eval_every) < 1:
            bad("checkpoint_every and eval_every must be >= 1")
        object.__setattr__(self, "lr_milestones", ms)
        object.__setattr__(self, "epochs", int(self.epochs))
        object.__setattr__(self, "batch_size", int(self.batch_size))
        object.__setattr__(self, "warmup_epochs", int(self.warmup_epochs))

    def milestone_epochs(self) -> list[int]:
        """0-based epochs at whose start the lr is multiplied by ``lr_gamma`` (80 and 120 of 160)."""
        if self.schedule == "constant":
            return []
        return sorted({int(m * self.epochs) for m in self.lr_milestones if int(m * self.epochs) > 0})

    def lr_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch``: ``warmup_lr`` (default lr / 10) for the first
        ``warmup_epochs``, then ``lr`` times ``lr_gamma`` per milestone passed."""
        if epoch < self.warmup_epochs:
            return float(self.warmup_lr) if self.warmup_lr is not None else self.lr / 10
        return self.lr * self.lr_gamma ** sum(1 for m in self.milestone_epochs() if epoch >= m)

    def lr_sum(self, num_train: int) -> float:
        """Sum of the learning rate over every optimiser step of a run on ``num_train`` images (what
        a per-step penalty such as slimming's adds up to, divided by its strength)."""
        full, rest = divmod(int(num_train), self.batch_size)
        steps = full + (1 if rest >= 2 else 0)  # as the trainer: a 1-image batch is dropped
        return steps * sum(self.lr_at(e) for e in range(self.epochs))

    def replace(self, **changes: Any) -> "Recipe":
        _check_keys(changes, self.name)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        if not d["extra"]:
            d.pop("extra")
        if not self.warmup_epochs and self.warmup_lr is None:  # recipes without warm-up keep their dicts (cache keys)
            d.pop("warmup_epochs")
            d.pop("warmup_lr")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        d = dict(d)
        _check_keys(d, d.get("name", "custom"))
        if "lr_milestones" in d and d["lr_milestones"] is not None:
            d["lr_milestones"] = tuple(d["lr_milestones"])
        return cls(**d)


_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))


def _check_keys(d: dict[str, Any], where: str) -> None:
    for k in d:
        if k not in _FIELDS:
            raise ConfigError(
                f"recipe '{where}': unknown key '{k}'{suggest(k, _FIELDS)}; known keys: {', '.join(_FIELDS)}"
            )


# The built-in recipes. Kept in Python (not package-data YAML) so that every install has them;
# `prunesearch train ... --recipe my.yaml` takes the same keys, with `base: paper` to inherit.
BUILTIN: dict[str, dict[str, Any]] = {
    "paper": dict(
        description="Reference CIFAR recipe: SGD 0.9, wd 1e-4, batch 64, lr 0.1 x0.1 at 50%/75%, 160 epochs",
        epochs=160, batch_size=64, lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
        lr_milestones=(0.5, 0.75), lr_gamma=0.1, augment=True, mode="scratch-e",
    ),
    "scratch-b": dict(
        base="paper", mode="scratch-b",
        description="paper recipe; the caller scales epochs by the FLOP ratio (scratch_b_epochs)",
    ),
    "finetune": dict(
        base="paper", epochs=40, lr=0.001, schedule="constant", mode="finetune",
        description="Reference fine-tuning: inherited weights, lr 0.001 constant, 40 epochs",
    ),
    "sfp": dict(
        base="paper", epochs=200, batch_size=128, lr=0.1, weight_decay=5e-4, lr_milestones=(0.3, 0.6, 0.8),
        lr_gamma=0.2, warmup_epochs=1,
        description="Soft filter pruning's CIFAR scripts: 200 epochs, batch 128, wd 5e-4, lr 0.01 for one warm-up "
                    "epoch then 0.1, x0.2 at epochs 60/120/160",
    ),
    "imagenet": dict(
        base="paper", epochs=90, batch_size=256, lr_milestones=(1 / 3, 2 / 3),
        description="Reference ImageNet schedule: 90 epochs, batch 256, lr 0.1 x0.1 every 30 epochs",
    ),
    "fast": dict(
        base="paper", epochs=15, batch_size=128, lr=0.05, checkpoint_every=5,
        description="CPU demo: 15 epochs, batch 128, lr 0.05 x0.1 at 50%/75% (small sets like mnist5k)",
    ),
    "demo": dict(
        base="paper", epochs=6, batch_size=32, lr=0.05, augment=False, checkpoint_every=2,
        description="the default discover on 2 CPU cores: 6 epochs, batch 32, lr 0.05 x0.1 at 50%/75%, no crop "
                    "augmentation (digits: resnet8 reaches 97 % on mnist5k in ~11 s)",
    ),
    "smoke": dict(
        base="paper", epochs=2, batch_size=32, lr=0.05, eval_batch_size=256,
        description="tests: 2 short epochs",
    ),
}


def recipe_names() -> list[str]:
    return sorted(BUILTIN)


def _resolve_dict(d: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    d = dict(d)
    base = d.pop("base", None)
    if base is None:
        return d
    if base in seen:
        raise ConfigError(f"recipe base chain loops: {' -> '.join(seen + (base,))}; remove one 'base:'")
    if base not in BUILTIN:
        raise ConfigError(f"recipe base '{base}' is not a built-in recipe{suggest(base, BUILTIN)}; known: {', '.join(recipe_names())}")
    out = _resolve_dict(BUILTIN[base], seen + (base,))
    out.update(d)
    return out


def load_recipe(path: str | os.PathLike) -> Recipe:
    """A recipe YAML (or JSON) file: the Recipe keys, optionally ``base: paper`` to inherit."""
    from ..fileio import read_document

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"recipe file {p} does not exist; give a built-in name ({', '.join(recipe_names())}) or a YAML path")
    d = read_document(p, "recipe")  # directories, binary files, bombs and bad syntax: one line
    if not isinstance(d, dict):
        raise ConfigError(f"recipe file {p} must hold a mapping of recipe keys, saw {type(d).__name__}")
    d.setdefault("name", p.stem)
    return Recipe.from_dict(_resolve_dict(d))


def save_recipe(recipe: Recipe, path: str | os.PathLike) -> None:
    import yaml

    from ..fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def get_recipe(name_or_path: str | Recipe = "paper", **overrides: Any) -> Recipe:
    """A built-in recipe by name (``paper``, ``scratch-b``, ``finetune``, ``imagenet``, ``fast``,
    ``smoke``) or a YAML path, with ``overrides`` applied (unknown keys raise with a suggestion).
    ``None`` overrides are ignored, so CLI options can be passed straight through."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    _check_keys(overrides, str(name_or_path))
    if isinstance(name_or_path, Recipe):
        return name_or_path.replace(**overrides) if overrides else name_or_path
    text = str(name_or_path)
    if text in BUILTIN:
        d = _resolve_dict(BUILTIN[text])
        d["name"] = text
        d.update(overrides)
        return Recipe.from_dict(d)
    if text.endswith((".yaml", ".yml", ".json")) or os.sep in text or Path(text).exists():
        r = load_recipe(text)
        return r.replace(**overrides) if overrides else r
    raise ConfigError(
        f"unknown recipe '{text}'{suggest(text, BUILTIN)}; known: {', '.join(recipe_names())}, or a YAML path"
    )


def scratch_b_epochs(
    epochs: int, base_flops: float, pruned_flops: float, convention: str = "reference"
) -> int:
    """Scratch-B: train the pruned model for the same compute as the base model's ``epochs``.

    ``reference``: ``int(epochs * base/pruned)`` with no cap (the CIFAR reference code);
    ``capped``: the ratio capped at 2 (the paper's ImageNet convention: 90 -> at most 180 epochs).
    MACs or FLOPs work equally (only the ratio matters). Never fewer than ``epochs`` when the
    pruned model is smaller."""
    if base_flops <= 0 or pruned_flops <= 0:
        raise ConfigError(f"scratch-b needs positive FLOP counts, saw base={base_flops}, pruned={pruned_flops}")
    ratio = float(base_flops) / float(pruned_flops)
    if convention == "reference":
        pass
    elif convention == "capped":
        ratio = min(ratio, 2.0)
    else:
        raise ConfigError(f"scratch-b convention '{convention}' is not known; use reference or capped")
    return max(1, int(epochs * ratio))
