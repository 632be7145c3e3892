"""Device-resident batches with batched on-device augmentation.

The reference loop decodes, pads, crops, flips and normalises every image in Python (PIL) in one
worker process; on a GPU that starves the device and on a CPU it steals a core from the maths. Here
the whole set lives on the training device as uint8 (CIFAR-10 train: 150 MB), and each batch is
augmented with two gathers: one random crop offset and one flip bit per image, drawn for the whole
epoch at once from a seeded CPU generator (so the same seed gives the same augmentation on any
device, and its state is a small tensor that checkpoints can store).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .dataset import Dataset


def draw_augmentation(
    n: int, pad: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets ``oy, ox`` in ``[0, 2*pad]`` and flip bits (p = 0.5), int64/bool on CPU."""
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets[0], offsets[1], flips


def crop_flip(
    x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor | None, pad: int
) -> torch.Tensor:
    """Zero-pad ``x`` (B, C, H, W) by ``pad`` on each side, crop H x W at (oy, ox) per image, and
    mirror the images where ``flip`` is true. Vectorised: two ``gather`` calls, no per-image loop.
    Equals torchvision's ``Pad(pad) -> RandomCrop(H) -> RandomHorizontalFlip`` with those draws."""
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dev = x.device
    rows = oy.to(dev)[:, None] + torch.arange(h, device=dev)  # (B, H)
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip is not None:
        cols = torch.where(flip.to(dev)[:, None], cols.flip(1), cols)
    cols = ox.to(dev)[:, None] + cols  # (B, W)
    out = xp.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


class DeviceData:
    """A :class:`Dataset` placed on ``device``: yields normalised float batches ready for the model.

    Resident sets are moved to the device once; streamed sets (large image folders) are read
    through a DataLoader in uint8 and augmented on the device the same way.
    """

    def __init__(
        self,
        data: Dataset,
        device: torch.device,
        channels_last: bool = False,
        workers: int = 0,
    ) -> None:
        self.data = data
        self.device = device
        self.channels_last = channels_last
        self.workers = workers
        pin = device.type == "cuda"
        if data.resident:
            self.train_x = data.train_x.to(device)
            self.train_y = data.train_y.to(device)
            self.test_x = data.test_x.to(device)
            self.test_y = data.test_y.to(device)
        self.val_x = data.val_x.to(device) if data.val_x is not None else None
        self.val_y = data.val_y.to(device) if data.val_y is not None else None
        self._pin = pin
        # Normalise in [0, 255] units: (x - 255*mean) / (255*std) == Normalize(ToTensor(x)).
        shape = (1, data.in_channels, 1, 1)
        self.scale = (1.0 / (255.0 * torch.tensor(data.std, dtype=torch.float32))).view(shape).to(device)
        self.shift = (torch.tensor(data.mean, dtype=torch.float32) / torch.tensor(data.std)).view(shape).to(device)

    @property
    def num_train(self) -> int:
        return self.data.num_train

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().mul_(self.scale).sub_(self.shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def steps_per_epoch(self, batch_size: int) -> int:
        n = self.num_train
        full, rest = divmod(n, batch_size)
        return full + (1 if rest >= 2 else 0)  # a 1-image batch would break BatchNorm: drop it

    def train_batches(
        self, batch_size: int, generator: torch.Generator, augment: bool = True, flip: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: a fresh permutation and fresh augmentation draws from ``generator``."""
        n = self.num_train
        perm = torch.randperm(n, generator=generator)
        oy, ox, fl = draw_augmentation(n, self.data.crop_pad, generator)
        steps = self.steps_per_epoch(batch_size)
        if self.data.resident:
            perm_d = perm.to(self.device)
            if augment:
                oy, ox, fl = oy.to(self.device), ox.to(self.device), fl.to(self.device)
            for s in range(steps):
                idx = perm_d[s * batch_size : (s + 1) * batch_size]
                x = self.train_x[idx]
                if augment:
                    sl = slice(s * batch_size, s * batch_size + len(idx))
                    x = crop_flip(x, oy[sl], ox[sl], fl[sl] if flip else None, self.data.crop_pad)
                yield self.normalize(x), self.train_y[idx]
            return
        loader = torch.utils.data.DataLoader(
            self.data.train_stream, batch_size=batch_size, sampler=perm.tolist(),
            num_workers=self.workers, pin_memory=self._pin, drop_last=False,
        )
        for s, (x, y) in enumerate(loader):
            if s >= steps:
                break
            x = x.to(self.device, non_blocking=True)
            y = torch.as_tensor(y, dtype=torch.int64).to(self.device, non_blocking=True)
            if augment:
                sl = slice(s * batch_size, s * batch_size + len(y))
                x = crop_flip(x, oy[sl], ox[sl], fl[sl] if flip else None, self.data.crop_pad)
            yield self.normalize(x), y

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test set, in order (reported, never used for a choice)."""
        return self.eval_batches("test", batch_size)

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation set (carved from the training set), in order: what choices are made on."""
        return self.eval_batches("val", batch_size)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised, unaugmented batches of the ``val`` or ``test`` split."""
        x_all, y_all = (self.val_x, self.val_y) if split == "val" else (
            (self.test_x, self.test_y) if self.data.test_x is not None else (None, None))
        if x_all is not None:
            for s in range(0, len(y_all), batch_size):
                yield self.normalize(x_all[s : s + batch_size]), y_all[s : s + batch_size]
            return
        stream = self.data.val_stream if split == "val" else self.data.test_stream
        if stream is None:
            return
        loader = torch.utils.data.DataLoader(stream, batch_size=batch_size, num_workers=self.workers, pin_memory=self._pin)
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            yield self.normalize(x), torch.as_tensor(y, dtype=torch.int64).to(self.device, non_blocking=True)
