"""A journal file's tail: detect an entry cut off mid-line (a crash inside an append, a full disk, a
copy in progress) before anything is appended onto it, and repair it by cutting the broken tail.

Optuna's journal is one JSON object per line. A half-written last line is harmless until the next
append lands on it: then the line in the middle is broken for good and every later read fails. So
every open of a journal checks the tail first (a few KiB read) and refuses with the command that
repairs it; :func:`repair_journal` keeps every complete entry and a byte-for-byte backup.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..errors import StorageError

TAIL_BYTES = 1 << 16


def _lock_held(path: Path) -> bool:
    """Optuna's symlink lock (``JOURNAL.lock``): a writer is inside an append right now."""
    return os.path.lexists(str(path) + ".lock")


def damaged_tail(path: Path) -> tuple[int, int] | None:
    """(offset of the first byte after the last complete entry, bytes after it) when the file ends
    in a partial or unparsable entry; None when the tail is sound (or the file is empty)."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as f:
        start = max(0, size - TAIL_BYTES)
        f.seek(start)
        tail = f.read()
    if tail.endswith(b"\n"):
        body = tail[:-1]
        cut = body.rfind(b"\n")
        last = body[cut + 1:]
        try:
            json.loads(last)
            return None
        except ValueError:
            good = start + cut + 1 if cut != -1 or start == 0 else None
            if good is None:
                raise StorageError(f"journal {path} has an entry longer than {TAIL_BYTES} bytes at its end; it is "
                                   "not a prunesearch journal or is damaged beyond a cut-off line") from None
            return good, size - good
    cut = tail.rfind(b"\n")
    if cut == -1 and start > 0:
        raise StorageError(f"journal {path} has an entry longer than {TAIL_BYTES} bytes at its end; it is not a "
                           "prunesearch journal or is damaged beyond a cut-off line")
    good = start + cut + 1
    return good, size - good


def check_journal(path: Path, wait: float = 2.0) -> None:
    """Raise a one-line StorageError naming the repair command when ``path`` ends in a damaged
    entry. A tail seen while another process holds the append lock (or that completes within
    ``wait`` seconds) is a write in progress, not damage."""
    if not path.is_file():
        return
    bad = damaged_tail(path)
    deadline = time.monotonic() + wait
    while bad is not None and (_lock_held(path) or time.monotonic() < deadline):
        time.sleep(0.2)
        bad = damaged_tail(path)
        if _lock_held(path) and time.monotonic() > deadline + 30:
            break
    if bad is not None:
        offset, n = bad
        raise StorageError(f"journal {path} ends with a damaged entry ({n} bytes after the last complete one at byte "
                           f"{offset}: a write was cut off); run 'prunesearch repair {path}' to cut it off (every "
                           "complete entry is kept, and a backup of the file)")


def repair_journal(path: Path) -> dict:
    """Cut a damaged tail off ``path`` (after copying the whole file to ``path.damaged-<time>``)."""
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"journal {path} does not exist; give the run's journal.log")
    if _lock_held(path):
        raise StorageError(f"journal {path} is being written (its lock {path}.lock exists); stop the study's workers "
                           "first, or remove a stale lock left by a killed worker")
    bad = damaged_tail(path)
    if bad is None:
        return {"journal": str(path), "repaired": False, "backup": None, "removed_bytes": 0}
    offset, n = bad
    backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, backup)
    os.chmod(backup, 0o600)
    with open(path, "r+b") as f:
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())
    return {"journal": str(path), "repaired": True, "backup": str(backup), "removed_bytes": n}


def check_journal_file(path: Path) -> None:
    """Before a run dir is made for it: ``path`` must be a journal (or not exist yet)."""
    if path.is_dir():
        raise StorageError(f"journal storage {path} is a directory; give a journal file (e.g. RUN_DIR/journal.log) "
                           "or a postgresql+psycopg:// URL")
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        first = f.readline(TAIL_BYTES)
    try:
        entry = json.loads(first)
        ok = isinstance(entry, dict) and "op_code" in entry
    except ValueError:
        ok = False
    if not ok:
        raise StorageError(f"{path} is not an Optuna journal (its first line is not a journal entry); give the run's "
                           "journal.log, a new file name, or a postgresql+psycopg:// URL")
    check_journal(path)
