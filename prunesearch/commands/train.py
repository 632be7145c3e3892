"""``prunesearch train MODEL|ARCH.yaml --dataset D``: train one architecture from scratch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_write, atomic_write_text

NAME = "train"
HELP = "train one model or architecture file from scratch on a dataset"
DESCRIPTION = (
    "Train MODEL (e.g. resnet56, vgg16, resnet56-b) or an architecture YAML/JSON from scratch with a "
    "recipe (paper, fast, finetune, ... or a YAML file). The model is built for the dataset's classes, "
    "channels and image size. With --out DIR the run writes DIR/result.json, DIR/model.pt, "
    "DIR/architecture.yaml, DIR/recipe.yaml and a checkpoint it resumes from when run again."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL|ARCH.yaml", help="model name (resnet56, vgg16, ...) or architecture file")
    p.add_argument("--dataset", required=True,
                   help="cifar10, cifar100, mnist5k, digits, imagefolder:PATH, synthetic (tests/demos only)")
    p.add_argument("--recipe", default=None, help="paper, scratch-b, finetune, imagenet, fast, smoke or a YAML file "
                   "(default: paper on a GPU, fast on a CPU)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--lr", type=float, default=None, help="override the recipe's learning rate")
    p.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=None,
                   help="auto: bf16 where the hardware does it natively (default)")
    p.add_argument("--compile", nargs="?", const=True, default=None, metavar="MODE",
                   help="torch.compile the model; optional MODE: reduce-overhead (CUDA graphs), max-autotune")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: free cores)")
    p.add_argument("--data-dir", default=None, help="where CIFAR lives (default $PRUNESEARCH_DATA_DIR or ~/.cache/prunesearch/data)")
    p.add_argument("--download", action="store_true", help="download CIFAR into --data-dir if missing (needs internet)")
    p.add_argument("--image-size", type=int, default=None, help="imagefolder: resize images to this size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="training seed (weights init, order, augmentation)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out (stratified) for validation (default 0.1)")
    p.add_argument("--out", default=None, help="output folder (result, weights, checkpoint to resume from)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")


def _build(args, data):
    from ..arch import count_macs, count_params, load_architecture, resolve_model

    text = args.model
    if os.path.exists(text) or text.endswith((".yaml", ".yml", ".json")):
        arch = load_architecture(text)
        fit = dict(num_classes=data.num_classes, in_channels=data.in_channels, input_size=data.image_size)
        changes = {k: v for k, v in fit.items() if getattr(arch, k) != v}
        if changes:
            arch = arch.replace(**changes)
    else:
        arch = resolve_model(text, num_classes=data.num_classes, in_channels=data.in_channels,
                             input_size=data.image_size)
    return arch, count_params(arch), count_macs(arch)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..arch import save_architecture
    from ..data import load_dataset
    from ..models import build_model
    from ..train import get_recipe, resolve_device, save_recipe, train
    from ._common import console, err_console, make_out_dir, print_json

    from ._common import check_positive

    check_positive(args, "epochs", "batch_size", "threads")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed must be an integer in [0, 2**63), got {args.seed}")
    device = resolve_device(args.device)
    options = {"image_size": args.image_size} if args.image_size else {}
    if options and not args.dataset.startswith("imagefolder:"):
        raise ConfigError(f"--image-size applies to imagefolder: datasets only, saw --dataset {args.dataset}")
    data = load_dataset(args.dataset, data_dir=args.data_dir, download=args.download, val_fraction=args.val_fraction,
                        **options)
    recipe_name = args.recipe or ("paper" if device.type == "cuda" else "fast")
    recipe = get_recipe(recipe_name, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        precision=args.precision, compile=args.compile)
    arch, params, macs = _build(args, data)
    torch.manual_seed(args.seed)  # the initial weights belong to the run's seed too
    model = build_model(arch)

    out = Path(args.out) if args.out else None
    if out is not None:
        make_out_dir(out)  # fails before training, not after it

    # Progress: a rich bar on a terminal; plain lines otherwise (stderr when stdout carries JSON).
    stream = sys.stderr if args.json else sys.stdout
    con = err_console() if args.json else console()
    header = (f"{args.model} ({params:,} params, {macs:,} MACs) on {data.describe()}; recipe {recipe.name}, "
              f"{recipe.epochs} epochs, device {device}")
    con.print(header, highlight=False, soft_wrap=True)
    if stream.isatty():
        result = _train_with_bar(con, model, data, recipe, args, device, out)
    else:
        def plain(event) -> None:
            if event.kind == "epoch":
                acc = (f" val {_pct(event.val_acc)} test {_pct(event.test_acc)}"
                       if event.test_acc is not None or event.val_acc is not None else "")
                print(f"epoch {event.epoch}/{event.epochs} loss {event.loss:.4f} lr {event.lr:g}{acc} "
                      f"{event.images_per_second:.0f} img/s {event.elapsed:.0f}s", file=stream, flush=True)

        result = train(model, data, recipe, seed=args.seed, device=device, on_progress=plain,
                       checkpoint_dir=out / "checkpoints" if out else None, threads=args.threads,
                       resume=not args.no_resume)

    summary = {
        "model": args.model, "arch_id": arch.arch_id, "dataset": data.name, "synthetic": data.synthetic,
        "final_acc": result.final_acc, "val_acc": result.val_acc, "best_val_acc": result.best_val_acc,
        "best_val_epoch": result.best_val_epoch, "test_at_best_val": result.test_at_best_val,
        "best_acc": result.best_acc, "epochs": result.epochs, "split": data.split,
        "train_seconds": round(result.train_seconds, 3), "params": params, "macs": macs, "flops": 2 * macs,
        "images_per_second": round(result.images_per_second, 1), "precision": result.precision,
        "device": result.device, "seed": args.seed, "recipe": recipe.name,
    }
    if out is not None:
        # written once training has succeeded: a run that fails (e.g. on a corrupt checkpoint)
        # leaves the folder as it was
        save_architecture(arch, out / "architecture.yaml")
        save_recipe(recipe, out / "recipe.yaml")
        state = model.state_dict()
        atomic_write(out / "model.pt", lambda f: torch.save(state, f))  # never a torn model.pt
        atomic_write_text(out / "result.json",
                          json.dumps({**summary, "recipe_config": recipe.to_dict(), "result": result.to_dict()}, indent=2))
    if args.json:
        print_json(summary)
    else:
        tag = " [SYNTHETIC DATA]" if data.synthetic else ""
        console().print(
            f"test {_pct(result.final_acc)}  validation {_pct(result.val_acc)}  {result.epochs} epochs  "
            f"{result.train_seconds:.1f}s  {result.images_per_second:.0f} img/s  {result.precision}{tag}"
            + (f"  -> {out}" if out else ""), highlight=False, soft_wrap=True)
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _train_with_bar(con, model, data, recipe, args, device, out):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..train import train

    columns = [TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("val {task.fields[acc]}"),
               TextColumn("{task.fields[ips]} img/s"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=con, transient=False) as bar:
        task = bar.add_task("train", total=None, epoch="-", epochs=recipe.epochs, loss="-", acc="-", ips="-")

        def on_progress(event) -> None:
            if event.kind == "start":
                done = (event.epoch - 1) * event.steps
                bar.update(task, total=event.epochs * event.steps, completed=done, epoch=event.epoch)
            elif event.kind in ("step", "epoch"):
                fields = dict(epoch=event.epoch, loss=f"{event.loss:.3f}", ips=f"{event.images_per_second:.0f}")
                if event.val_acc is not None:
                    fields["acc"] = f"{100 * event.val_acc:.2f}%"
                bar.update(task, completed=(event.epoch - 1) * event.steps + event.step, **fields)

        return train(model, data, recipe, seed=args.seed, device=device, on_progress=on_progress,
                     checkpoint_dir=out / "checkpoints" if out else None, threads=args.threads,
                     resume=not args.no_resume)
