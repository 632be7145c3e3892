"""`prunesearch repair JOURNAL`: cut a damaged entry off the end of a study's journal file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import console, print_json

NAME = "repair"
HELP = "cut a write that was cut off (a crash, a full disk) from the end of a study's journal file"
DESCRIPTION = (
    "A journal whose last entry was cut off mid-line (a crash inside an append, a full disk) is refused "
    "by study, worker and report until repaired. This copies the whole file to JOURNAL.damaged-TIME, then "
    "truncates JOURNAL after its last complete entry: every complete entry is kept. Stop the study's "
    "workers first."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("journal", help="the journal file, e.g. runs/NAME/journal.log")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..study.journal import repair_journal

    d = repair_journal(Path(args.journal).expanduser())
    if args.json:
        print_json(d)
    elif d["repaired"]:
        console().print(f"repaired {d['journal']}: removed {d['removed_bytes']} bytes of a cut-off entry; the "
                        f"original is kept as {d['backup']}", highlight=False, soft_wrap=True)
    else:
        console().print(f"{d['journal']} ends with a complete entry; nothing to repair", highlight=False)
    return 0
