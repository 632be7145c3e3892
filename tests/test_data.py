"""Datasets and the on-device augmentation pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _cifar_fixture import patch_md5s, write_cifar, write_image_folder
from prunesearch.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    DeviceData,
    crop_flip,
    draw_augmentation,
    load_dataset,
    stratified_split,
)
from prunesearch.errors import ConfigError, DataError


# ----------------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_fixture_loads_through_torchvision(tmp_path, monkeypatch, kind):
    patch_md5s(monkeypatch, kind, write_cifar(tmp_path, kind, per_batch=6, n_test=8))
    d = load_dataset(kind, data_dir=tmp_path)
    # 30 training images: a stratified 10 % validation split (at least one per class) is carved out
    assert d.num_train + d.num_val == 30 and d.num_val >= 1 and d.train_x.dtype == torch.uint8
    assert d.train_x.shape[1:] == (3, 32, 32) and d.val_x.shape[1:] == (3, 32, 32)
    assert d.test_x.shape == (8, 3, 32, 32) and d.test_y.dtype == torch.int64
    assert d.num_classes == (10 if kind == "cifar10" else 100)
    assert (d.in_channels, d.image_size, d.synthetic, d.flip_ok) == (3, 32, False, True)
    assert d.mean == CIFAR_MEAN and d.std == CIFAR_STD
    # R, G, B planes -> channels 0, 1, 2; the fixture stores 10*c + label%10 at pixel (c, 0, 0).
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)):
        for c in range(3):
            assert torch.equal(x[:, c, 0, 0].long(), 10 * c + y % 10)


def test_cifar_accepts_the_extracted_folder_itself(tmp_path, monkeypatch):
    patch_md5s(monkeypatch, "cifar10", write_cifar(tmp_path))
    d = load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py")
    assert d.num_train + d.num_val == 30


def test_cifar_missing_dir_is_one_line_data_error(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_dir=tmp_path / "nowhere")
    msg = str(e.value)
    assert "\n" not in msg
    assert "cifar-10-batches-py" in msg and "--download" in msg and str(tmp_path / "nowhere") in msg


def test_cifar_corrupt_file_is_data_error(tmp_path, monkeypatch):
    patch_md5s(monkeypatch, "cifar10", write_cifar(tmp_path))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")  # md5 no longer matches
    with pytest.raises(DataError, match="missing or corrupt") as e:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "\n" not in str(e.value)


def test_cifar100_missing_names_its_folder(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_unknown_dataset_suggests():
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        load_dataset("cifar1O")


# ------------------------------------------------------------------------------ small real sets
def test_mnist5k_balanced_fixed_split():
    d = load_dataset("mnist5k")
    assert d.num_train == 3600 and d.num_val == 400 and d.num_test == 1000  # validation: 10 % of each class
    assert d.train_x.shape == (3600, 1, 32, 32) and d.train_x.dtype == torch.uint8
    assert torch.bincount(d.train_y).tolist() == [360] * 10
    assert torch.bincount(d.val_y).tolist() == [40] * 10
    assert d.split == {"val_fraction": 0.1, "split_seed": 0, "train": 3600, "val": 400, "test": 1000}
    assert torch.bincount(d.test_y).tolist() == [100] * 10
    # padded 28 -> 32 with zeros; real digits have ink
    assert int(d.train_x[:, :, :2].max()) == 0 and int(d.train_x[:, :, :, -2:].max()) == 0
    assert int(d.train_x.max()) == 255 and not d.flip_ok and not d.synthetic
    # shuffled (the source is sorted by class), fixed by the seed
    assert len(set(d.train_y[:20].tolist())) > 3
    again = load_dataset("mnist5k")
    assert torch.equal(again.train_y, d.train_y) and torch.equal(again.test_x, d.test_x)
    other = load_dataset("mnist5k", seed=1)
    assert not torch.equal(other.train_y, d.train_y)
    assert 0.05 < d.mean[0] < 0.2 and 0.2 < d.std[0] < 0.4


def test_digits_upscaled_and_split():
    d = load_dataset("digits")
    assert d.num_train + d.num_val + d.num_test == 1797 and d.num_val > 0
    assert d.train_x.shape[1:] == (1, 32, 32) and int(d.train_x.max()) == 255
    # 4x pixel repetition: each 4x4 block is constant
    blocks = d.train_x[:5, 0].reshape(5, 8, 4, 8, 4)
    assert torch.equal(blocks, blocks[:, :, :1, :, :1].expand_as(blocks))
    assert not d.flip_ok


def test_synthetic_is_marked_synthetic():
    d = load_dataset("synthetic", n_train=64, n_test=32)
    assert d.synthetic and "SYNTHETIC" in d.describe() and "SYNTHETIC" in repr(d)
    assert d.train_x.shape[1:] == (3, 32, 32) and d.num_train + d.num_val == 64
    with pytest.raises(ConfigError, match="synthetic options"):
        load_dataset("synthetic", bogus=1)


def test_stratified_split_fraction():
    y = np.repeat(np.arange(3), 10)
    tr, te = stratified_split(y, 0.2, seed=0)
    assert sorted(np.bincount(y[te]).tolist()) == [2, 2, 2]
    assert len(set(tr) | set(te)) == 30 and not set(tr) & set(te)


# --------------------------------------------------------------------------------- image folders
def test_imagefolder_resident_and_streamed(tmp_path):
    write_image_folder(tmp_path)
    d = load_dataset(f"imagefolder:{tmp_path}", image_size=16, workers=0)
    assert d.resident and d.train_x.shape[1:] == (3, 16, 16) and d.num_train + d.num_val == 6 and d.num_classes == 2
    assert d.info["classes"] == ["cat", "dog"] and d.crop_pad == 2
    s = load_dataset(f"imagefolder:{tmp_path}", image_size=16, workers=0, max_resident_bytes=0)
    assert not s.resident and s.num_train + s.num_val == 6 and s.num_test == 6
    x, y = s.train_stream[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8
    assert torch.equal(x, d.train_x[0])


def test_imagefolder_missing_val_is_data_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no 'val' folder"):
        load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


# ---------------------------------------------------------------------------------- augmentation
def test_crop_flip_matches_pad_crop_flip_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    oy, ox, fl = draw_augmentation(16, 4, g)
    out = crop_flip(x, oy, ox, fl, pad=4)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        ref = padded[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32]
        if fl[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)
    # no flip argument: crops only; offset (4, 4) is the identity
    same = crop_flip(x, torch.full((16,), 4), torch.full((16,), 4), None, pad=4)
    assert torch.equal(same, x)


def test_augmentation_statistics():
    g = torch.Generator().manual_seed(1)
    oy, ox, fl = draw_augmentation(20000, 4, g)
    assert int(oy.min()) == 0 and int(oy.max()) == 8 and int(ox.min()) == 0 and int(ox.max()) == 8
    assert abs(float(fl.float().mean()) - 0.5) < 0.02
    counts = torch.bincount(ox, minlength=9).float() / 20000
    assert float((counts - 1 / 9).abs().max()) < 0.02  # uniform offsets


def test_device_data_batches_normalised_and_cover_epoch():
    d = load_dataset("synthetic", n_train=100, n_test=40)
    dd = DeviceData(d, torch.device("cpu"), channels_last=True)
    g = torch.Generator().manual_seed(0)
    ys, shapes = [], []
    for x, y in dd.train_batches(32, g, augment=False):
        assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
        ys.append(y)
        shapes.append(len(y))
    assert d.num_train == 90  # 10 of the 100 are the validation split
    assert shapes == [32, 32, 26] and dd.steps_per_epoch(32) == 3
    assert torch.equal(torch.cat(ys).sort().values, d.train_y.sort().values)  # a permutation
    # normalisation equals torchvision's ToTensor + Normalize
    import torchvision.transforms.functional as TF

    x0 = next(dd.test_batches(8))[0]
    ref = TF.normalize(d.test_x[:8].float() / 255, d.mean, d.std)
    assert torch.allclose(x0, ref, atol=1e-5)
    # a one-image tail batch would break BatchNorm: dropped
    assert dd.steps_per_epoch(33) == 3 and dd.steps_per_epoch(99) == 1


def test_no_flip_for_digits_by_default():
    d = load_dataset("digits")
    dd = DeviceData(d, torch.device("cpu"))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = next(dd.train_batches(64, g1, augment=True, flip=d.flip_ok))[0]
    # Same draws with flips disabled explicitly: identical, so no flip happened
    b = next(dd.train_batches(64, g2, augment=True, flip=False))[0]
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------- opt-in tiers
@pytest.mark.cifar
def test_real_cifar10_from_env_dir():
    import os

    root = os.environ.get("PRUNESEARCH_CIFAR_DIR")
    if not root:
        pytest.skip("set PRUNESEARCH_CIFAR_DIR to a folder holding cifar-10-batches-py")
    d = load_dataset("cifar10", data_dir=root)
    assert (d.num_train, d.num_test) == (50000, 10000)
    assert torch.bincount(d.train_y).tolist() == [5000] * 10
    # the reference normalisation constants are close to the real statistics
    from prunesearch.data import channel_stats

    mean, _ = channel_stats(d.train_x[:5000])
    assert all(abs(a - b) < 0.01 for a, b in zip(mean, CIFAR_MEAN))


def test_imagefolder_refuses_one_class_and_decompression_bombs(tmp_path):
    from PIL import Image

    one = tmp_path / "one"
    for split in ("train", "val"):
        (one / split / "only").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(one / split / "only" / "x.png")
    with pytest.raises(DataError, match="1 class folder") as e:
        load_dataset(f"imagefolder:{one}", image_size=8, workers=0)
    assert "\n" not in str(e.value)
    bomb = tmp_path / "bomb"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (bomb / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(bomb / split / c / "x.png")
    Image.new("1", (14_000, 14_000)).save(bomb / "train" / "a" / "big.png")  # 196 MPixel, a few KiB on disk
    with pytest.raises(DataError, match="too large to decode safely") as e:
        load_dataset(f"imagefolder:{bomb}", image_size=8, workers=0)
    assert "\n" not in str(e.value)
