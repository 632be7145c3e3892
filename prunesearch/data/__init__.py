"""Datasets and the device-resident batch pipeline.

``load_dataset(name, data_dir=None, download=False, seed=0) -> Dataset`` for ``cifar10``,
``cifar100``, ``imagefolder:PATH``, ``mnist5k``, ``digits`` and ``synthetic`` (tests only).
"""

from .dataset import (
    DATASETS,
    DEFAULT_VAL_FRACTION,
    Dataset,
    DatasetInfo,
    canonical_dataset,
    check_val_fraction,
    dataset_info,
    dataset_names,
    default_data_dir,
    load_dataset,
    register_dataset,
    stratified_split,
    with_validation,
)
from .pipeline import DeviceData, crop_flip, draw_augmentation
from .sources import CIFAR_MEAN, CIFAR_STD, channel_stats

__all__ = [
    "DATASETS",
    "DEFAULT_VAL_FRACTION",
    "DatasetInfo",
    "canonical_dataset",
    "check_val_fraction",
    "dataset_info",
    "register_dataset",
    "with_validation",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "Dataset",
    "DeviceData",
    "channel_stats",
    "crop_flip",
    "dataset_names",
    "default_data_dir",
    "draw_augmentation",
    "load_dataset",
    "stratified_split",
]
