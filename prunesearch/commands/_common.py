"""Helpers shared by the CLI commands: consoles, JSON output, option parsing."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from rich.console import Console

from ..errors import ConfigError

_out: Console | None = None
_err: Console | None = None


def _width(stream) -> int | None:
    # Rich falls back to 80 columns when output is not a terminal (CI logs, pipes, files), which
    # wraps the wide parameter-efficiency tables; give them room there.
    return None if stream.isatty() else 160


def console() -> Console:
    global _out
    if _out is None:
        _out = Console(highlight=False, width=_width(sys.stdout))
    return _out


def err_console() -> Console:
    global _err
    if _err is None:
        # errors are one line; never wrap them
        _err = Console(stderr=True, highlight=False, width=_width(sys.stderr) and 10_000)
    return _err


def print_json(obj: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False) + "\n")
    sys.stdout.flush()


def make_out_dir(path: Any, option: str = "--out") -> Any:
    """Create an output/run folder private to the user (0o700: results, checkpoints and storages
    can be sensitive on shared machines) and check it is writable before any work starts."""
    import os
    from pathlib import Path

    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(p, os.W_OK | os.X_OK):  # read-only mount (EROFS) or permissions; touches nothing
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise ConfigError(f"output folder {p} is not writable ({e.strerror or e}); give {option} a writable directory") from None
    return p


def parse_budgets(text: str) -> list[float]:
    """'0.2,0.4,0.6' -> [0.2, 0.4, 0.6]; budgets are fractions (<= 1) or absolute counts (> 1)."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part.replace("_", ""))
        except ValueError:
            raise ConfigError(
                f"budget '{part}' is not a number; give fractions of the base model like 0.2,0.4 "
                "or absolute parameter counts like 250000"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"budget {part} must be a positive finite number; give e.g. 0.2,0.4,0.6")
        out.append(value)
    if not out:
        raise ConfigError(f"no budgets in '{text}'; give e.g. --budgets 0.2,0.4,0.6")
    return out


def print_trial_event(kind: str, info: dict[str, Any]) -> None:
    """Progress of study trials (``study`` and ``worker``), on stderr so stdout stays for --json."""
    from rich.markup import escape

    c = err_console()
    n = f"trial {info.get('trial', '?'):>4}"
    slot = escape(str(info.get("slot", "")))
    if kind == "start":
        c.print(f"{n} [cyan]{slot}[/] training ({info['params']:,} params)")
    elif kind == "done":
        c.print(f"{n} done: best {100 * info['best_acc']:.2f} % in {info['train_seconds']:.1f} s")
    elif kind == "cached":
        c.print(f"{n} [cyan]{slot}[/] = trial {info['from']} (cached result)")
    elif kind == "failed":
        c.print(f"{n} [red]failed[/]: {escape(str(info['reason']))}")
    elif kind == "duplicate":
        c.print(f"{n} skipped: duplicate of trial {info['of']}")
    elif kind == "lost":
        c.print(f"{n} was re-run elsewhere (this worker stalled); result discarded")
