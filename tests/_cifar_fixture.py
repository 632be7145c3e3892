"""Test data on disk. A tiny CIFAR-10/100 in the exact on-disk format torchvision reads (REFERENCE §5).

``write_cifar(root, kind)`` writes pickled dicts with str keys (``data`` uint8 (N, 3072) as R, G, B
planes, ``labels`` / ``fine_labels`` lists) and returns the md5 lists to patch into the torchvision
class, so the real torchvision code path (integrity check included) runs with ``download=False``.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dump(path: Path, obj) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return _md5(path)


def make_images(n: int, seed: int, classes: int) -> tuple[np.ndarray, list[int]]:
    """Images whose pixel (c, 0, 0) = 10*c + (label) and the rest random: layout is checkable."""
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, classes, n)]
    img = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    for i, lab in enumerate(labels):
        for c in range(3):
            img[i, c, 0, 0] = 10 * c + lab % 10
    return img.reshape(n, 3072), labels


def write_cifar(root: Path, kind: str = "cifar10", per_batch: int = 6, n_test: int = 8) -> dict:
    """Write the fixture under ``root``; return {'train_list', 'test_list', 'meta'} for patching."""
    root = Path(root)
    if kind == "cifar10":
        d = root / "cifar-10-batches-py"
        d.mkdir(parents=True, exist_ok=True)
        train_list = []
        for b in range(1, 6):
            data, labels = make_images(per_batch, b, 10)
            md5 = _dump(d / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "data": data,
                                                 "labels": labels, "filenames": [f"{b}_{i}.png" for i in range(per_batch)]})
            train_list.append([f"data_batch_{b}", md5])
        data, labels = make_images(n_test, 99, 10)
        test_md5 = _dump(d / "test_batch", {"batch_label": "testing batch 1 of 1", "data": data, "labels": labels})
        meta_md5 = _dump(d / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                              "num_cases_per_batch": per_batch, "num_vis": 3072})
        return {"train_list": train_list, "test_list": [["test_batch", test_md5]],
                "meta": {"filename": "batches.meta", "key": "label_names", "md5": meta_md5}}
    if kind == "cifar100":
        d = root / "cifar-100-python"
        d.mkdir(parents=True, exist_ok=True)
        data, labels = make_images(per_batch * 5, 1, 100)
        train_md5 = _dump(d / "train", {"data": data, "fine_labels": labels, "coarse_labels": [0] * len(labels)})
        data, labels = make_images(n_test, 99, 100)
        test_md5 = _dump(d / "test", {"data": data, "fine_labels": labels, "coarse_labels": [0] * len(labels)})
        meta_md5 = _dump(d / "meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                                      "coarse_label_names": [f"s{i}" for i in range(20)]})
        return {"train_list": [["train", train_md5]], "test_list": [["test", test_md5]],
                "meta": {"filename": "meta", "key": "fine_label_names", "md5": meta_md5}}
    raise ValueError(kind)


def patch_md5s(monkeypatch, kind: str, lists: dict) -> None:
    import torchvision.datasets as tvd

    cls = tvd.CIFAR10 if kind == "cifar10" else tvd.CIFAR100
    for attr, value in lists.items():
        monkeypatch.setattr(cls, attr, value)


def write_image_folder(root, n=3, size=(20, 12)):
    """ImageFolder layout: root/{train,val}/{cat,dog}/i.png, random RGB images of ``size``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / cls / f"{i}.png")
