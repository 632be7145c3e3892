"""Datasets and the device-resident batch pipeline.

``load_dataset(name, data_dir=None, download=False, seed=0) -> Dataset`` for ``cifar10``,
``cifar100``, ``imagefolder:PATH``, ``mnist5k``, ``digits`` and ``synthetic`` (tests only).
"""

from .dataset import DATASETS, Dataset, dataset_names, default_data_dir, load_dataset
from .pipeline import DeviceData, crop_flip, draw_augmentation
from .sources import CIFAR_MEAN, CIFAR_STD, channel_stats, stratified_split

__all__ = [
    "DATASETS",
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
