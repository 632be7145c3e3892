"""The files a study run dir holds next to its storage: ``run.json`` (where the results live),
``records.jsonl`` (a snapshot of the records), checkpoints and artifacts. All written through the
one atomic writer (``prunesearch.fileio``): private, never torn, never following a planted symlink."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import atomic_write_text, make_private_dir
from .storage import describe_storage

RUN_JSON, RECORDS_JSONL, JOURNAL = "run.json", "records.jsonl", "journal.log"


def default_storage(run_dir: Path) -> str:
    return str(run_dir / JOURNAL)


def make_run_dir(path: str | os.PathLike) -> Path:
    """Create (0o700) and check a run dir before anything is written or trained."""
    try:
        return make_private_dir(path)
    except OSError as e:
        raise ConfigError(f"run dir {path} is not writable ({e.strerror or e}); give --out a writable directory") from None


def write_run_json(run_dir: Path, storage: str, study: str, seeds: int | None = None, **extra: Any) -> Path:
    """``run.json``: the storage (masked: never a password), the study name and how many seeds a
    cell plans, so ``prunesearch report RUN_DIR`` finds the results."""
    d: dict[str, Any] = {"storage": describe_storage(storage), "study": study}
    if seeds is not None:
        d["seeds"] = int(seeds)
    d.update(extra)
    return atomic_write_text(run_dir / RUN_JSON, json.dumps(d, indent=2) + "\n")


def read_run_json(run_dir: Path) -> dict[str, Any] | None:
    p = Path(run_dir) / RUN_JSON
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def write_records(run_dir: Path, records: list) -> Path:
    return atomic_write_text(run_dir / RECORDS_JSONL, "".join(r.to_json() + "\n" for r in records))
