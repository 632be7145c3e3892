"""The Dataset noun, the name -> loader registry (each loader declares its shape), and the
validation split.

A :class:`Dataset` is plain tensors: the train, validation and test sets as uint8 ``(N, C, H, W)``
on the CPU (the trainer moves them to the training device once). Sets too large for memory (a
user's ``imagefolder:``) carry ``*_stream`` torch Datasets instead, read through a DataLoader.

**Validation.** Every dataset carves a stratified, seeded validation split out of its training set
(``val_fraction``, default 10 %). Choices (a searched architecture, a best epoch) are made on it;
the test set is only ever reported. The split is part of what a result means, so it is recorded
with every result (``Dataset.split``).

**Names and shapes.** Loaders register with the shape of what they load (classes, channels, side),
so :func:`dataset_info` answers "what does this dataset look like?" without reading a file (an
image folder counts its class folders). Names are normalised once (:func:`canonical_dataset`):
``CIFAR10`` and ``cifar10`` are the same dataset, and ``imagefolder:`` paths are made absolute.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError, suggest
from ..registry import Registry

DEFAULT_VAL_FRACTION = 0.1
MAX_VAL_FRACTION = 0.5


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
    val_x: torch.Tensor | None = None  # carved from the training set (see with_validation)
    val_y: torch.Tensor | None = None
    val_stream: Any = None
    val_fraction: float = 0.0
    split_seed: int = 0

    @property
    def resident(self) -> bool:
        """True when the whole set is held as tensors (the fast path)."""
        return self.train_x is not None

    @property
    def num_train(self) -> int:
        return len(self.train_y) if self.resident else len(self.train_stream)

    @property
    def num_val(self) -> int:
        if self.val_y is not None:
            return len(self.val_y)
        return len(self.val_stream) if self.val_stream is not None else 0

    @property
    def num_test(self) -> int:
        return len(self.test_y) if self.test_y is not None else len(self.test_stream)

    @property
    def split(self) -> dict[str, Any]:
        """What every result records about the data it saw."""
        return {"val_fraction": self.val_fraction, "split_seed": self.split_seed, "train": self.num_train,
                "val": self.num_val, "test": self.num_test}

    def describe(self) -> str:
        tag = " [SYNTHETIC: not real data]" if self.synthetic else ""
        return (
            f"{self.name}{tag}: {self.num_train} train / {self.num_val} validation / {self.num_test} test images, "
            f"{self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes"
        )

    def __repr__(self) -> str:  # tensors in the default repr would print megabytes
        return f"Dataset({self.describe()})"


@dataclass(frozen=True)
class DatasetInfo:
    """The shape of a dataset, known without loading it."""

    name: str  # canonical
    num_classes: int
    in_channels: int
    image_size: int
    synthetic: bool = False


@dataclass(frozen=True)
class _Entry:
    loader: Callable[..., Dataset]
    shape: Callable[[dict[str, Any]], tuple[int, int, int]]
    synthetic: bool = False


#: name -> loader(root: Path, download: bool, seed: int, **options) -> Dataset, with its shape
DATASETS: Registry[_Entry] = Registry("dataset")


def register_dataset(name: str, shape: tuple[int, int, int] | Callable[[dict[str, Any]], tuple[int, int, int]],
                     synthetic: bool = False) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a loader under ``name`` with its (classes, channels, side): a tuple, or a function of
    the loader's options (e.g. ``synthetic``'s ``image_size``)."""

    def add(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        fn = shape if callable(shape) else (lambda options, s=shape: s)
        DATASETS.register(name, _Entry(loader, fn, synthetic))
        return loader

    return add


def default_data_dir() -> Path:
    """``$PRUNESEARCH_DATA_DIR`` or ``~/.cache/prunesearch/data``."""
    env = os.environ.get("PRUNESEARCH_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunesearch" / "data"


def _ensure_registered() -> None:
    from . import sources  # noqa: F401  (registers the loaders)


def canonical_dataset(name: Any) -> str:
    """The one spelling of a dataset name: registry names lower-cased, ``imagefolder:PATH`` with an
    absolute path. Unknown names raise ConfigError listing the known ones."""
    _ensure_registered()
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"dataset must be a name like mnist5k or cifar10, saw {name!r}")
    text = name.strip()
    if text.lower().startswith("imagefolder:"):
        path = text.split(":", 1)[1].strip()
        if not path:
            raise ConfigError("dataset 'imagefolder:' needs a path, e.g. imagefolder:/data/pets")
        return "imagefolder:" + str(Path(path).expanduser().resolve())
    key = text.lower()
    if key not in DATASETS:
        known = ", ".join(dataset_names())
        raise ConfigError(f"unknown dataset '{text}'{suggest(key, DATASETS.names())}; known: {known}")
    return key


def dataset_info(name: str, options: dict[str, Any] | None = None) -> DatasetInfo:
    """Classes, channels and side of a dataset, without loading its images."""
    canon = canonical_dataset(name)
    options = dict(options or {})
    if canon.startswith("imagefolder:"):
        from .sources import imagefolder_shape

        n, c, s = imagefolder_shape(Path(canon.split(":", 1)[1]), **options)
        return DatasetInfo(canon, n, c, s)
    entry = DATASETS.get(canon)
    n, c, s = entry.shape(options)
    return DatasetInfo(canon, int(n), int(c), int(s), entry.synthetic)


def check_val_fraction(value: Any, what: str = "val_fraction") -> float:
    """A validation fraction in (0, 0.5]; one-line ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
            0 < value <= MAX_VAL_FRACTION):
        raise ConfigError(f"{what} must be a fraction in (0, {MAX_VAL_FRACTION}] of the training set (default "
                          f"{DEFAULT_VAL_FRACTION}), saw {value!r}; choices need a validation split")
    return float(value)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    **options: Any,
) -> Dataset:
    """Load a dataset by name: ``cifar10``, ``cifar100``, ``imagefolder:PATH``, ``mnist5k``,
    ``digits``, ``synthetic`` (tests and demos only; marked synthetic everywhere).

    ``seed`` fixes the splits (the small sets' train/test split, every set's validation split, the
    synthetic images); it is not the training seed. ``val_fraction`` of every class of the
    training set becomes the validation set. ``options`` go to the loader (e.g. ``image_size=64``
    for ``imagefolder:``). Missing or corrupt files raise :class:`~prunesearch.errors.DataError`.
    """
    _ensure_registered()
    from . import sources

    val_fraction = check_val_fraction(val_fraction)
    canon = canonical_dataset(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if canon.startswith("imagefolder:"):
        data = sources.load_imagefolder(Path(canon.split(":", 1)[1]), seed=seed, **options)
    else:
        data = DATASETS.get(canon).loader(root, download=download, seed=seed, **options)
    return with_validation(data, val_fraction, seed)


def stratified_split(y: np.ndarray, test_per_class: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle each class with ``seed`` and hold out ``test_per_class`` images of it (an int, or a
    fraction of the class, at least one image when the class has two). Returns (kept_idx,
    held_out_idx), each shuffled across classes."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        if test_per_class >= 1:
            k = int(test_per_class)
        else:
            k = int(round(len(idx) * test_per_class))
            if k == 0 and len(idx) >= 2 and test_per_class > 0:
                k = 1
        test.append(idx[:k])
        train.append(idx[k:])
    train_idx, test_idx = np.concatenate(train), np.concatenate(test)
    rng.shuffle(train_idx)
    rng.shuffle(test_idx)
    return train_idx, test_idx


def with_validation(data: Dataset, val_fraction: float, seed: int) -> Dataset:
    """``data`` with ``val_fraction`` of each training class moved into a validation set (seeded,
    stratified; a different stream of the seed than the small sets' train/test split)."""
    import dataclasses

    if data.num_val:  # already split
        return data
    if data.resident:
        y = data.train_y.numpy()
    else:
        y = np.asarray([label for _, label in data.train_stream.folder.samples]) if hasattr(
            data.train_stream, "folder") else np.asarray([int(data.train_stream[i][1]) for i in range(len(data.train_stream))])
    keep, val = stratified_split(y, val_fraction, seed + 7_919)
    if len(keep) < 2 or len(val) < 1:
        raise DataError(f"{data.name} has {len(y)} training images: too few to carve a {val_fraction:g} validation "
                        "split and still train; use a larger dataset")
    keep_t, val_t = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(val))
    if data.resident:
        return dataclasses.replace(
            data, train_x=data.train_x[keep_t].contiguous(), train_y=data.train_y[keep_t].contiguous(),
            val_x=data.train_x[val_t].contiguous(), val_y=data.train_y[val_t].contiguous(),
            val_fraction=val_fraction, split_seed=int(seed))
    return dataclasses.replace(
        data, train_stream=torch.utils.data.Subset(data.train_stream, keep_t.tolist()),
        val_stream=torch.utils.data.Subset(data.train_stream, val_t.tolist()),
        val_fraction=val_fraction, split_seed=int(seed))


def dataset_names() -> list[str]:
    _ensure_registered()
    return DATASETS.names() + ["imagefolder:PATH"]
