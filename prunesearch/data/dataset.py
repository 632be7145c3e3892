"""The Dataset noun and the name -> loader registry.

A :class:`Dataset` is plain tensors: the whole train and test sets as uint8 ``(N, C, H, W)`` on the
CPU (the trainer moves them to the training device once). Sets too large for memory (a user's
``imagefolder:``) carry a ``train_stream`` / ``test_stream`` instead, read through a DataLoader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    train_x: torch.Tensor | None  # uint8 (N, C, H, W) on the CPU; None when streamed
    train_y: torch.Tensor | None  # int64 (N,)
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units (what Normalize takes)
    std: tuple[float, ...]
    synthetic: bool = False
    flip_ok: bool = True  # horizontal flips keep the label (not for digits)
    crop_pad: int = 4  # zero padding before the random crop (4 at 32 px, as the reference)
    # Streamed sets only: torch Datasets yielding (uint8 (C, H, W) tensor, int label).
    train_stream: Any = None
    test_stream: Any = None
    info: dict[str, Any] = field(default_factory=dict)  # provenance: source dir, split seed, ...

    @property
    def resident(self) -> bool:
        """True when the whole set is held as tensors (the fast path)."""
        return self.train_x is not None

    @property
    def num_train(self) -> int:
        return len(self.train_y) if self.resident else len(self.train_stream)

    @property
    def num_test(self) -> int:
        return len(self.test_y) if self.test_y is not None else len(self.test_stream)

    def describe(self) -> str:
        tag = " [SYNTHETIC: not real data]" if self.synthetic else ""
        return (
            f"{self.name}{tag}: {self.num_train} train / {self.num_test} test images, "
            f"{self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes"
        )

    def __repr__(self) -> str:  # tensors in the default repr would print megabytes
        return f"Dataset({self.describe()})"


#: name -> loader(data_dir: Path, download: bool, seed: int, **options) -> Dataset
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


def default_data_dir() -> Path:
    """``$PRUNESEARCH_DATA_DIR`` or ``~/.cache/prunesearch/data``."""
    env = os.environ.get("PRUNESEARCH_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunesearch" / "data"


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    **options: Any,
) -> Dataset:
    """Load a dataset by name: ``cifar10``, ``cifar100``, ``imagefolder:PATH``, ``mnist5k``,
    ``digits``, ``synthetic`` (tests and demos only; marked synthetic everywhere).

    ``seed`` fixes the train/test split of the small sets (and the synthetic images); it is not the
    training seed. ``options`` go to the loader (e.g. ``image_size=64`` for ``imagefolder:``).
    Missing or corrupt files raise :class:`~prunesearch.errors.DataError`.
    """
    from . import sources  # noqa: F401  (registers the loaders)

    name = str(name).strip()
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if name.startswith("imagefolder:"):
        path = name.split(":", 1)[1]
        if not path:
            raise ConfigError("dataset 'imagefolder:' needs a path, e.g. imagefolder:/data/pets")
        return sources.load_imagefolder(Path(path).expanduser(), seed=seed, **options)
    loader = DATASETS.get(name.lower())
    return loader(root, download=download, seed=seed, **options)


def dataset_names() -> list[str]:
    from . import sources  # noqa: F401

    return DATASETS.names() + ["imagefolder:PATH"]
