"""Devices, threads and precision: what this machine can do, decided once, in one place."""

from __future__ import annotations

import functools
import os

import torch

from ..errors import DeviceError
from ..machine import default_threads  # noqa: F401  (re-exported: the trainer's default thread count)


def resolve_device(text: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` (CUDA if present, else CPU), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.

    Raises :class:`DeviceError` for a device this machine does not have."""
    if isinstance(text, torch.device):
        text = str(text)
    t = (text or "auto").strip().lower()
    if t == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if t == "cpu":
        return torch.device("cpu")
    if t == "cuda" or t.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{text}' requested but CUDA is not available here (torch {torch.__version__}); use --device cpu")
        index = 0
        if ":" in t:
            try:
                index = int(t.split(":", 1)[1])
            except ValueError:
                raise DeviceError(f"device '{text}' is malformed; use cuda or cuda:N") from None
        n = torch.cuda.device_count()
        if not 0 <= index < n:
            raise DeviceError(f"device '{text}' requested but this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1}); pick one of those")
        return torch.device("cuda", index)
    raise DeviceError(f"device '{text}' is not known; use auto, cpu, cuda or cuda:N")


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU does bf16 maths natively (AVX512-BF16 or AMX), so bf16 autocast is fast."""
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """``'auto' | 'bf16' | 'fp32'`` -> the autocast dtype, or None for plain fp32.

    auto = bf16 where the hardware does it natively (CUDA with bf16 support; CPUs with AVX512-BF16
    or AMX), fp32 elsewhere."""
    p = precision.lower()
    if p == "fp32":
        return None
    if p == "bf16":
        return torch.bfloat16
    if p != "auto":
        raise DeviceError(f"precision '{precision}' is not known; use auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


def machine_info(device: torch.device | None = None) -> dict:
    """A small provenance dict for results and benchmarks."""
    import platform

    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
