"""Named kill points, so reliability tests and ``benchmarks/soak.py`` can SIGKILL a real process at
the exact moments that matter (no mocks): ``PRUNESEARCH_KILL_AT=POINT[:N]`` makes the process kill
itself with SIGKILL the N-th time (default 1st) it passes ``POINT``. Unset (always, in normal use)
a point costs one comparison.

Points: ``train-step`` (after an optimiser step), ``checkpoint-write`` (checkpoint written to its
temp file, not yet renamed), ``result-write`` (a trial's results stored, the trial not yet
COMPLETE), ``trial-complete`` (COMPLETE, its checkpoint not yet removed), ``file-write`` (run.json
or records.jsonl written to its temp file, not yet renamed).

``PRUNESEARCH_FAIL_AT=POINT[:N]`` instead raises ``OSError(ENOSPC)`` there (a full disk), so the
soak and the tests see the re-queue path of a real I/O error.
"""

from __future__ import annotations

import errno
import os
import signal

_SPEC = os.environ.get("PRUNESEARCH_KILL_AT") or None
_POINT, _, _N = (_SPEC or "").partition(":")
_AT = int(_N) if _N.isdigit() else 1
_seen = 0
_FAIL = os.environ.get("PRUNESEARCH_FAIL_AT") or None
_FPOINT, _, _FN = (_FAIL or "").partition(":")
_FAT = int(_FN) if _FN.isdigit() else 1
_fseen = 0


def kill_point(name: str) -> None:
    """SIGKILL this process here if ``PRUNESEARCH_KILL_AT`` names this point (and count)."""
    global _seen
    global _fseen
    if _FAIL is not None and name == _FPOINT:
        _fseen += 1
        if _fseen == _FAT:
            raise OSError(errno.ENOSPC, "No space left on device (injected by PRUNESEARCH_FAIL_AT)", name)
    if _SPEC is None or name != _POINT:
        return
    _seen += 1
    if _seen == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
