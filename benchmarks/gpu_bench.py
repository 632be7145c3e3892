"""The GPU benchmark (run by ``benchmarks/gpu.sh``): one short script for a GPU machine with PyTorch
and NO Optuna (only prunesearch's torch parts are imported: arch, models, data, train).

Parts, in this order (each one's result is written to ``OUT/gpu_bench.json`` as soon as it is done,
so a run stopped by its time limit still brings back what it measured):

1. ``throughput``: ours vs a faithful re-creation of the reference loop (benchmarks/train_throughput.py:
   PIL per image, 1-worker DataLoader, fp32, batch 64) on the same synthetic CIFAR-shaped images,
   same model and recipe (SGD 0.9, lr 0.1, wd 1e-4, batch 64), for resnet56 and vgg19: images/s, speedup.
2. ``epoch``: two full CIFAR-sized epochs of resnet56 (50,000 training images cycled from the
   synthetic set, 10,000 test images, checkpoint every epoch as a study run does); the second
   epoch's wall time x 160 = the projected time of a 160-epoch run (evaluation included).
3. ``compiled``: ours with ``torch.compile(mode='reduce-overhead')`` (CUDA graphs: batch-64 ResNet-56
   is bound by kernel launches, not by the GPU), in a subprocess with a time limit (at most 180 s,
   and never eating the time the later parts need); compile time reported apart.
4. ``concurrency``: k = 1, 2, 4, 8 separate processes each training resnet56 on the one GPU at the
   same time; per-process and total images/s over a common window after warm-up, and ResNet-56
   160-epoch runs per GPU-hour.
5. ``accuracy``: a short real-data run (scikit-learn's digits, shipped in its wheel) with ours and the
   reference loop, same seeds: both final accuracies (parity check on the GPU).

``--dry`` runs the same code paths on the CPU with tiny sizes (about a minute) for tests and CI;
the compiled part is skipped there (compiling on a shared 2-core CPU takes minutes).

    python benchmarks/gpu_bench.py --out DIR [--dry] [--budget-seconds 450] [--parts throughput,epoch,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = ("throughput", "epoch", "compiled", "concurrency", "accuracy")
RESERVE = {"gpu": 150.0, "dry": 0.0}  # seconds kept for the parts after 'compiled' 
EPOCH_IMAGES = 50_000  # CIFAR-10/100 training set
RUN_EPOCHS = 160  # the paper's CIFAR schedule
TARGETS = {"speedup_vs_reference": 10.0, "resnet56_160_epoch_run_seconds": 120.0, "resnet56_runs_per_gpu_hour": 60.0}

SIZES: dict[str, dict[str, Any]] = {
    # GPU: about 4 minutes without 'compiled' on an H200 (estimate); compiled gets at most 180 s
    "gpu": dict(models=("resnet56", "vgg19"), images=12_800, warmup=2_560, repeats=2,
                epoch_train=EPOCH_IMAGES, epoch_test=10_000, ks=(1, 2, 4, 8), worker_images=2_560,
                worker_seconds=12.0, acc_model="resnet20", acc_epochs=20, acc_seeds=2, acc_images=None,
                compile_images=12_800),
    # --dry: same code paths on the CPU, tiny sizes
    "dry": dict(models=("resnet56", "vgg19"), images=32, warmup=32, repeats=1,
                epoch_train=128, epoch_test=64, ks=(1, 2), worker_images=64,
                worker_seconds=1.5, acc_model="resnet20", acc_epochs=1, acc_seeds=1, acc_images=(128, 64),
                compile_images=64),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker", help="(internal) one concurrent trial of the concurrency part")
    w.add_argument("--model", default="resnet56")
    w.add_argument("--device", default="cuda")
    w.add_argument("--images", type=int, required=True, help="training set size (cycled synthetic images)")
    w.add_argument("--seconds", type=float, required=True, help="measured window after the first epoch")
    w.add_argument("--barrier", required=True, help="dir where the k workers meet before training")
    w.add_argument("--k", type=int, required=True)
    w.add_argument("--index", type=int, required=True)
    w.add_argument("--threads", type=int, default=None)
    w.add_argument("--result", required=True)
    c = sub.add_parser("compiled", help="(internal) the compiled part, in its own process")
    c.add_argument("--model", default="resnet56")
    c.add_argument("--device", default="cuda")
    c.add_argument("--images", type=int, required=True)
    c.add_argument("--mode", default="reduce-overhead")
    c.add_argument("--result", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT") or None,
                    help="result dir (default $OUT; with --dry and no $OUT: a temp dir)")
    ap.add_argument("--dry", action="store_true", help="CPU, tiny sizes, same code paths (~1 minute)")
    ap.add_argument("--device", default=None, help="default cuda (cpu with --dry)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    ap.add_argument("--budget-seconds", type=float, default=None,
                    help="stop starting parts after this many seconds (default 390 on a GPU, 240 with --dry)")
    args = ap.parse_args(argv)
    if args.cmd is None:
        parts = [p.strip() for p in args.parts.split(",") if p.strip()]
        bad = [p for p in parts if p not in PARTS]
        if bad:
            ap.error(f"--parts: unknown part(s) {', '.join(bad)}; known: {', '.join(PARTS)}")
        args.part_list = parts
        args.device = args.device or ("cpu" if args.dry else "cuda")
        args.budget_seconds = args.budget_seconds or (240.0 if args.dry else 390.0)
        args.size = SIZES["dry" if args.dry else "gpu"]
    return args


# ------------------------------------------------------------------------------ shared helpers
def cycled(data, n_train: int, n_test: int | None = None):
    """``data`` with ``n_train`` training (and ``n_test`` test) images, cycling its images."""
    import torch

    from prunesearch.data import Dataset

    d = dict(data.__dict__)
    idx = torch.arange(n_train) % len(data.train_y)
    d["train_x"], d["train_y"] = data.train_x[idx].clone(), data.train_y[idx].clone()
    if n_test is not None:
        t = torch.arange(n_test) % len(data.test_y)
        d["test_x"], d["test_y"] = data.test_x[t].clone(), data.test_y[t].clone()
    return Dataset(**d)


def synthetic(n_train: int, n_test: int = 256):
    """Synthetic CIFAR-shaped images (3x32x32, 10 classes): speed does not depend on content."""
    from prunesearch.data import load_dataset

    base = load_dataset("synthetic", n_train=min(n_train, 5_120), n_test=min(n_test, 1_000))
    return cycled(base, n_train, n_test)


def build(model: str, data, seed: int = 0):
    import torch

    from prunesearch.arch import resolve_model
    from prunesearch.models import build_model

    arch = resolve_model(model, num_classes=data.num_classes, in_channels=data.in_channels, input_size=data.image_size)
    torch.manual_seed(seed)
    return build_model(arch)


class _Stop(Exception):
    pass


# ------------------------------------------------------------------------------ parts
def part_throughput(args, device) -> dict[str, Any]:
    from benchmarks.train_throughput import throughput

    s = args.size
    out = {}
    for model in s["models"]:
        ns = SimpleNamespace(model=model, images=s["images"], warmup_images=s["warmup"], repeats=s["repeats"],
                             threads=1 if args.dry else None, precision="auto", compile=False, data_dir=None, seed=0)
        t0 = time.perf_counter()
        r = throughput(ns, device)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        out[model] = r
        print(f"[throughput] {model}: ours {r['ours_img_s']} img/s, reference {r['reference_img_s']} img/s, "
              f"speedup {r['speedup']}x", flush=True)
    return out


def part_epoch(args, device) -> dict[str, Any]:
    """Two full CIFAR-sized epochs of resnet56; the second one's time x 160."""
    from prunesearch.train import get_recipe, train

    s = args.size
    data = synthetic(s["epoch_train"], s["epoch_test"])
    recipe = get_recipe("paper", epochs=2)
    with tempfile.TemporaryDirectory() as ckpt:
        r = train(build("resnet56", data), data, recipe, seed=0, device=device, checkpoint_dir=ckpt,
                  threads=None)
    e2 = r.history[-1]
    train_s = data.num_train / e2.images_per_second
    scale = EPOCH_IMAGES / data.num_train  # 1 on the GPU; the dry run scales its tiny epoch up
    epoch_s = e2.seconds * scale
    out = {
        "model": "resnet56", "train_images_per_epoch": data.num_train, "test_images": data.num_test,
        "epoch_seconds": [round(h.seconds, 3) for h in r.history],
        "epoch2_train_img_s": round(e2.images_per_second, 1),
        "epoch2_eval_and_overhead_seconds": round(e2.seconds - train_s, 3),
        "projected_160_epoch_seconds": round(RUN_EPOCHS * epoch_s, 1),
        "projection": "160 x (second epoch's wall time, evaluation of the test set and checkpoint included)"
                      + ("" if scale == 1 else f", epoch scaled x{scale:.0f} to 50,000 images (dry run)"),
        "precision": r.precision, "channels_last": r.channels_last,
    }
    print(f"[epoch] resnet56: {e2.images_per_second:.0f} img/s, epoch {epoch_s:.2f} s -> 160 epochs "
          f"{out['projected_160_epoch_seconds']:.0f} s", flush=True)
    return out


def worker(args) -> int:
    """One of k concurrent trials: warm up, meet the others, train; measure after the first epoch."""
    import torch

    from prunesearch.train import get_recipe, train

    dev = torch.device(args.device)
    data = synthetic(args.images)
    recipe = get_recipe("paper", epochs=10_000, eval_every=10_000)  # stopped from the progress callback
    model = build(args.model, data)
    train(model, cycled(data, min(256, args.images)), get_recipe("paper", epochs=1), seed=args.index, device=dev,
          threads=args.threads)
    barrier = Path(args.barrier)
    (barrier / f"ready-{args.index}").write_text("1")
    deadline = time.time() + 300
    while len(list(barrier.glob("ready-*"))) < args.k:
        if time.time() > deadline:
            raise SystemExit("worker: the other workers never came")
        time.sleep(0.02)
    mark: dict[str, float] = {}

    def on_progress(ev) -> None:
        if ev.kind != "step" or ev.epoch < 2:  # epoch 1: cuDNN autotuning and allocator warm-up
            return
        n = ((ev.epoch - 1) * ev.steps + ev.step) * recipe.batch_size
        now = time.time()
        if "t0" not in mark:
            mark.update(t0=now, n0=n)
        elif now - mark["t0"] >= args.seconds:
            mark.update(t1=now, n1=n)
            raise _Stop

    try:
        train(model, data, recipe, seed=args.index, device=dev, on_progress=on_progress, threads=args.threads,
              progress_every=max(1, min(5, args.images // recipe.batch_size)))
    except _Stop:
        pass
    res = {"index": args.index, "t0": mark["t0"], "t1": mark["t1"], "images": mark["n1"] - mark["n0"],
           "img_s": (mark["n1"] - mark["n0"]) / (mark["t1"] - mark["t0"])}
    Path(args.result).write_text(json.dumps(res))
    return 0


def part_concurrency(args, device, epoch_result: dict[str, Any] | None) -> dict[str, Any]:
    s = args.size
    out: dict[str, Any] = {"model": "resnet56", "window_seconds": s["worker_seconds"], "k": {}}
    # evaluation + checkpoint overhead per 50k-image epoch, from the epoch part (0 if it did not run)
    overhead = float((epoch_result or {}).get("epoch2_eval_and_overhead_seconds", 0.0))
    if epoch_result and epoch_result.get("train_images_per_epoch") != EPOCH_IMAGES:
        overhead *= EPOCH_IMAGES / epoch_result["train_images_per_epoch"]
    for k in s["ks"]:
        if time.perf_counter() > args.deadline:
            out["k"][str(k)] = {"skipped": "time budget spent"}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            procs = []
            for i in range(k):
                cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--model", "resnet56",
                       "--device", str(device), "--images", str(s["worker_images"]), "--seconds", str(s["worker_seconds"]),
                       "--barrier", tmp, "--k", str(k), "--index", str(i), "--result", f"{tmp}/w{i}.json"]
                if args.dry:
                    cmd += ["--threads", "1"]
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}))
            codes = _wait_all(procs, timeout=180.0)
            if any(codes):
                out["k"][str(k)] = {"error": f"worker exit codes {codes} (-9: stopped after a failure or 180 s)"}
                continue
            ws = [json.loads(Path(f"{tmp}/w{i}.json").read_text()) for i in range(k)]
        per = [w["img_s"] for w in ws]
        total = sum(per)
        overlap = min(w["t1"] for w in ws) - max(w["t0"] for w in ws)
        # one run = 160 epochs of 50,000 images at the per-process rate, plus evaluation per epoch
        run_s = RUN_EPOCHS * (EPOCH_IMAGES / (total / k) + overhead)
        out["k"][str(k)] = {
            "total_img_s": round(total, 1), "per_process_img_s": [round(v, 1) for v in per],
            "window_overlap_seconds": round(overlap, 2),
            "resnet56_160_epoch_run_seconds": round(run_s, 1),
            "runs_per_gpu_hour": round(k * 3600 / run_s, 1),
        }
        print(f"[concurrency] k={k}: {total:.0f} img/s total, {k * 3600 / run_s:.1f} ResNet-56 runs per GPU-hour",
              flush=True)
    out["note"] = ("runs per GPU-hour = k x 3600 / (160 x (50,000 / per-process img/s + the epoch part's "
                   "evaluation/checkpoint seconds per epoch)); processes time-share the one GPU")
    return out


def _wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Wait for every process; if one fails (or time runs out) stop the others instead of letting
    them wait at the barrier. Returns the exit codes (-9 for a process that had to be killed)."""
    end = time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in procs]  # poll every process (any() would stop at the first)
        if all(c is not None for c in codes):
            break
        failed = any(c not in (None, 0) for c in codes)
        if failed or time.monotonic() > end:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            break
        time.sleep(0.1)
    return [p.returncode for p in procs]


def part_accuracy(args, device) -> dict[str, Any]:
    """Short real-data run: ours vs the reference loop, same seeds and recipe, on digits."""
    import statistics

    from benchmarks.train_throughput import reference_train
    from prunesearch.data import load_dataset
    from prunesearch.train import get_recipe, train

    s = args.size
    data = load_dataset("digits")
    if s["acc_images"]:  # dry run: a slice of the set, cycled
        data = cycled(data, *s["acc_images"])
    recipe = get_recipe("paper", epochs=s["acc_epochs"])
    out: dict[str, Any] = {"dataset": "digits (scikit-learn's 1,797 real 8x8 digits, upscaled to 32x32; "
                                      f"{data.num_train} train / {data.num_test} test)",
                           "model": s["acc_model"], "epochs": s["acc_epochs"],
                           "recipe": "paper (SGD 0.9, lr 0.1 x0.1 at 50 %/75 %, wd 1e-4, batch 64; no flips)",
                           "ours": [], "reference": []}
    for seed in range(s["acc_seeds"]):
        t0 = time.perf_counter()
        r = train(build(s["acc_model"], data, seed), data, recipe, seed=seed, device=device,
                  threads=1 if args.dry else None)
        out["ours"].append({"seed": seed, "best_acc": r.best_acc, "final_acc": r.final_acc,
                            "seconds": round(time.perf_counter() - t0, 2)})
        t0 = time.perf_counter()
        ref = reference_train(build(s["acc_model"], data, seed), data, s["acc_epochs"], recipe, device, seed)
        out["reference"].append({"seed": seed, "best_acc": ref["best_acc"], "final_acc": ref["final_acc"],
                                 "seconds": round(time.perf_counter() - t0, 2)})
    for who in ("ours", "reference"):
        out[f"{who}_final_acc_mean"] = round(statistics.fmean(x["final_acc"] for x in out[who]), 4)
    p = (out["ours_final_acc_mean"] + out["reference_final_acc_mean"]) / 2
    out["test_set_std_error"] = round((p * (1 - p) / data.num_test) ** 0.5, 4)
    print(f"[accuracy] digits {s['acc_epochs']} epochs: ours {out['ours_final_acc_mean']:.4f}, reference "
          f"{out['reference_final_acc_mean']:.4f}", flush=True)
    return out


def compiled(args) -> int:
    """(subprocess) ours with torch.compile(mode) for two epochs: the first compiles (training and
    evaluation graphs, CUDA graph capture), the second is the measured steady state."""
    import torch

    from prunesearch.train import get_recipe, train

    dev = torch.device(args.device)
    data = synthetic(args.images)
    recipe = get_recipe("paper", epochs=2, eval_batch_size=256, compile=args.mode)
    t0 = time.perf_counter()
    r = train(build(args.model, data), data, recipe, seed=0, device=dev)
    e1, e2 = r.history
    Path(args.result).write_text(json.dumps({"model": args.model, "mode": args.mode,
                                             "epoch1_seconds_with_compile": round(e1.seconds, 1),
                                             "total_seconds": round(time.perf_counter() - t0, 1),
                                             "img_s": round(e2.images_per_second, 1), "images_per_epoch": args.images,
                                             "precision": r.precision}))
    return 0


def part_compiled(args, device, left: float, throughput_result: dict | None, epoch_result: dict | None) -> dict[str, Any]:
    if args.dry or device.type != "cuda":
        return {"skipped": "compiled runs on CUDA only (CUDA graphs; compiling on the shared CPU takes minutes)"}
    later = [p for p in args.part_list[args.part_list.index("compiled") + 1:]]
    limit = min(180.0, left - (RESERVE["gpu"] if later else 0.0))
    if limit < 60:
        return {"skipped": f"only {limit:.0f} s of the budget left"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "compiled", "--device", str(device),
               "--images", str(args.size["compile_images"]), "--result", f"{tmp}/c.json"]
        try:
            p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=limit)
        except subprocess.TimeoutExpired:
            return {"skipped": f"compile + run took over {limit:.0f} s"}
        if p.returncode != 0:
            return {"error": f"exit {p.returncode} (see the log)"}
        r = json.loads(Path(f"{tmp}/c.json").read_text())
    ref = ((throughput_result or {}).get("resnet56") or {}).get("reference_img_s")
    if ref:
        r["speedup_vs_reference"] = round(r["img_s"] / ref, 2)
    overhead = float((epoch_result or {}).get("epoch2_eval_and_overhead_seconds", 0.0))
    r["projected_160_epoch_seconds"] = round(RUN_EPOCHS * (EPOCH_IMAGES / r["img_s"] + overhead), 1)
    r["projection"] = "160 x (50,000 / compiled img/s + the epoch part's evaluation/checkpoint seconds per epoch)"
    print(f"[compiled] resnet56 {r['mode']}: {r['img_s']} img/s (first epoch with compile {r['epoch1_seconds_with_compile']} s)",
          flush=True)
    return r


# ------------------------------------------------------------------------------ driver
def verdict(res: dict[str, Any]) -> dict[str, Any]:
    """The three targets, read off the measured parts (None where a part did not run)."""
    thr = res.get("throughput") or {}
    speedups = {m: r.get("speedup") for m, r in thr.items() if isinstance(r, dict)}
    comp = res.get("compiled") or {}
    runs = [r for r in ((res.get("epoch") or {}).get("projected_160_epoch_seconds"),
                        comp.get("projected_160_epoch_seconds")) if r]
    run_s = min(runs) if runs else None
    per_hour = max((v.get("runs_per_gpu_hour", 0) for v in ((res.get("concurrency") or {}).get("k") or {}).values()
                    if isinstance(v, dict)), default=None)
    return {
        "speedup_vs_reference": speedups, "speedup_compiled_resnet56": comp.get("speedup_vs_reference"),
        "resnet56_160_epoch_run_seconds": run_s,
        "resnet56_runs_per_gpu_hour_best_k": per_hour,
        "targets": TARGETS,
        "meets": {
            "speedup_eager": None if not speedups else all((v or 0) >= TARGETS["speedup_vs_reference"] for v in speedups.values()),
            "speedup_compiled_resnet56": None if comp.get("speedup_vs_reference") is None
            else comp["speedup_vs_reference"] >= TARGETS["speedup_vs_reference"],
            "run_seconds": None if run_s is None else run_s <= TARGETS["resnet56_160_epoch_run_seconds"],
            "runs_per_hour": None if per_hour is None else per_hour >= TARGETS["resnet56_runs_per_gpu_hour"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cmd == "worker":
        return worker(args)
    if args.cmd == "compiled":
        return compiled(args)
    import torch

    from prunesearch.train import machine_info, resolve_device

    t_start = time.perf_counter()
    args.deadline = t_start + args.budget_seconds
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="prunesearch-gpu-dry-"))
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)  # DeviceError (one line) when CUDA is missing
    res: dict[str, Any] = {
        "benchmark": "gpu", "dry": args.dry, "device": str(device),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "machine": machine_info(device),
        "optuna_importable": _importable("optuna"), "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in args.size.items()},
        "parts_requested": args.part_list,
    }
    if device.type == "cuda":
        res["machine"]["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    path = out / "gpu_bench.json"

    def save() -> None:
        res["seconds"] = round(time.perf_counter() - t_start, 1)
        res["optuna_imported"] = any(m == "optuna" or m.startswith("optuna.") for m in sys.modules)
        res["verdict"] = verdict(res)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=2) + "\n")
        os.replace(tmp, path)

    save()
    for part in args.part_list:
        left = args.budget_seconds - (time.perf_counter() - t_start)
        if part != "compiled" and left <= 0:
            res[part] = {"skipped": "time budget spent"}
            continue
        t0 = time.perf_counter()
        try:
            if part == "throughput":
                res[part] = part_throughput(args, device)
            elif part == "epoch":
                res[part] = part_epoch(args, device)
            elif part == "concurrency":
                res[part] = part_concurrency(args, device, res.get("epoch"))
            elif part == "accuracy":
                res[part] = part_accuracy(args, device)
            elif part == "compiled":
                res[part] = part_compiled(args, device, left, res.get("throughput"), res.get("epoch"))
        except Exception as e:  # record and go on: the other parts still measure something
            res[part] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
            print(f"[{part}] FAILED: {res[part]['error']}", file=sys.stderr, flush=True)
        res.setdefault("part_seconds", {})[part] = round(time.perf_counter() - t0, 1)
        save()
    print(json.dumps({"benchmark": "gpu", "dry": args.dry, "seconds": res["seconds"], "verdict": res["verdict"],
                      "result": str(path)}), flush=True)
    failed = [p for p in args.part_list if isinstance(res.get(p), dict) and "error" in res[p]]
    return 1 if failed else 0


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
