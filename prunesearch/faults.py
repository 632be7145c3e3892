"""Named kill points, so reliability tests and ``benchmarks/soak.py`` can SIGKILL a real process at
the exact moments that matter (no mocks): ``PRUNESEARCH_KILL_AT=POINT[:N]`` makes the process kill
itself with SIGKILL the N-th time (default 1st) it passes ``POINT``. Unset (always, in normal use)
a point costs one comparison.

Points: ``train-step`` (after an optimiser step), ``checkpoint-write`` (checkpoint written to its
temp file, not yet renamed), ``result-write`` (a trial's results stored, the trial not yet
COMPLETE), ``trial-complete`` (COMPLETE, its checkpoint not yet removed), ``file-write`` (run.json
or records.jsonl written to its temp file, not yet renamed).
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("PRUNESEARCH_KILL_AT") or None
_POINT, _, _N = (_SPEC or "").partition(":")
_AT = int(_N) if _N.isdigit() else 1
_seen = 0


def kill_point(name: str) -> None:
    """SIGKILL this process here if ``PRUNESEARCH_KILL_AT`` names this point (and count)."""
    global _seen
    if _SPEC is None or name != _POINT:
        return
    _seen += 1
    if _seen == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
