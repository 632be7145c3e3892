"""What this machine can give a training run right now: usable cores, and how many are free.

Torch-free, so the data layer (decoding workers) and the trainer (torch threads) ask the same
question in the same place.

Why not the load average: it is a one-minute moving average, so a process that has just ended
(the ``pip install`` before a first ``prunesearch discover``) still counts as load for a minute, and
a 2-core machine then trains on one thread, 2-3x slower. Instead the CPUs' idle time is sampled
over a fraction of a second from ``/proc/stat`` (Linux); elsewhere the load average is the fallback.
On a shared machine ``torch.set_num_threads(all cores)`` collapses 3-8x as soon as another process
holds a core (every step waits for the slowest thread), so the default is the free cores.
"""

from __future__ import annotations

import os
import time

_SAMPLE_SECONDS = 0.25
_CACHE_SECONDS = 30.0
_cached: tuple[float, int] | None = None


def threads_per_worker(workers: int) -> int:
    """CPU threads each of ``workers`` concurrent trainings gets by default: the idle cores, shared."""
    return max(1, default_threads() // max(1, int(workers)))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies summed over all CPUs, from /proc/stat; None where unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [float(x) for x in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return idle, sum(values[:8])  # guest time is already inside user/nice


def busy_cores(sample_seconds: float = _SAMPLE_SECONDS) -> float:
    """How many cores other work keeps busy now (sampled over ``sample_seconds``)."""
    total_cpus = os.cpu_count() or 1
    a = _cpu_times()
    if a is not None:
        time.sleep(sample_seconds)
        b = _cpu_times()
        if b is not None and b[1] > a[1]:
            idle_share = (b[0] - a[0]) / (b[1] - a[1])
            return max(0.0, (1.0 - idle_share) * total_cpus)
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def default_threads(refresh: bool = False) -> int:
    """Free cores now: usable cores minus the cores other work keeps busy, at least 1.

    Sampled at most every 30 s per process (a study asks before every trial)."""
    global _cached
    now = time.monotonic()
    if not refresh and _cached is not None and now - _cached[0] < _CACHE_SECONDS:
        return _cached[1]
    cores = usable_cores()
    n = max(1, min(cores, int(cores - busy_cores() + 0.5)))
    _cached = (now, n)
    return n
